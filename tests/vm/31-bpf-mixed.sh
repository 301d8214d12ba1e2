#!/bin/sh
# timeout: 900
# cost: 60
# --mode bpf with a mixed workload: the program redirects READ/WRITE and
# passes FLUSH / DISCARD / WRITE_ZEROES to the server, interleaved on the
# same queues. fio write+verify with fsync (FLUSH) every few writes runs
# next to a trim job and a shell loop of discard, write-zeroes and sync
# on other regions; afterwards the verified region is intact, and discard /
# write-zeroes read back as zeroes through the device and in the backing
# file. Skips when the kernel lacks UBLK_F_BPF.
. tests/vm/lib.sh
. tests/vm/lib-mixed.sh
requires fio control bpf
BLKDISCARD=$(tool blkdiscard)
MiB=1048576

for queues in 1 2; do
  log "== mixed workload, --queues $queues"
  truncate -s 96M "$T/m.img"
  d=$(ublk-user add loop --file "$T/m.img" --mode bpf --no-fallback --queues "$queues" 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add loop --mode bpf"; }
  dev=$(basename "$d")
  [ "$(cat /sys/block/$dev/queue/discard_max_bytes)" != 0 ] || die "discard not enabled on $d"

  mixed_workload "$d" 40

  log "== deterministic discard / write-zeroes / flush"
  discard_zeroes_check "$d"
  c=$(jnum bpf_passed)
  if [ -n "$c" ]; then
    [ "$c" -gt 0 ] || die "bpf_passed=$c: FLUSH/DISCARD should have been passed to the server"
    log "program counters: redirected=$(jnum bpf_redirected) passed=$c"
  fi
  ublk-user del --all || die "del"
  discard_zeroes_check_file "$T/m.img"
  rm -f "$T/m.img"
done
log "PASS"
