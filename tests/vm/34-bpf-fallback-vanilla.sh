#!/bin/sh
# 33-bpf-fallback on unpatched 7.2 (no UBLK_F_BPF): --mode bpf falls back to
# copy with a log line, --no-fallback fails.
# kernel: vanilla
# timeout: 300
exec sh tests/vm/33-bpf-fallback.sh
