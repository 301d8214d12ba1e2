#!/bin/sh
# timeout: 240
# cost: 20
# --mode bpf-kernel over null_blk (/dev/nullb0, a block device with
# FMODE_NOWAIT): batched submissions (io_uring, 16 SQEs per submit and 16 reaped per wait, so
# blk-mq hands ublk whole plugs through ->queue_rqs()) while the backing
# queue is frozen and quiesced again and again (writing its nr_requests
# does both). The driver issues such requests at once, with IOCB_NOWAIT,
# on a plug of its own: the backing requests must not join the plug being
# flushed (where they would be issued under the ublk queue's dispatch
# protection) nor be lost; what the frozen queue refuses (-EAGAIN for
# REQ_NOWAIT) goes to the worker, and a preemption while the driver swaps
# its plug in must not find current->plug NULL with the outer plug's
# timestamp still marked for invalidation (PF_BLOCK_TS: an oops in
# finish_task_switch() that killed fio on the debug kernel, whose KASAN
# and TCG make that window wide). Checked: fio finishes with no error,
# both paths ran (0 < kernel_punted < kernel_completed), the backing
# device saw every I/O (its
# /sys/block/nullb0/stat grows by at least the count fio did), and on the
# debug kernel (cargo xtask test --debug-kernel) lockdep and KASAN stay
# quiet (the runner fails a test on any kernel report).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio bpf_kernel_io
[ -b /dev/nullb0 ] || skip "no /dev/nullb0 (CONFIG_BLK_DEV_NULL_BLK)"
NR=/sys/block/nullb0/queue/nr_requests
[ -w "$NR" ] || skip "no writable $NR"
trap 'ublk-user del --all > /dev/null 2>&1; [ -n "${qpid:-}" ] && kill "$qpid" 2> /dev/null' EXIT
# null_blk ios completed: sum of reads and writes in its stat file
nullb_ios() { awk '{ print $1 + $5 }' /sys/block/nullb0/stat; }

d=$(add_in_mode /dev/nullb0 bpf-kernel) || exit 1
orig=$(cat "$NR")
# the quiescer: freeze + quiesce the backing queue in a loop
(
  i=0
  while :; do
    if [ $((i % 2)) = 0 ]; then echo 16 > "$NR"; else echo "$orig" > "$NR"; fi
    i=$((i + 1))
  done
) 2> /dev/null &
qpid=$!
k0=$(jnum kernel_completed); p0=$(jnum kernel_punted); n0=$(nullb_ios)
klog=$(dmesg | wc -l)
fio --name=plug --filename="$d" --rw=randrw --bs=4k --direct=1 --ioengine=io_uring \
  --iodepth=32 --iodepth_batch_submit=16 --iodepth_batch_complete_min=16 \
  --size=64m --io_size=48m --numjobs=2 --group_reporting --output-format=json \
  --output="$T/plug.json" > /dev/null 2>&1 || {
  cat "$T/plug.json"
  # a fio job killed in the kernel shows up as "pid disappeared": say why
  dmesg | tail -n +"$((klog + 1))" | grep -E -m 20 -A 12 'Oops|BUG:|WARNING:|KASAN|possible circular|Out of memory|Killed process'
  die "fio with batched plugs failed"
}
kill "$qpid"; wait "$qpid" 2> /dev/null; qpid=""
echo "$orig" > "$NR"
ios=$(jq '.jobs[0].read.total_ios + .jobs[0].write.total_ios' "$T/plug.json")
errs=$(jq '.jobs[0].error' "$T/plug.json")
k1=$(jnum kernel_completed); p1=$(jnum kernel_punted); n1=$(nullb_ios)
log "fio ios $ios, error $errs; kernel_completed +$((k1 - k0)), kernel_punted +$((p1 - p0)), nullb0 ios +$((n1 - n0))"
[ "$errs" = 0 ] || die "fio reported error $errs"
[ "$ios" -ge 12288 ] || die "fio did $ios I/Os, want 12288 (48 MiB in 4 KiB)"
# a plug may merge a few adjacent random I/Os into one request
[ $((k1 - k0)) -ge $((ios * 99 / 100)) ] || die "kernel_completed grew by $((k1 - k0)) for $ios I/Os"
# both paths ran: at once (IOCB_NOWAIT), and the worker's retry of what a
# frozen backing queue refused with -EAGAIN
[ $((p1 - p0)) -lt $((k1 - k0)) ] || die "kernel_punted +$((p1 - p0)) of $((k1 - k0)): nothing was issued at once"
[ $((p1 - p0)) -gt 0 ] || die "kernel_punted +0: no -EAGAIN from the frozen backing queue reached the worker"
[ $((n1 - n0)) -ge $((k1 - k0)) ] || die "null_blk completed $((n1 - n0)) I/Os for $((k1 - k0)) requests: backing requests were lost"
ublk-user del --all || die "del"
log "PASS"
