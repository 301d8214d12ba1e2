#!/bin/sh
# timeout: 300
# cost: 45
# --mode bpf-kernel with a mixed workload.
# The program takes READ/WRITE (issued and completed by the kernel) and, in
# this mode, FLUSH (fsync of the table's files), DISCARD and WRITE_ZEROES
# (fallocate) too, interleaved on the same two queues: fio write+verify
# with fsync every 8 writes (FLUSH) next to a trim+write job and a shell
# loop of blkdiscard, write-zeroes and sync. Afterwards the verified region
# verifies again, discard and write-zeroes read back as zeroes (device and
# backing file, cmp), and the counters show that all of it stayed in the
# kernel: kernel_completed grew, the server served nothing.
# (Backing files shorter than the device: 63, both BPF modes.)
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
# Measured: 33 s on kdev-bzImage-1 (TCG, 2 vCPUs).
. tests/vm/lib.sh
. tests/vm/lib-mixed.sh
requires fio control bpf_kernel_io
BLKDISCARD=$(tool blkdiscard)
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
discard_zeroes_check "$d"
k1=$(jnum kernel_completed); s1=$(jnum server_served); p1=$(jnum bpf_passed)
log "counters: kernel_completed +$((k1 - k0)), server_served +$((s1 - s0)), bpf_passed +$((p1 - p0)), kernel_errors $(jnum kernel_errors), server_errors $(jnum server_errors)"
# at least: 96 dsync dd writes, 8 + 16 dd 1 MiB writes/reads, the verify
# job's 2 x 32 MiB in requests of at most 2 MiB
[ $((k1 - k0)) -ge 152 ] || die "kernel_completed grew by $((k1 - k0)) only: READ/WRITE did not go through the kernel path"
[ $((s1 - s0)) = 0 ] || die "server_served grew by $((s1 - s0)): FLUSH/DISCARD/WRITE_ZEROES reached the server instead of the kernel"
[ $((p1 - p0)) = 0 ] || die "the program passed $((p1 - p0)) requests (want 0: every op has a kernel path)"
[ "$(jnum kernel_errors)" = 0 ] || die "kernel_errors=$(jnum kernel_errors)"
ublk-user del --all || die "del"
discard_zeroes_check_file "$T/m.img"
rm -f "$T/m.img"
log "PASS"
