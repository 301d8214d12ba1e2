#!/bin/sh
# cpu-sample.sh pre|post: fio's exec_prerun/exec_postrun hook (see fio/*.fio).
# Writes "GUEST_BUSY GUEST_TOTAL SERVER UPTIME" to $BENCH_WORK/$1: the
# guest's busy (user+nice+system+irq+softirq) and total (busy+idle+iowait)
# CPU time from /proc/stat and the ublk server's utime+stime from
# /proc/$SRV_PID/stat (the whole thread group: every queue thread, io-wq
# workers and threads that already exited), all in clock ticks (0 without a
# server), and /proc/uptime in seconds (the window's length, for "% of one
# CPU" as top shows it).
# Also (report v3, CPU attribution): $BENCH_WORK/$1.cpus, "cpuN BUSY TOTAL"
# a line from the same read of /proc/stat, and $BENCH_WORK/$1.threads,
# "PID TID TICKS COMM" for every task (utime+stime). The task scan is made
# before the window opens (pre) and after it closes (post), so its own cost
# stays outside the CPU window.
threads() {
  for d in /proc/[0-9]*; do
    for f in "$d"/task/[0-9]*/stat; do
      read -r l < "$f" 2>/dev/null && echo "${d#/proc/} $l"
    done
  done | awk '{ c = $0; sub(/^[0-9]+ [0-9]+ \(/, "", c); sub(/\) [A-Za-z] .*$/, "", c); gsub(/ /, "_", c)
    r = $0; sub(/^.*\) /, "", r); split(r, x, " ")
    printf "%d %d %d %s\n", $1, $2, x[12] + x[13], c }' > "${BENCH_WORK:-/tmp}/$1.threads"
}
[ "$1" = pre ] && threads pre
p=/proc/${SRV_PID:-0}/stat
[ -r "$p" ] || p=/dev/null
awk -v srvfile="$p" -v cpus="${BENCH_WORK:-/tmp}/$1.cpus" '
  FILENAME == "/proc/stat" && $1 == "cpu" { b = $2 + $3 + $4 + $7 + $8; t = b + $5 + $6 }
  FILENAME == "/proc/stat" && $1 ~ /^cpu[0-9]+$/ { cb = $2 + $3 + $4 + $7 + $8; printf "%s %d %d\n", $1, cb, cb + $5 + $6 > cpus }
  FILENAME == srvfile { sub(/^.*\) /, ""); s = $12 + $13 }
  FILENAME == "/proc/uptime" { u = $1 }
  END { printf "%d %d %d %s\n", b, t, s + 0, u }
' /proc/stat "$p" /proc/uptime > "${BENCH_WORK:-/tmp}/$1"
[ "$1" = post ] && threads post
exit 0
