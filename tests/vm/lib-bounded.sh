# Bounded waits that survive a wedged kernel: `. tests/vm/lib-bounded.sh`
# (the test runner and the kublk selftest helpers use them).

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
