#!/bin/sh
# timeout: 600
# cost: 10
# ext4 on ublk-user (copy and zc): mkfs, mount, write files, umount, fsck,
# mount again and read back. Then discard / write-zeroes / flush on a loop
# target: blkdiscard must read back zeroes from the device and the backing
# file, blkdiscard -z too, and sync must succeed.
. tests/vm/lib.sh
requires control
BLKDISCARD=$(tool blkdiscard)
FALLOCATE=$(tool fallocate)
MODES=${MODES:-copy zc}

for mode in $MODES; do
  log "== $mode: ext4"
  truncate -s 64M "$T/fs.img"
  d=$(ublk-user add loop --file "$T/fs.img" --mode "$mode") || die "add"
  mkfs.ext4 -q -F "$d" || die "mkfs.ext4 on $d"
  mkdir -p "$T/mnt"
  mount -t ext4 "$d" "$T/mnt" || die "mount"
  dd if=/dev/urandom of="$T/f1" bs=1M count=5 2>/dev/null
  cp "$T/f1" "$T/mnt/f1" || die "cp"
  i=0; while [ $i -lt 50 ]; do echo "file $i" > "$T/mnt/small$i"; i=$((i+1)); done
  sync
  umount "$T/mnt" || die "umount"
  fsck.ext4 -f -n "$d" > "$T/fsck" 2>&1 || { cat "$T/fsck"; die "fsck found problems"; }
  mount -t ext4 "$d" "$T/mnt" || die "mount again"
  cmp "$T/f1" "$T/mnt/f1" || die "file differs after remount"
  [ "$(cat "$T/mnt/small49")" = "file 49" ] || die "small file differs"
  umount "$T/mnt" || die "umount"
  ublk-user del --all || die "del"
  # The image is consistent on its own, after the server flushed it.
  fsck.ext4 -f -n "$T/fs.img" > "$T/fsck" 2>&1 || { cat "$T/fsck"; die "fsck of the backing file"; }
  rm -f "$T/fs.img"
  log "ok: ext4 ($mode)"

  log "== $mode: discard, write-zeroes, flush"
  truncate -s 32M "$T/d.img"
  d=$(ublk-user add loop --file "$T/d.img" --mode "$mode") || die "add"
  dev=$(basename "$d")
  [ "$(cat /sys/block/$dev/queue/discard_max_bytes)" != 0 ] || die "discard not enabled on $d"
  [ "$(cat /sys/block/$dev/queue/write_zeroes_max_bytes)" != 0 ] || die "write zeroes not enabled on $d"
  head -c 1048576 /dev/zero > "$T/zero1m"
  dd if=/dev/urandom of="$d" bs=1M count=8 oflag=direct 2>/dev/null || die "fill"
  $BLKDISCARD -o 1048576 -l 2097152 "$d" || die "blkdiscard"
  dd if="$d" of="$T/r" bs=1M skip=1 count=1 iflag=direct 2>/dev/null
  cmp "$T/zero1m" "$T/r" || die "discarded range does not read back as zeroes"
  if $BLKDISCARD --help 2>&1 | grep -q -- --zeroout; then
    $BLKDISCARD -z -o 4194304 -l 1048576 "$d" || die "blkdiscard -z"
  else # busybox blkdiscard has no -z; fallocate -z on a block device issues write-zeroes too
    $FALLOCATE -z -o 4194304 -l 1048576 "$d" || die "fallocate -z (write zeroes)"
  fi
  dd if="$d" of="$T/r" bs=1M skip=4 count=1 iflag=direct 2>/dev/null
  cmp "$T/zero1m" "$T/r" || die "write-zeroes range does not read back as zeroes"
  dd if="$d" of="$T/r" bs=1M skip=5 count=1 iflag=direct 2>/dev/null
  cmp -s "$T/zero1m" "$T/r" && die "data next to the zeroed range was zeroed too"
  sync || die "sync"
  blockdev --flushbufs "$d" 2>/dev/null || true
  ublk-user del --all || die "del"
  dd if="$T/d.img" of="$T/r" bs=1M skip=2 count=1 2>/dev/null
  cmp "$T/zero1m" "$T/r" || die "backing file: discarded range is not zero"
  dd if="$T/d.img" of="$T/r" bs=1M skip=4 count=1 2>/dev/null
  cmp "$T/zero1m" "$T/r" || die "backing file: write-zeroes range is not zero"
  rm -f "$T/d.img"
  log "ok: discard/write-zeroes/flush ($mode)"
done
log "PASS"
