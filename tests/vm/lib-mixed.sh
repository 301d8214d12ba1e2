# The mixed workload of 31 and 36: `. tests/vm/lib-mixed.sh` after lib.sh,
# with $T, $BLKDISCARD and MiB set. Not a test (no NN- prefix).
#
# mixed_workload DEV LOOPS: fio write+verify with fsync, a randtrim job and
# a random-write job next to it, while a shell loop runs LOOPS rounds of
# discard / write-zeroes / dsync write / sync; dies on any error.
mixed_workload() {
  # Region map: [0,32M) fio verify (+fsync) | [32M,48M) fio trim+write
  #             [48M,64M) shell discard/zeroes/sync loop | [64M,96M) reference
  cat > "$T/mixed.fio" <<EOF
[global]
filename=$1
direct=1
ioengine=libaio
randrepeat=0
[verify]
rw=randwrite
bsrange=4k-1M
offset=0
size=32m
iodepth=16
fsync=8
verify=crc32c
do_verify=1
verify_fatal=1
[trim]
rw=randtrim
bs=64k
offset=32m
size=16m
iodepth=4
[write]
rw=randwrite
bs=128k
offset=32m
size=16m
iodepth=4
EOF
  (
    i=0
    while [ $i -lt "$2" ]; do
      o=$(( 48 + (i % 8) * 2 ))
      $BLKDISCARD -o $((o * MiB)) -l $MiB "$1" || exit 1
      zeroout $(((o + 1) * MiB)) $MiB "$1" || exit 2
      dd if=/dev/urandom of="$1" bs=64k count=4 seek=$(((o * MiB) / 65536)) oflag=direct,dsync 2>/dev/null || exit 3
      sync
      i=$((i + 1))
    done
  ) > "$T/loop.out" 2>&1 &
  bg=$!
  fio "$T/mixed.fio" --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "mixed fio failed"; }
  wait $bg; rc=$?
  [ $rc = 0 ] || { cat "$T/loop.out"; die "discard/zeroes/sync loop failed (exit $rc)"; }
  grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "mixed fio reported errors"; }
  grep -Eq "err= *[1-9]" "$T/fio.out" && { cat "$T/fio.out"; die "a fio job reported errors"; }
  log "ok: fio verify with fsync + trim + discard/zeroes/sync loop"
}

# discard_zeroes_check DEV: 8 MiB of random data at [64M,72M) of DEV, a
# discard of [66M,68M) and a write-zeroes of [69M,70M), a flush; the device
# reads back the data with those ranges zeroed ($T/exp, for
# discard_zeroes_check_file), and the odd MiBs of [48M,64M) that
# mixed_workload's shell loop zeroed read back as zeroes.
discard_zeroes_check() {
  dd if=/dev/urandom of="$T/ref" bs=1M count=8 2> /dev/null
  dd if="$T/ref" of="$1" bs=1M seek=64 oflag=direct 2> /dev/null || die "dd ref"
  sync
  $BLKDISCARD -o $((66 * MiB)) -l $((2 * MiB)) "$1" || die "blkdiscard"
  zeroout $((69 * MiB)) $MiB "$1" || die "write zeroes"
  blockdev --flushbufs "$1" 2> /dev/null || sync
  cp "$T/ref" "$T/exp"
  dd if=/dev/zero of="$T/exp" bs=1M seek=2 count=2 conv=notrunc 2> /dev/null
  dd if=/dev/zero of="$T/exp" bs=1M seek=5 count=1 conv=notrunc 2> /dev/null
  dd if="$1" of="$T/back" bs=1M skip=64 count=8 iflag=direct 2> /dev/null || die "read back"
  $(tool cmp) "$T/exp" "$T/back" > /dev/null || die "device contents after discard/write-zeroes differ"
  dd if=/dev/zero of="$T/zero" bs=1M count=1 2> /dev/null
  for o in 49 51 53 55 57 59 61 63; do
    dd if="$1" of="$T/back" bs=1M skip=$o count=1 iflag=direct 2> /dev/null || die "read $o"
    $(tool cmp) "$T/zero" "$T/back" > /dev/null || die "MiB $o should be zero after write-zeroes"
  done
}

# discard_zeroes_check_file IMG: after the device is gone, its backing
# file IMG holds at [64M,72M) what discard_zeroes_check expected.
discard_zeroes_check_file() {
  dd if="$1" of="$T/back" bs=1M skip=64 count=8 2> /dev/null
  $(tool cmp) "$T/exp" "$T/back" > /dev/null || die "backing file differs after discard/write-zeroes"
  log "ok: discard / write-zeroes / flush, device and backing file"
  rm -f "$T/ref" "$T/exp" "$T/back" "$T/zero"
}
