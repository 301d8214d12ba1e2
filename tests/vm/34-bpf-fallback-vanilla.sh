#!/bin/sh
# 33-bpf-fallback on unpatched 7.2 (no UBLK_F_BPF): --mode bpf falls back to
# copy with a log line, --mode bpf-kernel to bpf and then copy (a line each),
# --no-fallback fails for both.
# kernel: vanilla
# timeout: 300
exec sh tests/vm/33-bpf-fallback.sh
