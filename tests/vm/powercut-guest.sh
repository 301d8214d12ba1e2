#!/bin/sh
# Guest phase of `cargo xtask test`'s powercut step (xtask/src/powercut.rs);
# not a VM test of its own (no NN- prefix): the host kills the VM when this
# prints POWERCUT-FUA-DONE and checks the disk image afterwards.
#
# The extra virtio disk (POWERCUT_DISK_SECTORS 512-byte sectors) gets an
# ext4 with a zeroed, synced backing file of POWERCUT_BACKING_MB MiB; a
# bpf-kernel ublk device serves it with --buffered (no O_DIRECT: written
# data sits in this guest's page cache of the file until it is synced).
# Through the device, with O_DIRECT:
# - the blocks POWERCUT_FSYNC are written (dd), then the device is fsynced
#   (a FLUSH): POWERCUT-FSYNCED;
# - the blocks POWERCUT_FUA are written with O_DSYNC by fio through
#   io_uring: FUA writes and nothing else (a synchronous O_DSYNC write to a
#   block device, dd oflag=dsync, is a FUA write followed by a FLUSH, which
#   would hide a lost FUA); then POWERCUT-FUA-DONE, and it sleeps until the
#   host kills the VM.
# Each 4 KiB block is a 512-byte unit repeated 8 times (fio's
# buffer_pattern takes at most 512 bytes): 8 lines of 64 bytes naming the
# seed, the set, the block and the line (powercut.rs's block_pattern makes
# the same bytes).
# Exit 77 (skip): the kernel lacks UBLK_F_BPF_KERNEL_IO.
. tests/vm/lib.sh
: "${POWERCUT_SEED:?}" "${POWERCUT_FSYNC:?}" "${POWERCUT_FUA:?}" "${POWERCUT_DISK_SECTORS:?}"
BACKING_MB=${POWERCUT_BACKING_MB:-16}
[ -c /dev/ublk-control ] || die "no /dev/ublk-control"
has_feature bpf_kernel_io \
  || skip "kernel lacks UBLK_F_BPF_KERNEL_IO (ublk-user features: $(ublk-user features 2>&1 | tr '\n' ' '))"
T=/tmp/powercut
mkdir -p "$T"

# The extra disk: the virtio disk of the size the host made (the project
# and the control directory are 9p, not block devices).
disk=""
for s in /sys/block/vd*; do
  [ -e "$s/size" ] || continue
  [ "$(cat "$s/size")" = "$POWERCUT_DISK_SECTORS" ] && { disk=/dev/$(basename "$s"); break; }
done
[ -n "$disk" ] && [ -b "$disk" ] || { ls /sys/block; die "no virtio disk of $POWERCUT_DISK_SECTORS sectors"; }
log "disk $disk ($POWERCUT_DISK_SECTORS sectors, write_cache $(cat /sys/block/${disk#/dev/}/queue/write_cache))"
run "$(tool mkfs.ext4)" -q -F "$disk"
mkdir -p /powercut
run mount -t ext4 "$disk" /powercut
# The backing file: real zeroes (allocated blocks, no unwritten extents),
# durable before the device exists.
run dd if=/dev/zero of=/powercut/backing bs=1M count="$BACKING_MB" conv=fsync status=none
sync

dev=$(ublk-user add loop --file /powercut/backing --mode bpf-kernel --no-fallback --buffered 2> "$T/add.err") \
  || { cat "$T/add.err"; die "add loop --mode bpf-kernel --buffered"; }
[ -b "$dev" ] || die "add printed $dev, not a block device"
mode=$(jstr mode)
[ "$mode" = bpf-kernel ] || { ublk-user list --json; die "$dev is in mode '$mode', not bpf-kernel"; }
log "$dev: bpf-kernel on /powercut/backing (buffered), write_cache $(cat /sys/block/${dev#/dev/}/queue/write_cache)"

# pattern SET BLOCK: the 512-byte unit of BLOCK's pattern, to stdout
pattern() {
  for _i in 0 1 2 3 4 5 6 7; do
    printf 'powercut seed=%s set=%-5s block=%08d line=%02d........\n' "$POWERCUT_SEED" "$1" "$2" "$_i"
  done
}
# write_fsync BLOCKS...: each block's pattern to its block of $dev, one
# O_DIRECT 4 KiB write (dd) each
write_fsync() {
  for _b in "$@"; do
    pattern fsync "$_b" > "$T/unit"
    cat "$T/unit" "$T/unit" "$T/unit" "$T/unit" "$T/unit" "$T/unit" "$T/unit" "$T/unit" > "$T/block"
    dd if="$T/block" of="$dev" bs=4096 count=1 seek="$_b" oflag=direct status=none 2> "$T/dd.err" \
      || { cat "$T/dd.err"; die "fsync set: write of block $_b"; }
  done
}
# write_fua BLOCKS...: the same with O_DIRECT | O_DSYNC through io_uring
# (fio, a job per block: buffer_pattern repeats the unit)
write_fua() {
  printf '[global]\nfilename=%s\nioengine=io_uring\ndirect=1\nsync=dsync\nrw=write\nbs=4096\nsize=4096\nthread\n' "$dev" > "$T/fua.fio"
  for _b in "$@"; do
    pattern fua "$_b" > "$T/fua-$_b.unit"
    printf "[b%s]\noffset=%s\nbuffer_pattern='%s'\n" "$_b" $((_b * 4096)) "$T/fua-$_b.unit" >> "$T/fua.fio"
  done
  fio "$T/fua.fio" --output="$T/fio.out" || { cat "$T/fio.out"; die "fua set: fio"; }
}
counters() { ublk-user list --json | jq -c '.[0] | {kernel_completed, server_served}'; }

# shellcheck disable=SC2086 # the block lists are words
set -- $POWERCUT_FSYNC
nfsync=$#
c0=$(jnum kernel_completed)
log "counters before: $(counters)"
write_fsync "$@"
# fsync of the block device: a FLUSH of the ublk device
dd if=/dev/null of="$dev" conv=fsync,notrunc status=none 2> "$T/dd.err" \
  || { cat "$T/dd.err"; die "fsync of $dev"; }
log "counters after the fsync: $(counters)"
echo "POWERCUT-FSYNCED $nfsync blocks"

# shellcheck disable=SC2086
set -- $POWERCUT_FUA
nfua=$#
c1=$(jnum kernel_completed)
write_fua "$@"
c2=$(jnum kernel_completed)
log "counters after: $(counters)"
# The writes took the kernel path (the point of the test), not the server's.
[ $((c2 - c0)) -ge $((nfsync + nfua)) ] \
  || die "the driver completed $((c2 - c0)) requests for $((nfsync + nfua)) writes: not the bpf-kernel path"
log "fua set: the driver completed $((c2 - c1)) requests for $nfua FUA writes (more: FLUSHes came too)"
log "$nfua FUA writes done"
echo POWERCUT-FUA-DONE
# The host kills the VM now; should it not, its timeout ends the run.
while :; do sleep 3600; done
