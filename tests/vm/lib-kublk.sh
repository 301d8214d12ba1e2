# Run the driver's kublk selftests and record one "test verdict" line per
# test in $1 (verdicts: pass, skip, fail). Sourced by tests 40 and 41.
# Stress tests are long under TCG: set UBLK_SELFTEST_STRESS=1 to include them.
run_kublk_selftests() {
  results=$1
  dir=target/selftests/ublk
  [ -x "$dir/kublk" ] || die "kublk is not built ($dir/kublk); cargo xtask test builds it"
  list=$(sed -n 's/^TEST_PROGS *[:+]= *\(test_[a-z]*_[0-9]*\.sh\).*/\1/p' "$dir/Makefile")
  [ -n "$list" ] || die "no TEST_PROGS in the selftests Makefile"
  : > "$results.tmp"
  for t in $list; do
    case $t in test_stress_*)
      if [ "${UBLK_SELFTEST_STRESS:-0}" != 1 ]; then echo "$t skip" >> "$results.tmp"; continue; fi ;;
    esac
    # Some upstream tests have wall-clock limits (e.g. generic_06: dd must
    # fail within 5 s) that emulation (TCG) can miss: a failure gets one
    # retry, the same on every kernel, and is reported as flaky if it passes.
    for attempt in 1 2; do
      (cd "$dir" && TMPDIR="$TEST_TMP" timeout -k 5 150 bash "./$t") > "$TEST_TMP/$t.log" 2>&1
      rc=$?
      "$dir/kublk" del -a > /dev/null 2>&1
      [ "$rc" = 0 ] || [ "$rc" = 4 ] && break
      [ "$attempt" = 1 ] && cp "$TEST_TMP/$t.log" "$TEST_TMP/$t.first.log"
    done
    case $rc in
      0) v=pass; [ "$attempt" = 2 ] && { echo "--- $t flaky on $(uname -r): failed, then passed on retry:"; tail -n 4 "$TEST_TMP/$t.first.log"; } ;;
      4) v=skip ;;
      *) v=fail; echo "--- $t failed twice on $(uname -r):"; tail -n 8 "$TEST_TMP/$t.log" ;;
    esac
    echo "$t $v" >> "$results.tmp"
  done
  mv "$results.tmp" "$results"
  log "kublk selftests on $(uname -r): $(grep -c ' pass$' "$results") passed," \
      "$(grep -c ' skip$' "$results") skipped, $(grep -c ' fail$' "$results") failed"
}
