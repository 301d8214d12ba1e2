#!/bin/sh
# Test suites written by others on our kernel and devices (issue 27):
# blktests (its `ublk` group, with its own miniublk server; its `block`
# group's device tests with TEST_DEVS = a ublk-user device) and liburing's
# regression tests (test/). Unmodified snapshots from ../shared/third_party,
# built and staged by the host in target/suites (xtask/src/suites.rs).
#
# CI (SUITES_PLAN=ci, the default) runs:
# - blktests ublk/001-006 (no device of ours: the driver under miniublk);
# - blktests block's device tests (./check -d block) on a bpf-kernel
#   ublk-user loop device, fio runtimes capped at 10 s (blktests' TIMEOUT);
# - liburing's tests that touch uring_cmd, registered (fixed) buffers and
#   registered files, plus those that take a device on the bpf-kernel device.
# and requires every test that passes in the committed baseline
# tests/suites-baseline.txt on the reference (Debian's unpatched 7.2 for
# the device-less tests, the kernel loop driver for the block device tests)
# to pass here; cargo xtask test writes that list to
# target/suites/expect-pass.txt before the boot (or the reason the baseline
# cannot be used, which fails this test).
# SUITES_PLAN=full (cargo xtask suites) runs all of it: blktests ublk and
# the whole block group, its device tests on loop and on ublk-user in every
# mode the kernel has (fio runtimes 15 s), every liburing test; results
# only, no comparison.
# timeout: 1500
# cost: 430
. tests/vm/lib.sh
. tests/vm/lib-suites.sh
plan=${SUITES_PLAN:-ci}
res=${SUITES_RESULTS:-target/suites/results-ci.txt}
: > "$res"
suites_stage

# liburing tests that touch the io_uring paths patch 0003 changes
# (uring_cmd), fixed buffers (what the zero-copy modes register) and
# registered files (what bpf mode's program names).
LIBURING_CI="uring_cmd_ublk.t sqe-mixed-uring_cmd.t socket-io-cmd.t
  socket-getsetsock-cmd.t cmd-discard.t io_uring_passthrough.t
  fixed-buf-iter.t fixed-buf-merge.t fixed-link.t fixed-reuse.t fixed-seg.t
  fixed-hugepage.t vec-regbuf.t regbuf-clone.t regbuf-merge.t rsrc_tags.t
  file-register.t file-update.t file-alloc-range-hint.t reg-fd-only.t
  reg-hint.t reg-reg-ring.t ooo-file-unreg.t nop-fixed-file-leak.t
  open-direct-link.t open-direct-pick.t fd-install.t pipe-direct-fixed.t
  io_uring_register.t read-write.t"
# Those that read and write the block device given as their argument.
LIBURING_DEV="cmd-discard.t file-verify.t fixed-seg.t read-write.t"

if [ "$plan" = ci ]; then
  export BLKTESTS_TIMEOUT=10
  BLOCK_MODES="bpf-kernel"
  LIBURING_TESTS=$LIBURING_CI
else
  # fio runtimes 15 s instead of blktests' default 30, for TCG.
  export BLKTESTS_TIMEOUT=${BLKTESTS_TIMEOUT:-15}
  BLOCK_MODES=${SUITES_MODES:-loop bpf-kernel copy zc bpf}
  LIBURING_TESTS=$(cd "$SUITES_DIR/liburing" && ls *.t | sort)
fi

blktests_run "$res" - - ublk
liburing_run "$res" - - $LIBURING_TESTS

for m in $BLOCK_MODES; do
  img=$TEST_TMP/$m.img
  "$(tool truncate)" -s 1G "$img" || die "truncate $img"
  if [ "$m" = loop ]; then
    dev=$(losetup -f --show "$img") || die "losetup $img"
  else
    if [ "$m" != copy ] && [ "$m" != zc ] && ! has_feature "$([ "$m" = bpf ] && echo bpf || echo bpf_kernel_io)"; then
      log "this kernel has no $m mode: block device tests not run on it"
      continue
    fi
    dev=$(ublk_user_dev "$m" "$img")
  fi
  # block/033 adds and deletes miniublk's device 0 and ends with
  # `miniublk del -a`, which would delete ours: it ran above, device-less.
  blktests_run "$res" "$m" "$dev" -d -x block/033 block
  liburing_run "$res" "$m" "$dev" $LIBURING_DEV
  if [ "$m" = loop ]; then
    losetup -d "$dev"
  else
    ublk-user del --all || die "ublk-user del --all after the $m device's tests"
  fi
  rm -f "$img"
done

# The block group's tests that take no device (null_blk, scsi_debug, ...;
# block/033 is miniublk's): the block layer of the kernel, once.
[ "$plan" = ci ] || blktests_run "$res" - - block

log "results: $res ($(wc -l < "$res") lines)"
[ "$plan" = ci ] || exit 0

expect=target/suites/expect-pass.txt
[ -f "$expect" ] || die "no $expect: cargo xtask test writes it from tests/suites-baseline.txt"
grep -q '^error:' "$expect" && die "the committed suites baseline cannot be used: $(sed 's/^error: //' "$expect")"
regressions="" compared=0
while read -r suite t d; do
  got=$(awk -v s="$suite" -v t="$t" -v d="$d" '$1 == s && $2 == t && $3 == d { print $4 }' "$res")
  [ -n "$got" ] || continue   # not in this plan
  compared=$((compared + 1))
  [ "$got" = pass ] || regressions="$regressions $suite:$t@$d($got)"
done < "$expect"
[ "$compared" -gt 0 ] || die "no test of this run is in the baseline's passing list"
[ -z "$regressions" ] || die "pass on the reference (tests/suites-baseline.txt) but not here:$regressions"
log "no regression: the $compared tests run here that pass on the reference pass on our kernel"
