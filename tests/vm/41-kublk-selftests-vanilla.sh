#!/bin/sh
# The same kublk selftests on unpatched 7.2, then the verdict: every test
# that passes on vanilla must pass on our kernel (results of test 40).
# Tests failing on both are reported: they fail because of this guest (TCG
# timing, missing tools), not because of the series.
# kernel: vanilla
# timeout: 3000
. tests/vm/lib.sh
. tests/vm/lib-kublk.sh
# Plain 7.2.12 lacks patch 0001: in about 1 run in 10 test_generic_17 leaves
# the killed `kublk recover` in D state in io_wq_put_and_exit() while its
# io-wq worker sleeps in ublk_wait_dev_ready_and_lock(), and the device can
# no longer be deleted (42-kublk-recovery-exit checks the fix on ours).
KUBLK_WEDGING="test_generic_17.sh"
KUBLK_WEDGING_WHY="plain 7.2 lacks patch 0001; see 42-kublk-recovery-exit"
ours=target/selftests/results-ublk.txt
[ -f "$ours" ] || die "no results from our kernel ($ours): run 40-kublk-selftests first"
[ "$ours" -nt target/selftests/ublk/kublk ] || die "$ours predates the current kublk build: run 40-kublk-selftests first"
run_kublk_selftests target/selftests/results-vanilla.txt
regressions="" both=""
while read -r t v; do
  o=$(sed -n "s/^$t //p" "$ours")
  [ "$v" = pass ] && [ "$o" != pass ] && regressions="$regressions $t($o)"
  [ "$v" = fail ] && [ "$o" = fail ] && both="$both $t"
done < target/selftests/results-vanilla.txt
[ -n "$both" ] && log "failing on vanilla 7.2 too (environment, not the series):$both"
[ -z "$regressions" ] || die "pass on vanilla 7.2 but not on our kernel:$regressions"
log "no regression: every selftest passing on vanilla 7.2 passes on our kernel"
