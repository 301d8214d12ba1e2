#!/bin/sh
# timeout: 180
# cost: 20
# FUA reaches the backing store in --mode bpf and --mode bpf-kernel (and,
# as the reference, copy). The device under test (top) is backed by a
# second ublk device (bottom) served by `ublk-user --mode copy` over a tmpfs
# file; both advertise a volatile write cache and FUA. N synchronous
# O_DIRECT|O_DSYNC 4 KiB writes to the top device (dd oflag=direct,dsync)
# are REQ_FUA writes there; the top server (bpf: the program's SQE, the
# kernel path: the driver's kiocb) must write them with RWF_DSYNC, which
# makes each an O_DIRECT|DSYNC write to the bottom block device, i.e. a
# REQ_FUA write the bottom server sees with UBLK_IO_F_FUA and counts
# (server_fua in list --json). Fails if the bottom count rises by less than
# N. The control: N plain O_DIRECT writes must add no FUA at the bottom (the
# counter counts FUA, not writes). Data written both ways is compared with
# cmp through the top device and in the bottom's file.
# Modes the kernel lacks are skipped (the whole test if none of bpf,
# bpf-kernel is there).
# Measured: 16 s on kdev-bzImage-1 (TCG, 2 vCPUs).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires control
CMP=$(tool cmp)
N=${N:-200}
trap 'ublk-user del --all > /dev/null 2>&1' EXIT
want=$(bpf_modes)
[ -n "$want" ] || skip "kernel lacks UBLK_F_BPF and UBLK_F_BPF_KERNEL_IO"

# queue_attrs DEV: "write_cache fua" of a ublk block device
queue_attrs() { _b=$(basename "$1"); echo "$(cat /sys/block/$_b/queue/write_cache) $(cat /sys/block/$_b/queue/fua)"; }

truncate -s 64M "$T/bot.img"
bot=$(add_dev "$T/bot.img" copy) || exit 1
bid=$(devid "$bot")
[ "$(queue_attrs "$bot")" = "write back 1" ] || die "bottom $bot: write_cache/fua are '$(queue_attrs "$bot")', want 'write back 1'"
[ -n "$(field_of "$bid" server_fua)" ] || { ublk-user list --json; die "list --json has no server_fua"; }
dd if=/dev/urandom of="$T/src" bs=4096 count="$N" 2> /dev/null

k=0
for mode in copy $want; do
  top=$(add_in_mode "$bot" "$mode") || exit 1
  tid=$(devid "$top")
  [ "$(queue_attrs "$top")" = "write back 1" ] || die "top $top: write_cache/fua '$(queue_attrs "$top")'"
  # each mode writes its own region: 2 * N blocks from block k * 2N
  base=$((k * 2 * N))
  k=$((k + 1))

  f0=$(field_of "$bid" server_fua)
  dd if="$T/src" of="$top" bs=4096 count="$N" seek="$base" oflag=direct,dsync 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: dd oflag=direct,dsync"; }
  f1=$(field_of "$bid" server_fua)
  dd if="$T/src" of="$top" bs=4096 count="$N" seek=$((base + N)) oflag=direct 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: dd oflag=direct"; }
  f2=$(field_of "$bid" server_fua)
  log "$mode: $N O_DSYNC writes -> bottom FUA +$((f1 - f0)); $N plain writes -> bottom FUA +$((f2 - f1)) (top: kernel_completed $(field_of "$tid" kernel_completed), server_served $(field_of "$tid" server_served))"
  [ $((f1 - f0)) -ge "$N" ] || die "$mode: $N FUA writes on $top reached the backing device as $((f1 - f0)) FUA writes: FUA dropped"
  [ $((f2 - f1)) = 0 ] || die "$mode: $N plain writes on $top made $((f2 - f1)) FUA writes at the backing device"
  # the data of both runs, through the top device and in the bottom's file
  for part in 0 "$N"; do
    dd if="$top" of="$T/back" bs=4096 count="$N" skip=$((base + part)) iflag=direct 2> /dev/null || die "$mode: read back"
    $CMP "$T/src" "$T/back" || die "$mode: data read through $top differs (blocks $((base + part))+)"
    dd if="$T/bot.img" of="$T/back" bs=4096 count="$N" skip=$((base + part)) 2> /dev/null
    $CMP "$T/src" "$T/back" || die "$mode: the bottom's backing file lacks the data (blocks $((base + part))+)"
  done
  ublk-user del --id "$tid" || die "del $top"
  log "ok: $mode: FUA reaches the backing store, data intact"
done
ublk-user del --id "$bid" || die "del $bot"
rm -f "$T/bot.img" "$T/src" "$T/back"
log "PASS: $(echo copy $want)"
