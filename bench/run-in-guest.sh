#!/bin/sh
# bench/run-in-guest.sh OUT: the guest side of `cargo xtask bench`.
#
# Runs the plan OUT/plan.txt (written by xtask/src/bench.rs, one fio run a
# line: "IDX REP CONTENDER JOB RW BS QD WORKLOAD") against contenders that
# all serve the same RAM-backed store, a tmpfs file, and that all exist for
# the whole run (so the plan can interleave them):
#   raw   the backing file itself, O_DIRECT (upper bound)
#   loop  the kernel loop driver, losetup --direct-io=on (reference)
#   copy  ublk-user add loop --mode copy
#   zc    ublk-user add loop --mode zc   (UBLK_F_AUTO_BUF_REG)
#   bpf   ublk-user add loop --mode bpf --no-fallback
#   bpf-kernel  ublk-user add loop --mode bpf-kernel --no-fallback (UBLK_F_BPF_KERNEL_IO)
# The ublk servers open the file with O_DIRECT (their default; tmpfs has
# accepted O_DIRECT since 6.6), like loop with --direct-io=on.
# A contender that cannot be set up is recorded as n/a with the reason.
#
# Writes into OUT (shared with the host over 9p):
#   env.txt          key=value facts about the guest
#   contenders.txt   NAME|STATUS|DEV|PID|MODE|NOTE (STATUS ok or na)
#   runs.csv         one line a run: fio exit status and the CPU samples
#   fio/IDX.json     fio's JSON output of run IDX
#   list-end.json    `ublk-user list --json` after the last run (BPF counters)
#   done             written last
# Progress goes to stdout. Environment: BENCH_RUNTIME (s, default 2),
# BENCH_SIZE_MB (backing file size, default 512).
set -u
OUT=${1:?usage: run-in-guest.sh OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
RUNTIME=${BENCH_RUNTIME:-2}
SIZE_MB=${BENCH_SIZE_MB:-512}
W=/tmp/bench-work
IMG=/tmp/bench.img
export BENCH_WORK=$W
mkdir -p "$W" "$OUT/fio" || exit 1
cd "$W" || exit 1
PLAN=$OUT/plan.txt
[ -s "$PLAN" ] || { echo "bench: no plan at $PLAN" >&2; exit 1; }

tool() { for p in /usr/sbin/$1 /sbin/$1 /usr/bin/$1 /bin/$1; do [ -x "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
LOSETUP=$(tool losetup)
DD=$(tool dd)

# Send every kernel message to the serial console (the console log the host
# keeps), so a warning or oops before a guest reset is not lost.
dmesg -n 8 2>/dev/null

# --- facts about the guest --------------------------------------------------
accel=tcg
dmesg 2>/dev/null | grep -q "Hypervisor detected: KVM" && accel=kvm
hz=$(getconf CLK_TCK 2>/dev/null) || hz=100
[ -n "$hz" ] || hz=100
{
  echo "kernel=$(uname -r)"
  echo "kernel_version=$(uname -v)"
  echo "vcpus=$(nproc)"
  echo "cpu_model=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
  echo "mem_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
  echo "accel=$accel"
  echo "clk_tck=$hz"
  echo "fio=$(fio --version 2>/dev/null)"
  echo "runtime=$RUNTIME"
  echo "size_mb=$SIZE_MB"
  echo "backing=tmpfs file $IMG (${SIZE_MB} MiB, filled with zeros by dd)"
  echo "ublk_features=$(ublk-user features 2>/dev/null | sed -n 's/^  //p' | tr '\n' ' ')"
  echo "start=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$OUT/env.txt"

# --- the backing store and the contenders -------------------------------------
rm -f "$IMG"
$DD if=/dev/zero of="$IMG" bs=1M count="$SIZE_MB" 2>/dev/null || { echo "bench: cannot create $IMG" >&2; exit 1; }

: > "$OUT/contenders.txt"
record() { echo "$1|$2|$3|$4|$5|$6" >> "$OUT/contenders.txt"; echo "bench: contender $1: $2 $3${6:+ ($6)}"; }
# jfield DEV NAME: a field of DEV's entry in `ublk-user list --json`.
jfield() {
  ublk-user list --json 2>/dev/null | tr '{' '\n' | grep "\"bdev\":\"$1\"" \
    | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",]*\)\"\{0,1\}[,}].*/\1/p" | head -n 1
}
LOOPDEV=
setup() { # CONTENDER
  case $1 in
  raw)
    record raw ok "$IMG" "" raw "the tmpfs file itself, O_DIRECT" ;;
  loop)
    if ! d=$($LOSETUP --direct-io=on --show -f "$IMG" 2> "$W/add.err"); then
      record loop na "" "" "" "losetup --direct-io=on failed: $(head -c 200 "$W/add.err" | tr '\n|' '  ')"
      return
    fi
    LOOPDEV=$d
    dio=$(cat "/sys/block/${d#/dev/}/loop/dio" 2>/dev/null)
    if [ "$dio" = 1 ]; then
      record loop ok "$d" "" dio "losetup --direct-io=on, dio=1"
    else
      record loop ok "$d" "" buffered "losetup --direct-io=on but the driver fell back to buffered I/O (dio=${dio:-?})"
    fi ;;
  copy | zc | bpf | bpf-kernel)
    extra=
    case $1 in bpf*) extra=--no-fallback ;; esac
    if ! d=$(ublk-user add loop --file "$IMG" --mode "$1" $extra 2> "$W/add.err"); then
      record "$1" na "" "" "" "ublk-user add loop --mode $1 $extra failed: $(head -c 300 "$W/add.err" | tr '\n|' '  ')"
      return
    fi
    pid=$(jfield "$d" pid)
    mode=$(jfield "$d" mode)
    if [ "$mode" != "$1" ]; then
      record "$1" na "$d" "$pid" "$mode" "asked for --mode $1, the server runs mode ${mode:-?}: not measured"
    elif [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
      record "$1" na "$d" "$pid" "$mode" "no server pid in ublk-user list --json"
    else
      record "$1" ok "$d" "$pid" "$mode" "ublk-user loop, 1 queue, depth 128, O_DIRECT backing"
    fi ;;
  *) record "$1" na "" "" "" "unknown contender" ;;
  esac
}
for c in $(awk '{print $3}' "$PLAN" | awk '!seen[$0]++'); do setup "$c"; done
ublk-user list --json > "$OUT/list-start.json" 2>/dev/null

# --- the runs ----------------------------------------------------------------
total=$(grep -c . "$PLAN")
echo "idx,rep,contender,workload,rc,pre_busy,pre_total,pre_srv,post_busy,post_total,post_srv" > "$OUT/runs.csv"
t0=$(date +%s)
n=0
prev_rep=
while read -r idx rep cont job rw bs qd wl <&3; do
  n=$((n + 1))
  # Snapshot the server counters at each repetition boundary (kept if the
  # guest dies later).
  if [ "$rep" != "$prev_rep" ] && [ -n "$prev_rep" ]; then
    ublk-user list --json > "$OUT/list-end.json" 2>/dev/null
  fi
  prev_rep=$rep
  line=$(grep "^$cont|" "$OUT/contenders.txt" | head -n 1)
  status=$(echo "$line" | cut -d'|' -f2)
  label="[$n/$total] $cont $rw $bs qd$qd rep $rep"
  if [ "$status" != ok ]; then
    echo "$idx,$rep,$cont,$wl,na,,,,,," >> "$OUT/runs.csv"
    echo "$label: n/a"
    continue
  fi
  DEV=$(echo "$line" | cut -d'|' -f3)
  SRV_PID=$(echo "$line" | cut -d'|' -f4)
  export DEV RW="$rw" BS="$bs" QD="$qd" RUNTIME SRV_PID SAMPLE="sh $HERE/cpu-sample.sh"
  rm -f "$W/pre" "$W/post" "$W/out.json"
  fio --output-format=json --output="$W/out.json" "$HERE/fio/$job.fio" > "$W/fio.log" 2>&1 < /dev/null
  rc=$?
  # No CPU samples means fio never ran the hooks: count it as a failure.
  if [ "$rc" = 0 ] && { [ ! -s "$W/pre" ] || [ ! -s "$W/post" ]; }; then rc=99; fi
  cp "$W/out.json" "$OUT/fio/$idx.json" 2>/dev/null
  read -r pb pt ps < "$W/pre" 2>/dev/null || { pb=; pt=; ps=; }
  read -r qb qt qs < "$W/post" 2>/dev/null || { qb=; qt=; qs=; }
  echo "$idx,$rep,$cont,$wl,$rc,$pb,$pt,$ps,$qb,$qt,$qs" >> "$OUT/runs.csv"
  el=$(($(date +%s) - t0))
  if [ "$rc" != 0 ]; then
    echo "$label: FAILED (fio exit $rc): $(grep -v '^$' "$W/fio.log" | tail -n 1)"
    continue
  fi
  awk -v label="$label" -v el="$el" -v n="$n" -v total="$total" '
    /"iops" :/ { gsub(/[^0-9.]/, "", $3); iops += $3 }
    /"bw_bytes" :/ { gsub(/[^0-9.]/, "", $3); bw += $3 }
    END {
      if (iops >= 1e6) s = sprintf("%.2fM", iops / 1e6)
      else if (iops >= 1e3) s = sprintf("%.1fk", iops / 1e3)
      else s = sprintf("%.0f", iops)
      eta = (n > 0) ? int(el * (total - n) / n) : 0
      printf "%s: %s IOPS, %.1f MiB/s (%dm%02ds elapsed, ~%dm%02ds left)\n", label, s, bw / 1048576, el / 60, el % 60, eta / 60, eta % 60
    }' "$W/out.json"
done 3< "$PLAN"

ublk-user list --json > "$OUT/list-end.json" 2>/dev/null
ublk-user del --all > /dev/null 2>&1
[ -n "$LOOPDEV" ] && $LOSETUP -d "$LOOPDEV"
rm -f "$IMG"
echo "end=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$OUT/env.txt"
echo ok > "$OUT/done"
echo "bench: $total runs in $(($(date +%s) - t0)) s"
