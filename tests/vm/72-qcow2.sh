#!/bin/sh
# timeout: 1200
# cost: 480
# The qcow2 target (add qcow2 -f IMAGE): QEMU's disk format, the data in
# the kernel (the BPF program maps a request inside an allocated cluster to
# its host offset), the metadata in the server. After every scenario the
# image is checked by QEMU's own tools: `qemu-img check` (no corruption,
# no leak) and `qemu-img compare` against a raw dump of what the device
# showed (which fio verify checked against what was written).
# * every mode (copy, zc, bpf, bpf-kernel; in zc the server's slow path
#   moves the data through /dev/ublkcN with user copy): fio verify
#   (crc32c, 4K-1M, random, sequential, 70/30 mix) on a fresh sparse image
#   (allocation path), then on the same image re-added fully allocated
#   (hot path); clusters of 64K in every mode, 4K and 2M in bpf-kernel
#   (every size in every mode with --soak; the format code is checked for
#   every size on the host);
# * bpf-kernel on the fully allocated image: 10,000 4K random reads and
#   writes, and the server takes no request (server_served and
#   server_cqes +0, bpf_redirected +10,000, no READ/WRITE spans a cluster);
# * a backing file: reads fall through, writes copy on write, the base is
#   untouched; an image made by `qemu-img convert -c` reads back identical;
# * DISCARD and WRITE_ZEROES read back zeroes and keep the mapping valid;
# * SIGKILL of a bpf-kernel server with user recovery while fio allocates,
#   `recover`: fio finishes verified, qemu-img check finds no corruption;
#   then del and a new add of the image verify again;
# * bad input (truncated header, bad magic, a virtual size that does not
#   fit the L1 table, a missing backing file, a missing image): add exits 1
#   with one line,
#   no device is left, nothing in dmesg.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
command -v qemu-img > /dev/null || skip "no qemu-img (qemu-utils)"
trap 'ublk-user del --all > /dev/null 2>&1' EXIT

# the modes that serve qcow2 (every server mode; the library's user-copy
# mode, not a CLI mode, is refused for it)
qmodes() { for _m in $(modes); do case $_m in user-copy) ;; *) printf '%s ' "$_m" ;; esac; done; }

# add_qcow2 MODE IMAGE [ARGS...]: a qcow2 device in MODE (never another)
add_qcow2() {
  _m=$1; _i=$2; shift 2
  _x=""; case $_m in bpf | bpf-kernel) _x=--no-fallback ;; esac
  _d=$(ublk-user add qcow2 -f "$_i" --mode "$_m" $_x "$@" 2> "$T/add.err") \
    || { cat "$T/add.err" >&2; die "add qcow2 --mode $_m $_i $*"; }
  [ -b "$_d" ] || die "add printed $_d, not a block device"
  [ "$(field_of "$(devid "$_d")" mode)" = "$_m" ] || { ublk-user list --json >&2; die "$_d not in $_m mode"; }
  echo "$_d"
}


# dump DEV SIZE_MIB OUT: the device's content, read with O_DIRECT
dump() { dd if="$1" of="$3" bs=1M count="$2" iflag=direct 2> /dev/null || die "reading $1"; }

# qemu_ok IMAGE RAW: qemu-img check clean and compare identical
qemu_ok() {
  qemu-img check -q -f qcow2 "$1" > "$T/check.out" 2>&1 || { cat "$T/check.out"; die "qemu-img check $1"; }
  qemu-img compare -q -f qcow2 -F raw "$1" "$2" > "$T/cmp.out" 2>&1 || { cat "$T/cmp.out"; die "qemu-img compare $1 $2"; }
}

log "== bad input"
before=$(ndev)
dmesg_before=$(dmesg | wc -l)
img=$T/bad.qcow2
refuse() { # WHAT
  out=$(ublk-user add qcow2 -f "$img" 2>&1) && die "$1 accepted: $out"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "$1: not one line: $out"
  log "refused ($1): $out"
}
qemu-img create -q -f qcow2 "$img" 64M
head -c 40 "$img" > "$T/t" && mv "$T/t" "$img"; refuse "truncated header"
qemu-img create -q -f qcow2 "$img" 64M
printf 'XXXX' | dd of="$img" conv=notrunc 2> /dev/null; refuse "bad magic"
qemu-img create -q -f qcow2 "$img" 64M
# l1_size (offset 36) 0: the virtual size does not fit
printf '\000\000\000\000' | dd of="$img" bs=1 seek=36 conv=notrunc 2> /dev/null; refuse "size past the L1 table"
truncate -s 1M "$T/gone.raw"
qemu-img create -q -f qcow2 -b gone.raw -F raw "$img"
rm -f "$T/gone.raw"; refuse "missing backing file"
out=$(ublk-user add qcow2 -f "$T/nonexistent.qcow2" 2>&1) && die "a missing image accepted"
log "refused (no image): $out"
[ "$(ndev)" = "$before" ] || { ublk-user list; die "a refused add left a device"; }
new=$(dmesg | tail -n +"$((dmesg_before + 1))")
[ -z "$new" ] || { echo "$new"; die "refused adds wrote to dmesg"; }

cells=""
for mode in $(qmodes); do
  if [ -n "${UBLK_SOAK:-}" ] || [ "$mode" = bpf-kernel ]; then
    cells="$cells $mode:4k $mode:64k $mode:2M"
  else
    cells="$cells $mode:64k"
  fi
done
for cell in $cells; do
  mode=${cell%%:*}; cs=${cell#*:}
  img=$T/a.qcow2
  rm -f "$img"
  qemu-img create -q -f qcow2 -o cluster_size=$cs "$img" 32M
  d=$(add_qcow2 "$mode" "$img") || exit 1
  id=$(devid "$d")
  fio_verify "$d" rand --rw=randwrite --bsrange=4k-1m --size=32M
  fio_verify "$d" seq --rw=write --bs=1m --size=32M
  fio_verify "$d" mix --rw=randrw --rwmixwrite=70 --bsrange=4k-1m --size=32M
  case $mode in
    bpf*)
      span=$(field_of "$id" bpf_pass_span)
      [ "${span:-x}" = 0 ] || { ublk-user list --json; die "$mode: $span READ/WRITE spanned a cluster"; }
      [ "$(field_of "$id" bpf_redirected)" -gt 0 ] || die "$mode: nothing redirected"
      [ "$(field_of "$id" bpf_pass_unmapped)" -gt 0 ] || die "$mode: no first write went to the server"
      ;;
  esac
  dump "$d" 32 "$T/a.raw"
  ublk-user del --id "$id" || die "del"
  qemu_ok "$img" "$T/a.raw"
  # the same image again: fully allocated, the hot path
  d=$(add_qcow2 "$mode" "$img") || exit 1
  id=$(devid "$d")
  dump "$d" 32 "$T/b.raw"
  cmp "$T/a.raw" "$T/b.raw" || die "$mode $cs: the re-added image reads differently"
  fio_verify "$d" hot --rw=randrw --rwmixwrite=70 --bsrange=4k-1m --size=32M
  if [ "$mode" = bpf-kernel ] && [ "$cs" = 64k ]; then
    s0=$(field_of "$id" server_served); c0=$(field_of "$id" server_cqes); r0=$(field_of "$id" bpf_redirected)
    fio --name=hot4k --filename="$d" --rw=randrw --bs=4k --size=32M --io_size=40000k --direct=1 \
      --ioengine=libaio --iodepth=32 --output="$T/hot.out" > /dev/null 2>&1 || { cat "$T/hot.out"; die "fio 4K"; }
    s1=$(field_of "$id" server_served); c1=$(field_of "$id" server_cqes); r1=$(field_of "$id" bpf_redirected)
    [ "$s1" = "$s0" ] && [ "$c1" = "$c0" ] \
      || { ublk-user list --json; die "bpf-kernel hot path: the server served $((s1 - s0)) requests, $((c1 - c0)) CQEs"; }
    [ $((r1 - r0)) -ge 10000 ] || die "bpf-kernel hot path: only $((r1 - r0)) redirected"
    log "ok: bpf-kernel, fully allocated: $((r1 - r0)) requests redirected, server: +0 requests, +0 CQEs"
  fi
  dump "$d" 32 "$T/a.raw"
  ublk-user del --id "$id" || die "del"
  qemu_ok "$img" "$T/a.raw"
  log "ok: $mode, cluster $cs: fio verify sparse and allocated, qemu-img check + compare"
done

log "== backing file, compressed image, discard"
for mode in $(qmodes); do
  dd if=/dev/urandom of="$T/base.raw" bs=1M count=32 2> /dev/null
  cp "$T/base.raw" "$T/base.orig"
  rm -f "$T/top.qcow2"
  qemu-img create -q -f qcow2 -b base.raw -F raw "$T/top.qcow2"
  d=$(add_qcow2 "$mode" "$T/top.qcow2") || exit 1
  id=$(devid "$d")
  dump "$d" 32 "$T/b.raw"
  cmp "$T/b.raw" "$T/base.orig" || die "$mode: reads do not fall through to the backing file"
  fio_verify "$d" cow --rw=randwrite --bsrange=4k-256k --size=16M --offset=8M
  dump "$d" 32 "$T/b.raw"
  ublk-user del --id "$id" || die "del"
  cmp "$T/base.raw" "$T/base.orig" || die "$mode: the backing file changed"
  qemu_ok "$T/top.qcow2" "$T/b.raw"

  # compressed: written elsewhere, read back identical
  rm -f "$T/c.qcow2"
  qemu-img convert -q -c -f raw -O qcow2 "$T/base.orig" "$T/c.qcow2"
  d=$(add_qcow2 "$mode" "$T/c.qcow2") || exit 1
  id=$(devid "$d")
  dump "$d" 32 "$T/c.raw"
  cmp "$T/c.raw" "$T/base.orig" || die "$mode: the compressed image reads differently"
  fio_verify "$d" over --rw=randwrite --bsrange=4k-256k --size=8M
  dump "$d" 32 "$T/c.raw"
  ublk-user del --id "$id" || die "del"
  qemu_ok "$T/c.qcow2" "$T/c.raw"

  # discard / write zeroes on allocated clusters: zeroes, still mapped
  rm -f "$T/z.qcow2"
  qemu-img create -q -f qcow2 "$T/z.qcow2" 16M
  d=$(add_qcow2 "$mode" "$T/z.qcow2") || exit 1
  id=$(devid "$d")
  fio_verify "$d" fill --rw=write --bs=1m --size=16M
  blkdiscard -o 1M -l 2M "$d" || die "$mode: blkdiscard"
  blkdiscard -z -o 4M -l 1M "$d" || die "$mode: blkdiscard -z"
  dd if="$d" bs=1M skip=1 count=2 iflag=direct 2> /dev/null | cmp -n 2097152 - /dev/zero || die "$mode: discard does not read zeroes"
  dd if="$d" bs=1M skip=4 count=1 iflag=direct 2> /dev/null | cmp -n 1048576 - /dev/zero || die "$mode: write zeroes does not read zeroes"
  # writes after the discard still land (the mapping is valid)
  fio_verify "$d" after --rw=randwrite --bs=4k --size=2M --offset=1M
  dump "$d" 16 "$T/z.raw"
  ublk-user del --id "$id" || die "del"
  qemu_ok "$T/z.qcow2" "$T/z.raw"
  log "ok: $mode: backing file (fall through, COW, base untouched), compressed, discard"
done

if has_feature bpf_kernel_io && has_feature user_recovery; then
  log "== bpf-kernel: SIGKILL while allocating, recover"
  rm -f "$T/r.qcow2"
  qemu-img create -q -f qcow2 "$T/r.qcow2" 32M
  d=$(add_qcow2 bpf-kernel "$T/r.qcow2" --recovery --reissue) || exit 1
  id=$(devid "$d")
  kill_and_recover "$d" "$id" bpf-kernel
  [ "$(field_of "$id" target)" = qcow2 ] || { ublk-user list --json; die "recovered as another target"; }
  fio_ends_clean bpf-kernel
  dump "$d" 32 "$T/r.raw"
  ublk-user del --id "$id" || die "del"
  # a kill between a refcount and its L2 entry leaks a cluster (exit 3):
  # that is not corruption (exit 2)
  qemu-img check -f qcow2 "$T/r.qcow2" > "$T/check.out" 2>&1; rc=$?
  { [ "$rc" = 0 ] || [ "$rc" = 3 ]; } || { cat "$T/check.out"; die "qemu-img check after the kill: $rc"; }
  qemu-img compare -q -f qcow2 -F raw "$T/r.qcow2" "$T/r.raw" || die "compare after the kill"
  d=$(add_qcow2 bpf-kernel "$T/r.qcow2") || exit 1
  fio_verify "$d" again --rw=randwrite --bsrange=4k-1m --size=32M
  dump "$d" 32 "$T/r.raw"
  ublk-user del --all || die "del"
  qemu-img check -f qcow2 "$T/r.qcow2" > "$T/check.out" 2>&1; rc=$?
  { [ "$rc" = 0 ] || [ "$rc" = 3 ]; } || { cat "$T/check.out"; die "qemu-img check after the new add: $rc"; }
  qemu-img compare -q -f qcow2 -F raw "$T/r.qcow2" "$T/r.raw" || die "compare after the new add"
  log "ok: bpf-kernel kill + recover: fio verified, qemu-img check exit $rc, compare identical"
fi
log "PASS"
