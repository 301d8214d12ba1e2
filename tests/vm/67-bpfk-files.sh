#!/bin/sh
# timeout: 240
# cost: 20
# The file table of a --mode bpf-kernel device (UBLK_U_CMD_REG_BPF_FILES)
# takes what the loop driver takes, and the driver picks the kiocb flags:
# * a pipe, a socket, a directory, a character device (/dev/null): EINVAL;
# * a cycle back into the device: its own disk /dev/ublkbN (O_RDWR) and a
#   regular file of an ext4 mounted on /dev/ublkbN: ELOOP;
# * a regular file (the device's own backing file again): accepted (the
#   control); after every refusal the device still serves fio verify (a
#   refused REG leaves the table as it was);
# * F_SETFL O_APPEND | O_DIRECT on the table's file after REG changes
#   nothing: a 4 KiB O_DIRECT write at sector 64 of the device lands at byte
#   32768 of the backing file, which does not grow;
# * ADD_DEV with UBLK_F_ZONED | UBLK_F_BPF | UBLK_F_BPF_KERNEL_IO (and
#   UBLK_F_USER_COPY, which mainline asks of zoned devices): EINVAL, and no
#   device is left behind; the control, the same flags without
#   UBLK_F_BPF_KERNEL_IO, is accepted (the kernel has CONFIG_BLK_DEV_ZONED,
#   so only the series' own rule can refuse the first).
# A table the kernel wrongly accepts (a cycle, an O_APPEND file) is replaced
# by the backing file at once by the fixture (--restore), before any I/O.
# Skips when the kernel lacks UBLK_F_BPF_KERNEL_IO.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio fixture control bpf_kernel_io
CMP=$(tool cmp)
B=$T/b.img
MNT=$T/mnt
trap 'umount "$MNT" 2> /dev/null; ublk-user del --all > /dev/null 2>&1' EXIT
fails=0
unexpected() { log "UNEXPECTED: $*"; fails=$((fails + 1)); }
# errno_of OUTPUT: the errno name the fixture printed ("errno=N (NAME)")
errno_of() { echo "$1" | sed -n 's/.* errno=[0-9-]* (\([A-Z0-9?]*\)).*/\1/p'; }
# expect CASE ERRNO [ARGS...]: reg-files CASE on the device gives ERRNO
expect() {
  _c=$1; _want=$2; shift 2
  _out=$(ublk-bpf-fixture reg-files --dev "$id" --case "$_c" --restore "$B" "$@" 2>&1)
  if [ "$(errno_of "$_out")" = "$_want" ]; then log "ok: $_out"; else unexpected "want $_want: $_out"; fi
}

truncate -s 32M "$B"
d=$(add_in_mode "$B" bpf-kernel) || exit 1
id=$(devid "$d")

log "== refusals"
expect pipe EINVAL
expect socket EINVAL
expect dir EINVAL --path "$T"
expect chardev EINVAL --path /dev/null
expect self ELOOP --path "$d"
# O_APPEND at REG: either refused or harmless (the driver never appends);
# informational
out=$(ublk-bpf-fixture reg-files --dev "$id" --case append --path "$B" --restore "$B" 2>&1)
log "note: a file opened O_APPEND: $out"
expect file OK --path "$B"
quick_verify "$d" 8m
log "ok: the device serves verified I/O after the refusals"

log "== F_SETFL O_APPEND after REG"
size0=$(stat -c %s "$B")
out=$(ublk-bpf-fixture append-after-reg --dev "$id" --file "$B" 2>&1)
log "$out"
echo "$out" | grep -q 'errno=0 (OK) setfl=OK append=1 direct=1' \
  || die "append-after-reg did not register the file and set O_APPEND: $out"
dd if=/dev/urandom of="$T/pat" bs=4096 count=1 2> /dev/null
dd if="$T/pat" of="$d" bs=4096 seek=8 count=1 oflag=direct 2> "$T/dd.err" || { cat "$T/dd.err"; die "dd write at sector 64"; }
size1=$(stat -c %s "$B")
[ "$size1" = "$size0" ] || unexpected "the backing file grew from $size0 to $size1 bytes: the write was appended"
dd if="$B" of="$T/got" bs=4096 skip=8 count=1 2> /dev/null
if $CMP -s "$T/pat" "$T/got"; then
  log "ok: the backing file holds the write at byte 32768, size $size1"
else
  unexpected "the backing file does not hold the write at byte 32768"
fi
dd if="$d" of="$T/got" bs=4096 skip=8 count=1 iflag=direct 2> /dev/null || die "read back sector 64"
$CMP -s "$T/pat" "$T/got" || unexpected "sector 64 does not read back what was written"
# a table without O_APPEND again
expect file OK --path "$B"
[ "$(stat -c %s "$B")" = "$size0" ] || truncate -s "$size0" "$B"

log "== a file of a filesystem on the device itself"
mkfs.ext4 -q -F "$d" || die "mkfs.ext4 on $d"
mkdir -p "$MNT"
mount -t ext4 -o noatime "$d" "$MNT" || die "mount $d"
dd if=/dev/zero of="$MNT/f" bs=1M count=1 2> /dev/null || die "create a file on $d"
sync
expect on-self ELOOP --path "$MNT/f"
# (a table the kernel took and the fixture replaced lets go of the file
# after an RCU grace period: umount may need a moment)
for _ in $(seq 20); do umount "$MNT" 2> /dev/null && break; sleep 0.2; done
grep -q " $MNT " /proc/mounts && die "umount $MNT"
quick_verify "$d" 8m
log "ok: the device serves verified I/O after the on-self case"
ublk-user del --all || die "del"
wait_gone "$id" 10 || die "device $id still there after del"

log "== ADD_DEV UBLK_F_ZONED | UBLK_F_BPF (control: accepted)"
n0=$(nchar)
out=$(ublk-bpf-fixture add-zoned-kernel-io --control 2>&1)
log "$out"
[ "$(errno_of "$out")" = OK ] || unexpected "zoned device in ring mode refused (no CONFIG_BLK_DEV_ZONED?): $out"
case $out in *del=OK*) ;; *) unexpected "the control device was not deleted: $out" ;; esac
log "== ADD_DEV UBLK_F_ZONED | UBLK_F_BPF | UBLK_F_BPF_KERNEL_IO"
out=$(ublk-bpf-fixture add-zoned-kernel-io 2>&1)
log "$out"
[ "$(errno_of "$out")" = EINVAL ] || unexpected "zoned kernel-mode device not refused with EINVAL: $out"
n1=$(nchar)
[ "$n1" = "$n0" ] || { ls -l /dev/ublkc* >&2; unexpected "$n0 char device(s) before ADD_DEV, $n1 after"; }

rm -f "$B" "$T/pat" "$T/got"
kmemleak_scan
[ "$fails" = 0 ] || die "$fails file-table case(s) not as documented"
log "PASS"
