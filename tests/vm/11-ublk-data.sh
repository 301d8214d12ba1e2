#!/bin/sh
# timeout: 900
# cost: 150
# Data integrity through ublk-user, for the copy and zc data paths:
# fio write-then-verify (crc32c) at 512, 4k, 64k and 1M, random and
# sequential, on loop (tmpfs file) targets; the loop backing file compared
# byte for byte with what was written; the null target exercised (it drops
# writes, so it is checked for errors only, not verified).
. tests/vm/lib.sh
requires fio control
MODES=${MODES:-copy zc}

fio_verify() { # DEV RW BS SIZE
  fio --name=v --filename="$1" --rw="$2" --bs="$3" --size="$4" --direct=1 \
    --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 \
    --randrepeat=0 --output="$T/fio.out" > /dev/null 2>&1 \
    || { cat "$T/fio.out"; die "fio $2 bs=$3 on $1 failed"; }
  grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio $2 bs=$3 reported errors"; }
}

for mode in $MODES; do
  log "== mode $mode: the reference check"
  truncate -s 256M "$T/a.img"
  d=$(ublk-user add loop --file "$T/a.img" --mode "$mode") || die "add loop $mode"
  fio --name=v --filename="$d" --rw=randwrite --bs=64k --size=64m --direct=1 --verify=crc32c --verify_state_save=0 \
    --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "reference fio ($mode) failed"; }
  grep -q "err= 0" "$T/fio.out" || die "reference fio ($mode) errors"
  ublk-user del --all || die "del --all"
  rm -f "$T/a.img"

  log "== mode $mode: loop fio verify"
  truncate -s 64M "$T/b.img"
  d=$(ublk-user add loop --file "$T/b.img" --mode "$mode") || die "add loop $mode"
  for rw in randwrite write; do
    for bs in 512 4k 64k 1M; do
      size=16m; [ "$bs" = 512 ] && size=2m
      fio_verify "$d" "$rw" "$bs" "$size"
      log "ok: $mode loop $rw bs=$bs size=$size"
    done
  done

  log "== mode $mode: backing file matches what was written"
  dd if=/dev/urandom of="$T/ref" bs=1M count=8 2>/dev/null
  dd if="$T/ref" of="$d" bs=1M seek=4 oflag=direct conv=fsync 2>/dev/null || die "dd to $d"
  dd if="$T/ref" of="$d" bs=512 count=7 seek=1 oflag=direct conv=fsync 2>/dev/null || die "dd 512 to $d"
  dd if="$d" of="$T/back" bs=1M skip=4 count=8 iflag=direct 2>/dev/null || die "dd from $d"
  cmp "$T/ref" "$T/back" || die "read back through $d differs"
  ublk-user del --all || die "del"
  dd if="$T/b.img" of="$T/back" bs=1M skip=4 count=8 2>/dev/null
  cmp "$T/ref" "$T/back" || die "backing file differs from what was written"
  dd if="$T/b.img" of="$T/back" bs=512 skip=1 count=7 2>/dev/null
  head -c 3584 "$T/ref" | cmp - "$T/back" || die "backing file differs (512-byte writes)"
  log "ok: backing file byte-for-byte"
  rm -f "$T/b.img" "$T/ref" "$T/back"

  log "== mode $mode: null target"
  d=$(ublk-user add null --size 256M --mode "$mode") || die "add null $mode"
  for bs in 512 4k 64k 1M; do
    fio --name=n --filename="$d" --rw=randrw --bs="$bs" --size=16m --direct=1 --ioengine=libaio \
      --iodepth=16 --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "null fio bs=$bs"; }
    grep -q "err= 0" "$T/fio.out" || die "null fio bs=$bs errors"
  done
  log "ok: null $mode"
  ublk-user del --all || die "del"
done
log "== buffered backing file (--buffered)"
truncate -s 32M "$T/c.img"
d=$(ublk-user add loop --file "$T/c.img" --buffered) || die "add --buffered"
fio_verify "$d" randwrite 4k 8m
ublk-user del --all || die "del"
log "ok: --buffered"

log "== block device backing (kernel loop device), size from BLKGETSIZE64"
LOSETUP=/sbin/losetup; [ -x "$LOSETUP" ] || LOSETUP=losetup
truncate -s 48M "$T/l.img"
if lo=$($LOSETUP --show -f "$T/l.img" 2>/dev/null); then
  for mode in $MODES; do
    d=$(ublk-user add loop --file "$lo" --mode "$mode") || die "add loop on $lo ($mode)"
    sz=$(cat /sys/block/$(basename "$d")/size)
    [ "$sz" = $((48 * 2048)) ] || die "size from $lo: $sz sectors, want $((48 * 2048))"
    fio_verify "$d" randwrite 64k 16m
    ublk-user del --all || die "del"
    log "ok: block device backing ($mode)"
  done
  $LOSETUP -d "$lo"
else
  log "(no loop device: block-device backing skipped)"
fi
log "PASS"
