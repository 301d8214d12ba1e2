# Helpers for VM tests: `. tests/vm/lib.sh`
set -u
# Scratch space of the test (run.sh gives each its own TEST_TMP).
T=${TEST_TMP:-/tmp}
log() { echo "[$(basename "$0" .sh)] $*"; }
die() { echo "[$(basename "$0" .sh)] FAIL: $*" >&2; exit 1; }
skip() { echo "[$(basename "$0" .sh)] SKIP: $*"; exit 77; }
# run CMD...: run and die with its output if it fails.
run() { "$@" || die "command failed ($?): $*"; }
# has_feature NAME: the kernel advertises this ublk feature (ublk-user features).
has_feature() { ublk-user features 2>/dev/null | grep -qw "$1"; }
# What a test needs, each missing one a SKIP with the reason:
# requires control fio fixture bpf bpf_kernel_io user_recovery
requires() {
	for r; do
		case $r in
		control) [ -c /dev/ublk-control ] || skip "no /dev/ublk-control" ;;
		fio) command -v fio > /dev/null || skip "no fio" ;;
		fixture) command -v ublk-bpf-fixture > /dev/null || skip "no ublk-bpf-fixture (cargo xtask build)" ;;
		bpf) has_feature bpf || skip "kernel lacks UBLK_F_BPF" ;;
		bpf_kernel_io) has_feature bpf_kernel_io || skip "kernel lacks UBLK_F_BPF_KERNEL_IO" ;;
		user_recovery) has_feature user_recovery || skip "kernel lacks UBLK_F_USER_RECOVERY" ;;
		*) die "requires: unknown requirement $r" ;;
		esac
	done
}
# `ublk-user list --json` (an array, one object per device; every key is in
# the README's "list --json" table) is read with jq, never by key order.
command -v jq > /dev/null || die "no jq in the guest (cargo xtask setup installs it; xtask/src/vm.rs copies it in)"
# jnum NAME / jstr NAME: the first numeric / string value of key NAME among
# the devices (the tests using them have one device); empty if none has it.
jnum() { ublk-user list --json | jq -r --arg k "$1" 'first(.[][$k] | numbers)'; }
jstr() { ublk-user list --json | jq -r --arg k "$1" 'first(.[][$k] | strings)'; }
# tool NAME: NAME by full path from util-linux / coreutils (busybox sh runs
# its own applets before PATH).
tool() { for p in /usr/sbin/$1 /sbin/$1 /usr/bin/$1 /bin/$1; do [ -x "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
# zeroout OFFSET LENGTH DEV: REQ_OP_WRITE_ZEROES (busybox blkdiscard has no -z;
# fallocate -z on a block device issues write-zeroes too).
zeroout() {
  if $(tool blkdiscard) --help 2>&1 | grep -q -- --zeroout; then
    $(tool blkdiscard) -z -o "$1" -l "$2" "$3"
  else
    $(tool fallocate) -z -o "$1" -l "$2" "$3"
  fi
}
# read_at DEV OFFSET LENGTH OUT: O_DIRECT read of LENGTH bytes (multiples of
# 4 KiB) at OFFSET of DEV into OUT (uses $T).
read_at() { dd if="$1" of="$4" bs=4096 skip=$(($2 / 4096)) count=$(($3 / 4096)) iflag=direct 2> "$T/dd.err" \
  || { cat "$T/dd.err"; die "read $3 bytes at $2 from $1 (past/at the shortened file's end)"; }; }
# expect_then_zeroes OUT REF REFOFF N: OUT is N bytes of REF from REFOFF,
# then zeroes to OUT's size (uses $T).
expect_then_zeroes() {
  _len=$(stat -c %s "$1")
  { tail -c +$(($3 + 1)) "$2" | head -c "$4"; head -c $((_len - $4)) /dev/zero; } > "$T/exp"
  "$(tool cmp)" "$T/exp" "$1"
}
