#!/bin/sh
# timeout: 500
# cost: 110
# `ublk-user del` while fio runs, in each mode: del returns 0 within its own
# timeout, fio ends (I/O errors) within seconds and never hangs, the device
# nodes go away, a new device works at once. Also: del of a device whose
# server is stopped (SIGSTOP): del must not hang forever; after its 30 s
# grace period it kills the server and deletes the device (rc 0).
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
# ROUNDS per mode (3 in CI: four modes now; UBLK_SOAK=1, i.e. cargo xtask test --soak: 50).
ROUNDS=${ROUNDS:-3}
[ "$SOAK" = 1 ] && ROUNDS=50
for mode in $(modes); do
  r=0
  while [ "$r" -lt "$ROUNDS" ]; do
    r=$((r + 1))
    truncate -s 64M "$T/d.img"
    d=$(add_dev "$T/d.img" "$mode") || exit 1
    id=$(devid "$d")
    timeout -k 5 90 fio --name=del --filename="$d" --rw=randrw --bsrange=4k-128k --size=48m \
      --direct=1 --ioengine=libaio --iodepth=16 --time_based --runtime=60 \
      --output="$T/fio.out" > /dev/null 2>&1 &
    fpid=$!
    sleep 2
    t0=$(now)
    timeout 60 ublk-user del --id "$id" 2> "$T/del.err"; drc=$?
    tdel=$(($(now) - t0))
    wait "$fpid"; frc=$?
    tf=$(($(now) - t0))
    [ "$drc" = 0 ] || { cat "$T/del.err"; die "$mode round $r: del during fio failed (rc $drc after ${tdel}s)"; }
    [ "$frc" = 124 ] || [ "$frc" = 137 ] && { cat "$T/fio.out"; die "$mode round $r: fio hung after del"; }
    [ "$frc" != 0 ] || { cat "$T/fio.out"; die "$mode round $r: fio succeeded on a deleted device"; }
    [ "$tf" -le 20 ] || die "$mode round $r: fio took ${tf}s to end after del"
    wait_gone "$id" 10 || die "$mode round $r: device nodes still there"
    [ "$(ndev)" = 0 ] || { ublk-user list; die "$mode round $r: devices left"; }
    d2=$(add_dev "$T/d.img" "$mode") || exit 1
    quick_verify "$d2" 8m
    ublk-user del --all || die "del new device"
    log "$mode round $r: del rc 0 in ${tdel}s, fio rc=$frc after ${tf}s, new device ok"
  done
  log "ok: $mode: $ROUNDS deletes under fio"
done

# A stopped (SIGSTOP) server: del must still finish.
truncate -s 32M "$T/d.img"
d=$(add_dev "$T/d.img" copy) || exit 1
id=$(devid "$d")
pid=$(field_of "$id" pid)
kill -STOP "$pid"
t0=$(now)
timeout 90 ublk-user del --id "$id" 2> "$T/del.err"; drc=$?
kill -CONT "$pid" 2> /dev/null
tdel=$(($(now) - t0))
[ "$drc" = 124 ] && die "del of a SIGSTOPped server's device hung (> 90 s)"
[ "$drc" = 0 ] || { cat "$T/del.err"; die "del of a SIGSTOPped server's device failed (rc $drc)"; }
wait_gone "$id" 15 || die "device of the SIGSTOPped server still there"
log "ok: del with a SIGSTOPped server: rc=$drc after ${tdel}s: $(head -n 2 "$T/del.err" | tr '\n' ' ')"
rm -f "$T/d.img"
kmemleak_scan
log "PASS"
