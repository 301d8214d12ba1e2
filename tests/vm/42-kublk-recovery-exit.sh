#!/bin/sh
# A server that dies while END_USER_RECOVERY waits for its queues must not
# wedge the kernel (patch 0001). The driver's test_generic_17.sh kills the
# recovering server after one queue fetched part of its commands; on plain
# 7.2.12 about 1 run in 10 leaves the dying process in D state in
# io_wq_put_and_exit() and the device undeletable. Run it many times here:
# every run must end, and `kublk del` must succeed after it.
# Runs: 30 in CI: if a change brought the 1-in-10 wedge back, 30 runs see
# it with probability 1 - 0.9^30 = 96%; UBLK_SOAK=1 (cargo xtask test
# --soak): 100 runs, 99.997%. UBLK_RECOVERY_RUNS sets any other number.
# timeout: 900
# cost: 235
. tests/vm/lib.sh
. tests/vm/lib-kublk.sh
dir=target/selftests/ublk
[ -x "$dir/kublk" ] || die "kublk is not built ($dir/kublk); cargo xtask test builds it"
if [ "${UBLK_SOAK:-0}" = 1 ]; then runs=${UBLK_RECOVERY_RUNS:-100}; else runs=${UBLK_RECOVERY_RUNS:-30}; fi
i=0
while [ "$i" -lt "$runs" ]; do
  i=$((i + 1))
  # A wedged run often shows first as the test's own timeout (124): the
  # bounded delete after it tells a wedge (125) from a plain failure.
  kublk_run_once "$dir" test_generic_17.sh "$TEST_TMP/g17.log" 60
  rc=$?
  [ "$rc" = 0 ] && [ "$kublk_del_rc" != 0 ] && die "run $i of $runs: kublk del -a failed (exit $kublk_del_rc)"
  case $rc in
    0) ;;
    125)
      echo "run $i: the kernel is wedged; tasks in D state:"
      stuck_tasks
      tail -n 8 "$TEST_TMP/g17.log"
      die "run $i of $runs: test_generic_17 wedged the kernel" ;;
    *)
      stuck=$(stuck_tasks)
      [ -n "$stuck" ] && printf 'tasks in D state:\n%s\n' "$stuck"
      tail -n 8 "$TEST_TMP/g17.log"
      die "run $i of $runs: test_generic_17 failed (exit $rc${stuck:+; tasks stuck in D state, the kernel is wedged})" ;;
  esac
done
log "$runs runs of test_generic_17: every server exit completed, every device deleted"
