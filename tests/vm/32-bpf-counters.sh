#!/bin/sh
# timeout: 600
# cost: 30
# --mode bpf counters: after a pure READ/WRITE run with a known number of
# requests, the program's REDIRECTED counter grew by exactly that number
# (and its byte counter by the bytes), it passed nothing, and the server's
# own data path served none of them.
#
# Counters come from `ublk-user list --json`, per device:
#   bpf_redirected, bpf_redirected_bytes, bpf_passed   the program's UBLK_STATS
#       (summed over CPUs; the README's "list --json" table)
#   server_served      requests the server served through its own data
#                      path (copy/zc, i.e. not redirected), all ops
#   server_redirected  redirected requests the server committed from the
#                      backing CQE
# The bpf_* fields are required; the server_* ones are checked when present.
# Skips when the kernel lacks UBLK_F_BPF.
. tests/vm/lib.sh
requires fio control bpf

truncate -s 64M "$T/c.img"
d=$(ublk-user add loop --file "$T/c.img" --mode bpf --no-fallback --queues 2 2> "$T/add.err") \
  || { cat "$T/add.err"; die "add loop --mode bpf"; }
ublk-user list --json > "$T/list0.json"
[ -n "$(jnum bpf_redirected)" ] || { cat "$T/list0.json"; die "ublk-user list --json has no bpf_redirected field"; }

snapshot() { # PREFIX: store the counters in shell variables PREFIX_name
  for f in bpf_redirected bpf_redirected_bytes bpf_passed server_served server_redirected; do
    v=$(jnum $f)
    eval "$1_$f=\${v:-none}"
  done
}
delta() { # NAME: after - before, or "none"
  eval "a=\$after_$1 b=\$before_$1"
  if [ "$a" = none ] || [ "$b" = none ]; then echo none; else echo $((a - b)); fi
}

# Every request is one fio I/O: synchronous (psync, iodepth 1, so no
# merging), O_DIRECT, sizes within max_io (no splitting), no fsync.
run_case() { # RW BS COUNT
  case $2 in *k) b=$(( ${2%k} * 1024 )) ;; *M) b=$(( ${2%M} * 1048576 )) ;; *) b=$2 ;; esac
  bytes=$(( $3 * b ))
  snapshot before
  # size = exactly COUNT blocks (fio stops at whichever of size/number_ios comes first)
  fio --name=c --filename="$d" --rw="$1" --bs="$2" --number_ios="$3" --size="$bytes" --direct=1 \
    --ioengine=psync --iodepth=1 --invalidate=0 --randrepeat=0 --norandommap --fsync=0 --end_fsync=0 \
    --output="$T/fio.out" > /dev/null 2>&1 || { cat "$T/fio.out"; die "fio $1 bs=$2"; }
  snapshot after
  r=$(delta bpf_redirected); rb=$(delta bpf_redirected_bytes); p=$(delta bpf_passed)
  s=$(delta server_served); sr=$(delta server_redirected)
  log "$1 bs=$2 x$3: redirected +$r bytes +$rb passed +$p; server served +$s, committed-redirected +$sr"
  [ "$r" = "$3" ] || die "$1 bs=$2: expected $3 redirected requests, program counted $r"
  [ "$rb" = "$bytes" ] || die "$1 bs=$2: expected $bytes redirected bytes, program counted $rb"
  [ "$p" = 0 ] || die "$1 bs=$2: the program passed $p requests of a pure read/write run"
  if [ "$s" = none ]; then
    log "NOTE: no server_served in list --json; server-side check skipped"
  else
    [ "$s" = 0 ] || die "$1 bs=$2: the server's own data path served $s requests (want 0)"
  fi
  if [ "$sr" != none ]; then
    [ "$sr" = "$3" ] || die "$1 bs=$2: server committed $sr redirected requests, want $3"
  fi
}

run_case write 4k 1000
run_case read 4k 1000
run_case randwrite 64k 300
run_case randread 64k 300
run_case randwrite 1M 40
run_case read 2M 16

ublk-user del --all || die "del"
rm -f "$T/c.img"
log "PASS"
