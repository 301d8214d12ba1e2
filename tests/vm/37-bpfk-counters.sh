#!/bin/sh
# timeout: 180
# cost: 45
# --mode bpf-kernel counters: N synchronous 4 KiB O_DIRECT requests (dd
# bs=4k oflag=direct / iflag=direct: one request each, no merging) give
# exactly +N kernel_completed, +N kernel_redirected and +N bpf_redirected
# and nothing at the server: +0 server_cqes, server_sqes, server_enters
# (the queue threads never woke) and server_served. Where the backing I/O
# ran: each of these requests is submitted inside dd's submit_bio, where
# the driver never issues backing I/O, so all N run in the kernel worker
# (+N kernel_punted), on a tmpfs file, on a --buffered file and on a block
# device that supports IOCB_NOWAIT (a loop device). Then batched I/O on
# that block device (fio io_uring, 16 per submit, 16 reaped per wait):
# blk-mq flushes each plug from the submitting task, and the driver issues
# most requests at once (kernel_punted below half of kernel_completed);
# still +0 at the server. Every run's data
# is checked (cmp against the source and the backing store; fio verify).
# The counters are read from `ublk-user list --json` with jq.
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
. tests/vm/lib.sh
requires control bpf_kernel_io
CMP=$(tool cmp)
N=${N:-1000}
KEYS="kernel_completed kernel_redirected kernel_punted kernel_errors bpf_redirected bpf_passed server_cqes server_sqes server_enters server_served"
snapshot() { # PREFIX
  ublk-user list --json > "$T/$1.json"
  for k in $KEYS; do
    v=$(jq -r --arg k "$k" 'first(.[][$k] | numbers)' "$T/$1.json")
    [ -n "$v" ] || { cat "$T/$1.json"; die "list --json has no numeric $k"; }
    eval "$1_$k=$v"
  done
}
delta() { eval "echo \$((after_$1 - before_$1))"; }
# check WHAT KEY=WANT...: each counter's delta is exactly WANT
check() {
  _what=$1; shift
  _line=""
  for k in $KEYS; do _line="$_line $k+$(delta "$k")"; done
  log "$_what:$_line"
  for kv in "$@"; do
    k=${kv%%=*}; want=${kv#*=}
    [ "$(delta "$k")" = "$want" ] || { cat "$T/before.json" "$T/after.json"; die "$_what: $k grew by $(delta "$k"), want $want"; }
  done
}

dd if=/dev/urandom of="$T/src" bs=4096 count="$N" 2> /dev/null
LOSETUP=$(tool losetup)
lo=""
trap 'ublk-user del --all > /dev/null 2>&1; [ -n "$lo" ] && $LOSETUP -d "$lo" 2> /dev/null' EXIT
for backing in tmpfs buffered blockdev; do
  rm -f "$T/c.img"
  truncate -s 64M "$T/c.img"
  file=$T/c.img; extra=""
  punt=$N
  case $backing in
    buffered) extra=--buffered ;;
    blockdev) lo=$($LOSETUP -f --show "$T/c.img") || die "losetup"; file=$lo ;;
  esac
  d=$(ublk-user add loop --file "$file" --mode bpf-kernel --no-fallback --queues 2 $extra 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add loop --mode bpf-kernel --no-fallback $extra ($backing)"; }
  what="$backing backing"
  # let the server settle (its FETCH commands armed) before the first snapshot
  sleep 1
  snapshot before
  dd if="$T/src" of="$d" bs=4096 count="$N" seek=256 oflag=direct 2> "$T/dd.err" || { cat "$T/dd.err"; die "dd write"; }
  snapshot after
  check "$what: $N writes" kernel_completed="$N" kernel_redirected="$N" bpf_redirected="$N" \
    kernel_punted="$punt" kernel_errors=0 bpf_passed=0 \
    server_cqes=0 server_sqes=0 server_enters=0 server_served=0
  snapshot before
  dd if="$d" of="$T/back" bs=4096 count="$N" skip=256 iflag=direct 2> "$T/dd.err" || { cat "$T/dd.err"; die "dd read"; }
  snapshot after
  check "$what: $N reads" kernel_completed="$N" kernel_redirected="$N" bpf_redirected="$N" \
    kernel_punted="$punt" kernel_errors=0 bpf_passed=0 \
    server_cqes=0 server_sqes=0 server_enters=0 server_served=0
  $CMP "$T/src" "$T/back" || die "$what: data read back through the device differs from what was written"
  dd if="$file" of="$T/back" bs=4096 count="$N" skip=256 iflag=direct 2> /dev/null
  $CMP "$T/src" "$T/back" || die "$what: the backing store does not hold the written data"
  if [ "$backing" = blockdev ]; then
    snapshot before
    fio --name=batch --filename="$d" --rw=randwrite --bs=4k --direct=1 --ioengine=io_uring --iodepth=32 \
      --iodepth_batch_submit=16 --iodepth_batch_complete_min=16 --offset=8m --size=16m --randrepeat=0 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/b.out" > /dev/null 2>&1 \
      || { cat "$T/b.out"; die "$what: batched write+verify"; }
    snapshot after
    check "$what: batched write+verify" kernel_errors=0 bpf_passed=0 \
      server_cqes=0 server_sqes=0 server_enters=0 server_served=0
    c=$(delta kernel_completed); p=$(delta kernel_punted)
    [ "$c" -ge 8000 ] || die "$what: kernel_completed +$c for 16 MiB written and read in 4 KiB (8192 requests, a few may merge)"
    [ "$p" -lt $((c / 2)) ] || die "$what: $p of $c batched requests ran in the worker: the NOWAIT path at plug flush was not taken"
  fi
  ublk-user del --all || die "del"
  [ -n "$lo" ] && { $LOSETUP -d "$lo" || die "losetup -d"; lo=""; }
  log "ok: $what: +$N kernel-completed requests each way, none at the server, data intact"
done
rm -f "$T/c.img" "$T/src" "$T/back"
log "PASS"
