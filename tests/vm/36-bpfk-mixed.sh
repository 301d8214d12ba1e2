#!/bin/sh
# timeout: 300
# cost: 45
# --mode bpf-kernel with a mixed workload, then a backing file shorter than
# the device.
# 1. The program takes READ/WRITE (issued and completed by the kernel) and
#    passes FLUSH / DISCARD / WRITE_ZEROES to the server, interleaved on the
#    same two queues: fio write+verify with fsync every 8 writes (FLUSH) next
#    to a trim+write job and a shell loop of blkdiscard, write-zeroes and
#    sync. Afterwards the verified region verifies again, discard and
#    write-zeroes read back as zeroes (device and backing file, cmp), and the
#    counters show both paths: kernel_completed and server_served (the PASS
#    ops) both grew.
# 2. The device is sized from the backing file, so the file is shrunk under
#    the running device: reads past the new end return zeroes (as from the
#    loop driver), reads below it the old bytes, a read straddling the end
#    both, and kernel_zero_filled grows. Once with the end on a sector
#    boundary, once mid-sector.
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
# Measured: 33 s on kdev-bzImage-1 (TCG, 2 vCPUs).
. tests/vm/lib.sh
. tests/vm/lib-mixed.sh
command -v fio > /dev/null || skip "no fio"
[ -c /dev/ublk-control ] || skip "no /dev/ublk-control"
has_feature bpf_kernel_io || skip "kernel lacks UBLK_F_BPF_KERNEL_IO"
T=${TEST_TMP:-/tmp}
BLKDISCARD=$(tool blkdiscard)
FALLOCATE=$(tool fallocate)
CMP=$(tool cmp)
# zeroout OFFSET LENGTH DEV: REQ_OP_WRITE_ZEROES (busybox blkdiscard has no -z;
# fallocate -z on a block device issues write-zeroes too).
if $BLKDISCARD --help 2>&1 | grep -q -- --zeroout; then
  zeroout() { $BLKDISCARD -z -o "$1" -l "$2" "$3"; }
else
  zeroout() { $FALLOCATE -z -o "$1" -l "$2" "$3"; }
fi
MiB=1048576
trap 'ublk-user del --all > /dev/null 2>&1' EXIT
add_k() { # FILE [ARGS...]
  _f=$1; shift
  ublk-user add loop --file "$_f" --mode bpf-kernel --no-fallback "$@" 2> "$T/add.err" \
    || { cat "$T/add.err" >&2; die "add loop --mode bpf-kernel --no-fallback $*"; }
}

log "== mixed workload, --queues 2"
truncate -s 96M "$T/m.img"
d=$(add_k "$T/m.img" --queues 2) || exit 1
[ "$(jstr mode)" = bpf-kernel ] || { ublk-user list --json; die "device not in bpf-kernel mode"; }
dev=$(basename "$d")
[ "$(cat /sys/block/$dev/queue/discard_max_bytes)" != 0 ] || die "discard not enabled on $d"
k0=$(jnum kernel_completed); s0=$(jnum server_served); p0=$(jnum bpf_passed)

mixed_workload "$d" 24
# the verified region once more, after everything else ran next to it
fio --name=verify --filename="$d" --rw=randwrite --bsrange=4k-1M --offset=0 --size=32m --direct=1 \
  --ioengine=libaio --iodepth=16 --randrepeat=0 --verify=crc32c --verify_only --verify_fatal=1 \
  --output="$T/vo.out" > /dev/null 2>&1 || { cat "$T/vo.out"; die "the fio-verified region does not verify after the mixed run"; }
log "ok: verified region intact"

log "== deterministic discard / write-zeroes / flush"
dd if=/dev/urandom of="$T/ref" bs=1M count=8 2> /dev/null
dd if="$T/ref" of="$d" bs=1M seek=64 oflag=direct 2> /dev/null || die "dd ref"
sync
$BLKDISCARD -o $((66 * MiB)) -l $((2 * MiB)) "$d" || die "blkdiscard"
zeroout $((69 * MiB)) $MiB "$d" || die "write zeroes"
blockdev --flushbufs "$d" 2> /dev/null || sync
cp "$T/ref" "$T/exp"
dd if=/dev/zero of="$T/exp" bs=1M seek=2 count=2 conv=notrunc 2> /dev/null
dd if=/dev/zero of="$T/exp" bs=1M seek=5 count=1 conv=notrunc 2> /dev/null
dd if="$d" of="$T/back" bs=1M skip=64 count=8 iflag=direct 2> /dev/null || die "read back"
$CMP "$T/exp" "$T/back" || die "device contents after discard/write-zeroes differ"
dd if=/dev/zero of="$T/zero" bs=1M count=1 2> /dev/null
for o in 49 51 53 55 57 59 61 63; do
  dd if="$d" of="$T/back" bs=1M skip=$o count=1 iflag=direct 2> /dev/null || die "read $o"
  $CMP "$T/zero" "$T/back" || die "MiB $o should be zero after write-zeroes"
done
k1=$(jnum kernel_completed); s1=$(jnum server_served); p1=$(jnum bpf_passed)
log "counters: kernel_completed +$((k1 - k0)), server_served +$((s1 - s0)), bpf_passed +$((p1 - p0)), kernel_errors $(jnum kernel_errors), server_errors $(jnum server_errors)"
# at least: 96 dsync dd writes, 8 + 16 dd 1 MiB writes/reads, the verify
# job's 2 x 32 MiB in requests of at most 2 MiB
[ $((k1 - k0)) -ge 152 ] || die "kernel_completed grew by $((k1 - k0)) only: READ/WRITE did not go through the kernel path"
[ $((s1 - s0)) -gt 0 ] || die "server_served did not grow: FLUSH/DISCARD/WRITE_ZEROES never reached the server"
[ $((p1 - p0)) = $((s1 - s0)) ] || die "the program passed $((p1 - p0)) requests for $((s1 - s0)) the server served (it must run once per request)"
[ "$(jnum kernel_errors)" = 0 ] || die "kernel_errors=$(jnum kernel_errors)"
ublk-user del --all || die "del"
dd if="$T/m.img" of="$T/back" bs=1M skip=64 count=8 2> /dev/null
$CMP "$T/exp" "$T/back" || die "backing file differs after discard/write-zeroes"
log "ok: discard / write-zeroes / flush, device and backing file"
rm -f "$T/m.img" "$T/ref" "$T/exp" "$T/back"


for end in $((8 * MiB + 2560)) $((4 * MiB + 1000)); do
  log "== backing file shortened under the device: 32 MiB -> $end bytes"
  dd if=/dev/urandom of="$T/s.img" bs=1M count=32 2> /dev/null
  cp "$T/s.img" "$T/orig"
  d=$(add_k "$T/s.img" --queues 2) || exit 1
  [ "$(blockdev --getsize64 "$d")" = $((32 * MiB)) ] || die "device size $(blockdev --getsize64 "$d"), want 32 MiB"
  z0=$(jnum kernel_zero_filled)
  [ -n "$z0" ] || { ublk-user list --json; die "list --json has no kernel_zero_filled"; }
  truncate -s "$end" "$T/s.img"
  # entirely past the end: zeroes
  read_at "$d" $((16 * MiB)) $MiB "$T/past"
  expect_then_zeroes "$T/past" "$T/orig" 0 0 || die "read entirely past the end ($end) is not all zeroes"
  # at the last 4k block before the end .. 64k beyond: old bytes up to the end, zeroes after
  start=$((end / 4096 * 4096))
  read_at "$d" "$start" 65536 "$T/str"
  expect_then_zeroes "$T/str" "$T/orig" "$start" $((end - start)) || die "read straddling the end ($end) at $start: not old bytes then zeroes"
  # below the end: the old bytes
  dd if="$d" of="$T/below" bs=1M count=$((start / MiB)) iflag=direct 2> /dev/null || die "read below the end"
  expect_then_zeroes "$T/below" "$T/orig" 0 "$start" || die "read below the end ($end) differs from the file"
  # fio verify over the whole device: what is written is read back, past the old end too
  fio --name=s --filename="$d" --rw=randwrite --bs=64k --size=32m --direct=1 --ioengine=libaio --iodepth=16 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$T/s.out" > /dev/null 2>&1 \
    || { cat "$T/s.out"; die "write+verify after the file shrank to $end"; }
  z1=$(jnum kernel_zero_filled)
  log "kernel_zero_filled +$((z1 - z0)), kernel_errors $(jnum kernel_errors), size now $(stat -c %s "$T/s.img")"
  [ $((z1 - z0)) -ge 2 ] || die "kernel_zero_filled grew by $((z1 - z0)) after two reads past the end (want >= 2)"
  [ "$(jnum kernel_errors)" = 0 ] || die "kernel_errors=$(jnum kernel_errors) after reads past the end"
  ublk-user del --all || die "del"
  log "ok: end at $end: past the end zeroes, straddling read old bytes + zeroes, below unchanged, write+verify"
done
rm -f "$T/s.img" "$T/orig" "$T/past" "$T/str" "$T/below" "$T/exp" "$T/zero"
log "PASS"
