#!/bin/sh
# timeout: 300
# cost: 15
# UBLK_U_CMD_REG_BPF_PROG / UNREG refused cleanly with their errno:
# * on a device created without UBLK_F_BPF (copy mode): EOPNOTSUPP;
# * a second program on a --mode bpf device (the server attached one): EBUSY;
# * fds that are not a ublk program: socket filter -> EINVAL, map -> EINVAL,
#   closed fd -> EBADF, negative fd -> EBADF;
# * as another user (uid 65534): loading EPERM, opening /dev/ublk-control
#   EACCES, REG through a control fd opened as root EPERM;
# * UNREG with no program: ENOENT;
# * ADD_DEV with UBLK_F_BPF | UBLK_F_UNPRIVILEGED_DEV: as uid 65534 refused
#   (or without UBLK_F_BPF); as root the kernel drops UNPRIVILEGED_DEV;
# * after the server died (SIGKILL), once its char device is released:
#   REG -> ESRCH (no server whose rings a program could use), UNREG ->
#   ENOENT (the program went with the server); the device can still be
#   deleted and a new one works.
# Devices keep serving verified I/O after every refused command.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio fixture bpf
fails=0
# expect DEV CASE ERRNO_NAME...: run `reg`, check the errno name is one of the given
expect() {
  dev=$1; case=$2; shift 2
  out=$(ublk-bpf-fixture reg --dev "$dev" --case "$case" 2>&1)
  got=$(echo "$out" | sed -n 's/.*(\([A-Z?]*\)).*/\1/p')
  for w in "$@"; do
    [ "$got" = "$w" ] && { log "ok: $out"; return 0; }
  done
  log "UNEXPECTED (want $*): $out"
  fails=$((fails + 1))
}
truncate -s 16M "$T/a.img"
truncate -s 16M "$T/b.img"
dc=$(add_dev "$T/a.img" copy) || exit 1; idc=$(devid "$dc")
db=$(add_dev "$T/b.img" bpf --queues 1) || exit 1; idb=$(devid "$db")
expect "$idc" valid EOPNOTSUPP
expect "$idb" valid EBUSY
expect "$idb" socket_filter EINVAL EBUSY
expect "$idb" map_fd EINVAL EBUSY
expect "$idb" closed_fd EBADF
expect "$idb" negative_fd EBADF
expect "$idb" other_uid EPERM EACCES
expect "$idb" other_uid_open EACCES EPERM
expect "$idb" other_uid_load EPERM
# UNREG the server's program: now the fd checks run without EBUSY in the way
out=$(ublk-bpf-fixture unreg --dev "$idb"); log "$out"
echo "$out" | grep -q '(OK)' || { log "UNEXPECTED: first UNREG"; fails=$((fails + 1)); }
out=$(ublk-bpf-fixture unreg --dev "$idb"); log "$out"
echo "$out" | grep -q '(ENOENT)' || { log "UNEXPECTED: UNREG without a program"; fails=$((fails + 1)); }
expect "$idb" socket_filter EINVAL
expect "$idb" map_fd EINVAL
expect "$idb" closed_fd EBADF
expect "$idb" twice EBUSY
out=$(ublk-bpf-fixture unreg --dev "$idc"); log "copy device: $out"
echo "$out" | grep -q '(EOPNOTSUPP)' || { log "UNEXPECTED: UNREG on a copy device"; fails=$((fails + 1)); }
# as root the kernel drops UNPRIVILEGED_DEV (a privileged device): BPF may stay
out=$(ublk-bpf-fixture add-unpriv-bpf 2>&1); log "root: $out"
echo "$out" | grep -q 'both=1' && { log "UNEXPECTED: root got UBLK_F_BPF | UBLK_F_UNPRIVILEGED_DEV"; fails=$((fails + 1)); }
# as uid 65534 (with /dev/ublk-control opened up for the test): must be refused
# or come back without UBLK_F_BPF
mode=$(stat -c %a /dev/ublk-control)
chmod 666 /dev/ublk-control
out=$(ublk-bpf-fixture add-unpriv-bpf --as-uid 65534 2>&1)
chmod "$mode" /dev/ublk-control
log "uid 65534: $out"
echo "$out" | grep -q 'both=1' && { log "UNEXPECTED: an unprivileged device got UBLK_F_BPF"; fails=$((fails + 1)); }
udev=$(echo "$out" | sed -n 's/.* dev=\([0-9]*\).*/\1/p')
[ -n "$udev" ] && { timeout 30 ublk-user del --id "$udev" > /dev/null 2>&1 || log "note: del of the unprivileged device $udev failed"; }
# both devices still serve verified I/O (the bpf one now runs the trivial
# PASS program of the "twice" case: served by the server)
quick_verify "$dc" 4m
quick_verify "$db" 4m
ublk-user del --all || die "del"

# after the server died
db=$(add_dev "$T/b.img" bpf --queues 1) || exit 1; idb=$(devid "$db")
pid=$(field_of "$idb" pid)
kill -KILL "$pid"
# the char device can be opened again once the kernel has released the
# dead server's (its release work drops the program)
released=0
for _ in $(seq 100); do
  if (exec 3<> "/dev/ublkc$idb") 2> /dev/null; then released=1; break; fi
  sleep 0.1
done
[ "$released" = 1 ] || die "/dev/ublkc$idb still held 10 s after the server was killed"
expect "$idb" valid ESRCH
out=$(ublk-bpf-fixture unreg --dev "$idb" 2>&1)
log "UNREG after SIGKILL of the server: $out"
echo "$out" | grep -q '(ENOENT)' || { log "UNEXPECTED: UNREG after the server died"; fails=$((fails + 1)); }
timeout 60 ublk-user del --id "$idb" || die "del after the server died"
wait_gone "$idb" 10 || die "dead device still there"
db=$(add_dev "$T/b.img" bpf --queues 1) || exit 1
quick_verify "$db" 4m
ublk-user del --all || die "del"
rm -f "$T/a.img" "$T/b.img"
kmemleak_scan
[ "$fails" = 0 ] || die "$fails registration case(s) not refused as documented"
log "PASS"
