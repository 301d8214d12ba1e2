#!/bin/sh
# timeout: 600
# cost: 55
# User recovery (add --recovery --reissue = UBLK_F_USER_RECOVERY with
# UBLK_F_USER_RECOVERY_REISSUE; without reissue, requests the dead server
# owned fail with EIO by design) in every data mode:
# fio write+verify (crc32c) runs while the server is SIGKILLed; the device
# stays (state "quiesced"), fio's I/O waits instead of failing; `ublk-user
# recover --id N` starts a new server (the BPF modes re-register their
# program, and bpf-kernel its file table) and fio finishes with every block
# verified; the device then matches the backing file byte for byte. In
# bpf-kernel mode the driver serves requests again after the recovery
# (kernel_completed grows), so the recovered server did not silently fall
# back to serving them itself.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
command -v fio > /dev/null || skip "no fio"
has_feature user_recovery || skip "kernel lacks UBLK_F_USER_RECOVERY"
for mode in $(modes); do
  truncate -s 64M "$T/r.img"
  d=$(add_dev "$T/r.img" "$mode" --recovery --reissue) || exit 1
  id=$(devid "$d")
  # rate-limited so that the write phase lasts >= 6 s however fast the mode
  fio --name=rec --filename="$d" --rw=randwrite --bs=4k --size=24m --rate_iops=1000 --direct=1 --ioengine=libaio \
    --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/rec.out" > /dev/null 2>&1 &
  fpid=$!
  # the device stays, quiesced; fio is still there, waiting
  kill_under_fio "$id" "$fpid" "$T/rec.out"
  before=$(field_of "$id" kernel_completed)
  ublk-user recover --id "$id" > "$T/recover.out" 2>&1 || { cat "$T/recover.out"; die "$mode: recover"; }
  grep -qi "falling back" "$T/recover.out" && { cat "$T/recover.out"; die "$mode: the recovered server fell back"; }
  [ "$(field_of "$id" state)" = live ] || { ublk-user list --json; die "$mode: device not live after recover"; }
  [ "$(field_of "$id" mode)" = "$mode" ] || { ublk-user list --json; die "$mode: recovered in mode $(field_of "$id" mode)"; }
  wait "$fpid"; rc=$?
  [ "$rc" = 0 ] || { cat "$T/rec.out"; die "$mode: fio across kill + recover failed (rc $rc)"; }
  grep -q 'err= 0' "$T/rec.out" || { cat "$T/rec.out"; die "$mode: fio reported errors"; }
  if [ "$mode" = bpf-kernel ]; then
    after=$(field_of "$id" kernel_completed)
    [ "${after:-0}" -gt "${before:-0}" ] || { ublk-user list --json; die "bpf-kernel: the driver served nothing after the recovery ($before -> $after)"; }
  fi
  cmp "$d" "$T/r.img" || die "$mode: device and backing file differ after recovery"
  ublk-user del --id "$id" || die "$mode: del"
  wait_gone "$id" 10 || die "$mode: device still there"
  log "$mode: kill + recover under fio verify: ok"
done
rm -f "$T/r.img"
