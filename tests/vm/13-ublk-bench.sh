#!/bin/sh
# timeout: 900
# ci: no (a benchmark: cargo xtask bench --quick, or --filter 13-)
# cost: 155
# First fio comparison (not a pass/fail test unless something errors):
# ublk-user loop --mode copy vs --mode zc (vs --mode bpf when the kernel
# has UBLK_F_BPF) vs the kernel loop driver
# (losetup --direct-io=on), all over the same tmpfs backing file.
# 4k randread iodepth 32 (IOPS), 1M sequential read and write (bandwidth).
# Set BENCH_RUNTIME (seconds, default 10) and BENCH_SIZE (default 256M).
. tests/vm/lib.sh
requires fio control
RT=${BENCH_RUNTIME:-10}
SIZE=${BENCH_SIZE:-256M}
LOSETUP=$(tool losetup)

img=$T/bench.img
truncate -s "$SIZE" "$img"
dd if=/dev/urandom of="$img" bs=1M count=$(( $(stat -c %s "$img") / 1048576 )) conv=notrunc 2>/dev/null

one() { # LABEL DEV RW BS DEPTH -> prints "IOPS BW"
  fio --name=b --filename="$2" --rw="$3" --bs="$4" --iodepth="$5" --direct=1 --ioengine=libaio \
    --runtime="$RT" --time_based --size="$SIZE" --randrepeat=0 --norandommap --group_reporting \
    --minimal > "$T/fio.min" 2> "$T/fio.err" || { cat "$T/fio.err"; die "fio $1 $3 $4"; }
  # terse v3: field 8 read iops, 7 read bw KiB/s; 49 write iops, 48 write bw KiB/s
  awk -F';' -v l="$1" -v rw="$3" -v bs="$4" -v qd="$5" '{
    if (rw ~ /write/) { iops=$49; bw=$48 } else { iops=$8; bw=$7 }
    printf "%-10s %-10s bs=%-4s qd=%-3s %10d IOPS %9.1f MiB/s\n", l, rw, bs, qd, iops, bw/1024 }' "$T/fio.min"
}

suite() { # LABEL DEV
  one "$1" "$2" randread 4k 32
  one "$1" "$2" read 1M 8
  one "$1" "$2" write 1M 8
}

echo "fio libaio direct, ${RT}s each, backing: $SIZE tmpfs file, $(nproc) vCPUs"
modes="copy zc"
has_feature bpf && modes="$modes bpf"
for mode in $modes; do
  d=$(ublk-user add loop --file "$img" --mode "$mode" --no-fallback) || die "add $mode"
  suite "ublk-$mode" "$d" | tee -a "$T/results"
  ublk-user del --all || die "del"
done
lo=$($LOSETUP --direct-io=on --show -f "$img") || die "losetup --direct-io=on"
suite "loop-dio" "$lo" | tee -a "$T/results"
$LOSETUP -d "$lo"
log "done"
