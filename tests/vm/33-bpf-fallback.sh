#!/bin/sh
# timeout: 300
# cost: 15
# --mode bpf fallbacks. Runs on both kernels (34-bpf-fallback-distro runs
# it on Debian's prebuilt 7.2):
# * kernel without UBLK_F_BPF: `--mode bpf` falls back to copy with a log
#   line on stderr (mode_requested=bpf, mode=copy) and the device works;
#   `--mode bpf --no-fallback` fails, leaving no device behind.
# * kernel with UBLK_F_BPF: `--mode bpf` really uses BPF (mode=bpf, no
#   fallback line), with and without --no-fallback, and --bpf-log works.
. tests/vm/lib.sh
command -v fio >/dev/null || skip "no fio"
[ -c /dev/ublk-control ] || skip "no /dev/ublk-control"
T=${TEST_TMP:-/tmp}
jstr() { ublk-user list --json | tr ',{}' '\n\n\n' | sed -n "s/^\"$1\":\"\([^\"]*\)\"\$/\1/p" | head -n 1; }
ndev() { ublk-user list --json | tr ',' '\n' | grep -c '"bdev":'; }

quick_io() { # DEV
  fio --name=q --filename="$1" --rw=randwrite --bs=64k --size=8m --direct=1 --ioengine=libaio \
    --iodepth=8 --verify=crc32c --do_verify=1 --verify_fatal=1 --output="$T/fio.out" > /dev/null 2>&1 \
    || { cat "$T/fio.out"; die "fio on $1"; }
}

truncate -s 32M "$T/f.img"
if has_feature bpf; then
  log "kernel has UBLK_F_BPF"
  for extra in "" "--no-fallback" "--bpf-log"; do
    d=$(ublk-user add loop --file "$T/f.img" --mode bpf $extra 2> "$T/add.err") || { cat "$T/add.err"; die "add --mode bpf $extra"; }
    grep -qi "falling back" "$T/add.err" && { cat "$T/add.err"; die "fell back although the kernel has UBLK_F_BPF"; }
    [ "$(jstr mode)" = bpf ] || { ublk-user list --json; die "mode is not bpf ($extra)"; }
    [ "$(jstr mode_requested)" = bpf ] || die "mode_requested is not bpf"
    quick_io "$d"
    ublk-user del --all || die "del"
    log "ok: --mode bpf $extra -> bpf"
  done
else
  log "kernel lacks UBLK_F_BPF"
  d=$(ublk-user add loop --file "$T/f.img" --mode bpf 2> "$T/add.err") || { cat "$T/add.err"; die "add --mode bpf should fall back, not fail"; }
  grep -qi "falling back" "$T/add.err" || { cat "$T/add.err"; die "no fallback log line on stderr"; }
  grep -q "UBLK_F_BPF" "$T/add.err" || { cat "$T/add.err"; die "the fallback line does not say why (UBLK_F_BPF)"; }
  log "fallback line: $(head -n 1 "$T/add.err")"
  [ "$(jstr mode)" = copy ] || { ublk-user list --json; die "fallback mode is not copy"; }
  [ "$(jstr mode_requested)" = bpf ] || die "mode_requested is not bpf"
  quick_io "$d"
  ublk-user del --all || die "del"
  log "ok: --mode bpf falls back to copy"

  if d=$(ublk-user add loop --file "$T/f.img" --mode bpf --no-fallback 2> "$T/add.err"); then
    die "--mode bpf --no-fallback succeeded without UBLK_F_BPF ($d)"
  fi
  [ -s "$T/add.err" ] || die "--no-fallback failed without a message"
  log "no-fallback error: $(head -n 1 "$T/add.err")"
  [ "$(ndev)" = 0 ] || { ublk-user list; die "--no-fallback failure left a device behind"; }
  log "ok: --mode bpf --no-fallback fails"
fi
rm -f "$T/f.img"
log "PASS"
