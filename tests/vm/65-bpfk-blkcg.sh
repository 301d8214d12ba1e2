#!/bin/sh
# timeout: 180
# cost: 15
# Whose blk-cgroup pays for the backing I/O. --mode bpf-kernel issues it
# from the submitter's context with the request's cgroup (as the loop
# driver charges its backing I/O to the request's blkcg), so it is charged
# to the submitter's cgroup at the backing device. The device under test
# (top) is backed by a second ublk device (bottom, copy mode over a tmpfs
# file). dd runs in the cgroup ublk-t: N O_DIRECT 4 KiB writes and N reads
# on the top must appear in ublk-t's io.stat for the bottom device as
# >= N*4096 wbytes and rbytes. The controls, which are the documented
# contract of the other modes: the copy server and the ring mode (--mode
# bpf: the backing SQE runs on the server's ring, in the server task) issue
# it from the server, so ublk-t is charged nothing at the bottom. Data is
# read back through the top and compared. Measured: 4 s (TCG, 2 vCPUs).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires control bpf_kernel_io
CMP=$(tool cmp)
AWK=$(tool awk)
N=${N:-64}
CG=/sys/fs/cgroup
T_CG=$CG/ublk-t
trap 'ublk-user del --all > /dev/null 2>&1; rmdir "$T_CG" 2> /dev/null' EXIT
$AWK -v m="$CG" '$2 == m && $3 == "cgroup2" { f = 1 } END { exit !f }' /proc/mounts \
  || mount -t cgroup2 cgroup2 "$CG" || skip "cannot mount cgroup2 on $CG"
grep -qw io "$CG/cgroup.controllers" || skip "no io controller: kernel without CONFIG_BLK_CGROUP"
echo +io > "$CG/cgroup.subtree_control" || die "cannot enable the io controller"
mkdir -p "$T_CG"

# charged DEV: "RBYTES WBYTES" that io.stat of ublk-t shows for block device DEV
charged() {
  $AWK -v d="$(cat "/sys/block/$(basename "$1")/dev")" '
    $1 == d { for (i = 2; i <= NF; i++) { split($i, kv, "="); v[kv[1]] = kv[2] } f = 1 }
    END { print (f ? v["rbytes"] + 0 : 0), (f ? v["wbytes"] + 0 : 0) }' "$T_CG/io.stat"
}
# in_cg CMD...: run CMD as a process of ublk-t
in_cg() { sh -c 'echo $$ > "$0/cgroup.procs" && exec "$@"' "$T_CG" "$@"; }

truncate -s 64M "$T/bot.img"
bot=$(add_dev "$T/bot.img" copy) || exit 1
bid=$(devid "$bot")
dd if=/dev/urandom of="$T/src" bs=4096 count="$N" 2> /dev/null
want=$((N * 4096))
tops="copy $(bpf_modes)"
k=0
for mode in $tops; do
  top=$(add_in_mode "$bot" "$mode") || exit 1
  tid=$(devid "$top")
  base=$((k * N))
  k=$((k + 1))
  set -- $(charged "$bot")
  r0=$1 w0=$2
  in_cg dd if="$T/src" of="$top" bs=4096 count="$N" seek="$base" oflag=direct 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: dd oflag=direct in $T_CG"; }
  in_cg dd if="$top" of="$T/back" bs=4096 count="$N" skip="$base" iflag=direct 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: dd iflag=direct in $T_CG"; }
  $CMP "$T/src" "$T/back" || die "$mode: data read back through $top differs"
  set -- $(charged "$bot")
  r=$(($1 - r0)) w=$(($2 - w0))
  set -- $(charged "$top")
  log "$mode: ublk-t charged at the bottom: rbytes +$r wbytes +$w (at the top: rbytes $1 wbytes $2)"
  [ "$1" -gt 0 ] && [ "$2" -gt 0 ] || die "$mode: ublk-t has no I/O charged on $top itself: the accounting does not work"
  case $mode in
    bpf-kernel)
      [ "$r" -ge "$want" ] && [ "$w" -ge "$want" ] \
        || die "$mode: the backing I/O of $want bytes each way was charged to the submitter's cgroup as rbytes $r, wbytes $w: blk-cgroup not carried" ;;
    *)
      [ "$r" = 0 ] && [ "$w" = 0 ] \
        || die "$mode: the backing I/O is the server's (documented), yet the submitter's cgroup was charged rbytes $r, wbytes $w" ;;
  esac
  ublk-user del --id "$tid" || die "del $top"
  log "ok: $mode"
done
ublk-user del --id "$bid" || die "del $bot"
rm -f "$T/bot.img" "$T/src" "$T/back"
log "PASS: $tops"
