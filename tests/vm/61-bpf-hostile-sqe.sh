#!/bin/sh
# timeout: 900
# cost: 85
# Programs that load but pass bad SQEs to bpf_ublk_queue_sqe at run time
# (ublk-bpf-fixture sqe): wrong sqe_len, forbidden opcodes, forbidden
# flags / fields / rw_flags, len 0, addr+len past the request, overflow, a
# closed fd, fd -1, a plain file, another io_uring of the server as the ring.
# The fixture replaces the --mode bpf server's program with the hostile one
# (which records every helper result in an array map and then returns
# REDIRECT, which must count as PASS since no SQE was queued), runs fio
# write+verify (crc32c, 4 MiB, 4k-64k blocks), and checks the helper's errno.
# Every request must then be served by the normal path, fio's verify passes,
# and a final full verify of the device through a fresh server shows
# nothing was corrupted. Two control cases: "valid" (accepted, redirected)
# and "twice" (second call -EBUSY, request redirected once).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio fixture bpf
truncate -s 16M "$T/h.img"
d=$(add_dev "$T/h.img" bpf --queues 1 --depth 16) || exit 1
id=$(devid "$d")
# a reference pattern over the whole device, written through the real program
fio --name=ref --filename="$d" --rw=write --bs=64k --size=16m --direct=1 --ioengine=libaio --iodepth=8 \
  --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/ref.out" > /dev/null 2>&1 \
  || { cat "$T/ref.out"; die "reference write"; }
fails=0
ncase=0
for c in $(ublk-bpf-fixture cases); do
  ncase=$((ncase + 1))
  # each case writes+verifies its own 4 MiB region (cases rotate over the last 8 MiB)
  off=$(( (8 + (ncase % 2) * 4) ))m
  ublk-bpf-fixture sqe --dev "$id" --case "$c" -- \
    fio --name=h --filename="$d" --rw=randwrite --bsrange=4k-64k --offset="$off" --size=4m --direct=1 \
      --ioengine=libaio --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
      --output="$T/h.out" > "$T/case.out" 2>&1; rc=$?
  cat "$T/case.out" | grep -v '^$'
  if [ "$rc" != 0 ]; then
    fails=$((fails + 1))
    grep -E 'err=|verify|bad' "$T/h.out" | head -n 5
  fi
done
# first 8 MiB: the reference pattern was not touched by any case
fio --name=ref --filename="$d" --rw=write --bs=64k --size=8m --direct=1 --ioengine=libaio --iodepth=8 \
  --verify=crc32c --verify_only --verify_fatal=1 --output="$T/ref2.out" > /dev/null 2>&1 \
  || { cat "$T/ref2.out"; die "the untouched first 8 MiB no longer verify"; }
ublk-user del --all || die "del (after the fixture removed its program)"
wait_gone "$id" 10 || die "device still there"
# and through a fresh server (copy mode) + the file itself
d=$(add_dev "$T/h.img" copy) || exit 1
fio --name=ref --filename="$d" --rw=write --bs=64k --size=8m --direct=1 --ioengine=libaio --iodepth=8 \
  --verify=crc32c --verify_only --verify_fatal=1 --output="$T/ref3.out" > /dev/null 2>&1 \
  || { cat "$T/ref3.out"; die "first 8 MiB do not verify through a fresh server"; }
ublk-user del --all
rm -f "$T/h.img"
# The same with --mode bpf-kernel: no ring (-1), the backing file is entry 0
# of the device's file table. Cases: a ring fd given, no IOSQE_FIXED_FILE,
# index out of range, the table unregistered or a hole (the fixture gives
# the server its table back after each), partial coverage, off -1, HIPRI.
if has_feature bpf_kernel_io; then
  truncate -s 16M "$T/k.img"
  d=$(add_dev "$T/k.img" bpf-kernel --queues 1 --depth 16) || exit 1
  id=$(devid "$d")
  for c in $(ublk-bpf-fixture cases --kernel); do
    ncase=$((ncase + 1))
    ublk-bpf-fixture sqe --dev "$id" --case "$c" --kernel-backing "$T/k.img" -- \
      fio --name=h --filename="$d" --rw=randwrite --bsrange=4k-64k --size=4m --direct=1 \
        --ioengine=libaio --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --output="$T/h.out" > "$T/case.out" 2>&1; rc=$?
    grep -v '^$' "$T/case.out"
    if [ "$rc" != 0 ]; then
      fails=$((fails + 1))
      grep -E 'err=|verify|bad' "$T/h.out" | head -n 5
    fi
  done
  # after the cases (the fixture took the program away) the device still
  # serves verified I/O, now through the server
  fio --name=after --filename="$d" --rw=randwrite --bs=4k --size=4m --offset=8m --direct=1 --ioengine=libaio \
    --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/after.out" > /dev/null 2>&1 \
    || { cat "$T/after.out"; die "bpf-kernel device does not verify after the hostile cases"; }
  ublk-user del --all
  rm -f "$T/k.img"
fi
[ "$fails" = 0 ] || die "$fails of $ncase hostile SQE cases did not behave as expected"
log "PASS: $ncase run-time SQE cases (errnos as documented, data verified)"
