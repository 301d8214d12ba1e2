# `cargo xtask run` with no command: the main job, as a short demo.
# A ublk loop device over a tmpfs file, in the best mode the kernel offers,
# a fio write + verify, a few readable lines, then clean up.
set -u
img=/tmp/demo.img
say() { echo "demo: $*"; }
say "kernel $(uname -r), $(grep -c ^processor /proc/cpuinfo) CPUs"
if ! command -v ublk-user > /dev/null 2>&1; then
  say "ublk-user is not built (target/release/ublk-user missing)"; exit 1
fi
features=$(ublk-user features 2>&1) || { say "cannot read ublk features: $features"; exit 1; }
mode=copy
echo "$features" | grep -qw auto_buf_reg && mode=zc
echo "$features" | grep -qw bpf && mode=bpf
say "kernel ublk features: $(echo "$features" | tr '\n' ' ')"
truncate -s 256M "$img"
dev=$(ublk-user add loop --file "$img" --mode "$mode") || { say "could not create the device"; exit 1; }
say "created $dev: loop target over $img, requested mode $mode"
ublk-user list
say "fio: 64 MiB of random 64 KiB writes, then reading everything back and checking crc32c"
fio --name=demo --filename="$dev" --rw=randwrite --bs=64k --size=64m --direct=1 \
    --ioengine=io_uring --iodepth=16 --verify=crc32c --do_verify=1 \
    --output-format=terse --terse-version=3 > /tmp/demo.fio 2>&1
rc=$?
if [ $rc -ne 0 ]; then
  cat /tmp/demo.fio
  say "FAILED: fio exited with $rc"
else
  # terse v3: field 49 = write bw KiB/s, 7 = read bw KiB/s
  awk -F';' '{ printf "demo: fio ok: write %.1f MiB/s, verify read %.1f MiB/s, 0 errors\n", $48/1024, $7/1024 }' /tmp/demo.fio
fi
# the effective data mode (after any fallback) and, in a BPF mode, the program's counters
ublk-user list --json | jq -r '.[] | "device \(.id): effective mode \(.mode) (requested \(.mode_requested))",
  (select(has("bpf_redirected")) | "device \(.id): bpf_redirected \(.bpf_redirected), bpf_passed \(.bpf_passed)")' \
  | sed 's/^/demo: /'
ublk-user del --all && say "device removed"
exit $rc
