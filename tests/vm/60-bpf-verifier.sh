#!/bin/sh
# timeout: 200
# cost: 5
# Hostile BPF_PROG_TYPE_UBLK programs the verifier must reject (ublk-bpf-fixture
# verifier): ctx writes (STX, ST, atomic), reads past the ctx, at negative
# offsets, of the reserved bytes, with the wrong size, a non-ctx / modified
# ctx pointer as the helper's ctx, the ctx / a scalar / a short / an
# uninitialized buffer as the SQE, sqe_len 0, unbounded or larger than the
# buffer, forbidden and unknown helpers, return codes outside [0, 1], a
# pointer or nothing returned, an infinite loop, no exit, BPF_F_SLEEPABLE.
# Each must fail to load with its expected verifier message; a valid
# control program must load.
. tests/vm/lib.sh
requires fixture bpf
ublk-bpf-fixture verifier > "$TEST_TMP/v.out" 2>&1; rc=$?
cat "$TEST_TMP/v.out"
[ "$rc" = 0 ] || die "some hostile program was not rejected as expected"
log "PASS: $(tail -n 1 "$TEST_TMP/v.out")"
