# Run the driver's kublk selftests and record one "test verdict" line per
# test in $1 (verdicts: pass, skip, fail, hang, notrun; wedges: skipped
# because it can wedge this kernel) and "test seconds" lines in $1.times.
# Sourced by test 40 and by `cargo xtask kublk-baseline`.
# KUBLK_TESTS: the tests to run (default: every TEST_PROGS of the Makefile).
# Stress tests are long under TCG: set UBLK_SELFTEST_STRESS=1 to include them.

# KUBLK_WEDGING: tests to skip because they can wedge the kernel under test
# (set for plain 7.2 by the baseline run; UBLK_SELFTEST_WEDGING=1 runs them
# anyway). A wedged task cannot be killed, so one such run would leave a
# stuck device behind for every test after it.
KUBLK_WEDGING=${KUBLK_WEDGING-}

. tests/vm/lib-bounded.sh

# kublk_run_once DIR TEST LOG SECS: run one selftest from DIR, then
# `kublk del -a`, both bounded. Returns the test's exit status, or 125 if
# either one wedged; the delete's own status is left in $kublk_del_rc.
kublk_run_once() {
  (cd "$1" && export TMPDIR="$TEST_TMP" && run_bounded "$4" timeout -k 5 "$4" bash "./$2") > "$3" 2>&1
  kr_rc=$?
  [ "$kr_rc" = 125 ] && return 125
  run_bounded 60 timeout -k 5 60 "$1/kublk" del -a > /dev/null 2>&1
  kublk_del_rc=$?
  [ "$kublk_del_rc" = 125 ] && return 125
  return "$kr_rc"
}

run_kublk_selftests() {
  results=$1
  dir=${KUBLK_DIR:-target/selftests/ublk}
  [ -x "$dir/kublk" ] || die "kublk is not built ($dir/kublk); cargo xtask test builds it"
  list=${KUBLK_TESTS-}
  [ -n "$list" ] || list=$(sed -n 's/^TEST_PROGS *[:+]= *\(test_[a-z]*_[0-9]*\.sh\).*/\1/p' "$dir/Makefile")
  [ -n "$list" ] || die "no TEST_PROGS in the selftests Makefile"
  : > "$results.tmp"
  : > "$results.times"
  wedged=""
  for t in $list; do
    if [ -n "$wedged" ]; then echo "$t notrun" >> "$results.tmp"; continue; fi
    case $t in test_stress_*)
      if [ "${UBLK_SELFTEST_STRESS:-0}" != 1 ]; then echo "$t skip" >> "$results.tmp"; continue; fi ;;
    esac
    case " $KUBLK_WEDGING " in *" $t "*)
      if [ "${UBLK_SELFTEST_WEDGING:-0}" != 1 ]; then
        log "$t skipped: it can wedge this kernel (${KUBLK_WEDGING_WHY:-see the test that set KUBLK_WEDGING})"
        echo "$t wedges" >> "$results.tmp"; continue
      fi ;;
    esac
    t_start=$(date +%s)
    # Some upstream tests have wall-clock limits (e.g. generic_06: dd must
    # fail within 5 s) that emulation (TCG) can miss: a failure gets one
    # retry, the same on every kernel, and is reported as flaky if it passes.
    for attempt in 1 2; do
      kublk_run_once "$dir" "$t" "$TEST_TMP/$t.log" 150
      rc=$?
      [ "$rc" = 0 ] || [ "$rc" = 4 ] || [ "$rc" = 125 ] && break
      [ "$attempt" = 1 ] && cp "$TEST_TMP/$t.log" "$TEST_TMP/$t.first.log"
    done
    case $rc in
      0) v=pass; [ "$attempt" = 2 ] && { echo "--- $t flaky on $(uname -r): failed, then passed on retry:"; tail -n 4 "$TEST_TMP/$t.first.log"; } ;;
      4) v=skip ;;
      125)
        v=hang; wedged=$t
        echo "--- $t wedged the kernel on $(uname -r): a task did not exit after SIGKILL; tasks in D state:"
        stuck_tasks
        tail -n 8 "$TEST_TMP/$t.log" ;;
      *)
        v=fail; echo "--- $t failed twice on $(uname -r):"; tail -n 8 "$TEST_TMP/$t.log"
        stuck=$(stuck_tasks)
        [ -z "$stuck" ] || printf 'tasks in D state after it:\n%s\n' "$stuck" ;;
    esac
    echo "$t $v" >> "$results.tmp"
    t_secs=$(( $(date +%s) - t_start ))
    echo "$t $t_secs" >> "$results.times"
    echo "--- kublk $t $v ${t_secs}s"
  done
  mv "$results.tmp" "$results"
  log "kublk selftests on $(uname -r): $(grep -c ' pass$' "$results") passed," \
      "$(grep -c ' skip$' "$results") skipped, $(grep -c ' fail$' "$results") failed"
  [ -z "$wedged" ] || die "$wedged wedged the kernel (tasks stuck in D state, listed above); the tests after it were not run"
}
