#!/bin/sh
# timeout: 300
# cost: 40
# --mode bpf (UBLK_F_BPF, the ring mode) with a backing file shorter than
# the device: the device is sized from the file, then the file is shrunk
# under the running device. The program redirects every READ, so the
# backing READ_FIXED of a request that crosses the new end comes back
# short (or 0 past it) and the server commits that count as it is: the
# driver must zero the rest and complete the request in full, as the loop
# driver and the bpf-kernel mode (36) do, where it used to fail the read
# with -EIO. Reads entirely past the end are zeroes, a read straddling it
# the old bytes then zeroes, reads below it the old bytes (cmp); the
# reads were redirected (server_redirected grew), counted in
# kernel_zero_filled, and none was an error. Once with the end on a sector
# boundary, once mid-sector; then fio write+verify over the whole device.
# Skips when the kernel lacks UBLK_F_BPF.
. tests/vm/lib.sh
command -v fio > /dev/null || skip "no fio"
[ -c /dev/ublk-control ] || skip "no /dev/ublk-control"
has_feature bpf || skip "kernel lacks UBLK_F_BPF"
T=${TEST_TMP:-/tmp}
MiB=1048576
trap 'ublk-user del --all > /dev/null 2>&1' EXIT


for end in $((8 * MiB + 2560)) $((4 * MiB + 1000)); do
  log "== --mode bpf, backing file shortened under the device: 32 MiB -> $end bytes"
  dd if=/dev/urandom of="$T/s.img" bs=1M count=32 2> /dev/null
  cp "$T/s.img" "$T/orig"
  d=$(ublk-user add loop --file "$T/s.img" --mode bpf --no-fallback --queues 2 2> "$T/add.err") \
    || { cat "$T/add.err" >&2; die "add loop --mode bpf --no-fallback"; }
  [ "$(jstr mode)" = bpf ] || { ublk-user list --json; die "device not in bpf mode"; }
  [ "$(blockdev --getsize64 "$d")" = $((32 * MiB)) ] || die "device size $(blockdev --getsize64 "$d"), want 32 MiB"
  z0=$(jnum kernel_zero_filled); r0=$(jnum server_redirected)
  [ -n "$z0" ] && [ -n "$r0" ] || { ublk-user list --json; die "list --json lacks kernel_zero_filled or server_redirected"; }
  truncate -s "$end" "$T/s.img"
  # entirely past the end: zeroes
  read_at "$d" $((16 * MiB)) $MiB "$T/past"
  expect_then_zeroes "$T/past" "$T/orig" 0 0 || die "read entirely past the end ($end) is not all zeroes"
  # at the last 4k block before the end .. 64k beyond: old bytes up to the end, zeroes after
  start=$((end / 4096 * 4096))
  read_at "$d" "$start" 65536 "$T/str"
  expect_then_zeroes "$T/str" "$T/orig" "$start" $((end - start)) || die "read straddling the end ($end) at $start: not old bytes then zeroes"
  # below the end: the old bytes
  dd if="$d" of="$T/below" bs=1M count=$((start / MiB)) iflag=direct 2> /dev/null || die "read below the end"
  expect_then_zeroes "$T/below" "$T/orig" 0 "$start" || die "read below the end ($end) differs from the file"
  z1=$(jnum kernel_zero_filled); r1=$(jnum server_redirected)
  log "server_redirected +$((r1 - r0)), kernel_zero_filled +$((z1 - z0)), server_errors $(jnum server_errors)"
  [ $((r1 - r0)) -gt 0 ] || die "no read was redirected: the ring-mode path was not tested"
  [ $((z1 - z0)) -ge 2 ] || die "kernel_zero_filled grew by $((z1 - z0)) after reads past and across the end (want >= 2)"
  [ "$(jnum server_errors)" = 0 ] || die "server_errors=$(jnum server_errors) after reads past the end"
  # fio verify over the whole device: what is written is read back, past the old end too
  fio --name=s --filename="$d" --rw=randwrite --bs=64k --size=32m --direct=1 --ioengine=libaio --iodepth=16 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --randrepeat=0 --output="$T/s.out" > /dev/null 2>&1 \
    || { cat "$T/s.out"; die "write+verify after the file shrank to $end"; }
  ublk-user del --all || die "del"
  log "ok: end at $end: past the end zeroes, straddling read old bytes + zeroes, below unchanged, write+verify"
done
rm -f "$T/s.img" "$T/orig" "$T/past" "$T/str" "$T/below" "$T/exp" "$T/dd.err" "$T/add.err" "$T/s.out"
log "PASS"
