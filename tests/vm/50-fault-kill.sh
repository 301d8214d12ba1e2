#!/bin/sh
# timeout: 900
# cost: 115
# The server killed with SIGKILL mid-fio, in each data mode (copy, zc, bpf, bpf-kernel;
# fault-lib.sh modes()):
# * fio ends with I/O errors within seconds of the kill, never hangs;
# * `ublk-user del` deletes the dead server's device (stop + delete from the
#   control device), /dev/ublkbN and /dev/ublkcN go away;
# * a new device can be created at once and serves verified I/O;
# * dmesg stays clean (the runner checks).
# KILLS per mode (5 in CI: four modes now; UBLK_SOAK=1, i.e. cargo xtask test --soak: 100).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
KILLS=${KILLS:-5}
[ "$SOAK" = 1 ] && KILLS=100
MAXERR=${MAXERR:-20}   # seconds from the kill to fio's exit
total=0
for mode in $(modes); do
  i=0
  worst=0
  while [ "$i" -lt "$KILLS" ]; do
    i=$((i + 1))
    truncate -s 64M "$T/k.img"
    d=$(add_dev "$T/k.img" "$mode") || exit 1
    id=$(devid "$d")
    pid=$(field_of "$id" pid)
    [ -n "$pid" ] && [ "$pid" -gt 0 ] || { ublk-user list --json; die "no server pid for $d"; }
    # mixed I/O, several sizes, queue depth 16; long runtime: only the kill ends it.
    timeout -k 5 90 fio --name=kill --filename="$d" --rw=randrw --bsrange=4k-128k --size=48m \
      --direct=1 --ioengine=libaio --iodepth=16 --time_based --runtime=60 \
      --output="$T/fio.out" > /dev/null 2>&1 &
    fpid=$!
    # let fio get going (up to 10 s until the device has seen I/O)
    w=0
    while [ "$w" -lt 100 ]; do
      [ -r "/sys/block/ublkb$id/stat" ] && [ "$(awk '{print $1+$5}' "/sys/block/ublkb$id/stat")" -gt 50 ] && break
      w=$((w + 1)); sleep 0.1
    done
    sleep 0.$((i % 10))
    t0=$(now)
    kill -KILL "$pid" || die "kill -9 $pid"
    wait "$fpid"; frc=$?
    dt=$(($(now) - t0))
    [ "$frc" = 124 ] || [ "$frc" = 137 ] && { cat "$T/fio.out"; die "$mode kill $i: fio hung after SIGKILL of the server (timeout)"; }
    [ "$frc" != 0 ] || { cat "$T/fio.out"; die "$mode kill $i: fio succeeded although the server died"; }
    [ "$dt" -le "$MAXERR" ] || die "$mode kill $i: fio took ${dt}s to fail"
    [ "$dt" -gt "$worst" ] && worst=$dt
    grep -qiE 'error|Input/output|No such device' "$T/fio.out" || { cat "$T/fio.out"; die "$mode kill $i: fio output shows no I/O error"; }
    t1=$(now)
    timeout 60 ublk-user del --id "$id" 2> "$T/del.err" || { cat "$T/del.err"; ublk-user list; die "$mode kill $i: del of the dead server's device failed"; }
    wait_gone "$id" 10 || { ls -l /dev/ublk*; die "$mode kill $i: /dev/ublk[bc]$id still there after del"; }
    [ "$(ndev)" = 0 ] || { ublk-user list; die "$mode kill $i: devices left"; }
    ddel=$(($(now) - t1))
    # a new device at once, on the same file
    d2=$(add_dev "$T/k.img" "$mode") || exit 1
    quick_verify "$d2" 8m
    ublk-user del --all || die "del of the new device"
    total=$((total + 1))
    log "$mode kill $i/$KILLS: fio rc=$frc after ${dt}s, del ${ddel}s, new device ok"
  done
  log "ok: $mode: $KILLS kills survived (worst fio exit ${worst}s after the kill)"
done
rm -f "$T/k.img"
kmemleak_scan
log "PASS: $total kills survived ($(modes))"
