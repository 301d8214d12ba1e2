# Helpers for the reliability tests (tests/vm/5x, 6x): `. tests/vm/fault-lib.sh`
# after lib.sh. Not a test itself (no NN- prefix).
# Soak variants: `cargo xtask test --soak --filter 5` (or, for one test,
# `cargo xtask run -- sh -c 'UBLK_SOAK=1 sh tests/vm/50-fault-kill.sh'`).
SOAK=${UBLK_SOAK:-0}

# field NAME: the value (string or number) of key NAME of the first device in
# `ublk-user list --json` that has it (jq; lib.sh).
field() { ublk-user list --json | jq -r --arg k "$1" 'first(.[][$k] | strings, numbers)'; }
# field_of ID NAME: the same for device ID.
field_of() {
  ublk-user list --json \
    | jq -r --argjson id "$1" --arg k "$2" 'first(.[] | select(.id == $id) | .[$k] | strings, numbers)'
}
# ndev: the number of devices in `ublk-user list --json`.
ndev() { ublk-user list --json | jq length; }
nchar() { ls /dev/ublkc* 2> /dev/null | wc -l; }
devid() { echo "${1#/dev/ublkb}"; }
now() { date +%s; }

# modes: the data modes this kernel offers, from the binary (`ublk-user modes
# --available`: copy, zc if AUTO_BUF_REG, bpf if UBLK_F_BPF, bpf-kernel if
# UBLK_F_BPF_KERNEL_IO; see ublk_user::Mode). UBLK_MODES="bpf" restricts a run
# (e.g. a soak) to some modes.
modes() {
  [ -n "${UBLK_MODES:-}" ] && { echo "$UBLK_MODES"; return; }
  ublk-user modes --available | tr '\n' ' ' | sed 's/ $//'
}
# bpf_modes: the BPF modes of `modes` (those whose `ublk-user modes --json`
# entry has "bpf": true), space separated.
bpf_modes() {
  _b=""
  _all=$(ublk-user modes --json | jq -r '.[] | select(.bpf) | .name')
  for _m in $(modes); do
    for _x in $_all; do [ "$_m" = "$_x" ] && _b="$_b $_m"; done
  done
  echo "${_b# }"
}
# add_dev FILE MODE [ARGS...]: create a loop device, print its path; die on failure.
add_dev() {
  _f=$1; _m=$2; shift 2
  _extra=""
  # a BPF mode must not silently become another one
  ublk-user modes --json | jq -e --arg m "$_m" '.[] | select(.name == $m) | .bpf' > /dev/null \
    && _extra=--no-fallback
  _d=$(ublk-user add loop --file "$_f" --mode "$_m" $_extra "$@" 2> "$T/add.err") \
    || { cat "$T/add.err" >&2; die "add loop --mode $_m $*"; }
  # the printed node must be a block device at once (not missing, and not a
  # regular file some earlier opener created in its place)
  [ -b "$_d" ] || { ls -l "$_d" >&2; die "add printed $_d, which is not a block device (yet)"; }
  echo "$_d"
}
# add_in_mode FILE MODE: add_dev, then check that list --json reports MODE.
add_in_mode() {
  _d=$(add_dev "$1" "$2") || exit 1
  [ "$(field_of "$(devid "$_d")" mode)" = "$2" ] || { ublk-user list --json >&2; die "$_d not in $2 mode"; }
  echo "$_d"
}
# kill_under_fio ID FPID OUT: two seconds into fio (pid FPID, output OUT),
# SIGKILL device ID's server; the device (added with recovery) must become
# quiesced with fio still waiting on it. The caller then recovers.
kill_under_fio() {
  _pid=$(field_of "$1" pid)
  sleep 2
  kill -0 "$2" 2> /dev/null || { cat "$3"; die "fio ended before the kill"; }
  kill -9 "$_pid"
  _i=0
  while [ "$(field_of "$1" state)" != quiesced ]; do
    _i=$((_i + 1)); [ "$_i" -gt 100 ] && { ublk-user list --json; die "device $1 not quiesced after the kill"; }
    sleep 0.1
  done
  kill -0 "$2" 2> /dev/null || { cat "$3"; die "fio ended while the server was gone"; }
}
# kill_and_recover DEV ID MODE: fio verify on DEV (24 MiB of 4 KiB random
# writes, rate-limited so that it lasts >= 6 s in any mode; $FPID, output
# $T/rec.out), SIGKILL of the server under it (kill_under_fio), then
# `ublk-user recover`: the device must come back live in MODE without a
# fallback. $KC_BEFORE is kernel_completed at the kill. The caller checks
# what its target adds, then fio_ends_clean.
kill_and_recover() {
  fio --name=rec --filename="$1" --rw=randwrite --bs=4k --size=24m --rate_iops=1000 --direct=1 \
    --ioengine=libaio --iodepth=16 --verify=crc32c --do_verify=1 --verify_fatal=1 \
    --output="$T/rec.out" > /dev/null 2>&1 &
  FPID=$!
  kill_under_fio "$2" "$FPID" "$T/rec.out"
  KC_BEFORE=$(field_of "$2" kernel_completed)
  ublk-user recover --id "$2" > "$T/recover.out" 2>&1 || { cat "$T/recover.out"; die "$3: recover"; }
  grep -qi "falling back" "$T/recover.out" && { cat "$T/recover.out"; die "$3: the recovered server fell back"; }
  [ "$(field_of "$2" state)" = live ] || { ublk-user list --json; die "$3: device not live after recover"; }
  [ "$(field_of "$2" mode)" = "$3" ] || { ublk-user list --json; die "$3: recovered in mode $(field_of "$2" mode)"; }
}
# fio_ends_clean MODE: the fio of kill_and_recover ends with status 0 and no error.
fio_ends_clean() {
  wait "$FPID"; _rc=$?
  [ "$_rc" = 0 ] || { cat "$T/rec.out"; die "$1: fio across kill + recover failed (rc $_rc)"; }
  grep -q 'err= 0' "$T/rec.out" || { cat "$T/rec.out"; die "$1: fio reported errors"; }
}
# wait_gone ID SECS: /dev/ublkbID and /dev/ublkcID disappear within SECS.
wait_gone() {
  _i=0
  while [ -e "/dev/ublkb$1" ] || [ -e "/dev/ublkc$1" ]; do
    _i=$((_i + 1))
    [ "$_i" -gt $(($2 * 10)) ] && return 1
    sleep 0.1
  done
  return 0
}
# quick_verify DEV SIZE: write + verify SIZE bytes with fio (crc32c), die on error.
quick_verify() {
  fio --name=qv --filename="$1" --rw=randwrite --bs=64k --size="$2" --direct=1 --ioengine=libaio \
    --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/qv.out" > /dev/null 2>&1 \
    || { cat "$T/qv.out"; die "write+verify on $1"; }
}
# bad_dmesg: dmesg lines the runner would fail a test on.
kernel_bad='WARNING:|BUG:|Oops|general protection|KASAN|possible circular|possible recursive|INFO: task .* blocked|Kernel panic|UBSAN|refcount_t:'
# kmemleak_scan: if the debug kernel has kmemleak, scan and print the count of
# suspected leaks (informational: reported by the test, not a failure).
kmemleak_scan() {
  [ -e /sys/kernel/debug/kmemleak ] || mount -t debugfs none /sys/kernel/debug 2> /dev/null
  [ -w /sys/kernel/debug/kmemleak ] || return 0
  echo scan > /sys/kernel/debug/kmemleak 2> /dev/null
  _n=$(grep -c '^unreferenced object' /sys/kernel/debug/kmemleak 2> /dev/null)
  log "kmemleak: ${_n:-0} suspected leak(s) after scan"
  [ "${_n:-0}" = 0 ] || head -n 40 /sys/kernel/debug/kmemleak
  echo clear > /sys/kernel/debug/kmemleak 2> /dev/null
  return 0
}
# fio_verify DEV NAME ARGS...: fio write + verify (crc32c, fatal) with ARGS
# (rw, sizes), iodepth 16; die on an error (tests 70, 72).
fio_verify() {
  _d=$1; _n=$2; shift 2
  fio --name="$_n" --filename="$_d" --direct=1 --ioengine=libaio --iodepth=16 \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --randrepeat=0 \
    "$@" --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "fio $_n on $_d ($*)"; }
  grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio $_n reported errors"; }
}
