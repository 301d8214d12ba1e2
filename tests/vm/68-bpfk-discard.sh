#!/bin/sh
# timeout: 300
# cost: 65
# DISCARD, WRITE_ZEROES and FLUSH in every data mode (fault-lib.sh `modes`),
# on a 64 MiB backing file (tmpfs) fully written with a random pattern:
# * blkdiscard of [8M,9M) and blkdiscard -z (write zeroes) of [16M,17M):
#   both read back as zeroes through the device, the data around them
#   ([7M,18M) through the device, the whole backing file after del) is
#   intact, and the backing file's allocated blocks (stat %b) dropped by at
#   least the discarded MiB (a punched hole);
# * a 4 KiB buffered write with dd conv=fsync (WRITE, then FLUSH) succeeds
#   and lands.
# In bpf-kernel the program redirects all three into the kernel, which
# serves them in its worker: the device advertises a volatile write cache
# and FUA (queue/write_cache "write back", queue/fua 1); across the
# discards server_served does not move and kernel_completed grows by >= 2;
# across the fsync write, kernel_completed grows by >= 2 (WRITE + FLUSH)
# and server_served does not move.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires control
BLKDISCARD=$(tool blkdiscard)
CMP=$(tool cmp)
MiB=1048576
trap 'ublk-user del --all > /dev/null 2>&1' EXIT
fails=0
unexpected() { log "UNEXPECTED: $*"; fails=$((fails + 1)); }
# alloc FILE: bytes allocated to FILE
alloc() { echo $(($(stat -c '%b * %B' "$1"))); }

dd if=/dev/urandom of="$T/pat" bs=1M count=64 2> /dev/null || die "pattern"
head -c $MiB /dev/zero > "$T/zero1m"
# what the device holds at the end: the pattern, two zeroed MiB, and the
# pattern's first 4 KiB written again at 32 MiB
cp "$T/pat" "$T/exp"
dd if=/dev/zero of="$T/exp" bs=1M seek=8 count=1 conv=notrunc 2> /dev/null
dd if=/dev/zero of="$T/exp" bs=1M seek=16 count=1 conv=notrunc 2> /dev/null
dd if="$T/pat" of="$T/exp" bs=4096 count=1 seek=8192 conv=notrunc 2> /dev/null
dd if="$T/exp" of="$T/exp.win" bs=1M skip=7 count=11 2> /dev/null

for mode in $(modes); do
  log "== $mode"
  cp "$T/pat" "$T/d.img"
  d=$(add_in_mode "$T/d.img" "$mode") || exit 1
  id=$(devid "$d"); q=/sys/block/$(basename "$d")/queue
  [ "$(cat "$q/discard_max_bytes")" != 0 ] || die "$mode: discard not enabled on $d"
  wc=$(cat "$q/write_cache"); fua=$(cat "$q/fua")
  log "$mode: write_cache=$wc fua=$fua"
  if [ "$mode" = bpf-kernel ]; then
    [ "$wc" = "write back" ] || unexpected "$mode: queue/write_cache is '$wc', want 'write back'"
    [ "$fua" = 1 ] || unexpected "$mode: queue/fua is $fua, want 1"
    sleep 1 # the server settled (its FETCH commands armed)
    k0=$(field_of "$id" kernel_completed); s0=$(field_of "$id" server_served)
  fi
  a0=$(alloc "$T/d.img")
  $BLKDISCARD -o $((8 * MiB)) -l $MiB "$d" || die "$mode: blkdiscard"
  zeroout $((16 * MiB)) $MiB "$d" || die "$mode: write zeroes"
  a1=$(alloc "$T/d.img")
  if [ "$mode" = bpf-kernel ]; then
    k1=$(field_of "$id" kernel_completed); s1=$(field_of "$id" server_served)
    log "$mode: discard + write zeroes: kernel_completed +$((k1 - k0)), server_served +$((s1 - s0))"
    [ "$s1" = "$s0" ] || unexpected "$mode: server_served grew by $((s1 - s0)): DISCARD/WRITE_ZEROES reached the server"
    [ $((k1 - k0)) -ge 2 ] || unexpected "$mode: kernel_completed grew by $((k1 - k0)) for a discard and a write-zeroes"
  fi
  for o in 8 16; do
    dd if="$d" of="$T/r" bs=1M skip=$o count=1 iflag=direct 2> /dev/null || die "$mode: read MiB $o"
    $CMP -s "$T/zero1m" "$T/r" || unexpected "$mode: MiB $o does not read back as zeroes"
  done
  dd if="$d" of="$T/win" bs=1M skip=7 count=11 iflag=direct 2> /dev/null || die "$mode: read [7M,18M)"
  $CMP -s "$T/exp.win" "$T/win" || unexpected "$mode: [7M,18M) through the device differs from the pattern with two zeroed MiB"
  log "$mode: allocated $a0 -> $a1 bytes"
  [ $((a0 - a1)) -ge $MiB ] || unexpected "$mode: the backing file's allocation dropped by $((a0 - a1)) bytes, not by the discarded MiB"

  # FLUSH: a buffered write, then fsync of the block device (WRITE + FLUSH)
  [ "$mode" = bpf-kernel ] && { k0=$(field_of "$id" kernel_completed); s0=$(field_of "$id" server_served); }
  dd if="$T/pat" of="$d" bs=4096 count=1 seek=8192 conv=fsync,notrunc 2> "$T/dd.err" \
    || { cat "$T/dd.err"; die "$mode: dd conv=fsync"; }
  if [ "$mode" = bpf-kernel ]; then
    k1=$(field_of "$id" kernel_completed); s1=$(field_of "$id" server_served)
    log "$mode: write + fsync: kernel_completed +$((k1 - k0)), server_served +$((s1 - s0))"
    [ "$s1" = "$s0" ] || unexpected "$mode: server_served grew by $((s1 - s0)): the write or the FLUSH reached the server"
    [ $((k1 - k0)) -ge 2 ] || unexpected "$mode: kernel_completed grew by $((k1 - k0)) for a write and a FLUSH"
    [ "$(field_of "$id" kernel_errors)" = 0 ] || unexpected "$mode: kernel_errors=$(field_of "$id" kernel_errors)"
  fi
  ublk-user del --all || die "$mode: del"
  $CMP "$T/exp" "$T/d.img" || unexpected "$mode: the backing file differs from the pattern with two zeroed MiB and the fsync write"
  rm -f "$T/d.img"
  log "ok: $mode done"
done
rm -f "$T/pat" "$T/exp" "$T/exp.win" "$T/win" "$T/r" "$T/zero1m"
[ "$fails" = 0 ] || die "$fails discard/write-zeroes/flush check(s) failed"
log "PASS"
