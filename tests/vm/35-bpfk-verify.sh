#!/bin/sh
# timeout: 300
# cost: 55
# Data integrity in --mode bpf-kernel (UBLK_F_BPF_KERNEL_IO: the program
# runs in ublk_queue_rq(), the driver issues the backing READ/WRITE on the
# request's pages and completes the request itself): fio write+verify
# (crc32c) over the dimensions
#   bs      512, 4k, 64k, 1M, 2M
#   rw      random, sequential
#   queues  1, 2
#   iodepth 1, 128
#   backing a tmpfs file, a block device (loop device over a tmpfs file;
#           the kernel's brd ramdisk is only 4 MiB here)
# The full cross product (80 cells) is too slow under TCG, so the cells are a
# pairwise covering array: every value of every dimension appears, and every
# pair of values of any two dimensions appears in at least one cell (10
# cells, 2 per block size; the table is in CELLS below). After each device's
# cells the whole device is compared byte for byte with the backing store
# (cmp), and list --json must show the requests went through the kernel
# path: kernel_completed grew by at least the bytes moved / 2 MiB (max_io:
# the fewest requests they can be), server_served and bpf_passed did not.
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
# Measured: ~40 s for the first 9 cells on kdev-bzImage-1 (TCG, 2 vCPUs), where
# the 10th (blkdev, 2 queues, 2M seq, iodepth 128) oopses that kernel in
# ublk_queue_rqs() (a nested plug: the backing block device's request lands
# in the plug list being dispatched to ublk).
. tests/vm/lib.sh
requires fio control
has_feature bpf_kernel_io || skip "kernel lacks UBLK_F_BPF_KERNEL_IO (ublk-user features: $(ublk-user features 2>&1 | tr '\n' ' '))"
LOSETUP=$(tool losetup)
CMP=$(tool cmp)
SIZE=32M
loopdev=""
cleanup() { ublk-user del --all > /dev/null 2>&1; [ -n "$loopdev" ] && $LOSETUP -d "$loopdev" 2> /dev/null; }
trap cleanup EXIT

# Cells, grouped by device (backing, queues): "bs rw iodepth" ...
#   bs   rw    q  depth backing       bs   rw    q  depth backing
#   512  rand  1  1     tmpfs         512  seq   2  128   blkdev
#   4k   rand  1  128   blkdev        4k   seq   2  1     tmpfs
#   64k  rand  2  1     blkdev        64k  seq   1  128   tmpfs
#   1M   rand  2  128   tmpfs         1M   seq   1  1     blkdev
#   2M   rand  1  1     tmpfs         2M   seq   2  128   blkdev
cells_tmpfs_1="512:randwrite:1 64k:write:128 2M:randwrite:1"
cells_tmpfs_2="4k:write:1 1M:randwrite:128"
cells_blkdev_1="4k:randwrite:128 1M:write:1"
cells_blkdev_2="512:write:128 64k:randwrite:1 2M:write:128"

ncells=0
for backing in tmpfs blkdev; do
  for queues in 1 2; do
    rm -f "$T/b.img"
    truncate -s $SIZE "$T/b.img"
    if [ "$backing" = tmpfs ]; then
      back="$T/b.img"
    else
      loopdev=$($LOSETUP -f --show "$T/b.img") || die "losetup over $T/b.img"
      [ -b "$loopdev" ] || die "losetup printed $loopdev, not a block device"
      back=$loopdev
    fi
    d=$(ublk-user add loop --file "$back" --mode bpf-kernel --no-fallback --queues "$queues" 2> "$T/add.err") \
      || { cat "$T/add.err" >&2; die "add loop --file $back --mode bpf-kernel --no-fallback --queues $queues"; }
    [ "$(jstr mode)" = bpf-kernel ] || { ublk-user list --json; die "device not in bpf-kernel mode"; }
    k0=$(jnum kernel_completed); s0=$(jnum server_served); p0=$(jnum bpf_passed)
    [ -n "$k0" ] && [ -n "$s0" ] && [ -n "$p0" ] || { ublk-user list --json; die "list --json lacks kernel_completed/server_served/bpf_passed"; }
    eval "cells=\$cells_${backing}_$queues"
    bytes=0
    for c in $cells; do
      bs=${c%%:*}; r=${c#*:}; rw=${r%%:*}; depth=${r#*:}
      # small blocks: less data (the emulated guest does ~10k requests/s)
      size=32m; [ "$bs" = 512 ] && size=2m; [ "$bs" = 4k ] && size=8m
      [ "$depth" = 1 ] && [ "$size" = 32m ] && size=16m
      fio --name=v --filename="$d" --rw="$rw" --bs="$bs" --size="$size" --direct=1 \
        --ioengine=libaio --iodepth="$depth" --verify=crc32c --do_verify=1 --verify_fatal=1 \
        --randrepeat=0 --output="$T/fio.out" > /dev/null 2>&1 \
        || { cat "$T/fio.out"; die "fio $rw bs=$bs iodepth=$depth q=$queues on $backing failed"; }
      grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio $rw bs=$bs iodepth=$depth q=$queues $backing: errors"; }
      # fio writes size bytes and reads them back
      bytes=$((bytes + 2 * ${size%m} * 1048576))
      ncells=$((ncells + 1))
      log "ok: bpf-kernel $backing q=$queues $rw bs=$bs iodepth=$depth size=$size"
    done
    # the device equals the backing store, byte for byte (both read O_DIRECT:
    # no page cache between the kernel path and what cmp sees)
    dd if="$d" of="$T/dev.dump" bs=1M iflag=direct 2> /dev/null || die "read $d"
    dd if="$back" of="$T/back.dump" bs=1M iflag=direct 2> /dev/null || die "read $back"
    [ "$(stat -c %s "$T/dev.dump")" = $((32 << 20)) ] || die "$d: read $(stat -c %s "$T/dev.dump") bytes, want $SIZE"
    $CMP "$T/dev.dump" "$T/back.dump" || die "$backing q=$queues: device and backing store differ"
    k1=$(jnum kernel_completed); s1=$(jnum server_served); p1=$(jnum bpf_passed)
    dk=$((k1 - k0)); ds=$((s1 - s0)); dp=$((p1 - p0))
    # fio's bytes in requests of at most 2 MiB (max_io), plus the dump's
    # 32 reads of 1 MiB
    min=$((bytes / (2 << 20) + 32))
    log "$backing q=$queues: kernel_completed +$dk (fio moved $((bytes >> 20)) MiB: at least $min requests), server_served +$ds, bpf_passed +$dp, kernel_punted $(jnum kernel_punted), kernel_errors $(jnum kernel_errors)"
    [ "$dk" -ge "$min" ] || { ublk-user list --json; die "$backing q=$queues: kernel_completed grew by $dk only, want >= $min"; }
    [ "$ds" = 0 ] || { ublk-user list --json; die "$backing q=$queues: the server served $ds requests of a pure read/write run"; }
    [ "$dp" = 0 ] || die "$backing q=$queues: the program passed $dp requests of a pure read/write run"
    [ "$(jnum kernel_errors)" = 0 ] || die "$backing q=$queues: kernel_errors=$(jnum kernel_errors)"
    ublk-user del --all || die "del"
    if [ -n "$loopdev" ]; then
      $LOSETUP -d "$loopdev" || die "losetup -d $loopdev"
      loopdev=""
    fi
    log "ok: $backing q=$queues: device == backing store (cmp, $SIZE)"
  done
done
[ "$ncells" = 10 ] || die "test bug: ran $ncells cells, want 10"
rm -f "$T/b.img" "$T/dev.dump" "$T/back.dump"
log "PASS: $ncells pairwise cells"
