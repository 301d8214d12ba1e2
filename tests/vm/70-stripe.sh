#!/bin/sh
# timeout: 900
# cost: 180
# The stripe target (add stripe -f F1 -f F2 ... --chunk C): the device dealt
# out over 2-4 files in chunks, chunk c on file c%n at (c/n)*C. In every
# data mode (copy, zc, bpf, bpf-kernel; the BPF program maps each request
# to its file and offset):
# * fio write+verify (crc32c) with block sizes 512 B to 2 MiB: random,
#   sequential and a 70/30 write/read mix, on 2, 3 and 4 files (chunks 4K,
#   64K, 1M); then the files hold exactly what the reference striping of the
#   device says (ublk-bpf-fixture stripe-check, chunk by chunk);
# * the hot path stays in the program: no READ/WRITE spans a chunk
#   (bpf_pass_span = 0, the device's chunk_sectors splits them), and in
#   bpf-kernel the server serves nothing (server_served = 0);
# * a DISCARD of the whole device (it spans every chunk: the server splits
#   it into one fallocate per file; bpf_pass_span > 0 in the BPF modes)
#   reads back zeroes and frees the files' blocks;
# * one file shrunk under the device (copy, bpf-kernel): a read of a chunk
#   on it fails with EIO, the other file's chunks read back intact;
# * bpf-kernel with user recovery: SIGKILL of the server under fio verify,
#   recover, fio finishes verified and the stripe check passes; and `del`
#   under fio: del succeeds, fio ends with errors within 20 s (no hang), the
#   nodes go away, a new stripe over the same files verifies;
# * bad input: one file, 17 files, files of different sizes, a chunk that
#   is not a power of two, the same file twice: exit 1, one line on
#   stderr, no device left.
. tests/vm/lib.sh
. tests/vm/fault-lib.sh
requires fio control
FIX=target/release/ublk-bpf-fixture
[ -x "$FIX" ] || die "$FIX is missing (cargo xtask build builds it)"
trap 'ublk-user del --all > /dev/null 2>&1' EXIT

# mk_files N MIB: fresh sparse files $T/s0.img .. $T/s(N-1).img; prints -f args
mk_files() {
  _a=""
  for _i in $(seq 0 $(($1 - 1))); do
    rm -f "$T/s$_i.img"; truncate -s "$2M" "$T/s$_i.img"
    _a="$_a -f $T/s$_i.img"
  done
  echo "$_a"
}
files_of() { _l=""; for _i in $(seq 0 $(($1 - 1))); do _l="$_l $T/s$_i.img"; done; echo "$_l"; }

# add_stripe MODE CHUNK ARGS...: a stripe device in MODE (never another mode)
add_stripe() {
  _m=$1; _c=$2; shift 2
  _x=""; case $_m in bpf | bpf-kernel) _x=--no-fallback ;; esac
  _d=$(ublk-user add stripe "$@" --chunk "$_c" --mode "$_m" $_x 2> "$T/add.err") \
    || { cat "$T/add.err" >&2; die "add stripe --mode $_m $*"; }
  [ -b "$_d" ] || die "add printed $_d, not a block device"
  [ "$(field_of "$(devid "$_d")" mode)" = "$_m" ] || { ublk-user list --json >&2; die "$_d not in $_m mode"; }
  echo "$_d"
}


log "== bad input"
before=$(ndev)
for n in 1 17; do
  args=$(mk_files "$n" 4)
  refuse_args="$args --chunk 64K"
  out=$(ublk-user add stripe $refuse_args 2>&1) && die "add stripe with $n files succeeded: $out"
  [ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "$n files: not one line: $out"
  log "refused $n files: $out"
done
args=$(mk_files 2 4)
truncate -s 8M "$T/s1.img"
out=$(ublk-user add stripe $args 2>&1) && die "files of different sizes accepted"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "different sizes: not one line: $out"
log "refused: $out"
args=$(mk_files 2 4)
out=$(ublk-user add stripe $args --chunk 12K 2>&1) && die "chunk 12K accepted"
[ "$(printf '%s\n' "$out" | wc -l)" = 1 ] || die "chunk 12K: not one line: $out"
log "refused: $out"
out=$(ublk-user add stripe -f "$T/s0.img" -f "$T/s0.img" 2>&1) && die "the same file twice accepted"
log "refused: $out"
[ "$(ndev)" = "$before" ] || { ublk-user list; die "a refused add left a device"; }

# cells: files:chunk:MiB per file
for mode in $(modes); do
  for cell in 2:4K:8 3:64K:8 4:1M:8; do
    n=${cell%%:*}; rest=${cell#*:}; chunk=${rest%%:*}; mib=${rest#*:}
    cbytes=$(case $chunk in 4K) echo 4096 ;; 64K) echo 65536 ;; 1M) echo 1048576 ;; esac)
    args=$(mk_files "$n" "$mib")
    d=$(add_stripe "$mode" "$chunk" $args) || exit 1
    id=$(devid "$d")
    size=$((n * mib))M
    [ "$(field_of "$id" chunk)" = "$cbytes" ] || { ublk-user list --json; die "list shows no chunk $cbytes"; }
    [ "$(ublk-user list -n "$id" --json | jq '.[0].files | length')" = "$n" ] || { ublk-user list --json; die "list shows not $n files"; }
    fio_verify "$d" rand --rw=randwrite --bsrange=512-2m --size="$size"
    fio_verify "$d" seq --rw=write --bs=2m --size="$size"
    fio_verify "$d" mix --rw=randrw --rwmixwrite=70 --bsrange=512-1m --size="$size"
    $FIX stripe-check --chunk "$cbytes" "$d" $(files_of "$n") > "$T/chk.out" 2>&1 \
      || { cat "$T/chk.out"; die "$mode $n files: the files do not hold the reference striping"; }
    case $mode in
      bpf*)
        span=$(field_of "$id" bpf_pass_span)
        [ "${span:-x}" = 0 ] || { ublk-user list --json; die "$mode: $span READ/WRITE spanned a chunk"; }
        [ "$(field_of "$id" bpf_redirected)" -gt 0 ] || die "$mode: nothing redirected"
        ;;
    esac
    if [ "$mode" = bpf-kernel ]; then
      served=$(field_of "$id" server_served)
      [ "${served:-x}" = 0 ] || { ublk-user list --json; die "bpf-kernel: the server served $served requests"; }
    fi
    log "ok: $mode, $n files, chunk $chunk: fio verify (rand, seq, mix) and $(cat "$T/chk.out")"
    ublk-user del --id "$id" || die "del"
  done
done

log "== discard across chunks"
for mode in copy $(bpf_modes); do
  args=$(mk_files 2 8)
  d=$(add_stripe "$mode" 64K $args) || exit 1
  id=$(devid "$d")
  fio_verify "$d" fill --rw=write --bs=1m --size=16M
  used=$(du -k "$T/s0.img" | cut -f1)
  [ "$used" -ge 8000 ] || die "$mode: s0 holds only ${used}K after the fill"
  blkdiscard "$d" || die "$mode: blkdiscard"
  dd if="$d" bs=1M count=16 iflag=direct 2> /dev/null | cmp -n 16777216 - /dev/zero \
    || die "$mode: the device does not read zeroes after the discard"
  for f in s0 s1; do
    u=$(du -k "$T/$f.img" | cut -f1)
    [ "$u" -lt 1024 ] || die "$mode: $f.img still holds ${u}K after the discard"
  done
  case $mode in
    bpf*) [ "$(field_of "$id" bpf_pass_span)" -gt 0 ] || { ublk-user list --json; die "$mode: the spanning discard was not passed to the server"; } ;;
  esac
  ublk-user del --id "$id" || die "del"
  log "ok: $mode: discard of the whole device reads zeroes, files freed"
done

log "== one file shrunk under the device"
for mode in copy bpf-kernel; do
  case " $(modes) " in *" $mode "*) ;; *) continue ;; esac
  args=$(mk_files 2 8)
  d=$(add_stripe "$mode" 64K $args) || exit 1
  id=$(devid "$d")
  fio_verify "$d" fill --rw=write --bs=1m --size=16M
  # chunk 1 (file 1) and chunk 2 (file 0) as written
  dd if="$d" of="$T/c2.want" bs=64k skip=2 count=1 iflag=direct 2> /dev/null
  truncate -s 0 "$T/s1.img"
  dd if="$d" of=/dev/null bs=64k skip=1 count=1 iflag=direct 2> "$T/dd.err" \
    && die "$mode: a read of a chunk on the emptied file succeeded"
  grep -qi "input/output error" "$T/dd.err" || { cat "$T/dd.err"; die "$mode: not EIO"; }
  dd if="$d" of="$T/c2.got" bs=64k skip=2 count=1 iflag=direct 2> /dev/null || die "$mode: the intact file's chunk fails"
  cmp "$T/c2.want" "$T/c2.got" || die "$mode: the intact file's chunk changed"
  ublk-user del --id "$id" || die "del"
  log "ok: $mode: EIO from the emptied file, the other file intact"
done

if has_feature bpf_kernel_io && has_feature user_recovery; then
  log "== bpf-kernel: kill + recover under fio verify"
  args=$(mk_files 3 8)
  d=$(add_stripe bpf-kernel 64K $args --recovery --reissue) || exit 1
  id=$(devid "$d")
  kill_and_recover "$d" "$id" bpf-kernel
  [ "$(field_of "$id" chunk)" = 65536 ] || { ublk-user list --json; die "recovered without its chunk"; }
  fio_ends_clean bpf-kernel
  $FIX stripe-check --chunk 65536 "$d" $(files_of 3) > "$T/chk.out" 2>&1 \
    || { cat "$T/chk.out"; die "after recovery: the files do not hold the reference striping"; }
  ublk-user del --id "$id" || die "del"
  log "ok: bpf-kernel kill + recover: fio verified, $(cat "$T/chk.out")"
fi
if has_feature bpf_kernel_io; then
  log "== bpf-kernel: del under fio"
  args=$(mk_files 3 8)
  d=$(add_stripe bpf-kernel 64K $args) || exit 1
  id=$(devid "$d")
  timeout -k 5 60 fio --name=del --filename="$d" --rw=randrw --bsrange=4k-256k --direct=1 --ioengine=libaio \
    --iodepth=32 --time_based --runtime=40 --output="$T/del.out" > /dev/null 2>&1 &
  fpid=$!
  sleep 2
  t0=$(now)
  ublk-user del --id "$id" 2> "$T/del.err" || { cat "$T/del.err"; die "del under fio failed"; }
  wait "$fpid"; frc=$?
  tf=$(($(now) - t0))
  { [ "$frc" = 124 ] || [ "$frc" = 137 ]; } && die "fio hung after del"
  [ "$frc" != 0 ] || { cat "$T/del.out"; die "fio succeeded on a deleted device"; }
  [ "$tf" -le 20 ] || die "fio took ${tf}s to end after del"
  wait_gone "$id" 10 || die "device nodes still there after del"
  d=$(add_stripe bpf-kernel 64K $args) || exit 1
  fio_verify "$d" after --rw=randwrite --bsrange=4k-1m --size=24M
  ublk-user del --all || die "del"
  log "ok: bpf-kernel del under fio: fio rc=$frc after ${tf}s, a new stripe verifies"
fi
rm -f "$T"/s*.img "$T"/c2.*
