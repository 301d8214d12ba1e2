#!/bin/sh
# bench/run-in-guest.sh OUT: the guest side of `cargo xtask bench` (v2).
#
# Runs the plan OUT/plan.txt (written by the bench crate, bench/src/run.rs), one fio run a
# line: "IDX STORE REP CONTENDER JOB RW BS QD WORKLOAD COND". Lines are
# grouped by backing store (STORE outermost); for each store the contenders
# are set up once, all serving the same store, and torn down at its end:
#   tmpfs   a file in the guest's /tmp (the backing I/O is a memcpy in the guest)
#   nullb   /dev/nullb0, null_blk memory_backed=0 (no data movement at all)
#   virtio  a virtio-blk disk on a host file, served by a QEMU iothread
#   stripe-tmpfs  two tmpfs files, striped in 64 KiB chunks by each contender
#   stripe-nullb  /dev/nullb0 and /dev/nullb1 (null_blk.nr_devices=2), striped
#   qcow2-tmpfs   a fully allocated qcow2 image (64 KiB clusters) on tmpfs,
#                 and a raw image of the same size beside it
#   qcow2-alloc   a sparse qcow2 image per contender (64 KiB clusters), the
#                 alloc job writing fresh clusters in every repetition
#   nullb-2q  /dev/nullb0 as nullb, every ublk server with 2 queues (kublk
#           -q 2), servers not pinned; its job (fio/mq.fio) runs 2 fio jobs,
#           one on each vCPU
# Contenders:
#   raw          fio on the store itself (O_DIRECT; upper bound)
#   loop         kernel loop driver, losetup --direct-io=on
#   MODE         every data mode `ublk-user modes` lists (copy, zc, bpf,
#                bpf-kernel): ublk-user add loop --mode MODE (--no-fallback
#                for a mode that has a fallback)
#   kublk        the driver's selftest server: kublk add -t loop -q 1 -d 128
#   kublk-zc     ... --auto_zc (UBLK_F_AUTO_BUF_REG)
#   kublk-batch  ... --auto_zc -b (UBLK_F_AUTO_BUF_REG + UBLK_F_BATCH_IO)
# On a stripe store (chunk 64 KiB everywhere):
#   dm           dm-stripe (dmsetup), over loop devices (--direct-io=on) for files
#   MODE         ublk-user add stripe -f A -f B --chunk 64K --mode MODE
#   kublk|kublk-zc           kublk add -t stripe -q 1 -d 128 [--auto_zc] A B
# On a qcow2 store:
#   qemu-nbd     QEMU's qcow2: qemu-nbd -c /dev/nbd0 -f qcow2 --cache=none
#   MODE         ublk-user add qcow2 -f IMAGE --mode MODE
#   loop-bpfk    ublk-user add loop on the raw image, bpf-kernel (the ceiling)
# A contender (or a store) that cannot be set up is recorded as n/a with the
# reason; its runs are recorded as "na".
# COND "profile": one run under `perf record` ($BENCH_PERF), not measured.
# COND is "-" (always run) or "agree": run only when the earlier repetitions
# of that (store, contender, workload) disagree by more than BENCH_AGREE_PCT
# percent in IOPS (the icount rule: two repetitions that agree within 2 %,
# a third when they do not).
#
# Pinning: fio runs on vCPU $FIO_CPU (1), every thread of a ublk server on
# vCPU $SRV_CPU (0) (taskset -a); kernel workers (loop's) are not pinned.
#
# Writes into OUT (shared with the host over 9p):
#   env.txt          key=value facts about the guest
#   contenders.txt   STORE|NAME|STATUS|DEV|PID|MODE|NOTE (STATUS ok or na)
#   stores.txt       STORE|STATUS|DEV|NOTE
#   runs.csv         one line a run: fio exit status, CPU samples, counters
#   fio/IDX.json     fio's JSON output of run IDX
#   fio/IDX-iops.log fio's IOPS log of run IDX (100 ms averages; RFC jobs)
#   list/IDX-{pre,post}.json  `ublk-user list --json` around run IDX (ublk-user contenders)
#   cpu/IDX-{pre,post}.{cpus,threads}  per-vCPU busy/total ticks and every
#                    task's ticks at the window's edges (cpu-sample.sh)
#   perf/IDX.txt     `perf report` of a profile run (COND "profile", report v3)
#   limits.txt       STORE|NAME|QUEUES|NR_REQUESTS|MAX_SECTORS_KB|MAX_HW_SECTORS_KB
#                    of each contender's block device, after setting
#                    max_sectors_kb to BENCH_MAX_SECTORS_KB (where given)
#   done             written last
# Environment: BENCH_RUNTIME (fio runtime, fio syntax, default 2), BENCH_RAMP
# (fio ramp_time, default 500ms), BENCH_SIZE_MB (tmpfs file, default 512),
# BENCH_AGREE_PCT (default 2), BENCH_KUBLK (path to kublk, empty: n/a with
# BENCH_KUBLK_WHY), BENCH_TIMING (icount|tcg, recorded only),
# BENCH_MAX_SECTORS_KB (the largest request of every contender's device and
# of a block store, the same for all; unset: each keeps its default). For the
# host-side test with stub tools (xtask bench tests): BENCH_WORKDIR,
# BENCH_IMG, BENCH_LOSETUP, BENCH_DRY.
set -u
OUT=${1:?usage: run-in-guest.sh OUT}
HERE=$(cd "$(dirname "$0")" && pwd)
RUNTIME=${BENCH_RUNTIME:-2}
RAMP=${BENCH_RAMP:-500ms}
SIZE_MB=${BENCH_SIZE_MB:-512}
AGREE=${BENCH_AGREE_PCT:-2}
ALLOC_MB=${BENCH_ALLOC_MB:-32}
KUBLK=${BENCH_KUBLK:-}
FIO_CPU=1
SRV_CPU=0
W=${BENCH_WORKDIR:-/tmp/bench-work}
IMG=${BENCH_IMG:-/tmp/bench.img}
export BENCH_WORK=$W
MAXKB=${BENCH_MAX_SECTORS_KB:-}
mkdir -p "$W" "$OUT/fio" "$OUT/list" "$OUT/cpu" || exit 1
cd "$W" || exit 1
PLAN=$OUT/plan.txt
[ -s "$PLAN" ] || { echo "bench: no plan at $PLAN" >&2; exit 1; }

tool() { for p in /usr/sbin/$1 /sbin/$1 /usr/bin/$1 /bin/$1; do [ -x "$p" ] && { echo "$p"; return; }; done; echo "$1"; }
LOSETUP=${BENCH_LOSETUP:-$(tool losetup)}
DD=$(tool dd)
# Every kernel message to the serial console (not in the host-side test).
[ -n "${BENCH_DRY:-}" ] || dmesg -n 8 2>/dev/null

# --- facts about the guest --------------------------------------------------
accel=tcg
dmesg 2>/dev/null | grep -q "Hypervisor detected: KVM" && accel=kvm
hz=$(getconf CLK_TCK 2>/dev/null) || hz=100
[ -n "$hz" ] || hz=100
[ "$(nproc)" -ge 2 ] || { FIO_CPU=0; SRV_CPU=0; }
{
  echo "kernel=$(uname -r)"
  echo "kernel_version=$(uname -v)"
  echo "vcpus=$(nproc)"
  echo "cpu_model=$(sed -n 's/^model name[^:]*: //p' /proc/cpuinfo | head -n 1)"
  echo "cpu_flags=erms on $(grep -c -w erms /proc/cpuinfo) vCPUs, fsrm on $(grep -c -w fsrm /proc/cpuinfo)"
  echo "mem_kb=$(awk '/^MemTotal/ {print $2}' /proc/meminfo)"
  echo "accel=$accel"
  echo "timing=${BENCH_TIMING:-tcg}"
  echo "clk_tck=$hz"
  echo "fio=$(fio --version 2>/dev/null)"
  echo "runtime=$RUNTIME"
  echo "ramp=$RAMP"
  echo "size_mb=$SIZE_MB"
  echo "agree_pct=$AGREE"
  echo "fio_cpu=$FIO_CPU"
  echo "srv_cpu=$SRV_CPU"
  echo "max_sectors_kb=$MAXKB"
  echo "ublk_features=$(ublk-user features 2>/dev/null | sed -n 's/^  //p' | tr '\n' ' ')"
  echo "start=$(date -u +%Y-%m-%dT%H:%M:%SZ)"
} > "$OUT/env.txt"

: > "$OUT/contenders.txt"
: > "$OUT/stores.txt"
: > "$OUT/limits.txt"
clean() { echo "$*" | tr '\n|' '  ' | head -c 300; }

# --- backing stores ---------------------------------------------------------
STORE_DEV=
store_up() { # STORE -> sets STORE_DEV, returns 1 (n/a recorded) when unavailable
  STORE_DEV=
  case $1 in
  tmpfs)
    rm -f "$IMG"
    if ! $DD if=/dev/zero of="$IMG" bs=1M count="$SIZE_MB" 2>/dev/null; then
      echo "tmpfs|na||cannot create $IMG" >> "$OUT/stores.txt"; return 1
    fi
    STORE_DEV=$IMG
    echo "tmpfs|ok|$IMG|tmpfs file $IMG, ${SIZE_MB} MiB of zeros" >> "$OUT/stores.txt" ;;
  nullb | nullb-2q)
    if [ ! -e /sys/module/null_blk ] && ! { command -v modprobe >/dev/null 2>&1 && modprobe null_blk memory_backed=0 2>/dev/null; }; then
      echo "$1|na||no null_blk in this kernel (/sys/module/null_blk missing, modprobe unavailable or failed): add CONFIG_BLK_DEV_NULL_BLK=y (kernel-patches/config) and rebuild the kernel" >> "$OUT/stores.txt"; return 1
    fi
    if [ ! -b /dev/nullb0 ]; then
      echo "$1|na||null_blk is loaded but /dev/nullb0 does not exist (nr_devices=0?)" >> "$OUT/stores.txt"; return 1
    fi
    # A bool parameter: reads N/Y (0/1 on older kernels).
    mb=$(cat /sys/module/null_blk/parameters/memory_backed 2>/dev/null)
    if [ "${mb:-N}" != N ] && [ "${mb:-N}" != 0 ]; then
      echo "$1|na|/dev/nullb0|null_blk memory_backed=$mb, not 0" >> "$OUT/stores.txt"; return 1
    fi
    p() { cat "/sys/module/null_blk/parameters/$1" 2>/dev/null || echo "?"; }
    STORE_DEV=/dev/nullb0
    sc=$(set_sched "$STORE_DEV")
    limit "$STORE_DEV"
    q2=; [ "$1" = nullb-2q ] && q2=", every ublk server with 2 queues, fio with 2 jobs (one a vCPU)"
    echo "$1|ok|/dev/nullb0|null_blk memory_backed=$mb (writes move no data; reads are zero-filled by the driver, zero_fill_bio), queue_mode=$(p queue_mode), irqmode=$(p irqmode), bs=$(p bs), submit_queues=$(p submit_queues), hw_queue_depth=$(p hw_queue_depth), $(($(cat /sys/block/nullb0/size) / 2097152)) GiB, scheduler $sc$q2" >> "$OUT/stores.txt" ;;
  virtio)
    d=
    for s in /sys/block/vd*; do
      [ -e "$s/serial" ] && [ "$(cat "$s/serial" 2>/dev/null)" = ublkbench ] && d=/dev/${s##*/}
    done
    if [ -z "$d" ]; then
      echo "virtio|na||no virtio-blk disk with serial ublkbench (the host adds it with --stores virtio)" >> "$OUT/stores.txt"; return 1
    fi
    STORE_DEV=$d
    sc=$(set_sched "$STORE_DEV")
    limit "$STORE_DEV"
    echo "virtio|ok|$d|virtio-blk $d ($(($(cat /sys/block/${d#/dev/}/size) / 2048)) MiB) on a host file, QEMU iothread, cache=none aio=threads, 1 queue, scheduler $sc" >> "$OUT/stores.txt" ;;
  stripe-tmpfs)
    half=$((SIZE_MB / 2))
    for i in 0 1; do
      rm -f "$IMG.$i"
      if ! $DD if=/dev/zero of="$IMG.$i" bs=1M count="$half" 2>/dev/null; then
        echo "stripe-tmpfs|na||cannot create $IMG.$i" >> "$OUT/stores.txt"; return 1
      fi
    done
    STORE_DEV="$IMG.0 $IMG.1"
    echo "stripe-tmpfs|ok|$IMG.0 $IMG.1|two tmpfs files of $half MiB, striped in 64 KiB chunks" >> "$OUT/stores.txt" ;;
  stripe-nullb)
    if [ ! -b /dev/nullb0 ] || [ ! -b /dev/nullb1 ]; then
      echo "stripe-nullb|na||no /dev/nullb0 and /dev/nullb1 (CONFIG_BLK_DEV_NULL_BLK=y and null_blk.nr_devices=2 on the kernel command line)" >> "$OUT/stores.txt"; return 1
    fi
    mb=$(cat /sys/module/null_blk/parameters/memory_backed 2>/dev/null)
    sc=$(set_sched /dev/nullb0); set_sched /dev/nullb1 > /dev/null
    STORE_DEV="/dev/nullb0 /dev/nullb1"
    echo "stripe-nullb|ok|/dev/nullb0 /dev/nullb1|two null_blk disks (memory_backed=$mb), striped in 64 KiB chunks, scheduler $sc" >> "$OUT/stores.txt" ;;
  qcow2-tmpfs)
    half=$((SIZE_MB / 2))
    rm -f "$IMG.qcow2" "$IMG.raw"
    if ! qemu-img create -q -f qcow2 -o cluster_size=64k,preallocation=full "$IMG.qcow2" "${half}M" 2> "$W/store.err" \
      || ! $DD if=/dev/zero of="$IMG.raw" bs=1M count="$half" 2> /dev/null; then
      echo "qcow2-tmpfs|na||cannot create the images: $(clean "$(head -c 200 "$W/store.err")")" >> "$OUT/stores.txt"; return 1
    fi
    STORE_DEV="$IMG.qcow2 $IMG.raw"
    echo "qcow2-tmpfs|ok|$IMG.qcow2 $IMG.raw|a qcow2 image of $half MiB, 64 KiB clusters, fully allocated (qemu-img preallocation=full), and a raw image of the same size, on tmpfs" >> "$OUT/stores.txt" ;;
  qcow2-alloc)
    STORE_DEV=$IMG
    echo "qcow2-alloc|ok|$IMG.CONTENDER.qcow2|a sparse qcow2 image of $((SIZE_MB / 2)) MiB per contender, 64 KiB clusters, on tmpfs; the alloc job writes ${ALLOC_MB} MiB of fresh clusters per repetition" >> "$OUT/stores.txt" ;;
  *) echo "$1|na||unknown store" >> "$OUT/stores.txt"; return 1 ;;
  esac
  return 0
}
store_down() {
  ublk-user del --all > /dev/null 2>&1
  [ -n "$KUBLK" ] && [ -x "$KUBLK" ] && "$KUBLK" del -a > /dev/null 2>&1
  [ -n "$DMNAME" ] && dmsetup remove "$DMNAME" 2>/dev/null
  DMNAME=
  for l in $LOOPDEV; do $LOSETUP -d "$l" 2>/dev/null; done
  LOOPDEV=
  for _nbd in $NBDDEV; do qemu-nbd -d "$_nbd" > /dev/null 2>&1; done
  NBDDEV=
  rm -f "$IMG" "$IMG.0" "$IMG.1" "$IMG".*.qcow2 "$IMG.qcow2" "$IMG.raw"
}

# --- contenders ---------------------------------------------------------------
# ublk-user's data modes, as the binary lists them, and those that have a
# fallback (they run with --no-fallback: a server that fell back would be
# measured under the wrong name).
_modes=$(ublk-user modes --json 2>/dev/null | tr '{' '\n')
MODES=$(echo "$_modes" | sed -n 's/.*"name":"\([^"]*\)".*/\1/p' | tr '\n' ' ')
FALLS_BACK=$(echo "$_modes" | grep -v '"fallback":null' | sed -n 's/.*"name":"\([^"]*\)".*/\1/p' | tr '\n' ' ')
in_list() { case " $2 " in *" $1 "*) return 0 ;; esac; return 1; }
# kind CONTENDER: "mode" for one of ublk-user's data modes, else the name.
kind() { if in_list "$1" "$MODES"; then echo mode; else echo "$1"; fi; }
no_fallback() { in_list "$1" "$FALLS_BACK" && echo --no-fallback; }
record() {
  echo "$STORE|$1|$2|$3|$4|$5|$6" >> "$OUT/contenders.txt"; echo "bench: [$STORE] contender $1: $2 $3${6:+ ($6)}"
  [ "$2" = ok ] && [ -b "$3" ] && limits "$1" "$3"
}
# limit DEV: max_sectors_kb := MAXKB (capped by the device's max_hw_sectors_kb).
limit() {
  _lq=/sys/block/$(basename "$(readlink -f "$1")")/queue
  [ -n "$MAXKB" ] && [ -w "$_lq/max_sectors_kb" ] || return 0
  _lhw=$(cat "$_lq/max_hw_sectors_kb" 2>/dev/null || echo "$MAXKB")
  _lv=$MAXKB; [ "$_lhw" -lt "$_lv" ] 2>/dev/null && _lv=$_lhw
  echo "$_lv" > "$_lq/max_sectors_kb" 2>/dev/null
  return 0
}
# limits NAME DEV: set DEV's limit, record what DEV now has.
limits() {
  limit "$2"
  _lb=/sys/block/$(basename "$(readlink -f "$2")")
  _lnq=$(ls -d "$_lb"/mq/[0-9]* 2>/dev/null | wc -l)
  echo "$STORE|$1|$_lnq|$(cat "$_lb/queue/nr_requests" 2>/dev/null)|$(cat "$_lb/queue/max_sectors_kb" 2>/dev/null)|$(cat "$_lb/queue/max_hw_sectors_kb" 2>/dev/null)" >> "$OUT/limits.txt"
}
jfield() { # DEV NAME: a field of DEV's entry in `ublk-user list --json`.
  ublk-user list --json 2>/dev/null | tr '{' '\n' | grep "\"bdev\":\"$1\"" \
    | sed -n "s/.*\"$2\":\"\{0,1\}\([^\",]*\)\"\{0,1\}[,}].*/\1/p" | head -n 1
}
pin() { [ "$NQ" = 1 ] || return 0; taskset -a -p "$((1 << SRV_CPU))" "$1" > /dev/null 2>&1; }
NQ=1
set_sched() { echo none > "/sys/block/${1#/dev/}/queue/scheduler" 2>/dev/null; sed -n 's/.*\[\(.*\)\].*/\1/p' "/sys/block/${1#/dev/}/queue/scheduler" 2>/dev/null; }
srv_where() { if [ "$NQ" = 1 ]; then echo "server on vCPU $SRV_CPU"; else echo "server threads not pinned"; fi; }
LOOPDEV=
DMNAME=
NBDDEV=
# qcow2_setup CONTENDER: the contenders of a qcow2 store.
qcow2_setup() {
  if [ "$STORE" = qcow2-alloc ]; then
    img=$IMG.$1.qcow2
    rm -f "$img"
    qemu-img create -q -f qcow2 -o cluster_size=64k "$img" "$((SIZE_MB / 2))M" 2> "$W/add.err" || {
      record "$1" na "" "" "" "qemu-img create failed: $(clean "$(head -c 200 "$W/add.err")")"; return; }
    raw=
  else
    set -- "$1" $STORE_DEV
    img=$2; raw=$3
  fi
  case $(kind "$1") in
  qemu-nbd)
    _nbd=/dev/nbd$(echo "$NBDDEV" | wc -w)
    mkdir -p /var/lock # qemu-nbd -c keeps its socket there
    if ! qemu-nbd -c "$_nbd" -f qcow2 --cache=none --pid-file="$W/nbd.pid" "$img" 2> "$W/add.err"; then
      record qemu-nbd na "" "" "" "qemu-nbd -c failed: $(clean "$(head -c 200 "$W/add.err")")"; return
    fi
    NBDDEV="$NBDDEV $_nbd"
    i=0; while [ "$(cat "/sys/block/${_nbd#/dev/}/size" 2>/dev/null || echo 0)" = 0 ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    pid=$(cat "$W/nbd.pid" 2>/dev/null)
    sc=$(set_sched "$_nbd")
    [ -n "$pid" ] && pin "$pid"
    record qemu-nbd ok "$_nbd" "$pid" nbd "qemu-nbd -c $_nbd -f qcow2 --cache=none (QEMU's qcow2 through the kernel nbd driver), scheduler $sc, qemu-nbd on vCPU $SRV_CPU" ;;
  mode | loop-bpfk)
    m=$1; t=qcow2; f=$img
    [ "$1" = loop-bpfk ] && { m=bpf-kernel; t=loop; f=$raw; }
    extra=$(no_fallback "$m")
    if ! d=$(ublk-user add "$t" -f "$f" --mode "$m" $extra 2> "$W/add.err"); then
      record "$1" na "" "" "" "ublk-user add $t --mode $m $extra failed: $(clean "$(head -c 300 "$W/add.err")")"; return
    fi
    pid=$(jfield "$d" pid)
    mode=$(jfield "$d" mode)
    sc=$(set_sched "$d")
    if [ "$mode" != "$m" ]; then
      record "$1" na "$d" "$pid" "$mode" "asked for --mode $m, the server runs mode ${mode:-?}: not measured"
    else
      pin "$pid"
      record "$1" ok "$d" "$pid" "$mode" "ublk-user $t ($f), 1 queue, depth 128, O_DIRECT data, scheduler $sc, server on vCPU $SRV_CPU"
    fi ;;
  *) record "$1" na "" "" "" "not a contender on a qcow2 store" ;;
  esac
}
# stripe_setup CONTENDER: the contenders of a stripe store (STORE_DEV holds
# the two members).
stripe_setup() {
  set -- "$1" $STORE_DEV
  case $(kind "$1") in
  dm)
    m0=$2; m1=$3
    if [ ! -b "$m0" ]; then # files: dm needs block devices
      m0=$($LOSETUP --direct-io=on --show -f "$2" 2> "$W/add.err") && LOOPDEV="$LOOPDEV $m0" &&
        m1=$($LOSETUP --direct-io=on --show -f "$3" 2>> "$W/add.err") && LOOPDEV="$LOOPDEV $m1" || {
        record dm na "" "" "" "losetup --direct-io=on failed: $(clean "$(head -c 200 "$W/add.err")")"; return; }
      set_sched "$m0" > /dev/null; set_sched "$m1" > /dev/null
    fi
    sz=$(($(blockdev --getsz "$m0") / 128 * 128))
    DMNAME=ubench-stripe
    if ! dmsetup create "$DMNAME" --table "0 $((sz * 2)) striped 2 128 $m0 0 $m1 0" 2> "$W/add.err"; then
      record dm na "" "" "" "dmsetup create striped failed: $(clean "$(head -c 200 "$W/add.err")")"; DMNAME=; return
    fi
    d=$(readlink -f "/dev/mapper/$DMNAME")
    [ -b "$d" ] || d=/dev/$(basename "$(ls -d /sys/block/dm-* | tail -n 1)")
    sc=$(set_sched "$d")
    record dm ok "$d" "" dm "dm-stripe, 2 members ($m0 $m1), chunk 64 KiB${LOOPDEV:+ (loop devices, dio)}, scheduler $sc" ;;
  mode)
    extra=$(no_fallback "$1")
    if ! d=$(ublk-user add stripe -f "$2" -f "$3" --chunk 64K --mode "$1" $extra 2> "$W/add.err"); then
      record "$1" na "" "" "" "ublk-user add stripe --mode $1 $extra failed: $(clean "$(head -c 300 "$W/add.err")")"; return
    fi
    pid=$(jfield "$d" pid)
    mode=$(jfield "$d" mode)
    sc=$(set_sched "$d")
    if [ "$mode" != "$1" ]; then
      record "$1" na "$d" "$pid" "$mode" "asked for --mode $1, the server runs mode ${mode:-?}: not measured"
    else
      pin "$pid"
      record "$1" ok "$d" "$pid" "$mode" "ublk-user stripe, 2 members, chunk 64 KiB, 1 queue, depth 128, O_DIRECT backing, scheduler $sc, server on vCPU $SRV_CPU"
    fi ;;
  kublk | kublk-zc)
    if [ -z "$KUBLK" ] || [ ! -x "$KUBLK" ]; then
      record "$1" na "" "" "" "${BENCH_KUBLK_WHY:-no kublk binary}"; return
    fi
    extra=; [ "$1" = kublk-zc ] && extra=--auto_zc
    if ! "$KUBLK" add -t stripe -q 1 -d 128 --chunk_size 65536 $extra "$2" "$3" > "$W/add.out" 2> "$W/add.err"; then
      record "$1" na "" "" "" "kublk add -t stripe $extra failed: $(clean "$(cat "$W/add.out" "$W/add.err" | head -c 300)")"; return
    fi
    id=$(sed -n 's/.*dev id \([0-9]*\).*/\1/p' "$W/add.out" | head -n 1)
    pid=$("$KUBLK" list -n "$id" 2>/dev/null | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' | head -n 1)
    d=/dev/ublkb$id
    i=0; while [ ! -b "$d" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -z "$id" ] || [ ! -b "$d" ] || [ -z "$pid" ]; then
      record "$1" na "" "" "" "kublk add -t stripe gave no device or pid: $(clean "$(head -c 200 "$W/add.out")")"; return
    fi
    sc=$(set_sched "$d")
    pin "$pid"
    record "$1" ok "$d" "$pid" stripe "kublk add -t stripe -q 1 -d 128 --chunk_size 65536 $extra, scheduler $sc, server on vCPU $SRV_CPU" ;;
  *) record "$1" na "" "" "" "not a contender on a stripe store" ;;
  esac
}
setup() { # CONTENDER
  case $STORE in stripe-*) stripe_setup "$1"; return ;; qcow2-*) qcow2_setup "$1"; return ;; esac
  case $(kind "$1") in
  raw)
    sc=
    [ -b "$STORE_DEV" ] && sc=$(set_sched "$STORE_DEV")
    record raw ok "$STORE_DEV" "" raw "the store itself, O_DIRECT${sc:+, scheduler $sc}" ;;
  loop)
    if ! d=$($LOSETUP --direct-io=on --show -f "$STORE_DEV" 2> "$W/add.err"); then
      record loop na "" "" "" "losetup --direct-io=on failed: $(clean "$(head -c 200 "$W/add.err")")"; return
    fi
    LOOPDEV=$d
    sc=$(set_sched "$d")
    dio=$(cat "/sys/block/${d#/dev/}/loop/dio" 2>/dev/null)
    if [ "$dio" = 1 ]; then
      record loop ok "$d" "" dio "losetup --direct-io=on, dio=1, scheduler $sc"
    else
      record loop ok "$d" "" buffered "losetup --direct-io=on but the driver fell back to buffered I/O (dio=${dio:-?}), scheduler $sc"
    fi ;;
  mode)
    extra=$(no_fallback "$1")
    if ! d=$(ublk-user add loop --file "$STORE_DEV" --mode "$1" --queues "$NQ" $extra 2> "$W/add.err"); then
      record "$1" na "" "" "" "ublk-user add loop --mode $1 $extra failed: $(clean "$(head -c 300 "$W/add.err")")"; return
    fi
    pid=$(jfield "$d" pid)
    mode=$(jfield "$d" mode)
    sc=$(set_sched "$d")
    if [ "$mode" != "$1" ]; then
      record "$1" na "$d" "$pid" "$mode" "asked for --mode $1, the server runs mode ${mode:-?}: not measured"
    elif [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
      record "$1" na "$d" "$pid" "$mode" "no server pid in ublk-user list --json"
    else
      pin "$pid"
      record "$1" ok "$d" "$pid" "$mode" "ublk-user loop, $NQ queue(s), depth 128, O_DIRECT backing, scheduler $sc, $(srv_where)"
    fi ;;
  kublk | kublk-zc | kublk-batch)
    if [ -z "$KUBLK" ] || [ ! -x "$KUBLK" ]; then
      record "$1" na "" "" "" "${BENCH_KUBLK_WHY:-no kublk binary}"; return
    fi
    case $1 in
    kublk) extra= ;;
    kublk-zc) extra=--auto_zc ;;
    kublk-batch) extra="--auto_zc -b" ;;
    esac
    if ! "$KUBLK" add -t loop -q "$NQ" -d 128 $extra "$STORE_DEV" > "$W/add.out" 2> "$W/add.err"; then
      record "$1" na "" "" "" "kublk add -t loop -q $NQ -d 128 $extra failed: $(clean "$(cat "$W/add.out" "$W/add.err" | head -c 300)")"; return
    fi
    id=$(sed -n 's/.*dev id \([0-9]*\).*/\1/p' "$W/add.out" | head -n 1)
    pid=$("$KUBLK" list -n "$id" 2>/dev/null | sed -n 's/.*daemon pid \([0-9]*\).*/\1/p' | head -n 1)
    flags=$("$KUBLK" list -n "$id" 2>/dev/null | sed -n 's/.*flags \(0x[0-9a-f]*\).*/\1/p' | head -n 1)
    d=/dev/ublkb$id
    i=0; while [ ! -b "$d" ] && [ $i -lt 50 ]; do sleep 0.1; i=$((i + 1)); done
    if [ -z "$id" ] || [ ! -b "$d" ]; then
      record "$1" na "" "" "" "kublk add gave no device: $(clean "$(head -c 200 "$W/add.out")")"; return
    fi
    sc=$(set_sched "$d")
    if [ -z "$pid" ] || [ ! -r "/proc/$pid/stat" ]; then
      record "$1" na "$d" "" "" "no daemon pid in kublk list -n $id"; return
    fi
    pin "$pid"
    record "$1" ok "$d" "$pid" "${flags:-?}" "kublk add -t loop -q $NQ -d 128 $extra, scheduler $sc, $(srv_where)" ;;
  *) record "$1" na "" "" "" "unknown contender" ;;
  esac
}

# --- counters around a run (outside the CPU-sampled window) -------------------
# counters DEV PID -> "rd_ios wr_ios sectors ctxsw_vol ctxsw_invol"
counters() {
  st=/sys/block/$(basename "$(readlink -f "$1")")/stat
  [ -r "$st" ] || st=/dev/null
  awk -v st="$st" '
    FILENAME == st { r = $1; w = $5; s = $3 + $7 }
    FILENAME != st && /^voluntary_ctxt_switches/ { v += $2 }
    FILENAME != st && /^nonvoluntary_ctxt_switches/ { nv += $2 }
    END { printf "%d %d %d %d %d\n", r, w, s, v, nv }
  ' "$st" ${2:+/proc/$2/task/*/status} 2>/dev/null
}

# --- the runs ----------------------------------------------------------------
total=$(grep -c . "$PLAN")
echo "idx,store,rep,contender,workload,rc,pre_busy,pre_total,pre_srv,pre_up,post_busy,post_total,post_srv,post_up,c0_rd,c0_wr,c0_sect,c0_vol,c0_invol,c1_rd,c1_wr,c1_sect,c1_vol,c1_invol" > "$OUT/runs.csv"
: > "$W/iops.txt"
t0=$(date +%s)
n=0
STORE=
STORE_OK=0
while read -r idx store rep cont job rw bs qd wl cond <&3; do
  n=$((n + 1))
  if [ "$store" != "$STORE" ]; then
    [ -n "$STORE" ] && store_down
    STORE=$store
    NQ=1; [ "$store" = nullb-2q ] && NQ=2
    if store_up "$store"; then
      STORE_OK=1
      echo "bench: store $store: $(grep "^$store|" "$OUT/stores.txt" | cut -d'|' -f4)"
      for c in $(awk -v s="$store" '$2 == s {print $4}' "$PLAN" | awk '!seen[$0]++'); do setup "$c"; done
    else
      STORE_OK=0
      echo "bench: store $store n/a: $(grep "^$store|" "$OUT/stores.txt" | cut -d'|' -f4)"
    fi
  fi
  label="[$n/$total] $store $cont $rw $bs qd$qd rep $rep"
  if [ "$STORE_OK" != 1 ]; then
    echo "$idx,$store,$rep,$cont,$wl,na" >> "$OUT/runs.csv"; continue
  fi
  if [ "$cond" = agree ]; then
    # Run only when the earlier repetitions disagree by more than AGREE %.
    if awk -v k="$store $cont $wl" -v p="$AGREE" '
         $1 " " $2 " " $3 == k { v = $5 + 0; if (n == 0 || v < lo) lo = v; if (n == 0 || v > hi) hi = v; n++ }
         END { exit !(n >= 2 && lo > 0 && (hi - lo) / lo * 100 <= p) }' "$W/iops.txt"; then
      echo "$idx,$store,$rep,$cont,$wl,skip" >> "$OUT/runs.csv"
      echo "$label: skipped (earlier repetitions agree within $AGREE %)"
      continue
    fi
  fi
  line=$(grep "^$store|$cont|" "$OUT/contenders.txt" | head -n 1)
  status=$(echo "$line" | cut -d'|' -f3)
  if [ "$status" != ok ]; then
    echo "$idx,$store,$rep,$cont,$wl,na" >> "$OUT/runs.csv"
    echo "$label: n/a"
    continue
  fi
  DEV=$(echo "$line" | cut -d'|' -f4)
  SRV_PID=$(echo "$line" | cut -d'|' -f5)
  # the alloc job: ALLOC_MB of fresh clusters per repetition
  ALLOC_SIZE=${ALLOC_MB}M
  ALLOC_OFF=$(((rep - 1) * ALLOC_MB))M
  export DEV RW="$rw" BS="$bs" QD="$qd" RUNTIME RAMP FIO_CPU SRV_PID ALLOC_SIZE ALLOC_OFF SAMPLE="sh $HERE/cpu-sample.sh"
  if [ "$cond" = profile ]; then
    # One extra run under `perf record` (every CPU, the cpu-clock event),
    # not measured: its report is the profile of the cell.
    mkdir -p "$OUT/perf"
    if [ -z "${BENCH_PERF:-}" ] || [ ! -x "$BENCH_PERF" ]; then
      echo "${BENCH_PERF_WHY:-no perf for the guest}" > "$OUT/perf/$idx.txt"
      echo "$idx,$store,$rep,$cont,$wl,prof-na" >> "$OUT/runs.csv"
      echo "$label: profile n/a"
      continue
    fi
    echo 0 > /proc/sys/kernel/kptr_restrict 2>/dev/null
    echo -1 > /proc/sys/kernel/perf_event_paranoid 2>/dev/null
    "$BENCH_PERF" record -a -e cpu-clock -F 999 -o "$W/perf.data" -- \
      fio --output-format=json --output="$W/out.json" "$HERE/fio/$job.fio" > "$W/perf.log" 2>&1 < /dev/null
    rc=$?
    if [ "$rc" = 0 ]; then
      "$BENCH_PERF" report -i "$W/perf.data" --stdio --no-children --sort comm,dso,sym \
        --percent-limit 0.3 > "$OUT/perf/$idx.txt" 2>> "$W/perf.log" || rc=98
    fi
    [ "$rc" = 0 ] || { echo "perf record/report failed (exit $rc): $(grep -v '^$' "$W/perf.log" | tail -n 2 | tr '\n' ' ')" > "$OUT/perf/$idx.txt"; }
    rm -f "$W/perf.data"
    echo "$idx,$store,$rep,$cont,$wl,prof" >> "$OUT/runs.csv"
    echo "$label: profiled (perf exit $rc)"
    continue
  fi
  rm -f "$W/pre" "$W/post" "$W"/pre.* "$W"/post.* "$W/out.json" "$W"/*_iops*.log
  case $(kind "$cont") in mode | loop-bpfk) ublk-user list --json > "$OUT/list/$idx-pre.json" 2>/dev/null ;; esac
  c0=$(counters "$DEV" "$SRV_PID")
  fio --output-format=json --output="$W/out.json" "$HERE/fio/$job.fio" > "$W/fio.log" 2>&1 < /dev/null
  rc=$?
  c1=$(counters "$DEV" "$SRV_PID")
  case $(kind "$cont") in mode | loop-bpfk) ublk-user list --json > "$OUT/list/$idx-post.json" 2>/dev/null ;; esac
  if [ "$rc" = 0 ] && { [ ! -s "$W/pre" ] || [ ! -s "$W/post" ]; }; then rc=99; fi
  cp "$W/out.json" "$OUT/fio/$idx.json" 2>/dev/null
  for f in pre.cpus post.cpus pre.threads post.threads; do
    [ -e "$W/$f" ] && cp "$W/$f" "$OUT/cpu/$idx-$f"
  done
  # The RFC job's IOPS log (steady-state check on the host).
  for f in "$W"/*_iops*.log; do [ -e "$f" ] && cp "$f" "$OUT/fio/$idx-iops.log"; break; done
  read -r pb pt ps pu < "$W/pre" 2>/dev/null || { pb=; pt=; ps=; pu=; }
  read -r qb qt qs qu < "$W/post" 2>/dev/null || { qb=; qt=; qs=; qu=; }
  echo "$idx,$store,$rep,$cont,$wl,$rc,$pb,$pt,$ps,$pu,$qb,$qt,$qs,$qu,$(echo $c0 | tr ' ' ','),$(echo $c1 | tr ' ' ',')" >> "$OUT/runs.csv"
  el=$(($(date +%s) - t0))
  if [ "$rc" != 0 ]; then
    echo "$label: FAILED (fio exit $rc): $(grep -v '^$' "$W/fio.log" | tail -n 1)"
    continue
  fi
  iops=$(awk '/"iops" :/ { gsub(/[^0-9.]/, "", $3); s += $3 } END { printf "%.1f", s }' "$W/out.json")
  echo "$store $cont $wl $rep $iops" >> "$W/iops.txt"
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
[ -n "$STORE" ] && store_down
echo "end=$(date -u +%Y-%m-%dT%H:%M:%SZ)" >> "$OUT/env.txt"
echo ok > "$OUT/done"
echo "bench: $total runs in $(($(date +%s) - t0)) s"
