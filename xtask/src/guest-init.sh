#!/bin/busybox sh
# /init of the xtask guest. Mounts the basics, the project (9p, same path as
# on the host) and the per-run control directory, runs /xtask/cmd.sh, writes
# its exit status to /xtask/status and powers off.
/bin/busybox mkdir -p /bb /proc /sys /dev /tmp /run /xtask
/bin/busybox --install -s /bb
export PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin:/bb
mount -t proc proc /proc
mount -t sysfs sys /sys
mount -t devtmpfs dev /dev 2>/dev/null
mkdir -p /dev/pts /dev/shm
mount -t tmpfs -o mode=1777 shm /dev/shm
mount -t tmpfs -o size=@TMP_SIZE@,mode=1777 tmp /tmp
mount -t tmpfs run /run
# A kernel with its drivers as modules (the distro flavor) brings them in
# a second initramfs, decompressed, with their load order.
if [ -f /lib/modules/xtask/load ]; then
  while read -r m; do
    insmod "/lib/modules/xtask/$m.ko" || echo "xtask-guest: insmod $m failed" > /dev/console
  done < /lib/modules/xtask/load
fi
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144 xtask /xtask || {
  echo "xtask-guest: cannot mount the control directory" > /dev/console
  poweroff -f
}
mkdir -p @ROOT@
mount -t 9p -o trans=virtio,version=9p2000.L,msize=262144,cache=loose @ROOT_TAG@ @ROOT@ \
  || echo "xtask-guest: cannot mount @ROOT@" > /dev/console
# Debian's bpf syscall tools and our tests look for these.
mount -t bpf bpf /sys/fs/bpf 2>/dev/null
mount -t debugfs debugfs /sys/kernel/debug 2>/dev/null
ln -sf /proc/self/fd /dev/fd
echo "$(date +%s)" > /xtask/booted
hostname ublk-vm
export HOME=/root TERM=dumb PATH="@ROOT@/target/release:$PATH"
mkdir -p /root
cd @ROOT@ 2>/dev/null || cd /
out=/dev/hvc0
[ -e "$out" ] || out=/dev/console
/bin/sh /xtask/cmd.sh > "$out" 2>&1 < /dev/null
echo $? > /xtask/status
# Flush only our two 9p mounts: a plain sync also flushes every block
# device, and waits forever if a test left one wedged (a kernel bug under
# test), so the VM would never power off and the host would wait until
# its timeout instead of reporting the result.
sync -f /xtask @ROOT@ 2> /dev/null
poweroff -f
