#!/bin/sh
# timeout: 400
# cost: 70
# Backing I/O errors reach the caller as I/O errors, and acknowledged data
# stays intact, in each mode:
# * ENOSPC: the backing file is a sparse 64 MiB file on an 8 MiB tmpfs;
#   after 4 MiB of verified (acknowledged) writes, fio writes the whole
#   device: it must see I/O errors (not success, not a hang); the first
#   4 MiB still verify afterwards, through the device and in the file.
# * truncate under the server: the file shrinks from 32 MiB to 8 MiB while
#   the device is live; reads past the new end must fail with EIO or (like
#   the kernel loop driver) return zeros, never stale data; reads below
#   8 MiB still verify.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
mkdir -p "$T/small"
mount -t tmpfs -o size=8m tmpfs "$T/small" || skip "cannot mount a small tmpfs"
for mode in $(modes); do
  rm -f "$T/small/b.img"
  truncate -s 64M "$T/small/b.img"
  d=$(add_dev "$T/small/b.img" "$mode") || exit 1
  id=$(devid "$d")
  # acknowledged data: 4 MiB, sequential, verified
  fio --name=ack --filename="$d" --rw=write --bs=64k --size=4m --direct=1 --ioengine=libaio --iodepth=8 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/ack.out" > /dev/null 2>&1 \
    || { cat "$T/ack.out"; die "$mode: initial write+verify"; }
  sha_dev=$(dd if="$d" bs=1M count=4 iflag=direct 2> /dev/null | sha256sum | cut -d' ' -f1)
  # now fill the rest: the tmpfs runs out of space
  timeout -k 5 120 fio --name=fill --filename="$d" --rw=write --bs=64k --offset=4m --size=60m --direct=1 \
    --ioengine=libaio --iodepth=8 --output="$T/fill.out" > /dev/null 2>&1; frc=$?
  [ "$frc" = 124 ] && die "$mode: fio hung on a full backing filesystem"
  [ "$frc" != 0 ] || { cat "$T/fill.out"; die "$mode: 60 MiB of writes to an 8 MiB filesystem succeeded"; }
  grep -qiE 'Input/output error|No space|error=' "$T/fill.out" || { cat "$T/fill.out"; die "$mode: no I/O error in fio output"; }
  err=$(grep -oiE 'error=[^,]*' "$T/fill.out" | head -n 1)
  # the device still works, the acknowledged data is intact
  fio --name=ack --filename="$d" --rw=write --bs=64k --size=4m --direct=1 --ioengine=libaio --iodepth=8 \
    --verify=crc32c --verify_only --verify_fatal=1 --output="$T/ver.out" > /dev/null 2>&1 \
    || { cat "$T/ver.out"; die "$mode: acknowledged data does not verify after ENOSPC"; }
  [ "$(dd if="$d" bs=1M count=4 iflag=direct 2> /dev/null | sha256sum | cut -d' ' -f1)" = "$sha_dev" ] \
    || die "$mode: first 4 MiB changed"
  ublk-user del --id "$id" || die "$mode: del"
  [ "$(dd if="$T/small/b.img" bs=1M count=4 2> /dev/null | sha256sum | cut -d' ' -f1)" = "$sha_dev" ] \
    || die "$mode: the backing file does not hold the acknowledged data"
  log "ok: $mode: ENOSPC -> fio rc=$frc ($err), 4 MiB acknowledged data intact"

  # truncate under the server
  rm -f "$T/t.img"
  truncate -s 32M "$T/t.img"
  d=$(add_dev "$T/t.img" "$mode") || exit 1
  id=$(devid "$d")
  fio --name=tr --filename="$d" --rw=write --bs=64k --size=32m --direct=1 --ioengine=libaio --iodepth=8 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/tr.out" > /dev/null 2>&1 \
    || { cat "$T/tr.out"; die "$mode: write+verify before truncate"; }
  truncate -s 8M "$T/t.img"
  # below the new end: still verifies (fio verifies the first 8 MiB of the job's blocks)
  fio --name=tr --filename="$d" --rw=write --bs=64k --size=8m --direct=1 --ioengine=libaio --iodepth=8 \
    --verify=crc32c --verify_only --verify_fatal=1 --output="$T/tr2.out" > /dev/null 2>&1 \
    || { cat "$T/tr2.out"; die "$mode: data below the truncation point does not verify"; }
  # past the new end: EIO or zeros
  if dd if="$d" of="$T/past" bs=64k skip=256 count=16 iflag=direct 2> "$T/dd.err"; then
    nz=$(od -An -tx1 -v "$T/past" | tr -s ' \n' '\n\n' | grep -vc '^00$\|^$')
    [ "$nz" = 0 ] || die "$mode: read past the truncated end returned $nz non-zero bytes (stale data)"
    past="zeros ($(stat -c %s "$T/past") bytes)"
  else
    past="error: $(tail -n 1 "$T/dd.err")"
  fi
  ublk-user del --id "$id" || die "$mode: del after truncate"
  log "ok: $mode: truncate 32M->8M under the server: below verifies, past the end -> $past"
done
umount "$T/small"
rm -f "$T/t.img" "$T/past"
kmemleak_scan
log "PASS"
