#!/bin/sh
# timeout: 400
# cost: 50
# A backing file shorter than the device, in both BPF modes, against the
# loop driver as the control: the device is sized from the file, then the
# file is shrunk under the running device. Every mode must follow the loop
# driver's rule (drivers/block/loop.c, lo_complete_rq()): what the backing
# file has is returned, a read that gets nothing fails with EIO.
# - reads entirely below the new end: the old bytes (cmp);
# - a read entirely past the end: EIO (ublk's rule for a READ that returns
#   0, kept by the ring mode (bpf) and the kernel mode (bpf-kernel));
# - a read straddling the end (one bio): EIO for the whole read, as loop;
# - the short reads were redirected and counted (kernel_zero_filled), not
#   served by the server;
# - then fio write+verify over the whole device (writes extend the file).
# Once with the end on a sector boundary, once mid-sector. Skips a mode the
# kernel lacks.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control bpf
LOSETUP=$(tool losetup)
MiB=1048576
lo=""
trap 'ublk-user del --all > /dev/null 2>&1; [ -n "$lo" ] && $LOSETUP -d "$lo" 2> /dev/null' EXIT

# fails_eio DEV OFFSET LENGTH: an O_DIRECT read must fail with EIO
fails_eio() {
  if dd if="$1" of=/dev/null bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) iflag=direct 2> "$T/dd.err"; then
    die "$1: read of $3 bytes at $2 succeeded, want EIO (the backing file ends at $end)"
  fi
  grep -qi "input/output error" "$T/dd.err" || { cat "$T/dd.err"; die "$1: read at $2 failed, but not with EIO"; }
}

for mode in loop $(bpf_modes); do
  for end in $((8 * MiB + 2560)) $((4 * MiB + 1000)); do
    log "== $mode, backing file shortened under the device: 32 MiB -> $end bytes"
    dd if=/dev/urandom of="$T/s.img" bs=1M count=32 2> /dev/null
    cp "$T/s.img" "$T/orig"
    if [ "$mode" = loop ]; then
      lo=$($LOSETUP -f --show --direct-io=on "$T/s.img") || die "losetup"
      d=$lo
    else
      d=$(add_in_mode "$T/s.img" "$mode") || exit 1
      z0=$(jnum kernel_zero_filled); s0=$(jnum server_served)
      [ -n "$z0" ] && [ -n "$s0" ] || { ublk-user list --json; die "list --json lacks kernel_zero_filled or server_served"; }
    fi
    [ "$(blockdev --getsize64 "$d")" = $((32 * MiB)) ] || die "device size $(blockdev --getsize64 "$d"), want 32 MiB"
    truncate -s "$end" "$T/s.img"
    start=$((end / 4096 * 4096))
    # below the end: the old bytes
    dd if="$d" of="$T/below" bs=1M count=$((start / MiB)) iflag=direct 2> /dev/null || die "$mode: read below the end"
    expect_then_zeroes "$T/below" "$T/orig" 0 "$start" || die "$mode: read below the end ($end) differs from the file"
    read_at "$d" $((start - 65536)) 65536 "$T/last"
    expect_then_zeroes "$T/last" "$T/orig" $((start - 65536)) 65536 || die "$mode: the last 64 KiB before $start differ"
    # entirely past the end, and straddling it: EIO
    fails_eio "$d" $((16 * MiB)) $MiB
    fails_eio "$d" "$start" 65536
    if [ "$mode" != loop ]; then
      z1=$(jnum kernel_zero_filled); s1=$(jnum server_served)
      log "kernel_zero_filled +$((z1 - z0)), server_served +$((s1 - s0))"
      [ $((z1 - z0)) -ge 2 ] || die "$mode: kernel_zero_filled grew by $((z1 - z0)) after reads past and across the end (want >= 2)"
      [ $((s1 - s0)) = 0 ] || die "$mode: the server served $((s1 - s0)) of these reads: they were not redirected"
    fi
    # fio verify over the whole device: what is written is read back, past the old end too
    fio --name=s --filename="$d" --rw=randwrite --bs=64k --size=32m --direct=1 --ioengine=libaio --iodepth=16 \
      --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$T/s.out" > /dev/null 2>&1 \
      || { cat "$T/s.out"; die "$mode: write+verify after the file shrank to $end"; }
    if [ "$mode" = loop ]; then
      $LOSETUP -d "$lo" || die "losetup -d"; lo=""
    else
      ublk-user del --all || die "del"
    fi
    log "ok: $mode, end at $end: below unchanged, past and straddling EIO, write+verify"
  done
done
rm -f "$T/s.img" "$T/orig" "$T/below" "$T/last" "$T/exp" "$T/dd.err" "$T/add.err" "$T/s.out"
log "PASS"
