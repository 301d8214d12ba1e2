#!/bin/sh
# 4 KiB randread / randwrite, iodepth 32, over one tmpfs file: kernel loop
# (dio) and ublk-user copy / zc / bpf / bpf-kernel, in one boot. Meant for
# QEMU's icount cost model (XTASK_QEMU_EXTRA="-icount shift=0,sleep=off"):
# IOPS there are instructions per I/O summed over all vCPUs, repeatable to
# ~1%. Per-request server counters (CQEs reaped, SQEs submitted,
# io_uring_enter calls) and the driver's counters come from list --json;
# server CPU from /proc/PID/stat. fio is pinned to vCPU 1, the server to 0.
# Every device runs with the I/O scheduler "none" (BENCH_SCHED to change):
# loop devices have none by default, single-queue ublk devices mq-deadline,
# which would add an insert and a kblockd run to every unplugged request
# and measure the scheduler, not the data path.
# CONTENDERS (default "loop copy zc bpf bpf-kernel") picks a subset, e.g.
# "loop copy zc" on a kernel without the series.
# Usage (guest): sh bench/icount-4k.sh OUT.csv [REPS] [RUNTIME_S]
out=${1:?usage: icount-4k.sh OUT.csv [REPS] [RUNTIME]}
reps=${2:-2}
rt=${3:-3}
T=/tmp/icb
mkdir -p $T
img=$T/b.img
truncate -s 256M $img
dd if=/dev/urandom of=$img bs=1M count=256 conv=notrunc 2> /dev/null
key() { v=$(sed -n "s/.*\"$2\":\([0-9]*\).*/\1/p" "$1"); echo "${v:-0}"; }
cpu_ticks() { awk '{print $14 + $15}' /proc/$1/stat 2> /dev/null || echo 0; }
sched=${BENCH_SCHED:-none}
set_sched() { echo "$sched" > "/sys/block/${1#/dev/}/queue/scheduler" 2> /dev/null; sed -n "s/.*\\[\\(.*\\)\\].*/\\1/p" "/sys/block/${1#/dev/}/queue/scheduler"; }
echo "contender,rw,rep,sched,iops,server_cqes_per_req,server_sqes_per_req,server_enters_per_req,kernel_completed_per_req,server_cpu_s_per_gib" > "$out"
run_fio() { # dev rw -> IOPS
  fio --name=b --filename="$1" --rw="$2" --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
    --size=256m --ramp_time=1 --runtime="$rt" --time_based --cpus_allowed=1 --minimal \
    > $T/fio.out 2> $T/fio.err || { cat $T/fio.err; return 1; }
  # terse v3: field 8 read IOPS, field 49 write IOPS
  awk -F';' -v rw="$2" '{ print (rw == "randread") ? $8 : $49 }' $T/fio.out
}
for rep in $(seq 1 "$reps"); do
  for c in ${CONTENDERS:-loop copy zc bpf bpf-kernel}; do
    for rw in randread randwrite; do
      if [ $c = loop ]; then
        d=$(losetup -f --show --direct-io=on $img) || exit 1
        sc=$(set_sched $d)
        iops=$(run_fio $d $rw) || exit 1
        losetup -d $d
        echo "$c,$rw,$rep,$sc,$iops,,,,," >> "$out"
        continue
      fi
      d=$(ublk-user add loop --file $img --mode $c --no-fallback) || exit 1
      sc=$(set_sched $d)
      ublk-user list --json > $T/l0
      pid=$(key $T/l0 pid)
      taskset -a -p 1 "$pid" > /dev/null 2>&1
      fio --name=c --filename=$d --rw=$rw --bs=4k --iodepth=32 --ioengine=libaio --direct=1 \
        --size=64m --io_size=4m --cpus_allowed=1 > /dev/null 2>&1
      ublk-user list --json > $T/l1
      t0=$(cpu_ticks "$pid")
      iops=$(run_fio $d $rw) || exit 1
      ublk-user list --json > $T/l2
      t1=$(cpu_ticks "$pid")
      # requests of the measured run (ramp included): fio counts only
      # after the ramp, the server counts everything, so use the server's
      # own request count: served + redirected + kernel_completed
      req() { echo $(( $(key $1 server_served) + $(key $1 server_redirected) + $(key $1 kernel_completed) )); }
      n=$(( $(req $T/l2) - $(req $T/l1) ))
      [ "$n" -gt 0 ] || n=1
      per() { awk -v a="$(key $T/l2 $1)" -v b="$(key $T/l1 $1)" -v n=$n 'BEGIN { printf "%.3f", (a - b) / n }'; }
      cpu=$(awk -v t="$((t1 - t0))" -v n=$n -v hz="$(getconf CLK_TCK 2> /dev/null || echo 100)" 'BEGIN { printf "%.3f", t / hz / (n * 4096 / 1073741824) }')
      echo "$c,$rw,$rep,$sc,$iops,$(per server_cqes),$(per server_sqes),$(per server_enters),$(per kernel_completed),$cpu" >> "$out"
      ublk-user del --all
    done
  done
done
cat "$out"
