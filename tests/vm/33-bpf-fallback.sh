#!/bin/sh
# timeout: 300
# cost: 25
# --mode bpf and --mode bpf-kernel fallbacks. Runs on both kernels (34-bpf-fallback-distro runs
# it on Debian's prebuilt 7.2):
# * kernel without UBLK_F_BPF: `--mode bpf` falls back to copy with a log
#   line on stderr (mode_requested=bpf, mode=copy) and the device works;
#   `--mode bpf --no-fallback` fails, leaving no device behind.
# * kernel with UBLK_F_BPF: `--mode bpf` really uses BPF (mode=bpf, no
#   fallback line), with and without --no-fallback, and --bpf-log works.
# --mode bpf-kernel (UBLK_F_BPF_KERNEL_IO), chain bpf-kernel -> bpf -> copy:
# * kernel with UBLK_F_BPF_KERNEL_IO (ours): mode=bpf-kernel, no fallback
#   line, with and without --no-fallback and with --bpf-log; the device
#   works (verified fio).
# * kernel with UBLK_F_BPF only: falls back to bpf with a line naming
#   UBLK_F_BPF_KERNEL_IO; --no-fallback fails, leaving no device.
# * kernel without UBLK_F_BPF (vanilla): falls back twice, bpf-kernel ->
#   bpf -> copy, one line each, naming UBLK_F_BPF; mode_requested=bpf-kernel,
#   mode=copy, the device works; --no-fallback fails, leaving no device.
. tests/vm/lib.sh
requires fio control
ndev() { ublk-user list --json | jq length; }

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

# nofallback_fails MODE WHY: `--mode MODE --no-fallback` fails with a message
# naming WHY and leaves no device behind
nofallback_fails() {
  if d=$(ublk-user add loop --file "$T/f.img" --mode "$1" --no-fallback 2> "$T/add.err"); then
    die "--mode $1 --no-fallback succeeded without $2 ($d)"
  fi
  [ -s "$T/add.err" ] || die "--mode $1 --no-fallback failed without a message"
  grep -q "$2" "$T/add.err" || { cat "$T/add.err"; die "--mode $1 --no-fallback: the error does not name $2"; }
  log "no-fallback error: $(head -n 1 "$T/add.err")"
  [ "$(ndev)" = 0 ] || { ublk-user list; die "--mode $1 --no-fallback failure left a device behind"; }
  log "ok: --mode $1 --no-fallback fails"
}

if has_feature bpf_kernel_io; then
  log "kernel has UBLK_F_BPF_KERNEL_IO"
  for extra in "" "--no-fallback" "--bpf-log"; do
    d=$(ublk-user add loop --file "$T/f.img" --mode bpf-kernel $extra 2> "$T/add.err") \
      || { cat "$T/add.err"; die "add --mode bpf-kernel $extra"; }
    grep -qi "falling back" "$T/add.err" && { cat "$T/add.err"; die "fell back although the kernel has UBLK_F_BPF_KERNEL_IO"; }
    [ "$(jstr mode)" = bpf-kernel ] || { ublk-user list --json; die "mode is not bpf-kernel ($extra)"; }
    [ "$(jstr mode_requested)" = bpf-kernel ] || die "mode_requested is not bpf-kernel"
    quick_io "$d"
    ublk-user del --all || die "del"
    log "ok: --mode bpf-kernel $extra -> bpf-kernel"
  done
elif has_feature bpf; then
  log "kernel has UBLK_F_BPF but lacks UBLK_F_BPF_KERNEL_IO"
  d=$(ublk-user add loop --file "$T/f.img" --mode bpf-kernel 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add --mode bpf-kernel should fall back to bpf, not fail"; }
  grep -i "falling back to --mode bpf\$" "$T/add.err" | grep -q UBLK_F_BPF_KERNEL_IO \
    || { cat "$T/add.err"; die "no fallback line to bpf naming UBLK_F_BPF_KERNEL_IO"; }
  grep -qi "falling back to --mode copy" "$T/add.err" && { cat "$T/add.err"; die "fell back to copy although the kernel has UBLK_F_BPF"; }
  [ "$(jstr mode)" = bpf ] || { ublk-user list --json; die "fallback mode is not bpf"; }
  [ "$(jstr mode_requested)" = bpf-kernel ] || die "mode_requested is not bpf-kernel"
  quick_io "$d"
  ublk-user del --all || die "del"
  log "ok: --mode bpf-kernel falls back to bpf: $(head -n 1 "$T/add.err")"
  nofallback_fails bpf-kernel UBLK_F_BPF_KERNEL_IO
else
  log "kernel lacks UBLK_F_BPF: --mode bpf-kernel"
  d=$(ublk-user add loop --file "$T/f.img" --mode bpf-kernel 2> "$T/add.err") \
    || { cat "$T/add.err"; die "add --mode bpf-kernel should fall back, not fail"; }
  # two steps, one line each, in order: bpf-kernel -> bpf, then bpf -> copy
  grep -i "falling back" "$T/add.err" > "$T/fb.lines"
  [ "$(grep -c . "$T/fb.lines")" = 2 ] || { cat "$T/add.err"; die "want 2 fallback lines (bpf-kernel -> bpf -> copy)"; }
  sed -n 1p "$T/fb.lines" | grep -q -- "--mode bpf-kernel .*falling back to --mode bpf\$" \
    || { cat "$T/add.err"; die "first fallback line is not bpf-kernel -> bpf"; }
  sed -n 2p "$T/fb.lines" | grep -q -- "--mode bpf .*falling back to --mode copy\$" \
    || { cat "$T/add.err"; die "second fallback line is not bpf -> copy"; }
  sed -n 2p "$T/fb.lines" | grep -q "UBLK_F_BPF[^_]" \
    || { cat "$T/add.err"; die "the bpf -> copy line does not say why (UBLK_F_BPF)"; }
  log "fallback lines: $(tr '\n' '|' < "$T/fb.lines")"
  [ "$(jstr mode)" = copy ] || { ublk-user list --json; die "fallback mode is not copy"; }
  [ "$(jstr mode_requested)" = bpf-kernel ] || die "mode_requested is not bpf-kernel"
  quick_io "$d"
  ublk-user del --all || die "del"
  log "ok: --mode bpf-kernel falls back to bpf, then copy"
  nofallback_fails bpf-kernel UBLK_F_BPF
fi
rm -f "$T/f.img" "$T/fb.lines"
log "PASS"
