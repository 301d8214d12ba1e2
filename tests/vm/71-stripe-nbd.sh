#!/bin/sh
# timeout: 420
# cost: 60
# Storage that is not on this machine: a bpf-kernel stripe over two network
# block devices. Two qemu-nbd servers export files over TCP on 127.0.0.1;
# two qemu-nbd clients connect /dev/nbd0 and /dev/nbd1 to them (the kernel's
# nbd driver, CONFIG_BLK_DEV_NBD); the stripe's file table holds the two
# block devices, so the driver sends each redirected request to one of them.
# fio write+verify (512 B to 2 MiB, random and sequential), then every chunk
# of the device is compared with the exported files under the reference
# striping (ublk-bpf-fixture stripe-check); the driver completed the I/O
# (kernel_completed > 0) and the server served none (server_served = 0).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
FIX=target/release/ublk-bpf-fixture
requires fio bpf_kernel_io
command -v qemu-nbd > /dev/null || skip "no qemu-nbd (qemu-utils) in the guest"
[ -b /dev/nbd1 ] || skip "no /dev/nbd0, /dev/nbd1 (CONFIG_BLK_DEV_NBD)"
servers=""
cleanup() {
  ublk-user del --all > /dev/null 2>&1
  for n in 0 1; do qemu-nbd -d /dev/nbd$n > /dev/null 2>&1; done
  for p in $servers; do kill "$p" 2> /dev/null; done
}
trap cleanup EXIT
ip link set lo up 2> /dev/null || /bb/ip link set lo up || die "cannot bring up lo"
mkdir -p /var/lock # qemu-nbd -c puts its socket there

for n in 0 1; do
  rm -f "$T/n$n.img"; truncate -s 32M "$T/n$n.img"
  port=$((10809 + n))
  qemu-nbd --persistent --shared=2 -f raw -x "e$n" -b 127.0.0.1 -p "$port" "$T/n$n.img" > "$T/nbd$n.log" 2>&1 &
  servers="$servers $!"
  i=0
  # the client retries until the server listens
  until qemu-nbd -c /dev/nbd$n -f raw "nbd://127.0.0.1:$port/e$n" > "$T/nbdc$n.log" 2>&1; do
    i=$((i + 1)); [ "$i" -gt 50 ] && { cat "$T/nbd$n.log" "$T/nbdc$n.log"; die "cannot connect /dev/nbd$n to 127.0.0.1:$port"; }
    sleep 0.2
  done
  i=0
  while [ "$(blockdev --getsize64 /dev/nbd$n 2> /dev/null)" != 33554432 ]; do
    i=$((i + 1)); [ "$i" -gt 50 ] && die "/dev/nbd$n did not get its size"
    sleep 0.1
  done
done
log "/dev/nbd0, /dev/nbd1: 32 MiB each over TCP"

d=$(ublk-user add stripe -f /dev/nbd0 -f /dev/nbd1 --chunk 64K --mode bpf-kernel --no-fallback 2> "$T/add.err") \
  || { cat "$T/add.err"; die "add stripe over nbd"; }
id=$(devid "$d")
for job in "--rw=randwrite --bsrange=512-2m" "--rw=write --bs=2m" "--rw=randrw --rwmixwrite=70 --bsrange=4k-256k"; do
  fio --name=nbd --filename="$d" --direct=1 --ioengine=libaio --iodepth=16 --size=64M $job \
    --verify=crc32c --do_verify=1 --verify_fatal=1 --verify_state_save=0 --randrepeat=0 \
    --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "fio verify ($job)"; }
  grep -q "err= 0" "$T/fio.out" || { cat "$T/fio.out"; die "fio reported errors ($job)"; }
done
blockdev --flushbufs /dev/nbd0 /dev/nbd1 2> /dev/null
$FIX stripe-check --chunk 65536 "$d" /dev/nbd0 /dev/nbd1 > "$T/chk.out" 2>&1 \
  || { cat "$T/chk.out"; die "the nbd devices do not hold the reference striping"; }
completed=$(field_of "$id" kernel_completed)
served=$(field_of "$id" server_served)
[ "${completed:-0}" -gt 0 ] || { ublk-user list --json; die "the driver completed nothing"; }
[ "${served:-x}" = 0 ] || { ublk-user list --json; die "the server served $served requests"; }
ublk-user del --id "$id" || die "del"
log "ok: bpf-kernel stripe over two TCP nbd devices: fio verify, $(cat "$T/chk.out"), kernel_completed=$completed, server_served=0"
