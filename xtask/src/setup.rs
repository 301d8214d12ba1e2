//! `cargo xtask setup`: the one subcommand that installs anything (Debian
//! packages, the nightly toolchain's rust-src, bpf-linker); it says what it
//! will install before it does. `test` and `run` call it first (CI runs
//! `cargo xtask test` on a fresh machine); every other subcommand only
//! [`check`]s what it needs and fails naming `cargo xtask setup`.

use crate::util::{cache_dir, cmd, log_path, run_logged, say, which};
use anyhow::{bail, Context, Result};
use std::path::Path;
use ublk_ebpf_build::{Missing, BPF_LINKER_VERSION, TOOLCHAIN};

/// What a subcommand needs installed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Need {
    /// Building a kernel (also the W=1 check and the kublk selftests) and
    /// downloading Debian's kernel packages.
    Kernel,
    /// Booting the VM: QEMU and the host programs the initramfs copies.
    Vm,
    /// Building the BPF program: the nightly toolchain's rust-src, bpf-linker.
    Bpf,
    /// checkpatch.pl's SPDX check.
    Checkpatch,
}

/// Everything: what `setup` installs.
pub const ALL: &[Need] = &[Need::Kernel, Need::Vm, Need::Bpf, Need::Checkpatch];

use Need::{Checkpatch, Kernel, Vm};

/// Debian packages, the file that proves each one is there (checked
/// instead of dpkg: much faster), and who needs it.
const PACKAGES: &[(&str, &str, &[Need])] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64", &[Vm]),
    ("fio", "/usr/bin/fio", &[Vm]),
    // the VM tests read `ublk-user list --json` with it (vm::GUEST_PROGRAMS)
    ("jq", "/usr/bin/jq", &[Vm]),
    ("busybox-static", "/bin/busybox", &[Vm]),
    ("flex", "/usr/bin/flex", &[Kernel]),
    ("bison", "/usr/bin/bison", &[Kernel]),
    ("bc", "/usr/bin/bc", &[Kernel]),
    ("libelf-dev", "/usr/include/libelf.h", &[Kernel]),
    ("libssl-dev", "/usr/include/openssl/ssl.h", &[Kernel]),
    ("cpio", "/usr/bin/cpio", &[Vm]),
    ("dwarves", "/usr/bin/pahole", &[Kernel]),
    ("xz-utils", "/usr/bin/xz", &[Kernel, Vm]),
    ("e2fsprogs", "/sbin/mkfs.ext4", &[Vm]),
    // test 66 puts backing files on xfs too (vm::GUEST_PROGRAMS)
    ("xfsprogs", "/sbin/mkfs.xfs", &[Vm]),
    ("util-linux", "/usr/sbin/blkdiscard", &[Vm]),
    ("make", "/usr/bin/make", &[Kernel]),
    ("gcc", "/usr/bin/gcc", &[Kernel]),
    ("perl", "/usr/bin/perl", &[Kernel, Checkpatch]),
    ("git", "/usr/bin/git", &[Kernel]),
    ("rsync", "/usr/bin/rsync", &[Kernel]),
    ("fdisk", "/sbin/sfdisk", &[Vm]),
    // test 71 (qemu-nbd: nbd servers and clients in the guest), test 72
    // and the qcow2 host tests (qemu-img), and the stripe bench (dmsetup:
    // dm-stripe) (vm::GUEST_PROGRAMS)
    ("qemu-utils", "/usr/bin/qemu-nbd", &[Vm]),
    ("dmsetup", "/usr/sbin/dmsetup", &[Vm]),
    // blktests' check (column, logger) and liburing's C++ test, built on
    // the host for test 44 and `cargo xtask suites` (xtask/src/suites.rs)
    ("bsdextrautils", "/usr/bin/column", &[Vm]),
    ("bsdutils", "/usr/bin/logger", &[Vm]),
    ("g++", "/usr/bin/g++", &[Vm]),
    // checkpatch.pl's SPDX check (scripts/spdxcheck.py) needs these.
    (
        "python3-ply",
        "/usr/lib/python3/dist-packages/ply/__init__.py",
        &[Checkpatch],
    ),
    (
        "python3-git",
        "/usr/lib/python3/dist-packages/git/__init__.py",
        &[Checkpatch],
    ),
    (
        "debian-archive-keyring",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
        &[Kernel],
    ),
];

/// What is missing for a set of needs: what `setup` would install.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Plan {
    pub packages: Vec<&'static str>,
    /// The nightly toolchain itself (installed with rust-src).
    pub toolchain: bool,
    pub rust_src: bool,
    /// bpf-linker is absent or not BPF_LINKER_VERSION.
    pub bpf_linker: bool,
}

/// The state of the Rust tools the BPF build needs, as probed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RustTools {
    /// What `ublk_ebpf_build::missing_tools` reports on PATH.
    pub missing: Vec<Missing>,
    /// `bpf-linker --version` (PATH or ~/.cargo/bin) names BPF_LINKER_VERSION.
    pub linker_version_ok: bool,
}

impl RustTools {
    /// Probes this machine (runs `rustup run nightly rustc --print sysroot`
    /// and `bpf-linker --version`; installs nothing).
    pub fn probe() -> Self {
        RustTools {
            missing: ublk_ebpf_build::missing_tools(std::env::var_os("PATH").as_deref()),
            linker_version_ok: bpf_linker_ok(),
        }
    }
}

impl Plan {
    /// What `needs` lack, given which files exist and the Rust tools' state.
    pub fn of(needs: &[Need], exists: impl Fn(&Path) -> bool, rust: &RustTools) -> Plan {
        let packages = PACKAGES
            .iter()
            .filter(|(_, _, who)| who.iter().any(|n| needs.contains(n)))
            .filter(|(_, probe, _)| !exists(Path::new(probe)))
            .map(|(p, _, _)| *p)
            .collect();
        let mut plan = Plan {
            packages,
            ..Plan::default()
        };
        if needs.contains(&Need::Bpf) {
            for m in &rust.missing {
                match m {
                    Missing::Toolchain(_) => plan.toolchain = true,
                    Missing::RustSrc => plan.rust_src = true,
                    Missing::BpfLinker => plan.bpf_linker = true,
                    // rustup itself: not something setup installs; the
                    // toolchain step fails naming it.
                    Missing::Rustup => plan.toolchain = true,
                }
            }
            if !rust.linker_version_ok {
                plan.bpf_linker = true;
            }
        }
        plan
    }

    /// What is missing on this machine for `needs` (probes only).
    pub fn probe(needs: &[Need]) -> Plan {
        let rust = if needs.contains(&Need::Bpf) {
            RustTools::probe()
        } else {
            RustTools {
                missing: Vec::new(),
                linker_version_ok: true,
            }
        };
        Plan::of(needs, Path::exists, &rust)
    }

    pub fn is_empty(&self) -> bool {
        *self == Plan::default()
    }

    /// One phrase per item, for "setup: will install: ...".
    pub fn items(&self) -> Vec<String> {
        let mut v = Vec::new();
        if !self.packages.is_empty() {
            v.push(format!("Debian packages {}", self.packages.join(" ")));
        }
        if self.toolchain {
            v.push(format!("the {TOOLCHAIN} toolchain with rust-src (rustup)"));
        } else if self.rust_src {
            v.push(format!("rust-src for the {TOOLCHAIN} toolchain (rustup)"));
        }
        if self.bpf_linker {
            v.push(format!("bpf-linker {BPF_LINKER_VERSION} (cargo install)"));
        }
        v
    }
}

/// Fails, naming what is missing and `cargo xtask setup`, unless everything
/// `needs` is installed. Installs nothing.
pub fn check(needs: &[Need]) -> Result<()> {
    check_plan(&Plan::probe(needs))
}

fn check_plan(plan: &Plan) -> Result<()> {
    if plan.is_empty() {
        return Ok(());
    }
    bail!(
        "missing: {}: run `cargo xtask setup` (it installs them{})",
        plan.items().join("; "),
        if plan.packages.is_empty() {
            ""
        } else {
            "; the Debian packages as root"
        }
    )
}

/// Installs what is missing, after saying what that is.
pub fn setup() -> Result<()> {
    let plan = Plan::probe(ALL);
    if plan.is_empty() {
        say("setup: everything is installed");
        return Ok(());
    }
    say(format!("setup: will install: {}", plan.items().join("; ")));
    if !plan.packages.is_empty() {
        install_packages(&plan.packages, is_root(), &cache_dir()?.join("logs"))?;
    }
    if plan.toolchain {
        say(format!(
            "setup: installing the {TOOLCHAIN} toolchain with rust-src"
        ));
        run_logged(
            "rustup toolchain install",
            cmd("rustup").args([
                "toolchain",
                "install",
                TOOLCHAIN,
                "--profile",
                "minimal",
                "--component",
                "rust-src",
            ]),
            &log_path("rustup-toolchain.log")?,
        )?;
    } else if plan.rust_src {
        say(format!(
            "setup: installing rust-src for the {TOOLCHAIN} toolchain"
        ));
        run_logged(
            "rustup component add rust-src",
            cmd("rustup").args(["component", "add", "rust-src", "--toolchain", TOOLCHAIN]),
            &log_path("rustup-rust-src.log")?,
        )?;
    }
    if plan.bpf_linker {
        say(format!(
            "setup: installing bpf-linker@{BPF_LINKER_VERSION} (builds against rustc's LLVM, ~2 min)"
        ));
        run_logged(
            "cargo install bpf-linker",
            cmd("cargo").args([
                &format!("+{TOOLCHAIN}"),
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ]),
            &log_path("bpf-linker-install.log")?,
        )?;
    }
    let left = Plan::probe(ALL);
    if !left.is_empty() {
        bail!(
            "setup: still missing after installing: {}{}",
            left.items().join("; "),
            if left.bpf_linker {
                " (cargo installs into ~/.cargo/bin: is it on PATH?)"
            } else {
                ""
            }
        );
    }
    say("setup: everything is installed");
    Ok(())
}

/// `apt-get install` these Debian packages (`root`: whether we may), with
/// one retry after `apt-get update`; the apt logs go to `logs/`. An error
/// names the packages and carries apt's own error line.
fn install_packages(missing: &[&str], root: bool, logs: &Path) -> Result<()> {
    if !root {
        bail!(
            "setup: missing Debian packages {} and not root: run `sudo apt-get install {}`",
            missing.join(" "),
            missing.join(" ")
        );
    }
    say(format!(
        "setup: installing Debian packages: {}",
        missing.join(" ")
    ));
    let log = logs.join("apt-install.log");
    let install = || {
        run_logged(
            "apt-get install",
            cmd("apt-get")
                .env("DEBIAN_FRONTEND", "noninteractive")
                .args(["-o", "DPkg::Lock::Timeout=600", "install", "-y", "-q"])
                .arg("--no-install-recommends")
                .args(missing),
            &log,
        )
    };
    let what = || {
        format!(
            "setup: cannot install Debian packages {}",
            missing.join(" ")
        )
    };
    if let Err(first) = install() {
        // Stale package lists are the usual cause: refresh and retry once.
        say("setup: apt-get install failed; refreshing the package lists and retrying once");
        if let Err(update) = run_logged(
            "apt-get update",
            cmd("apt-get").args(["update", "-q"]),
            &logs.join("apt-update.log"),
        ) {
            bail!("{}: {first:#}; and {update:#}", what());
        }
        install().with_context(what)?;
    }
    Ok(())
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

fn bpf_linker_ok() -> bool {
    let Some(bin) = which("bpf-linker").or_else(|| {
        std::env::var_os("HOME")
            .map(|h| std::path::PathBuf::from(h).join(".cargo/bin/bpf-linker"))
            .filter(|p| p.exists())
    }) else {
        return false;
    };
    cmd(bin.to_str().unwrap_or("bpf-linker"))
        .arg("--version")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).contains(BPF_LINKER_VERSION))
        .unwrap_or(false)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;

    const NO_SUCH_PACKAGE: &str = "xtask-no-such-package-zz";

    fn rust(missing: Vec<Missing>, linker_version_ok: bool) -> RustTools {
        RustTools {
            missing,
            linker_version_ok,
        }
    }

    #[test]
    fn plan_takes_only_the_packages_of_the_needs() {
        let none = |_: &Path| false;
        let ok = rust(vec![], true);
        let vm = Plan::of(&[Need::Vm], none, &ok);
        assert_eq!(
            vm.packages,
            [
                "qemu-system-x86",
                "fio",
                "jq",
                "busybox-static",
                "cpio",
                "xz-utils",
                "e2fsprogs",
                "xfsprogs",
                "util-linux",
                "fdisk",
                "qemu-utils",
                "dmsetup",
                "bsdextrautils",
                "bsdutils",
                "g++"
            ]
        );
        assert!(!vm.toolchain && !vm.rust_src && !vm.bpf_linker);
        let all = Plan::of(ALL, none, &ok);
        assert_eq!(all.packages.len(), PACKAGES.len());
        // Present files are not planned.
        let some = Plan::of(&[Need::Vm], |p: &Path| p != Path::new("/usr/bin/fio"), &ok);
        assert_eq!(some.packages, ["fio"]);
    }

    #[test]
    fn plan_for_the_bpf_build_is_rust_tools_only() {
        let none = |_: &Path| false;
        let p = Plan::of(
            &[Need::Bpf],
            none,
            &rust(vec![Missing::RustSrc, Missing::BpfLinker], false),
        );
        assert_eq!(
            p,
            Plan {
                packages: vec![],
                toolchain: false,
                rust_src: true,
                bpf_linker: true
            }
        );
        assert_eq!(
            p.items(),
            [
                "rust-src for the nightly toolchain (rustup)",
                "bpf-linker 0.10.4 (cargo install)"
            ]
        );
        // A bpf-linker of another version is replaced.
        let other = Plan::of(&[Need::Bpf], none, &rust(vec![], false));
        assert!(other.bpf_linker && !other.rust_src);
        let no_nightly = Plan::of(
            &[Need::Bpf],
            none,
            &rust(vec![Missing::Toolchain("not installed".into())], true),
        );
        assert_eq!(
            no_nightly.items(),
            ["the nightly toolchain with rust-src (rustup)"]
        );
        // Rust tools are not looked at when the BPF build is not needed.
        let kernel = Plan::of(
            &[Need::Kernel],
            |_: &Path| true,
            &rust(vec![Missing::BpfLinker], false),
        );
        assert!(kernel.is_empty());
    }

    #[test]
    fn check_names_what_is_missing_and_setup() {
        assert!(check_plan(&Plan::default()).is_ok());
        let e = check_plan(&Plan {
            packages: vec!["fio", "cpio"],
            bpf_linker: true,
            ..Plan::default()
        })
        .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "missing: Debian packages fio cpio; bpf-linker 0.10.4 (cargo install): \
             run `cargo xtask setup` (it installs them; the Debian packages as root)"
        );
        let e = check_plan(&Plan {
            rust_src: true,
            ..Plan::default()
        })
        .unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "missing: rust-src for the nightly toolchain (rustup): \
             run `cargo xtask setup` (it installs them)"
        );
    }

    #[test]
    fn every_package_has_a_need() {
        for (p, _, who) in PACKAGES {
            assert!(!who.is_empty(), "{p} is needed by nobody");
            assert!(who.iter().all(|n| ALL.contains(n)), "{p}");
        }
    }

    #[test]
    fn missing_packages_without_root_say_what_to_run() {
        let logs = TempDir::new("apt-nonroot");
        let e = install_packages(&[NO_SUCH_PACKAGE, "fio"], false, logs.path()).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "setup: missing Debian packages xtask-no-such-package-zz fio and not root: \
             run `sudo apt-get install xtask-no-such-package-zz fio`"
        );
    }

    /// As root this really runs apt-get (install, update, install again).
    #[test]
    fn package_apt_cannot_find_is_named_with_apts_error() {
        let logs = TempDir::new("apt-missing");
        let root = is_root();
        let e = install_packages(&[NO_SUCH_PACKAGE], root, logs.path()).unwrap_err();
        let msg = format!("{e:#}");
        if !root {
            assert!(msg.contains("and not root"), "{msg}");
            return;
        }
        assert!(
            msg.starts_with(&format!(
                "setup: cannot install Debian packages {NO_SUCH_PACKAGE}: apt-get install failed"
            )),
            "{msg}"
        );
        assert!(
            msg.contains(&format!("E: Unable to locate package {NO_SUCH_PACKAGE}")),
            "{msg}"
        );
    }
}
