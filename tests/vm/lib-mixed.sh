# The mixed workload of 31 and 36: `. tests/vm/lib-mixed.sh` after lib.sh,
# with $T, $BLKDISCARD, zeroout() and MiB set. Not a test (no NN- prefix).
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
