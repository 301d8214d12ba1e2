#!/bin/sh
# 33-bpf-fallback on a kernel without our series, Debian's prebuilt 7.2
# (no UBLK_F_BPF; ublk_drv is a module there): --mode bpf falls back to
# copy with a log line, --mode bpf-kernel to bpf and then copy (a line
# each), --no-fallback fails for both.
# kernel: distro
# timeout: 300
# cost: 15
exec sh tests/vm/33-bpf-fallback.sh
