# Helpers for VM tests: `. tests/vm/lib.sh`
set -u
log() { echo "[$(basename "$0" .sh)] $*"; }
die() { echo "[$(basename "$0" .sh)] FAIL: $*" >&2; exit 1; }
skip() { echo "[$(basename "$0" .sh)] SKIP: $*"; exit 77; }
# run CMD...: run and die with its output if it fails.
run() { "$@" || die "command failed ($?): $*"; }
# has_feature NAME: the kernel advertises this ublk feature (ublk-user features).
has_feature() { ublk-user features 2>/dev/null | grep -qw "$1"; }
# `ublk-user list --json` (an array, one object per device; every key is in
# the README's "list --json" table) is read with jq, never by key order.
command -v jq > /dev/null || die "no jq in the guest (cargo xtask setup installs it; xtask/src/vm.rs copies it in)"
# jnum NAME / jstr NAME: the first numeric / string value of key NAME among
# the devices (the tests using them have one device); empty if none has it.
jnum() { ublk-user list --json | jq -r --arg k "$1" 'first(.[][$k] | numbers)'; }
jstr() { ublk-user list --json | jq -r --arg k "$1" 'first(.[][$k] | strings)'; }
