#!/bin/sh
# cost: 5
# ublk is built in: /dev/ublk-control exists and is a character device.
. tests/vm/lib.sh
[ -c /dev/ublk-control ] || die "/dev/ublk-control missing"
grep -q ublk-control /proc/misc || die "ublk-control not registered in /proc/misc"
log "/dev/ublk-control present ($(grep ublk-control /proc/misc))"
