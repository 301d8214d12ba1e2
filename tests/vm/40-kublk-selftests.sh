#!/bin/sh
# The ublk driver's own selftests (kublk) on our kernel. Results are kept in
# target/selftests/results-ublk.txt for 41, which compares them with vanilla
# 7.2. This test itself requires our BPF selftest (test_bpf_01) to pass.
# timeout: 3000
. tests/vm/lib.sh
. tests/vm/lib-kublk.sh
run_kublk_selftests target/selftests/results-ublk.txt
grep -q '^test_bpf_01.sh pass$' target/selftests/results-ublk.txt \
  || die "test_bpf_01 (UBLK_F_BPF selftest) did not pass: $(grep '^test_bpf_01' target/selftests/results-ublk.txt)"
