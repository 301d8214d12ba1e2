# Helpers for running the third-party suites (blktests, liburing's test/) in
# the guest: `. tests/vm/lib-suites.sh` after lib.sh. The host stages them,
# unmodified and built, in target/suites/ (xtask/src/suites.rs, from the
# snapshots in ../shared/third_party); they are copied to the guest's /tmp
# (tmpfs) before they run, so that their scratch files are not on 9p.
#
# Every result is one line appended to a results file:
#   SUITE TEST DEVICE STATUS SECONDS
# SUITE is blktests or liburing; TEST blktests' GROUP/NNN or liburing's
# NAME.t; DEVICE `-` for a test that takes no device, else the label of the
# device it ran on (loop, copy, zc, bpf, bpf-kernel); STATUS pass, fail,
# skip (blktests "not run", liburing exit 77) or timeout.
SUITES_SRC=${SUITES_SRC:-target/suites}
SUITES_DIR=${SUITES_DIR:-/tmp/suites}

suites_stage() {
  [ -d "$SUITES_SRC/blktests" ] && [ -d "$SUITES_SRC/liburing" ] \
    || die "no $SUITES_SRC/{blktests,liburing}: cargo xtask test (or suites) stages them"
  if [ ! -d "$SUITES_DIR" ]; then
    mkdir -p "$SUITES_DIR"
    cp -a "$SUITES_SRC/blktests" "$SUITES_SRC/liburing" "$SUITES_DIR/" || die "copy the suites to $SUITES_DIR"
  fi
  # blktests' check and common/rc are bash with GNU tools; the guest has
  # them under /usr/bin (xtask/src/vm.rs), busybox's only as a fallback.
  command -v bash > /dev/null || die "no bash in the guest"
  # Two programs blktests expects from a full system, for the suites only:
  # - modprobe: the guest has no module tree (ours builds its drivers in;
  #   the distro kernel's are insmod'ed at boot), so modules stay as
  #   booted: "loading" one that is there succeeds, anything else fails
  #   (quietly with -q), as modprobe of a missing module would.
  # - udevadm settle: udev's waits for the uevents in flight; here the
  #   nodes come from devtmpfs, so settle waits (10 s at most) until every
  #   ublk char device has its block node (the daemon started it) and the
  #   list of block devices holds still for 0.2 s: miniublk's `add`
  #   returns before its daemon started the device, and blktests opens
  #   /dev/ublkbN right after `udevadm settle`.
  # liburing's socket tests talk over 127.0.0.1; the guest brings up no
  # interface at all.
  ip link set lo up 2> /dev/null || ifconfig lo 127.0.0.1 up \
    || die "cannot bring up the loopback interface"
  mkdir -p "$SUITES_DIR/bin"
  cat > "$SUITES_DIR/bin/modprobe" << 'EOF'
#!/bin/sh
quiet=0 remove=0
for a in "$@"; do
  case $a in
    -q) quiet=1 ;; -r) remove=1 ;; -rq|-qr) quiet=1 remove=1 ;;
    -*) ;;
    *) m=$(echo "$a" | tr - _); break ;;
  esac
done
[ -n "${m:-}" ] || exit 1
if [ "$remove" = 0 ] && [ -d "/sys/module/$m" ]; then exit 0; fi
[ "$quiet" = 1 ] || echo "modprobe: $m: the xtask guest has no module tree (modules stay as booted)" >&2
exit 1
EOF
  cat > "$SUITES_DIR/bin/udevadm" << 'EOF'
#!/bin/sh
case "$1" in
  settle)
    i=0
    while [ $i -lt 50 ]; do
      missing=0
      for c in /sys/class/ublk-char/ublkc*; do
        [ -e "$c" ] || continue
        n=${c##*ublkc}
        [ -b "/dev/ublkb$n" ] || missing=1
      done
      a=$(ls /sys/class/block); sleep 0.2; b=$(ls /sys/class/block)
      [ $missing = 0 ] && [ "$a" = "$b" ] && exit 0
      i=$((i + 1))
    done
    exit 0 ;;
  trigger) exit 0 ;;
esac
echo "udevadm: only 'settle' is available in the xtask guest" >&2
exit 1
EOF
  chmod +x "$SUITES_DIR/bin/modprobe" "$SUITES_DIR/bin/udevadm"
  export PATH="$SUITES_DIR/bin:$PATH"
}

# blktests_run RESULTS DEVLABEL TEST_DEV|- ARGS...: ./check ARGS with
# TEST_DEVS=(TEST_DEV) (none for `-`), one results line per test run.
# FIO runtimes are capped by TIMEOUT (blktests' own knob; 30 s if unset).
blktests_run() {
  _res=$1 _label=$2 _dev=$3
  shift 3
  _out=$SUITES_DIR/blktests-results/$_label
  rm -rf "$_out"
  mkdir -p "$_out"
  if [ "$_dev" = - ]; then
    echo "TEST_DEVS=()" > "$SUITES_DIR/blktests/config"
  else
    echo "TEST_DEVS=($_dev)" > "$SUITES_DIR/blktests/config"
  fi
  echo "TIMEOUT=${BLKTESTS_TIMEOUT:-30}" >> "$SUITES_DIR/blktests/config"
  log "blktests ./check -o $_out $* (TEST_DEVS: $_dev, TIMEOUT ${BLKTESTS_TIMEOUT:-30})"
  (cd "$SUITES_DIR/blktests" && bash ./check -o "$_out" "$@" < /dev/null 2>&1) | tee "$_out.log"
  # results/<nodev|DEV>/<group>/<NNN>: "key<TAB>value" lines, status and
  # the runtime among them.
  for f in $(find "$_out" -type f | grep -E '/[a-z]+/[0-9]{3}$' | sort); do
    _t=$(echo "$f" | sed -E 's|.*/([a-z]+/[0-9]{3})$|\1|')
    _s=$(awk -F'\t' '$1 == "status" { print $2 }' "$f")
    _secs=$(awk -F'\t' '$1 == "runtime" { sub(/s$/, "", $2); printf "%d", $2 }' "$f")
    case $_s in
      pass) ;;
      fail) ;;
      "not run") _s=skip ;;
      *) _s=fail ;;
    esac
    _d=-
    case $f in */nodev/*) ;; *) _d=$_label ;; esac
    echo "blktests $_t $_d $_s ${_secs:-0}" >> "$_res"
    if [ "$_s" != pass ]; then
      _why=$(awk -F'\t' '$1 == "reason" { print $2 }' "$f")
      log "blktests $_t on $_d: $_s ${_why:+($_why)}"
      [ "$_s" = fail ] && for x in "$f.out.bad" "$f.full"; do
        [ -f "$x" ] && { echo "--- $x"; tail -n 30 "$x"; }
      done
    fi
  done
}

# liburing_run RESULTS DEVLABEL DEV|- TEST.t...: each test binary in turn, as
# liburing's runtests.sh runs it (./NAME.t [DEV], exit 0 pass, 77 skip),
# under `timeout` (LIBURING_TIMEOUT, 60 s as runtests.sh).
# _lu_once TEST.t: one run of it, on $_dev unless that is -, into its log.
_lu_once() {
  if [ "$_dev" = - ]; then
    (cd "$_wd" && timeout -k 5 "$_lim" "$SUITES_DIR/liburing/$1" > "$_wd/$1.log" 2>&1 < /dev/null)
  else
    (cd "$_wd" && timeout -k 5 "$_lim" "$SUITES_DIR/liburing/$1" "$_dev" > "$_wd/$1.log" 2>&1 < /dev/null)
  fi
}
liburing_run() {
  _res=$1 _label=$2 _dev=$3
  shift 3
  _lim=${LIBURING_TIMEOUT:-60}
  _d=-
  [ "$_dev" = - ] || _d=$_label
  _wd=$SUITES_DIR/liburing-work
  mkdir -p "$_wd"
  for t in "$@"; do
    _start=$(date +%s)
    _lu_once "$t"
    rc=$?
    if [ "$rc" = 77 ] && [ "$_dev" != - ]; then
      # A device test skips when it cannot open the device O_EXCL (EBUSY):
      # the block group's last test may still hold it for a moment. Say
      # why it skipped, and run it once more.
      echo "liburing $t $_d: skipped once, again in 2 s: $(tail -n 3 "$_wd/$t.log" | tr '\n' ' ')"
      sleep 2
      _lu_once "$t"
      rc=$?
    fi
    _secs=$(( $(date +%s) - _start ))
    case $rc in
      0) _s=pass ;;
      77) _s=skip ;;
      124|137) _s=timeout ;;
      *) _s=fail ;;
    esac
    echo "liburing $t $_d $_s $_secs" >> "$_res"
    echo "liburing $t $_d: $_s (${_secs}s)"
    if [ "$_s" = fail ] || [ "$_s" = timeout ]; then
      echo "--- $t exit $rc:"
      tail -n 20 "$_wd/$t.log"
    fi
    # Tests leave their scratch files in the working directory.
    find "$_wd" -mindepth 1 -not -name '*.log' -delete 2> /dev/null
  done
}

# ublk_user_dev MODE FILE: a ublk-user loop device over FILE in MODE, no
# fallback; prints its node.
ublk_user_dev() {
  ublk-user add loop --file "$2" --mode "$1" --no-fallback --id "${3:-9}" 2> "$TEST_TMP/add.err" \
    || die "ublk-user add loop --mode $1: $(cat "$TEST_TMP/add.err")"
}
