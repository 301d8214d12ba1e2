#!/bin/sh
# The ublk driver's own selftests (kublk) still pass on our kernel.
# Stress tests are long under TCG: set UBLK_SELFTEST_STRESS=1 to include them.
# timeout: 3000
. tests/vm/lib.sh
dir=target/selftests/ublk
[ -x "$dir/kublk" ] || die "kublk is not built ($dir/kublk); cargo xtask test builds it"
cd "$dir" || die "cannot cd $dir"
list=$(sed -n 's/^TEST_PROGS *[:+]= *\(test_[a-z]*_[0-9]*\.sh\).*/\1/p' Makefile)
[ -n "$list" ] || die "no TEST_PROGS in the selftests Makefile"
export TMPDIR="$TEST_TMP"
pass=0 skip=0 fail=0 failed="" skipped=""
for t in $list; do
  case $t in test_stress_*) [ "${UBLK_SELFTEST_STRESS:-0}" = 1 ] || { skip=$((skip + 1)); skipped="$skipped $t(stress:off)"; continue; } ;; esac
  timeout -k 5 150 bash "./$t" > "$TEST_TMP/$t.log" 2>&1
  rc=$?
  case $rc in
    0) pass=$((pass + 1)) ;;
    4) skip=$((skip + 1)); skipped="$skipped $t($(grep -i skip "$TEST_TMP/$t.log" | tail -n 1 | tr ' ' '_' | cut -c1-60))" ;;
    *) fail=$((fail + 1)); failed="$failed $t"; echo "--- $t failed (rc $rc):"; tail -n 15 "$TEST_TMP/$t.log" ;;
  esac
  # A failed test may leave devices behind.
  ./kublk del -a > /dev/null 2>&1
done
log "kublk selftests: $pass passed, $skip skipped, $fail failed"
[ -n "$skipped" ] && log "skipped:$skipped"
[ "$fail" = 0 ] || die "failed:$failed"
