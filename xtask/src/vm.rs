//! The QEMU guest: an initramfs with busybox, fio, jq and a few tools, our
//! kernel, the project shared over 9p at the same path, one command run.

use crate::kernel::{self, Flavor};
use crate::util::{cache_dir, lock, pack_cpio, root, say, shell_quote, which_in, Fnv};
use anyhow::{bail, Context, Result};
use std::collections::BTreeSet;
use std::ffi::OsStr;
use std::fs;
use std::io::{Read, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::time::{Duration, Instant};

/// Host programs copied into the guest, with their shared libraries.
const GUEST_PROGRAMS: &[&str] = &[
    "/usr/bin/fio",
    "/usr/bin/jq",
    "/bin/bash",
    "/sbin/mkfs.ext4",
    "/sbin/mke2fs",
    "/sbin/e2fsck",
    "/sbin/fsck.ext4",
    // test 66: backing files on xfs
    "/sbin/mkfs.xfs",
    "/usr/sbin/blkdiscard",
    "/sbin/losetup",
    "/usr/bin/fallocate",
    "/usr/bin/truncate",
    "/usr/bin/cmp",
    "/usr/bin/od",
    "/usr/bin/sha256sum",
    "/usr/bin/timeout",
    "/usr/bin/stat",
    "/usr/bin/dd",
    "/usr/bin/mktemp",
    "/usr/bin/realpath",
    "/usr/bin/seq",
    "/usr/bin/nproc",
    "/usr/bin/sort",
    "/usr/bin/taskset",
    "/sbin/blockdev",
    "/usr/bin/lsblk",
    "/sbin/sfdisk",
    // test 71: a stripe over nbd devices exported over TCP in the guest
    "/usr/bin/qemu-nbd",
    // test 72: QEMU's own view of the qcow2 images we serve
    "/usr/bin/qemu-img",
    // the stripe bench's dm-stripe contender
    "/usr/sbin/dmsetup",
    // blktests (test 44, cargo xtask suites): block/012, block/004, ublk/003, check
    "/usr/sbin/xfs_io",
    "/usr/bin/findmnt",
    "/sbin/wipefs",
    "/usr/sbin/blkzone",
    "/usr/bin/logger",
    "/usr/bin/column",
];

/// The guest has no udev, hence no rules for `udevadm settle` to wait for:
/// device nodes come from devtmpfs as the kernel adds devices. The driver's
/// selftests call `udevadm settle`; nothing else of udevadm is provided.
const UDEVADM_SHIM: &str = "#!/bin/sh\n\
# xtask guest shim: no udev here, so no rules to settle; devtmpfs makes the nodes.\n\
case \"$1\" in settle|trigger) exit 0 ;; esac\n\
echo \"udevadm: only 'settle' is available in the xtask guest\" >&2\n\
exit 1\n";

#[derive(Clone, Debug)]
pub struct VmOpts {
    pub flavor: Flavor,
    pub cpus: u32,
    pub mem: String,
    /// Whole-run limit; the VM is killed after it.
    pub timeout: Duration,
    /// The guest must have started /init within this.
    pub boot_timeout: Duration,
    pub accel: Accel,
    pub tmp_size: String,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Accel {
    /// KVM when a probe boot proves it works, else TCG.
    Auto,
    Tcg,
    Kvm,
}

/// What one boot adds to `VmOpts` (`run_script_with`): disks, and a line
/// of the command's output that ends the run at once.
#[derive(Clone, Debug, Default)]
pub struct Extras {
    /// Raw images attached as virtio-blk disks, in order (`/dev/vda`, ...).
    pub drives: Vec<Drive>,
    /// SIGKILL QEMU as soon as the command prints this line (a power cut:
    /// the guest neither syncs nor shuts down); the result has
    /// `killed_on_marker` set and status 137.
    pub kill_on: Option<String>,
}

#[derive(Clone, Debug)]
pub struct Drive {
    pub path: PathBuf,
    /// QEMU's `cache=` mode: `none`, `writethrough`, ...
    pub cache: String,
}

pub struct VmResult {
    /// Exit status of the command in the guest.
    pub status: i32,
    /// QEMU was killed when the command printed `Extras::kill_on`.
    pub killed_on_marker: bool,
    /// The kernel's console log (serial).
    pub console: PathBuf,
    /// Per-run directory shared with the guest as /xtask.
    pub dir: PathBuf,
}

/// The guest command outlived the VM timeout and the VM was killed. The
/// run directory is kept: whatever the command wrote there so far (test
/// results) is still worth reporting.
#[derive(Debug)]
pub struct TimedOut {
    pub secs: u64,
    pub dir: PathBuf,
    pub console: PathBuf,
}

impl std::fmt::Display for TimedOut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "vm: the command did not finish within {}s, VM killed (raise it with --timeout; console log: {})",
            self.secs,
            self.console.display()
        )
    }
}

impl std::error::Error for TimedOut {}

/// Build (or reuse) the initramfs.
fn initramfs(opts: &VmOpts) -> Result<PathBuf> {
    let cache = cache_dir()?;
    let root = root();
    let init = include_str!("guest-init.sh")
        .replace(
            "@ROOT@",
            root.to_str().context("project path is not UTF-8")?,
        )
        .replace("@ROOT_TAG@", "project")
        .replace("@TMP_SIZE@", &opts.tmp_size);
    let mut files: BTreeSet<PathBuf> = BTreeSet::new();
    for p in GUEST_PROGRAMS {
        let p = Path::new(p);
        if !p.exists() {
            continue;
        }
        files.insert(p.to_path_buf());
        for lib in shared_libs(p)? {
            files.insert(lib);
        }
    }
    let mut key = Fnv::default();
    // Bump when the staging code below changes what goes into the image.
    key.add(b"layout-3");
    key.add(init.as_bytes());
    key.add(UDEVADM_SHIM.as_bytes());
    for f in &files {
        key.add(f.as_os_str().as_encoded_bytes());
        add_stamp(&mut key, f)?;
    }
    let out = cache.join(format!("initramfs/{}.cpio.gz", key.hex()));
    if out.is_file() {
        return Ok(out);
    }
    say("vm: building the initramfs (busybox, fio, jq, e2fsprogs, util-linux)");
    let stage = cache.join("initramfs/stage");
    let _ = fs::remove_dir_all(&stage);
    for d in [
        "bin", "sbin", "usr/bin", "usr/sbin", "lib", "lib64", "etc", "root",
    ] {
        fs::create_dir_all(stage.join(d))?;
    }
    fs::copy("/bin/busybox", stage.join("bin/busybox")).context("busybox-static is missing")?;
    // /bin/sh is bash, as on a distro: busybox sh would run its own applets
    // (losetup, blkdiscard, mktemp...) ahead of the real tools on PATH.
    std::os::unix::fs::symlink("bash", stage.join("bin/sh"))?;
    for f in &files {
        let dst = stage.join(f.strip_prefix("/")?);
        fs::create_dir_all(dst.parent().unwrap())?;
        fs::copy(f, &dst).with_context(|| format!("cannot copy {}", f.display()))?;
    }
    // Debian's /bin, /sbin and /lib are symlinks into /usr; the guest has
    // real directories, so resolve the common aliases.
    let _ = std::os::unix::fs::symlink("../lib64", stage.join("usr/lib64"));
    fs::write(stage.join("usr/bin/udevadm"), UDEVADM_SHIM)?;
    fs::set_permissions(
        stage.join("usr/bin/udevadm"),
        fs::Permissions::from_mode(0o755),
    )?;
    fs::write(stage.join("init"), init)?;
    fs::set_permissions(stage.join("init"), fs::Permissions::from_mode(0o755))?;
    fs::write(
        stage.join("etc/passwd"),
        "root:x:0:0:root:/root:/bin/sh\nnobody:x:65534:65534:nobody:/:/bin/sh\n",
    )?;
    fs::write(stage.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    pack_cpio(&stage, &out, "cpio", "initramfs.log")?;
    Ok(out)
}

/// Size and mtime of `f` into a cache key: a rebuilt input changes it.
fn add_stamp(key: &mut Fnv, f: &Path) -> Result<()> {
    let m = fs::metadata(f)?;
    key.add(&m.len().to_le_bytes());
    key.add(
        &m.modified()?
            .duration_since(std::time::UNIX_EPOCH)?
            .as_secs()
            .to_le_bytes(),
    );
    Ok(())
}

/// The common initramfs followed by a flavor's own (the kernel unpacks
/// concatenated cpio archives in order): cached next to the common one.
fn with_extra(base: &Path, extra: &Path) -> Result<PathBuf> {
    let mut key = Fnv::default();
    key.add(base.as_os_str().as_encoded_bytes());
    key.add(extra.as_os_str().as_encoded_bytes());
    add_stamp(&mut key, extra)?;
    let out = base.with_file_name(format!("{}-extra.cpio.gz", key.hex()));
    if !out.is_file() {
        let mut bytes = fs::read(base)?;
        bytes.extend(fs::read(extra)?);
        let tmp = out.with_extension("tmp");
        fs::write(&tmp, bytes)?;
        fs::rename(&tmp, &out)?;
    }
    Ok(out)
}

/// The shared libraries `ldd` lists for a binary (with the loader).
pub fn shared_libs(bin: &Path) -> Result<Vec<PathBuf>> {
    let out = Command::new("ldd").arg(bin).output()?;
    let text = String::from_utf8_lossy(&out.stdout);
    let mut libs = Vec::new();
    for line in text.lines() {
        let path = match line.split("=>").nth(1) {
            Some(rhs) => rhs.split_whitespace().next(),
            None => line.split_whitespace().next(),
        };
        if let Some(p) = path.filter(|p| p.starts_with('/')) {
            libs.push(PathBuf::from(p));
        }
    }
    Ok(libs)
}

/// Decide the accelerator: KVM only when a probe boot proves it works here.
fn choose_accel(opts: &VmOpts, kernel: &Path, initrd: &Path) -> Result<Accel> {
    match opts.accel {
        Accel::Tcg => return Ok(Accel::Tcg),
        Accel::Kvm => return Ok(Accel::Kvm),
        Accel::Auto => {}
    }
    if !Path::new("/dev/kvm").exists() {
        return Ok(Accel::Tcg);
    }
    // Cache the verdict per host boot: the probe costs up to 20 s.
    let boot_id = fs::read_to_string("/proc/sys/kernel/random/boot_id").unwrap_or_default();
    let stamp = cache_dir()?.join("kvm-probe");
    if let Ok(s) = fs::read_to_string(&stamp) {
        if let Some((id, verdict)) = s.split_once(' ') {
            if id == boot_id.trim() {
                return Ok(if verdict.trim() == "kvm" {
                    Accel::Kvm
                } else {
                    Accel::Tcg
                });
            }
        }
    }
    say("vm: probing whether KVM really boots guests here (once per host boot)");
    let probe = VmOpts {
        accel: Accel::Kvm,
        timeout: Duration::from_secs(20),
        boot_timeout: Duration::from_secs(20),
        ..opts.clone()
    };
    let none = Extras::default();
    let ok = matches!(boot(&probe, kernel, initrd, "exit 0", true, &none), Ok(r) if r.status == 0);
    let verdict = if ok { "kvm" } else { "tcg" };
    fs::write(&stamp, format!("{} {verdict}", boot_id.trim()))?;
    say(format!(
        "vm: KVM {}; using {verdict}",
        if ok { "works" } else { "hangs guests" }
    ));
    Ok(if ok { Accel::Kvm } else { Accel::Tcg })
}

/// Boot the VM and run `script` (sh) as root; stream its output to stdout
/// (and to `output.log` in the run directory).
pub fn run_script(opts: &VmOpts, script: &str) -> Result<VmResult> {
    run_script_with(opts, script, &Extras::default())
}

/// `run_script` with extra disks and a kill marker.
pub fn run_script_with(opts: &VmOpts, script: &str, extras: &Extras) -> Result<VmResult> {
    // A kernel under development outside the cache (e.g. a tree being
    // edited before its patches are exported) boots as the patched flavor.
    let (image, extra) = match std::env::var_os("UBLK_EBPF_KERNEL_IMAGE") {
        Some(p) if !opts.flavor.unpatched() => (PathBuf::from(p), None),
        _ => {
            let k = kernel::ensure(opts.flavor)?;
            (k.image, k.initrd_extra)
        }
    };
    let initrd = {
        let _l = lock(&cache_dir()?.join(".initramfs.lock"), "the initramfs")?;
        let base = initramfs(opts)?;
        match extra {
            Some(extra) => with_extra(&base, &extra)?,
            None => base,
        }
    };
    let accel = choose_accel(opts, &image, &initrd)?;
    let opts = VmOpts {
        accel,
        ..opts.clone()
    };
    boot(&opts, &image, &initrd, script, false, extras)
}

const QEMU: &str = "qemu-system-x86_64";

/// QEMU's binary, searched for in `path` (`PATH` syntax).
fn find_qemu(path: Option<&OsStr>) -> Result<PathBuf> {
    which_in(QEMU, path).with_context(|| {
        format!(
            "vm: {QEMU} is not installed: run `cargo xtask setup` (it installs qemu-system-x86)"
        )
    })
}

fn boot(
    opts: &VmOpts,
    kernel: &Path,
    initrd: &Path,
    script: &str,
    quiet: bool,
    extras: &Extras,
) -> Result<VmResult> {
    let qemu = find_qemu(std::env::var_os("PATH").as_deref())?;
    let runs = cache_dir()?.join("runs");
    boot_with(&qemu, &runs, opts, kernel, initrd, script, quiet, extras)
}

/// `boot` with the QEMU binary and the directory for the run directories
/// given.
#[allow(clippy::too_many_arguments)]
fn boot_with(
    qemu: &Path,
    runs: &Path,
    opts: &VmOpts,
    kernel: &Path,
    initrd: &Path,
    script: &str,
    quiet: bool,
    extras: &Extras,
) -> Result<VmResult> {
    fs::create_dir_all(runs)?;
    let dir = runs.join(format!("{}-{}", std::process::id(), unique()));
    fs::create_dir_all(&dir)?;
    fs::write(dir.join("cmd.sh"), script)?;
    let console = dir.join("console.log");
    let root = root();
    let accel = match opts.accel {
        Accel::Kvm => "kvm",
        _ => "tcg",
    };
    let mut c = Command::new(qemu);
    c.args(["-accel", accel, "-cpu", "max", "-machine", "q35"])
        .args(["-smp", &opts.cpus.to_string(), "-m", &opts.mem])
        .args([
            "-nodefaults",
            "-display",
            "none",
            "-no-reboot",
            "-monitor",
            "none",
        ])
        .arg("-kernel")
        .arg(kernel)
        .arg("-initrd")
        .arg(initrd)
        .args([
            "-append",
            // two null_blk disks: the stripe bench's store stripe-nullb
            "console=ttyS0 panic=-1 loglevel=5 printk.devkmsg=on nokaslr null_blk.nr_devices=2",
        ])
        .arg("-serial")
        .arg(format!("file:{}", console.display()))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=xtask,security_model=none,id=xtask",
            dir.display()
        ))
        .arg("-virtfs")
        .arg(format!(
            "local,path={},mount_tag=project,security_model=none,id=project",
            root.display()
        ))
        .args([
            "-device",
            "virtio-serial-pci",
            "-chardev",
            "stdio,id=out,signal=off",
        ])
        .args(["-device", "virtconsole,chardev=out"])
        .args(extras.drives.iter().flat_map(|d| {
            let file = d.path.display().to_string().replace(',', ",,");
            let spec = format!("file={file},format=raw,if=virtio,cache={}", d.cache);
            ["-drive".to_string(), spec]
        }))
        // e.g. `-icount shift=0,sleep=off` for a deterministic cost model
        // (../shared/reference/environment.md); split on whitespace
        .args(
            std::env::var("XTASK_QEMU_EXTRA")
                .unwrap_or_default()
                .split_whitespace(),
        )
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    let mut child = c.spawn().context("cannot start qemu")?;
    let mut stdout = child.stdout.take().unwrap();
    let quiet_out = quiet;
    let mut out_log = fs::File::create(dir.join("output.log"))?;
    let kill_on = extras.kill_on.clone();
    let (marker_tx, marker_rx) = std::sync::mpsc::channel::<()>();
    let pump = std::thread::spawn(move || {
        let mut buf = [0u8; 8192];
        let mut so = std::io::stdout();
        let mut line: Vec<u8> = Vec::new();
        while let Ok(n) = stdout.read(&mut buf) {
            if n == 0 {
                break;
            }
            if !quiet_out {
                let _ = so.write_all(&buf[..n]);
                let _ = so.flush();
            }
            let _ = out_log.write_all(&buf[..n]);
            let Some(marker) = &kill_on else { continue };
            for &b in &buf[..n] {
                if b != b'\n' {
                    line.push(b);
                    continue;
                }
                if String::from_utf8_lossy(&line).trim() == marker.as_str() {
                    let _ = marker_tx.send(());
                }
                line.clear();
            }
        }
    });
    let mut stderr = child.stderr.take().unwrap();
    let errpump = std::thread::spawn(move || {
        let mut s = String::new();
        let _ = stderr.read_to_string(&mut s);
        s
    });

    let start = Instant::now();
    let mut booted = false;
    let mut killed_on_marker = false;
    let status: Option<ExitStatus> = loop {
        if let Some(st) = child.try_wait()? {
            break Some(st);
        }
        if !booted && dir.join("booted").exists() {
            booted = true;
        }
        let limit = if booted {
            opts.timeout
        } else {
            opts.boot_timeout.min(opts.timeout)
        };
        if start.elapsed() > limit {
            let _ = child.kill();
            let _ = child.wait();
            break None;
        }
        match marker_rx.recv_timeout(Duration::from_millis(50)) {
            Ok(()) => {
                // The power cut: SIGKILL, nothing in the guest runs on.
                let _ = child.kill();
                killed_on_marker = true;
                break Some(child.wait()?);
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => {
                std::thread::sleep(Duration::from_millis(50))
            }
        }
    };
    let _ = pump.join();
    let qemu_err = errpump.join().unwrap_or_default();
    let Some(st) = status else {
        if quiet {
            bail!("probe timed out");
        }
        if !booted {
            bail!(
                "vm: the guest did not boot within {}s ({}); last console line: {} (console log: {})",
                opts.boot_timeout.as_secs(),
                accel,
                last_line(&console),
                console.display()
            );
        }
        return Err(TimedOut {
            secs: opts.timeout.as_secs(),
            dir: dir.clone(),
            console: console.clone(),
        }
        .into());
    };
    if killed_on_marker {
        return Ok(VmResult {
            status: 137,
            killed_on_marker,
            console,
            dir,
        });
    }
    if !st.success() && !quiet {
        // QEMU's own error, not a warning that came before it.
        let mut lines = qemu_err.lines().map(str::trim).filter(|l| !l.is_empty());
        let err = lines
            .clone()
            .find(|l| !l.contains("warning:"))
            .or(lines.next())
            .unwrap_or("no message");
        bail!(
            "vm: qemu failed ({st}): {err} (kernel: {})",
            kernel.display()
        );
    }
    let status = match fs::read_to_string(dir.join("status")) {
        Ok(s) => s.trim().parse().unwrap_or(255),
        Err(_) => {
            if quiet {
                bail!("probe failed");
            }
            bail!(
                "vm: the guest stopped without reporting a result (kernel panic?); last console line: {} (console log: {})",
                last_line(&console),
                console.display()
            );
        }
    };
    Ok(VmResult {
        status,
        killed_on_marker,
        console,
        dir,
    })
}

fn last_line(p: &Path) -> String {
    fs::read_to_string(p)
        .unwrap_or_default()
        .lines()
        .rev()
        .find(|l| !l.trim().is_empty())
        .unwrap_or("(empty)")
        .trim()
        .to_string()
}

fn unique() -> u128 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos())
        .unwrap_or(0)
}

/// `cargo xtask run -- CMD ARGS...` as a shell script.
pub fn command_script(argv: &[String]) -> String {
    let quoted: Vec<String> = argv.iter().map(|a| shell_quote(a)).collect();
    format!("exec {}\n", quoted.join(" "))
}

/// Remove run directories older than a day (they hold console logs).
pub fn prune_runs() {
    let Ok(dir) = cache_dir().map(|c| c.join("runs")) else {
        return;
    };
    let Ok(entries) = fs::read_dir(dir) else {
        return;
    };
    for e in entries.flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .map(|t| t.elapsed().unwrap_or_default() > Duration::from_secs(86400))
            .unwrap_or(false);
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;
    use std::sync::mpsc;

    #[test]
    fn qemu_missing_from_path_points_to_setup() {
        let empty = TempDir::new("no-qemu");
        let path = std::env::join_paths([empty.path()]).unwrap();
        let e = find_qemu(Some(&path)).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "vm: qemu-system-x86_64 is not installed: run `cargo xtask setup` \
             (it installs qemu-system-x86)"
        );
    }

    /// Where the fake kernels are loaded (multiboot, 32-bit protected mode).
    const LOAD: u32 = 0x10_0000;
    /// Offset in the image of a zero IDT descriptor (limit 0, base 0).
    const IDT: u32 = 112;
    /// Offset in the image of the message printed on COM1.
    const MSG: u32 = 128;

    /// A multiboot v1 kernel: a flat binary whose header gives the load
    /// addresses (flags bit 16, the "a.out kludge"), loaded at 1 MiB. It
    /// prints `msg` on the serial console (COM1), runs `then`, and halts
    /// forever with interrupts off.
    fn multiboot_kernel(msg: &str, then: &[u8]) -> Vec<u8> {
        const MAGIC: u32 = 0x1BAD_B002;
        const FLAGS: u32 = 1 << 16;
        let header = [
            MAGIC,
            FLAGS,
            MAGIC.wrapping_add(FLAGS).wrapping_neg(), // checksum
            LOAD,                                     // header_addr (offset 0)
            LOAD,                                     // load_addr
            0,                                        // load_end_addr: whole file
            0,                                        // bss_end_addr: no bss
            LOAD + 32,                                // entry_addr: right after
        ];
        let mut k: Vec<u8> = header.iter().flat_map(|w| w.to_le_bytes()).collect();
        k.push(0xbe); // mov esi, LOAD + MSG
        k.extend((LOAD + MSG).to_le_bytes());
        k.extend([0x66, 0xba, 0xf8, 0x03]); // mov dx, 0x3f8
        k.extend([0xac, 0x84, 0xc0, 0x74, 0x03]); // 1: lodsb; test al, al; jz 2f
        k.extend([0xee, 0xeb, 0xf8]); // out dx, al; jmp 1b; 2:
        k.extend(then);
        k.extend([0xfa, 0xf4, 0xeb, 0xfd]); // cli; 3: hlt; jmp 3b
        assert!(k.len() <= IDT as usize);
        k.resize(MSG as usize, 0);
        k.extend(msg.as_bytes());
        k.extend(b"\n\0");
        k
    }

    /// Children of this process whose command line mentions `needle`.
    fn children_mentioning(needle: &str) -> Vec<i32> {
        let me = std::process::id().to_string();
        let mut pids = Vec::new();
        for e in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = e.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let stat = fs::read_to_string(e.path().join("stat")).unwrap_or_default();
            // "pid (comm) state ppid ...": comm may hold spaces, so split after ')'.
            let ppid = stat
                .rsplit_once(')')
                .and_then(|(_, r)| r.split_whitespace().nth(1));
            let cmdline = fs::read(e.path().join("cmdline")).unwrap_or_default();
            if ppid == Some(me.as_str()) && String::from_utf8_lossy(&cmdline).contains(needle) {
                pids.push(pid);
            }
        }
        pids
    }

    /// Boot `kernel` (bytes) under TCG with a dummy initrd and return the
    /// error `boot_with` gives. Should `boot_with` not return within a
    /// generous guard, its QEMU (found by PID as our child naming the test's
    /// directory) is killed and the test fails rather than hangs.
    fn boot_error(tag: &str, kernel: &[u8], boot_timeout: Duration) -> String {
        let t = TempDir::new(tag);
        let kpath = t.path().join("kernel");
        let initrd = t.path().join("initrd");
        fs::write(&kpath, kernel).unwrap();
        fs::write(&initrd, "not an initramfs").unwrap();
        let qemu = find_qemu(std::env::var_os("PATH").as_deref()).unwrap();
        let opts = VmOpts {
            flavor: Flavor::Ublk,
            cpus: 1,
            mem: "128M".into(),
            // Out of reach: only the boot timeout (or the guard) ends a hang.
            timeout: Duration::from_secs(3600),
            boot_timeout,
            accel: Accel::Tcg,
            tmp_size: "16M".into(),
        };
        let runs = t.path().join("runs");
        let (tx, rx) = mpsc::channel();
        std::thread::spawn(move || {
            let none = Extras::default();
            let r = boot_with(&qemu, &runs, &opts, &kpath, &initrd, "exit 0", false, &none);
            let _ = tx.send(r.map(|r| r.status));
        });
        let guard = Duration::from_secs(120);
        match rx.recv_timeout(guard) {
            Ok(Ok(status)) => panic!("the fake kernel reported a result: {status}"),
            Ok(Err(e)) => format!("{e:#}"),
            Err(mpsc::RecvTimeoutError::Disconnected) => panic!("boot_with panicked"),
            Err(mpsc::RecvTimeoutError::Timeout) => {
                for pid in children_mentioning(&t.path().display().to_string()) {
                    // SAFETY: kill(2) on the PID of our own child QEMU (not yet
                    // reaped: boot_with is still waiting for it); no memory
                    // is involved.
                    unsafe { libc::kill(pid, libc::SIGKILL) };
                }
                let _ = rx.recv_timeout(Duration::from_secs(10));
                panic!("boot_with did not return within {guard:?}");
            }
        }
    }

    #[test]
    fn boot_of_a_file_that_is_not_a_kernel_gives_qemus_error() {
        let garbage = b"this is not a kernel\n".repeat(100);
        let e = boot_error("not-a-kernel", &garbage, Duration::from_secs(60));
        assert!(
            e.starts_with(
                "vm: qemu failed (exit status: 1): qemu: linux kernel too old to load a ram disk \
                 (kernel: "
            ),
            "{e}"
        );
    }

    #[test]
    fn boot_of_a_kernel_that_hangs_times_out() {
        let k = multiboot_kernel("xtask fake kernel: hanging", &[]);
        let e = boot_error("hang", &k, Duration::from_secs(5));
        assert!(
            e.starts_with(
                "vm: the guest did not boot within 5s (tcg); \
                 last console line: xtask fake kernel: hanging (console log: "
            ),
            "{e}"
        );
    }

    #[test]
    fn boot_of_a_kernel_that_resets_reports_no_result() {
        let mut then = vec![0x0f, 0x01, 0x1d]; // lidt [LOAD + IDT]: no vectors
        then.extend((LOAD + IDT).to_le_bytes());
        then.push(0xcc); // int3: #GP, #DF, triple fault; -no-reboot: QEMU exits
        let k = multiboot_kernel("xtask fake kernel: triple fault", &then);
        let e = boot_error("reset", &k, Duration::from_secs(60));
        assert!(
            e.starts_with(
                "vm: the guest stopped without reporting a result (kernel panic?); \
                 last console line: xtask fake kernel: triple fault (console log: "
            ),
            "{e}"
        );
    }

    #[test]
    fn command_script_quotes_every_argument() {
        let argv = ["sh", "-c", "exit 3"].map(String::from);
        assert_eq!(command_script(&argv), "exec sh -c 'exit 3'\n");
        let argv = ["echo", "a'b", "$HOME"].map(String::from);
        assert_eq!(command_script(&argv), "exec echo 'a'\\''b' '$HOME'\n");
    }
}
