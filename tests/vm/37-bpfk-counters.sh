#!/bin/sh
# timeout: 180
# cost: 10
# --mode bpf-kernel counters: N synchronous 4 KiB O_DIRECT requests (dd
# bs=4k oflag=direct / iflag=direct: one request each, no merging) give
# exactly +N kernel_completed, +N kernel_redirected and +N bpf_redirected,
# +0 kernel_punted (O_DIRECT: issued inline) and nothing at the server:
# +0 server_cqes, server_sqes, server_enters (the queue threads never woke)
# and server_served. Then the same N writes on a --buffered device: +N
# kernel_completed, all of them punted to the kernel worker (+N
# kernel_punted), still +0 server_cqes. Every run's data is checked with cmp
# against the source and the backing file.
# The counters are read from `ublk-user list --json` with jq.
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
# Measured: 9 s on kdev-bzImage-1 (TCG, 2 vCPUs).
. tests/vm/lib.sh
[ -c /dev/ublk-control ] || skip "no /dev/ublk-control"
has_feature bpf_kernel_io || skip "kernel lacks UBLK_F_BPF_KERNEL_IO"
T=${TEST_TMP:-/tmp}
CMP=$(tool cmp)
N=${N:-1000}
trap 'ublk-user del --all > /dev/null 2>&1' EXIT
KEYS="kernel_completed kernel_redirected kernel_punted kernel_errors bpf_redirected bpf_passed server_cqes server_sqes server_enters server_served"
snapshot() { # PREFIX
  ublk-user list --json > "$T/$1.json"
  for k in $KEYS; do
    v=$(jq -r --arg k "$k" 'first(.[][$k] | numbers)' "$T/$1.json")
    [ -n "$v" ] || { cat "$T/$1.json"; die "list --json has no numeric $k"; }
    eval "$1_$k=$v"
  done
}
delta() { eval "echo \$((after_$1 - before_$1))"; }
# check WHAT KEY=WANT...: each counter's delta is exactly WANT
check() {
  _what=$1; shift
  _line=""
  for k in $KEYS; do _line="$_line $k+$(delta "$k")"; done
  log "$_what:$_line"
  for kv in "$@"; do
    k=${kv%%=*}; want=${kv#*=}
    [ "$(delta "$k")" = "$want" ] || { cat "$T/before.json" "$T/after.json"; die "$_what: $k grew by $(delta "$k"), want $want"; }
  done
}

dd if=/dev/urandom of="$T/src" bs=4096 count="$N" 2> /dev/null
for buffered in "" --buffered; do
  rm -f "$T/c.img"
  truncate -s 64M "$T/c.img"
  d=$(ublk-user add loop --file "$T/c.img" --mode bpf-kernel --no-fallback --queues 2 $buffered 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add loop --mode bpf-kernel --no-fallback $buffered"; }
  if [ -z "$buffered" ]; then punt=0; what="O_DIRECT file"; else punt=$N; what="buffered file"; fi
  # let the server settle (its FETCH commands armed) before the first snapshot
  sleep 1
  snapshot before
  dd if="$T/src" of="$d" bs=4096 count="$N" seek=256 oflag=direct 2> "$T/dd.err" || { cat "$T/dd.err"; die "dd write"; }
  snapshot after
  check "$what: $N writes" kernel_completed="$N" kernel_redirected="$N" bpf_redirected="$N" \
    kernel_punted="$punt" kernel_errors=0 bpf_passed=0 \
    server_cqes=0 server_sqes=0 server_enters=0 server_served=0
  snapshot before
  dd if="$d" of="$T/back" bs=4096 count="$N" skip=256 iflag=direct 2> "$T/dd.err" || { cat "$T/dd.err"; die "dd read"; }
  snapshot after
  check "$what: $N reads" kernel_completed="$N" kernel_redirected="$N" bpf_redirected="$N" \
    kernel_punted="$punt" kernel_errors=0 bpf_passed=0 \
    server_cqes=0 server_sqes=0 server_enters=0 server_served=0
  $CMP "$T/src" "$T/back" || die "$what: data read back through the device differs from what was written"
  dd if="$T/c.img" of="$T/back" bs=4096 count="$N" skip=256 2> /dev/null
  $CMP "$T/src" "$T/back" || die "$what: the backing file does not hold the written data"
  ublk-user del --all || die "del"
  log "ok: $what: +$N kernel-completed requests each way, none at the server, data intact"
done
rm -f "$T/c.img" "$T/src" "$T/back"
log "PASS"
