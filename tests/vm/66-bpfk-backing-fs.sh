#!/bin/sh
# timeout: 600
# cost: 145
# Backing files on ext4 and xfs (a 320 MiB image on the guest's /tmp, a
# loop device, mkfs, mount), in every data mode and through the loop
# driver (losetup --direct-io=on) as the control. The kernel mode
# (bpf-kernel) must not issue a backing write that waits inside the
# submitter's submit_bio() (its own bio is parked on current->bio_list
# there: the writer stays in D state for ever) nor as the submitter (its
# RLIMIT_FSIZE: SIGXFSZ, EFBIG). For each filesystem and mode, on a
# sparse 32 MiB backing file with one fallocated (unwritten) MiB:
# - an O_DIRECT 8 KiB write far past the writer's RLIMIT_FSIZE
#   (`ulimit -f 8`) succeeds, as through loop;
# - O_DIRECT 512 B writes, less than an fs block (ext4 and xfs wait for
#   them): sector 1 (a hole), an odd sector of the unwritten MiB;
# - the file shrunk to 16 MiB under the device, O_DIRECT writes past its
#   end (512 B and 4 KiB: extending writes wait too), then a 512 B one
#   past the end and past RLIMIT_FSIZE;
# - every write reads back (cmp) through the device and from the file;
# - fio write+verify (crc32c, 512 B to 256 KiB, random, iodepth 16) over
#   12 MiB across the file's end.
# Every write is bounded (60 s): one still blocked prints the tasks in D
# state and ends its (mode, fs) pair, a writer killed by SIGXFSZ fails the
# pair at its end; the other pairs still run (modes outer, filesystems
# inner; one device at a time, deleted after its pair; a stuck one is left
# to the runner, which reports the kernel wedged). ext4 is required; xfs
# is skipped with a line without mkfs.xfs or kernel support. Before the
# fix (kernel-patches 0005 issuing backing I/O inline in submit_bio, as
# the submitter), bpf-kernel on ext4 failed both ways: SIGXFSZ, then dd in
# D state in __iomap_dio_rw on the 512 B write at sector 1.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
. tests/vm/lib-bounded.sh
requires fio control
LOSETUP=$(tool losetup)
CMP=$(tool cmp)
TRUNCATE=$(tool truncate)
FALLOCATE=$(tool fallocate)
MiB=1048576
BOUND=60 # seconds a write may take (run_bounded gives up 20 s later)
# `ulimit -f 8`: 4 KiB (sh counts 512 B blocks), far below every offset written
FSIZE=8
fsdevs=""
mnts=""
rm -f "$T/hung" "$T/cur"

# drop_dev: remove the device of the last pair (recorded in $T/cur).
drop_dev() {
  [ -s "$T/cur" ] || return 0
  read -r _kind _dev < "$T/cur"
  rm -f "$T/cur"
  if [ "$_kind" = loop ]; then
    run_bounded 30 "$LOSETUP" -d "$_dev"
  else
    run_bounded 30 ublk-user del --id "$_dev"
  fi
}
cleanup() {
  if [ -s "$T/hung" ]; then
    _h=""
    while read -r _l; do _h="${_h:+$_h, }$_l"; done < "$T/hung"
    log "writes stuck in the kernel ($_h): devices and mounts left to the runner"
    return
  fi
  drop_dev
  for m in $mnts; do umount "$m" || log "umount $m failed"; done
  for l in $fsdevs; do "$LOSETUP" -d "$l"; done
}
trap cleanup EXIT

# setup_fs FS: a 320 MiB FS (mkfs.xfs refuses less than 300 MiB; sparse on
# tmpfs) on a loop device, mounted at $T/FS.
setup_fs() {
  "$TRUNCATE" -s 320M "$T/$1.img" || die "truncate $T/$1.img"
  _ld=$("$LOSETUP" -f --show "$T/$1.img") || die "losetup $T/$1.img"
  fsdevs="$fsdevs $_ld"
  case $1 in
    ext4) mkfs.ext4 -q -F -b 4096 "$_ld" ;;
    xfs) mkfs.xfs -q -f "$_ld" ;;
  esac > "$T/mkfs.out" 2>&1 || { cat "$T/mkfs.out"; die "mkfs.$1 on $_ld"; }
  mkdir -p "$T/$1"
  mount -t "$1" "$_ld" "$T/$1" || die "mount -t $1 $_ld"
  mnts="$mnts $T/$1"
}

# hung WHAT: WHAT is still blocked: the tasks in D state, a line in $T/hung,
# the end of the pair (exit 2, its device is not deleted: that would block).
hung() {
  echo "[$(basename "$0" .sh)] FAIL: $1; tasks in D state:"
  stuck_tasks
  echo "$what" >> "$T/hung"
  exit 2
}

# put OFF LEN PATOFF [FSIZE]: O_DIRECT write of LEN bytes of the pattern
# (from PATOFF) at byte OFF of $d, bounded; with FSIZE under `ulimit -f FSIZE`.
# A writer killed by SIGXFSZ: a FAIL line, a line in $T/sigxfsz, return 1 (the
# pair goes on, to the writes that may hang, and fails at its end).
put() {
  # shellcheck disable=SC2016 # expanded by the inner sh
  run_bounded "$BOUND" sh -c 'ulimit -f "$1" && exec dd if="$2" of="$3" bs="$4" count=1 skip="$5" seek="$6" \
      iflag=skip_bytes oflag=direct,seek_bytes 2> "$7"' \
    put "${4:-unlimited}" "$T/pat" "$d" "$2" "$3" "$1" "$T/dd.err"
  _rc=$?
  _w="$what: $2 B O_DIRECT write at $1${4:+ (ulimit -f $4)}"
  case $_rc in
    0) ;;
    125) hung "$_w: still blocked $((BOUND + 20))s later" ;;
    153)
      echo "[$(basename "$0" .sh)] FAIL: $_w: the writer got SIGXFSZ (the backing write ran with its RLIMIT_FSIZE)"
      echo "$_w" >> "$T/sigxfsz"
      return 1 ;;
    *) cat "$T/dd.err"; die "$_w failed ($_rc)" ;;
  esac
}

# check OFF LEN AT PATOFF PLEN: the LEN bytes at OFF, read through $d
# (O_DIRECT) and from the backing file, are zeroes but for PLEN bytes of the
# pattern (from PATOFF) at AT.
check() {
  { head -c "$3" /dev/zero; tail -c +$(($4 + 1)) "$T/pat" | head -c "$5"; head -c $(($2 - $3 - $5)) /dev/zero; } > "$T/exp"
  dd if="$d" of="$T/got" bs="$2" count=1 skip="$1" iflag=direct,skip_bytes 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$what: read of $2 B at $1 through $d"; }
  "$CMP" "$T/exp" "$T/got" || die "$what: $2 B at $1 read through $d differ from what was written"
  dd if="$B" of="$T/got" bs="$2" count=1 skip="$1" iflag=skip_bytes 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$what: read of $2 B at $1 of $B"; }
  "$CMP" "$T/exp" "$T/got" || die "$what: $2 B at $1 of the backing file differ from what was written"
}

# size_is N: the backing file is N bytes long.
size_is() {
  _s=$(stat -c %s "$B")
  [ "$_s" = "$1" ] || die "$what: the backing file is $_s bytes, want $1"
}

# pair MODE FS (in a subshell: die ends the pair only)
pair() {
  mode=$1 fs=$2 what="$1 on $2" t0=$(now)
  B=$T/$fs/back
  rm -f "$B"
  "$TRUNCATE" -s 32M "$B" || die "$what: truncate"
  "$FALLOCATE" -o $((8 * MiB)) -l $MiB "$B" || die "$what: fallocate"
  if [ "$mode" = loop ]; then
    d=$("$LOSETUP" -f --show --direct-io=on "$B") || die "$what: losetup --direct-io=on"
    echo "loop $d" > "$T/cur"
  else
    d=$(add_in_mode "$B" "$mode") || exit 1
    id=$(devid "$d")
    echo "ublk $id" > "$T/cur"
    [ "$mode" != bpf-kernel ] || { c0=$(field_of "$id" kernel_completed); p0=$(field_of "$id" kernel_punted); }
  fi
  rm -f "$T/sigxfsz"
  # past RLIMIT_FSIZE, fs-block aligned, in a hole
  put $((20 * MiB)) 8192 0 "$FSIZE" && check $((20 * MiB)) 8192 0 0 8192
  # less than an fs block: sector 1 (a hole), an odd sector of the unwritten MiB
  put 512 512 8192
  check 0 4096 512 8192 512
  put $((8 * MiB + 3584)) 512 8704
  check $((8 * MiB)) 4096 3584 8704 512
  # past the end of the file, shrunk under the device
  "$TRUNCATE" -s $((16 * MiB)) "$B" || die "$what: truncate to 16 MiB"
  put $((17 * MiB + 1536)) 512 9216
  put $((18 * MiB)) 4096 12288
  size_is $((18 * MiB + 4096))
  check $((17 * MiB)) 4096 1536 9216 512
  check $((18 * MiB)) 4096 0 12288 4096
  # past the end and past RLIMIT_FSIZE, less than an fs block
  if put $((19 * MiB + 2560)) 512 16384 "$FSIZE"; then
    size_is $((19 * MiB + 3072))
    check $((19 * MiB + 2560)) 512 0 16384 512
  fi
  log "$what: writes read back ($(($(now) - t0))s); fio"
  run_bounded 120 fio --name=v --filename="$d" --rw=randwrite --bssplit=512/30:1536/10:4k/20:64k/25:256k/15 \
    --offset=$((12 * MiB)) --size=$((12 * MiB)) --direct=1 --ioengine=libaio --iodepth=16 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$T/fio.out" > /dev/null 2>&1
  case $? in
    0) ;;
    125) hung "$what: fio still running 140s later" ;;
    *) cat "$T/fio.out"; die "$what: fio write+verify (512 B to 256 KiB, across the file's end)" ;;
  esac
  if [ "$mode" = bpf-kernel ]; then
    c1=$(field_of "$id" kernel_completed) p1=$(field_of "$id" kernel_punted)
    log "$what: kernel_completed +$((c1 - c0)), kernel_punted +$((p1 - p0))"
  fi
  [ ! -s "$T/sigxfsz" ] || die "$what: $(wc -l < "$T/sigxfsz") writer(s) past RLIMIT_FSIZE got SIGXFSZ"
  log "ok: $what ($(($(now) - t0))s)"
}

# ext4 must be there; xfs may not
grep -qw ext4 /proc/filesystems || die "the kernel has no ext4"
command -v mkfs.ext4 > /dev/null || die "no mkfs.ext4 in the guest"
fss=ext4
if ! grep -qw xfs /proc/filesystems; then
  log "xfs skipped: the kernel has no xfs (CONFIG_XFS_FS)"
elif ! command -v mkfs.xfs > /dev/null; then
  log "xfs skipped: no mkfs.xfs in the guest (xfsprogs)"
else
  fss="ext4 xfs"
fi
for fs in $fss; do setup_fs "$fs"; done
head -c $MiB /dev/urandom > "$T/pat"

failed=""
for mode in loop $(modes); do
  for fs in $fss; do
    log "== $mode on $fs"
    (pair "$mode" "$fs")
    rc=$?
    if [ "$rc" = 2 ]; then
      rm -f "$T/cur" # stuck: not deleted (del would block too)
      failed="$failed $mode/$fs(hang)"
      continue
    fi
    [ "$rc" = 0 ] || failed="$failed $mode/$fs"
    drop_dev || die "cannot remove the device of $mode on $fs"
  done
done
[ -z "$failed" ] || die "failed:$failed"
log "PASS"
