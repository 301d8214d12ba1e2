#!/bin/sh
# VM test runner, run inside the guest by `cargo xtask test`.
# Usage: tests/vm/run.sh RESULTS_FILE TEST...
# Each TEST is tests/vm/NN-name.sh: exit 0 pass, 77 skip, else fail. A test
# also fails when the kernel logs a warning, oops, or lockdep/KASAN report
# while it runs. Results go to RESULTS_FILE as "PASS|FAIL|SKIP name seconds".
results=$1
shift
: > "$results"
. tests/vm/lib-bounded.sh
wedged=""
bad_kernel='WARNING:|BUG:|Oops|general protection|KASAN|kmemleak|possible circular|possible recursive|INFO: task .* blocked|Kernel panic|UBSAN|refcount_t:'
for t in "$@"; do
  name=$(basename "$t" .sh)
  if [ -n "$wedged" ]; then
    echo "--- FAIL $name (not run: $wedged wedged the kernel)"
    echo "FAIL $name 0" >> "$results"
    continue
  fi
  limit=$(sed -n 's/^# timeout: *\([0-9]*\).*/\1/p' "$t" | head -n 1)
  [ -n "$limit" ] || limit=300
  # cargo xtask test scales the limits for soak variants and the debug kernel
  limit=$((limit * ${UBLK_TIMEOUT_SCALE:-1}))
  TEST_TMP=$(mktemp -d /tmp/vmtest.XXXXXX)
  export TEST_TMP
  before=$(dmesg | wc -l)
  echo "=== RUN   $name (timeout ${limit}s)"
  start=$(date +%s)
  # A test stuck in the kernel (D state) survives timeout's SIGKILL:
  # run_bounded gives up on it (125) instead of waiting with it forever.
  run_bounded "$limit" timeout -k 10 "$limit" sh "$t" < /dev/null
  rc=$?
  secs=$(( $(date +%s) - start ))
  new_kernel=$(dmesg | tail -n +"$((before + 1))" | grep -E "$bad_kernel")
  if [ "$rc" = 0 ] && [ -n "$new_kernel" ]; then
    echo "kernel reported a problem during $name:"
    dmesg | tail -n +"$((before + 1))" | head -n 60
    rc=1
  fi
  case $rc in
    0) verdict=PASS ;;
    77) verdict=SKIP ;;
    124|137) verdict=FAIL; echo "$name: timed out after ${limit}s" ;;
    125)
      verdict=FAIL wedged=$name
      echo "$name: still running ${limit}s + 20s after its time limit, unkillable; tasks in D state:"
      stuck_tasks
      echo "$name: the tests after it are not run" ;;
    *) verdict=FAIL ;;
  esac
  echo "--- $verdict $name (${secs}s)"
  echo "$verdict $name $secs" >> "$results"
  [ -z "$wedged" ] || continue
  # Leave nothing behind for the next test.
  if command -v ublk-user > /dev/null 2>&1; then
    run_bounded 60 ublk-user del --all > /dev/null 2>&1
    if [ $? = 125 ]; then
      wedged="cleanup after $name"
      echo "ublk-user del --all after $name is stuck; tasks in D state:"
      stuck_tasks
      continue
    fi
  fi
  grep -q " $TEST_TMP" /proc/mounts && umount -l $(grep " $TEST_TMP" /proc/mounts | cut -d' ' -f2)
  losetup -D 2> /dev/null
  rm -rf "$TEST_TMP"
done
