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
requires fio user_recovery
for mode in $(modes); do
  truncate -s 64M "$T/r.img"
  d=$(add_dev "$T/r.img" "$mode" --recovery --reissue) || exit 1
  id=$(devid "$d")
  # the device stays, quiesced, with fio waiting; then the new server
  kill_and_recover "$d" "$id" "$mode"
  fio_ends_clean "$mode"
  if [ "$mode" = bpf-kernel ]; then
    after=$(field_of "$id" kernel_completed)
    [ "${after:-0}" -gt "${KC_BEFORE:-0}" ] || { ublk-user list --json; die "bpf-kernel: the driver served nothing after the recovery ($KC_BEFORE -> $after)"; }
  fi
  cmp "$d" "$T/r.img" || die "$mode: device and backing file differ after recovery"
  ublk-user del --id "$id" || die "$mode: del"
  wait_gone "$id" 10 || die "$mode: device still there"
  log "$mode: kill + recover under fio verify: ok"
done
rm -f "$T/r.img"
