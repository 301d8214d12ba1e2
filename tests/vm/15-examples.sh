#!/bin/sh
# timeout: 900
# cost: 105
# The library's examples (ublk-user/examples), each run as a user would:
# - null: one queue served by the program's own main thread (take_queues,
#   run_once, request_stop): the process has exactly one thread; fio
#   randrw finishes without errors (null keeps no data: nothing to verify);
# - loop: a Target written against IoCtx's builders, in copy and zc modes;
# - pool: the libubd case (worker threads, the backend's own buffers,
#   UBLK_F_USER_COPY, completions from the workers, out of order).
# loop and pool: fio write+verify (crc32c) at 4k, 64k and 1M (pool also
# 512 B and with fsync); after a clean stop (SIGTERM) the backing file
# holds exactly what the device read back before the stop.
. tests/vm/lib.sh
requires fio control
EX=target/release/examples
for e in null loop pool; do
  [ -x "$EX/$e" ] || die "$EX/$e is missing (cargo xtask builds the examples)"
done
EXPID=
# a failed check must not leave an example serving its device (the
# runner's cleanup would wait for it)
trap '[ -n "$EXPID" ] && kill -TERM "$EXPID" 2>/dev/null; wait' EXIT

# start_ex NAME ARGS...: run example NAME in the background; sets EXPID, DEV
start_ex() {
  name=$1; shift
  OUT="$T/$name.out"; ERR="$T/$name.err"
  "$EX/$name" "$@" > "$OUT" 2> "$ERR" &
  EXPID=$!
  i=0
  while [ ! -s "$OUT" ]; do
    kill -0 "$EXPID" 2>/dev/null || { cat "$ERR"; die "$name exited before printing its device"; }
    i=$((i + 1)); [ "$i" -gt 600 ] && { cat "$ERR"; die "$name printed no device in 60 s"; }
    sleep 0.1
  done
  sleep 0.2 # the whole line
  DEV=$(head -n1 "$OUT")
  [ -b "$DEV" ] || { od -c "$OUT" | head; cat "$ERR"; die "$name: '$DEV' is not a block device"; }
}

# stop_ex: SIGTERM, and the example must exit 0 with its device gone
stop_ex() {
  kill -TERM "$EXPID"
  rc=0; wait "$EXPID" || rc=$?
  EXPID=
  [ "$rc" = 0 ] || { cat "$ERR"; die "example exited with status $rc"; }
  [ -e "$DEV" ] && die "$DEV still exists after the example stopped"
  true
}

fio_verify() { # DEV BS SIZE [EXTRA...]
  dev=$1; bs=$2; size=$3; shift 3
  fio --name=v --filename="$dev" --rw=randwrite --bs="$bs" --size="$size" --direct=1 \
    --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --verify_state_save=0 --randrepeat=0 "$@" --output="$T/fio.out" > /dev/null 2>&1 \
    || { cat "$T/fio.out" "$ERR"; die "fio verify bs=$bs on $dev failed"; }
  grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio bs=$bs reported errors"; }
}

log "== null: served by the main thread alone"
start_ex null 256
# io_uring's own workers (iou-wrk-*, e.g. for the control commands the
# driver punts) are kernel threads in the process; count the others
th=$(cat /proc/"$EXPID"/task/*/comm | grep -cv '^iou-')
[ "$th" = 1 ] || { cat /proc/"$EXPID"/task/*/comm; die "null example runs $th threads, expected 1 (the library must not start any)"; }
fio --name=n --filename="$DEV" --rw=randrw --bs=4k --size=64m --direct=1 --ioengine=libaio \
  --iodepth=16 --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "fio on null"; }
grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio on null reported errors"; }
stop_ex
grep -q "requests, 0 errors" "$ERR" || { cat "$ERR"; die "null example summary"; }
log "ok: null, one thread, fio clean, stopped from its own thread"

# check_backing IMG MIB: device contents (read before the stop) == file after
sum_dev() { dd if="$DEV" bs=1M count="$1" iflag=direct 2>/dev/null | sha256sum | cut -d' ' -f1; }
sum_img() { dd if="$1" bs=1M count="$2" 2>/dev/null | sha256sum | cut -d' ' -f1; }

for mode in copy zc; do
  log "== loop ($mode)"
  truncate -s 64M "$T/loop.img"
  start_ex loop "$T/loop.img" "$mode"
  for bs in 4k 64k 1M; do fio_verify "$DEV" "$bs" 32m; done
  before=$(sum_dev 64)
  stop_ex
  [ "$(sum_img "$T/loop.img" 64)" = "$before" ] || die "loop $mode: backing file differs from the device"
  rm -f "$T/loop.img"
  log "ok: loop $mode verified, backing file identical"
done

log "== pool (user copy, 4 workers)"
truncate -s 64M "$T/pool.img"
start_ex pool "$T/pool.img" 4
fio_verify "$DEV" 512 2m
for bs in 4k 64k 1M; do fio_verify "$DEV" "$bs" 32m --fsync=8; done
before=$(sum_dev 64)
stop_ex
[ "$(sum_img "$T/pool.img" 64)" = "$before" ] || die "pool: backing file differs from the device"
cat "$ERR"
ooo=$(sed -n 's/.* \([0-9][0-9]*\) out of order.*/\1/p' "$ERR")
[ -n "$ooo" ] || die "pool: no summary line"
[ "$ooo" -gt 0 ] || die "pool: no completion overtook an earlier request (workers not concurrent?)"
log "ok: pool verified, backing file identical, $ooo completions out of order"
rm -f "$T/pool.img"
