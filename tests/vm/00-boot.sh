#!/bin/sh
# cost: 5
# The guest booted our 7.2 kernel with 2 CPUs, tmpfs /tmp and the project.
. tests/vm/lib.sh
uname -r | grep -q '^7\.2\.' || die "kernel is $(uname -r), not 7.2"
n=$(grep -c ^processor /proc/cpuinfo)
[ "$n" -ge 2 ] || die "guest sees $n CPU(s), expected at least 2"
free_kb=$(df -k /tmp | awk 'NR==2 {print $4}')
[ "$free_kb" -ge 1048576 ] || die "/tmp has only ${free_kb} KiB free"
[ -f Cargo.toml ] && [ -d kernel-patches ] || die "project directory not visible at $(pwd)"
command -v fio > /dev/null || die "fio is not on PATH"
fio --version > /dev/null || die "fio does not run"
log "kernel $(uname -r), $n CPUs, /tmp ${free_kb} KiB free, fio $(fio --version)"
