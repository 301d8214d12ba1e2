# Run the driver's kublk selftests and record one "test verdict" line per
# test in $1 (verdicts: pass, skip, fail, hang). Sourced by tests 40 and 41.
# Stress tests are long under TCG: set UBLK_SELFTEST_STRESS=1 to include them.

# KUBLK_WEDGING: tests to skip because they can wedge the kernel under test
# (set by 41 for plain 7.2; UBLK_SELFTEST_WEDGING=1 runs them anyway). A
# wedged task cannot be killed, so one such run would leave a stuck device
# behind for every test after it.
KUBLK_WEDGING=${KUBLK_WEDGING-}

# run_bounded SECS CMD...: run CMD in the background and return its exit
# status. timeout(1) alone is not enough: it waits for a child that is stuck
# in the kernel (D state) forever, even after SIGKILL. If CMD still exists
# SECS + 20 seconds later, return 125 and leave it behind.
run_bounded() {
  rb_limit=$(( ($1 + 20) * 5 ))
  shift
  "$@" &
  rb_pid=$!
  rb_n=0
  while [ "$rb_n" -lt "$rb_limit" ]; do
    rb_state=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "/proc/$rb_pid/status" 2> /dev/null)
    if [ -z "$rb_state" ] || [ "$rb_state" = Z ]; then
      wait "$rb_pid"
      return $?
    fi
    sleep 0.2
    rb_n=$((rb_n + 1))
  done
  return 125
}

# The tasks the kernel keeps in D state, with where they sleep.
stuck_tasks() {
  for d in /proc/[0-9]*; do
    st=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$d/status" 2> /dev/null)
    for tk in "$d"/task/*; do
      ts=$(sed -n 's/^State:[[:space:]]*\(.\).*/\1/p' "$tk/status" 2> /dev/null)
      [ "$ts" = D ] || [ "$st" = D ] || continue
      echo "  pid ${d#/proc/} task ${tk##*/} ($(cat "$tk/comm" 2> /dev/null)) state $ts in $(cat "$tk/wchan" 2> /dev/null)"
    done
  done
}

run_kublk_selftests() {
  results=$1
  dir=${KUBLK_DIR:-target/selftests/ublk}
  [ -x "$dir/kublk" ] || die "kublk is not built ($dir/kublk); cargo xtask test builds it"
  list=$(sed -n 's/^TEST_PROGS *[:+]= *\(test_[a-z]*_[0-9]*\.sh\).*/\1/p' "$dir/Makefile")
  [ -n "$list" ] || die "no TEST_PROGS in the selftests Makefile"
  : > "$results.tmp"
  wedged=""
  for t in $list; do
    if [ -n "$wedged" ]; then echo "$t notrun" >> "$results.tmp"; continue; fi
    case $t in test_stress_*)
      if [ "${UBLK_SELFTEST_STRESS:-0}" != 1 ]; then echo "$t skip" >> "$results.tmp"; continue; fi ;;
    esac
    case " $KUBLK_WEDGING " in *" $t "*)
      if [ "${UBLK_SELFTEST_WEDGING:-0}" != 1 ]; then
        log "$t skipped: it can wedge this kernel (${KUBLK_WEDGING_WHY:-see the test that set KUBLK_WEDGING})"
        echo "$t skip" >> "$results.tmp"; continue
      fi ;;
    esac
    # Some upstream tests have wall-clock limits (e.g. generic_06: dd must
    # fail within 5 s) that emulation (TCG) can miss: a failure gets one
    # retry, the same on every kernel, and is reported as flaky if it passes.
    for attempt in 1 2; do
      (cd "$dir" && export TMPDIR="$TEST_TMP" && run_bounded 150 timeout -k 5 150 bash "./$t") > "$TEST_TMP/$t.log" 2>&1
      rc=$?
      if [ "$rc" != 125 ]; then
        run_bounded 60 timeout -k 5 60 "$dir/kublk" del -a > /dev/null 2>&1
        [ $? = 125 ] && rc=125
      fi
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
  done
  mv "$results.tmp" "$results"
  log "kublk selftests on $(uname -r): $(grep -c ' pass$' "$results") passed," \
      "$(grep -c ' skip$' "$results") skipped, $(grep -c ' fail$' "$results") failed"
  [ -z "$wedged" ] || die "$wedged wedged the kernel (tasks stuck in D state, listed above); the tests after it were not run"
}
