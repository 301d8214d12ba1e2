#!/bin/sh
# cpu-sample.sh pre|post: fio's exec_prerun/exec_postrun hook (see fio/*.fio).
# Writes "GUEST_BUSY GUEST_TOTAL SERVER UPTIME" to $BENCH_WORK/$1: the
# guest's busy (user+nice+system+irq+softirq) and total (busy+idle+iowait)
# CPU time from /proc/stat and the ublk server's utime+stime from
# /proc/$SRV_PID/stat (the whole thread group: every queue thread, io-wq
# workers and threads that already exited), all in clock ticks (0 without a
# server), and /proc/uptime in seconds (the window's length, for "% of one
# CPU" as top shows it).
p=/proc/${SRV_PID:-0}/stat
[ -r "$p" ] || p=/dev/null
awk -v srvfile="$p" '
  FILENAME == "/proc/stat" && $1 == "cpu" { b = $2 + $3 + $4 + $7 + $8; t = b + $5 + $6 }
  FILENAME == srvfile { sub(/^.*\) /, ""); s = $12 + $13 }
  FILENAME == "/proc/uptime" { u = $1 }
  END { printf "%d %d %d %s\n", b, t, s + 0, u }
' /proc/stat "$p" /proc/uptime > "${BENCH_WORK:-/tmp}/$1"
