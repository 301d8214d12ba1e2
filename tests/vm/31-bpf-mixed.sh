#!/bin/sh
# timeout: 900
# cost: 60
# --mode bpf with a mixed workload: the program redirects READ/WRITE and
# passes FLUSH / DISCARD / WRITE_ZEROES to the server, interleaved on the
# same queues. fio write+verify with fsync (FLUSH) every few writes runs
# next to a trim job and a shell loop of discard, write-zeroes and sync
# on other regions; afterwards the verified region is intact, and discard /
# write-zeroes read back as zeroes through the device and in the backing
# file. Skips when the kernel lacks UBLK_F_BPF.
. tests/vm/lib.sh
. tests/vm/lib-mixed.sh
command -v fio >/dev/null || skip "no fio"
[ -c /dev/ublk-control ] || skip "no /dev/ublk-control"
has_feature bpf || skip "kernel lacks UBLK_F_BPF"
T=${TEST_TMP:-/tmp}
BLKDISCARD=$(tool blkdiscard)
FALLOCATE=$(tool fallocate)
# zeroout OFFSET LENGTH DEV: REQ_OP_WRITE_ZEROES (busybox blkdiscard has no -z;
# fallocate -z on a block device issues write-zeroes too).
if $BLKDISCARD --help 2>&1 | grep -q -- --zeroout; then
  zeroout() { $BLKDISCARD -z -o "$1" -l "$2" "$3"; }
else
  zeroout() { $FALLOCATE -z -o "$1" -l "$2" "$3"; }
fi
MiB=1048576

for queues in 1 2; do
  log "== mixed workload, --queues $queues"
  truncate -s 96M "$T/m.img"
  d=$(ublk-user add loop --file "$T/m.img" --mode bpf --no-fallback --queues "$queues" 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add loop --mode bpf"; }
  dev=$(basename "$d")
  [ "$(cat /sys/block/$dev/queue/discard_max_bytes)" != 0 ] || die "discard not enabled on $d"

  mixed_workload "$d" 40

  log "== deterministic discard / write-zeroes / flush"
  dd if=/dev/urandom of="$T/ref" bs=1M count=8 2>/dev/null
  dd if="$T/ref" of="$d" bs=1M seek=64 oflag=direct 2>/dev/null || die "dd ref"
  sync
  $BLKDISCARD -o $((66 * MiB)) -l $((2 * MiB)) "$d" || die "blkdiscard"
  zeroout $((69 * MiB)) $MiB "$d" || die "write zeroes"
  blockdev --flushbufs "$d" 2>/dev/null || sync
  # expected: ref with [2M,4M) and [5M,6M) zeroed
  cp "$T/ref" "$T/exp"
  dd if=/dev/zero of="$T/exp" bs=1M seek=2 count=2 conv=notrunc 2>/dev/null
  dd if=/dev/zero of="$T/exp" bs=1M seek=5 count=1 conv=notrunc 2>/dev/null
  dd if="$d" of="$T/back" bs=1M skip=64 count=8 iflag=direct 2>/dev/null || die "read back"
  cmp "$T/exp" "$T/back" > /dev/null || die "device contents after discard/write-zeroes differ"
  # the shell loop's zeroed MiBs read back as zero (odd MiBs of [48M,64M))
  dd if=/dev/zero of="$T/zero" bs=1M count=1 2>/dev/null
  for o in 49 51 53 55 57 59 61 63; do
    dd if="$d" of="$T/back" bs=1M skip=$o count=1 iflag=direct 2>/dev/null || die "read $o"
    cmp "$T/zero" "$T/back" > /dev/null || die "MiB $o should be zero after write-zeroes"
  done
  c=$(jnum bpf_passed)
  if [ -n "$c" ]; then
    [ "$c" -gt 0 ] || die "bpf_passed=$c: FLUSH/DISCARD should have been passed to the server"
    log "program counters: redirected=$(jnum bpf_redirected) passed=$c"
  fi
  ublk-user del --all || die "del"
  dd if="$T/m.img" of="$T/back" bs=1M skip=64 count=8 2>/dev/null
  cmp "$T/exp" "$T/back" > /dev/null || die "backing file differs after discard/write-zeroes"
  log "ok: discard / write-zeroes / flush, device and backing file"
  rm -f "$T/m.img" "$T/ref" "$T/exp" "$T/back" "$T/zero"
done
log "PASS"
