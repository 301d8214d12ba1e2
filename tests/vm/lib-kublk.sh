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
    (cd "$dir" && TMPDIR="$TEST_TMP" timeout -k 5 150 bash "./$t") > "$TEST_TMP/$t.log" 2>&1
    case $? in
      0) v=pass ;;
      4) v=skip ;;
      *) v=fail; echo "--- $t failed on $(uname -r):"; tail -n 8 "$TEST_TMP/$t.log" ;;
    esac
    echo "$t $v" >> "$results.tmp"
    "$dir/kublk" del -a > /dev/null 2>&1
  done
  mv "$results.tmp" "$results"
  log "kublk selftests on $(uname -r): $(grep -c ' pass$' "$results") passed," \
      "$(grep -c ' skip$' "$results") skipped, $(grep -c ' fail$' "$results") failed"
}
