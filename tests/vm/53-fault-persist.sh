#!/bin/sh
# timeout: 400
# cost: 75
# Acknowledged writes survive a clean stop, in each mode: fio write+verify
# (random, 32 MiB), `ublk-user del`, checksum of the file; re-add over the
# same file (in every mode, crossing modes), fio --verify_only and the same
# checksum through the device.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
n=0
k=0
for mode in $(modes); do
  k=$((k + 1))
  seed=$((1234 + k))
  : > "$T/p.img"; truncate -s 32M "$T/p.img"
  d=$(add_dev "$T/p.img" "$mode") || exit 1
  fio --name=p --filename="$d" --rw=randwrite --bsrange=4k-128k --size=32m --direct=1 --ioengine=libaio \
    --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --randseed=$seed \
    --output="$T/w.out" > /dev/null 2>&1 || { cat "$T/w.out"; die "$mode: write+verify"; }
  ublk-user del --all || die "$mode: del"
  [ "$(ndev)" = 0 ] || die "$mode: device left"
  sum=$(sha256sum "$T/p.img" | cut -d' ' -f1)
  for m2 in $(modes); do
    d=$(add_dev "$T/p.img" "$m2") || exit 1
    fio --name=p --filename="$d" --rw=randwrite --bsrange=4k-128k --size=32m --direct=1 --ioengine=libaio \
      --iodepth=16 --verify=crc32c --verify_only --verify_fatal=1 --randseed=$seed \
      --output="$T/v.out" > /dev/null 2>&1 || { cat "$T/v.out"; die "written in $mode, re-added in $m2: verify_only failed"; }
    s2=$(dd if="$d" bs=1M iflag=direct 2> /dev/null | sha256sum | cut -d' ' -f1)
    [ "$s2" = "$sum" ] || die "written in $mode, re-added in $m2: checksum differs"
    ublk-user del --all || die "del"
    n=$((n + 1))
  done
  [ "$(sha256sum "$T/p.img" | cut -d' ' -f1)" = "$sum" ] || die "$mode: file changed by verify-only passes"
  log "ok: $mode: 32 MiB written+verified, survives del; verified after re-add in: $(modes)"
done
rm -f "$T/p.img"
log "PASS: $n write/re-add/verify combinations"
