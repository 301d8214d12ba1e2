# Helpers for VM tests: `. tests/vm/lib.sh`
set -u
log() { echo "[$(basename "$0" .sh)] $*"; }
die() { echo "[$(basename "$0" .sh)] FAIL: $*" >&2; exit 1; }
skip() { echo "[$(basename "$0" .sh)] SKIP: $*"; exit 77; }
# run CMD...: run and die with its output if it fails.
run() { "$@" || die "command failed ($?): $*"; }
# has_feature NAME: the kernel advertises this ublk feature (ublk-user features).
has_feature() { ublk-user features 2>/dev/null | grep -qw "$1"; }
