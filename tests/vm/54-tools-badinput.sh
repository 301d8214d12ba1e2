#!/bin/sh
# timeout: 300
# cost: 55
# Bad input to ublk-user: every case exits non-zero with one clear line on
# stderr (clap usage errors: an "error:" first line, exit 2) and leaves no
# device behind, not even half-created (/dev/ublkc* and `ublk-user list`
# unchanged). Cases: bad arguments, missing / unusable backing files, a
# device id that is taken or out of range, --mode bpf on a target without a
# backing file, no privilege (as uid 65534), setup failing at every step
# (open-file limit sweep), many devices.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires control fixture
n=0
notes=0
base_dev=$(ndev)
base_chr=$(nchar)
# bad KIND CMD...: KIND=clap (usage error, exit 2) or one (exit 1, one "ublk-user:" line)
bad() {
  kind=$1; shift
  n=$((n + 1))
  "$@" > "$T/out" 2> "$T/err"; rc=$?
  first=$(head -n 1 "$T/err")
  lines=$(grep -c . "$T/err")
  [ "$rc" != 0 ] || die "case $n succeeded: $*"
  case $kind in
    clap) [ "$rc" = 2 ] && { echo "$first" | grep -q '^error:' || grep -q '^Usage:' "$T/err"; } \
            || { cat "$T/err"; die "case $n: expected a usage error (rc 2): $*"; } ;;
    one) [ "$lines" -ge 1 ] && [ "$lines" -le 2 ] && echo "$first" | grep -q '^ublk-user: ' \
           || { cat "$T/err"; die "case $n: expected one 'ublk-user:' line, got $lines: $*"; }
         [ "$lines" = 1 ] || { notes=$((notes + 1)); log "NOTE: $lines lines: $(tr '\n' '|' < "$T/err")"; } ;;
  esac
  [ "$(ndev)" = "$base_dev" ] || { ublk-user list; die "case $n left a device behind: $*"; }
  [ "$(nchar)" = "$base_chr" ] || { ls /dev/ublk*; die "case $n left a /dev/ublkc node behind: $*"; }
  log "ok rc=$rc lines=$lines: $* -> $first"
}
truncate -s 16M "$T/ok.img"
: > "$T/empty.img"
printf 'x%.0s' $(seq 1 1000) > "$T/odd.img"
mkdir -p "$T/dir"
bad clap ublk-user
bad clap ublk-user frobnicate
bad clap ublk-user add
bad clap ublk-user add loop
bad clap ublk-user add loop --file "$T/ok.img" --mode turbo
bad clap ublk-user add loop --file "$T/ok.img" --queues 0
bad clap ublk-user add loop --file "$T/ok.img" --queues 65
bad clap ublk-user add loop --file "$T/ok.img" --depth 0
bad clap ublk-user add loop --file "$T/ok.img" --depth 5000
bad clap ublk-user add loop --file "$T/ok.img" --id -1
bad clap ublk-user add null --size 100
bad clap ublk-user add null --size 0
bad clap ublk-user add null --size lots
bad clap ublk-user del
bad clap ublk-user del --id 1 --all
bad one ublk-user add loop --file "$T/missing.img"
bad one ublk-user add loop --file "$T/dir"
bad one ublk-user add loop --file "$T/empty.img"
bad one ublk-user add loop --file /dev/null
bad one ublk-user add loop --file "$T/ok.img" --id 99999999
bad one ublk-user add null --size 16M --mode bpf --no-fallback
bad one ublk-user del --id 4242
# a file whose size is not a multiple of 512: refused, or served rounded down
if d=$(ublk-user add loop --file "$T/odd.img" 2> "$T/err"); then
  log "note: a 1000-byte backing file is accepted: $d ($(cat /sys/block/$(basename "$d")/size) sectors)"
  ublk-user del --all > /dev/null 2>&1
else
  log "ok: 1000-byte backing file refused: $(head -n 1 "$T/err")"
fi
# a taken id: refused, the existing device keeps working
d=$(ublk-user add loop --file "$T/ok.img") || die "add"
id=$(devid "$d")
base_dev=$(ndev); base_chr=$(nchar)
bad one ublk-user add loop --file "$T/ok.img" --id "$id"
quick_verify "$d" 4m
log "ok: device $id still serves verified I/O after the clash"
# no privilege (uid 65534)
bad one ublk-bpf-fixture as-user 65534 -- ublk-user add loop --file "$T/ok.img"
bad one ublk-bpf-fixture as-user 65534 -- ublk-user add null --size 16M
bad one ublk-bpf-fixture as-user 65534 -- ublk-user del --all
bad one ublk-bpf-fixture as-user 65534 -- ublk-user del --id "$id"
bad one ublk-bpf-fixture as-user 65534 -- ublk-user list
bad one ublk-bpf-fixture as-user 65534 -- ublk-user features
[ -e "$d" ] || die "unprivileged del removed the device"
ublk-user del --all || die "del"
base_dev=$(ndev); base_chr=$(nchar)

# --mode bpf --no-fallback on a target without a backing file must not leave
# a half-created device (checked by bad above); the fallback variant must work
if has_feature bpf; then
  if d=$(ublk-user add null --size 16M --mode bpf 2> "$T/err"); then
    log "note: add null --mode bpf (with fallback) -> $d: $(head -n 1 "$T/err")"
    ublk-user del --all > /dev/null 2>&1
  else
    [ "$(ndev)" = "$base_dev" ] || die "add null --mode bpf failed and left a device"
    log "ok: add null --mode bpf (with fallback) refused: $(head -n 1 "$T/err")"
  fi
fi

# Half-created devices: run `add` under every open-file limit from 3 to 24,
# so that it fails at each step of the setup (control device, backing file,
# /dev/ublkcN, rings, queue threads, BPF maps): each failure is one line and
# leaves no device; each success is a working device.
for mode in $(modes); do
  okc=0; failc=0
  L=3
  while [ "$L" -le 24 ]; do
    if d=$(sh -c "ulimit -n $L && exec ublk-user add loop --file $T/ok.img --queues 2 --mode $mode --no-fallback" 2> "$T/err"); then
      okc=$((okc + 1))
      ublk-user del --all || die "del after add with ulimit -n $L"
    else
      failc=$((failc + 1))
      [ "$(grep -c . "$T/err")" -le 2 ] && head -n 1 "$T/err" | grep -q '^ublk-user: ' \
        || { cat "$T/err"; die "$mode ulimit -n $L: not a one-line error"; }
      [ "$(ndev)" = "$base_dev" ] && [ "$(nchar)" = "$base_chr" ] \
        || { ublk-user list; ls /dev/ublk*; die "$mode ulimit -n $L: add failed and left a half-created device: $(head -n 1 "$T/err")"; }
      log "$mode ulimit -n $L: $(head -n 1 "$T/err")"
    fi
    L=$((L + 1))
  done
  log "ok: $mode: open-file limits 3..24: $failc refused cleanly, $okc served"
done

# Many devices: 24 at once (privileged devices have no count limit, ublks_max
# only caps unprivileged ones), all listed, `del --all` removes them all.
N=24
k=0
while [ "$k" -lt "$N" ]; do
  ublk-user add null --size 16M --queues 1 --depth 4 > /dev/null 2> "$T/err" || { cat "$T/err"; die "device $k of $N"; }
  k=$((k + 1))
done
[ "$(ndev)" = "$N" ] && [ "$(nchar)" = "$N" ] || { ublk-user list; die "expected $N devices"; }
timeout 120 ublk-user del --all || die "del --all of $N devices"
[ "$(ndev)" = 0 ] && [ "$(nchar)" = 0 ] || { ublk-user list; die "devices left after del --all"; }
log "ok: $N devices created, listed and deleted"
rm -rf "$T/ok.img" "$T/empty.img" "$T/odd.img" "$T/dir"
log "PASS: $n bad-input cases ($notes with a second error line)"
