#!/bin/sh
# timeout: 240
# cost: 15
# ublk-user life cycle: features, add/list/del, several devices at once,
# del --all, signals, --mode bpf fallback, the ublksrv spellings (add -t
# ... -z -r 1, list -n, del -n), and bad input (one clear line,
# non-zero exit, no device left behind).
. tests/vm/lib.sh
command -v ublk-user >/dev/null || die "ublk-user not on PATH"
requires control

ndev() { ls /sys/class/ublk-char 2>/dev/null | wc -l; }
# expect_fail WHAT WORD CMD...: CMD fails (no panic) with an error line containing WORD.
expect_fail() {
  what=$1; word=$2; shift 2
  before=$(ndev)
  if "$@" > "$T/out" 2> "$T/err"; then die "$what: succeeded unexpectedly"; fi
  grep -q "panicked" "$T/err" && die "$what: panicked: $(cat "$T/err")"
  grep -qi -- "$word" "$T/err" || die "$what: error does not mention '$word': $(cat "$T/err")"
  [ "$(ndev)" = "$before" ] || die "$what: left a device behind"
  log "ok: $what -> $(head -n 1 "$T/err")"
}

log "features"
ublk-user features > "$T/f" || die "features failed"
cat "$T/f"
grep -qw auto_buf_reg "$T/f" || die "features: no auto_buf_reg"
ublk-user features --json | jq -e 'has("names")' > /dev/null || die "features --json"

log "add null + list"
d0=$(ublk-user add null --size 64M) || die "add null failed"
[ -b "$d0" ] || die "add null: $d0 is not a block device"
[ "$(blockdev --getsize64 "$d0" 2>/dev/null || cat /sys/block/$(basename "$d0")/size)" ] || true
sz=$(cat /sys/block/$(basename "$d0")/size)
[ "$sz" = $((64 * 2048)) ] || die "null size: $sz sectors, want $((64 * 2048))"
ublk-user list > "$T/l" || die "list failed"; cat "$T/l"
grep -q "live *null" "$T/l" || die "list: no live null device"
ublk-user list --json > "$T/j" || die "list --json failed"; cat "$T/j"
jq -e 'any(.[]; .target == "null")' "$T/j" > /dev/null || die "list --json: no null target"
jq -e 'any(.[]; .mode == "copy")' "$T/j" > /dev/null || die "list --json: no effective mode"

log "several devices at once"
truncate -s 32M "$T/a.img" "$T/b.img"
d1=$(ublk-user add loop --file "$T/a.img" --mode copy --queues 2 --depth 64) || die "add loop copy"
d2=$(ublk-user add loop --file "$T/b.img" --mode zc) || die "add loop zc"
d3=$(ublk-user add null --size 1G --mode zc --id 7) || die "add null --id 7"
[ "$d3" = /dev/ublkb7 ] || die "--id 7 gave $d3"
for d in $d1 $d2 $d3; do
  dd if=/dev/zero of="$d" bs=64k count=16 oflag=direct 2>/dev/null || die "write to $d"
  dd if="$d" of=/dev/null bs=64k count=16 iflag=direct 2>/dev/null || die "read from $d"
done
[ "$(ndev)" = 4 ] || die "want 4 devices, have $(ndev)"
ublk-user list
ublk-user list --json | jq -e --arg b "$T/a.img" 'any(.[]; .backing == $b)' > /dev/null || die "list: backing path missing"
ublk-user list --json | jq -e 'any(.[]; .mode_requested == "zc" and .mode == "zc")' > /dev/null || die "list: zc mode missing"

expect_fail "duplicate --id" "exists" ublk-user add null --size 16M --id 7

log "del --id"
id1=${d1#/dev/ublkb}
ublk-user del --id "$id1" || die "del --id $id1"
[ -e "$d1" ] && die "$d1 still exists after del"
[ -e /sys/class/ublk-char/ublkc$id1 ] && die "ublkc$id1 still exists after del"
expect_fail "del of a missing id" "no ublk device" ublk-user del --id "$id1"

log "SIGTERM / SIGINT stop the server and remove the device"
id2=${d2#/dev/ublkb}
pid=$(ublk-user list --json | jq -r --argjson id "$id2" '.[] | select(.id == $id) | .pid')
[ -n "$pid" ] || die "no pid for device $id2"
kill -TERM "$pid"
i=0; while [ -e "$d2" ] || kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && die "SIGTERM: $d2 still there"; sleep 0.1; done
d4=$(ublk-user add null --size 16M) || die "add null"
id4=${d4#/dev/ublkb}
pid=$(ublk-user list --json | jq -r --argjson id "$id4" '.[] | select(.id == $id) | .pid')
kill -INT "$pid"
i=0; while [ -e "$d4" ] || kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && die "SIGINT: $d4 still there"; sleep 0.1; done

log "a killed server (SIGKILL) leaves a dead device that del removes"
d6=$(ublk-user add loop --file "$T/a.img") || die "add"
id6=${d6#/dev/ublkb}
pid=$(ublk-user list --json | jq -r --argjson id "$id6" '.[] | select(.id == $id) | .pid')
kill -KILL "$pid"
i=0; while kill -0 "$pid" 2>/dev/null; do i=$((i+1)); [ $i -gt 100 ] && die "SIGKILL: server still alive"; sleep 0.1; done
ublk-user list
ublk-user del --id "$id6" || die "del of a device whose server was killed"
[ -e /sys/class/ublk-char/ublkc$id6 ] && die "ublkc$id6 still exists after del"

log "--mode bpf"
if has_feature bpf; then
  log "kernel has UBLK_F_BPF: fallback checks skipped"
else
  d5=$(ublk-user add null --size 16M --mode bpf 2> "$T/err") || die "bpf fallback failed: $(cat "$T/err")"
  grep -qi "bpf" "$T/err" || die "bpf fallback printed no reason"
  log "fallback: $(cat "$T/err")"
  ublk-user list --json | jq -e 'any(.[]; .mode_requested == "bpf" and .mode == "copy")' > /dev/null || die "list: bpf->copy fallback not shown"
  expect_fail "--mode bpf --no-fallback" "UBLK_F_BPF" ublk-user add null --size 16M --mode bpf --no-fallback
fi

log "ublksrv spellings: add -t -f -n -q -d -z / -r 1, list -n, del -n"
d8=$(ublk-user add -t loop -f "$T/a.img" -n 8 -q 2 -d 32 -z) || die "add -t loop -f -n 8 -q 2 -d 32 -z"
[ "$d8" = /dev/ublkb8 ] || die "-n 8 gave $d8"
ublk-user list -n 8 --json > "$T/j8" || die "list -n 8 --json"
jq -e 'length == 1 and .[0].id == 8 and .[0].target == "loop" and .[0].queues == 2 and .[0].depth == 32
  and .[0].mode_requested == "zc" and .[0].mode == "zc"' "$T/j8" > /dev/null || die "list -n 8: $(cat "$T/j8")"
expect_fail "list -n of a missing id" "no ublk device" ublk-user list -n 99
d9=$(ublk-user add -t null --size 16M -r 1) || die "add -t null --size 16M -r 1"
ublk-user list -n "${d9#/dev/ublkb}" --json | jq -e '.[0].features | index("user_recovery")' > /dev/null \
  || die "-r 1: no user_recovery flag: $(ublk-user list --json)"
ublk-user del -n 8 || die "del -n 8"
[ -e /sys/class/ublk-char/ublkc8 ] && die "ublkc8 still exists after del -n"

log "del --all"
ublk-user del --all || die "del --all"
[ "$(ndev)" = 0 ] || die "devices left after del --all: $(ls /sys/class/ublk-char)"
ls /dev/ublkb* 2>/dev/null && die "block devices left after del --all"
ublk-user list | grep -q live && die "list shows devices after del --all"
ublk-user del --all || die "del --all with nothing to delete"

log "bad input"
expect_fail "missing file" "$T/nope.img" ublk-user add loop --file "$T/nope.img"
: > "$T/empty.img"
expect_fail "empty file" "empty" ublk-user add loop --file "$T/empty.img"
expect_fail "zero size" "zero" ublk-user add null --size 0
expect_fail "bad size" "invalid size" ublk-user add null --size 12X
expect_fail "depth 0" "depth" ublk-user add null --size 16M --depth 0
expect_fail "depth 5000" "depth" ublk-user add null --size 16M --depth 5000
expect_fail "queues 0" "queues" ublk-user add null --size 16M --queues 0
expect_fail "unknown mode" "mode" ublk-user add null --size 16M --mode turbo
expect_fail "directory as file" "neither" ublk-user add loop --file "$T"
if command -v su >/dev/null && su nobody -s /bin/sh -c true 2>/dev/null; then
  expect_fail "not root" "root" su nobody -s /bin/sh -c "$(command -v ublk-user) add null --size 16M"
else
  log "(no su: non-root check skipped)"
fi
[ "$(ndev)" = 0 ] || die "bad input left devices behind"
log "PASS"
