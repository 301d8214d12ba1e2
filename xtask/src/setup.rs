//! `cargo xtask setup`: install what is missing, say what is installed.

use crate::util::{cache_dir, cmd, log_path, run_logged, say, which};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Debian packages the build and the VM need, with the binary that proves
/// each one is there (checked first: it is much faster than dpkg).
const PACKAGES: &[(&str, &str)] = &[
    ("qemu-system-x86", "/usr/bin/qemu-system-x86_64"),
    ("fio", "/usr/bin/fio"),
    // the VM tests read `ublk-user list --json` with it (vm::GUEST_PROGRAMS)
    ("jq", "/usr/bin/jq"),
    ("busybox-static", "/bin/busybox"),
    ("flex", "/usr/bin/flex"),
    ("bison", "/usr/bin/bison"),
    ("bc", "/usr/bin/bc"),
    ("libelf-dev", "/usr/include/libelf.h"),
    ("libssl-dev", "/usr/include/openssl/ssl.h"),
    ("cpio", "/usr/bin/cpio"),
    ("dwarves", "/usr/bin/pahole"),
    ("xz-utils", "/usr/bin/xz"),
    ("e2fsprogs", "/sbin/mkfs.ext4"),
    ("util-linux", "/usr/sbin/blkdiscard"),
    ("make", "/usr/bin/make"),
    ("gcc", "/usr/bin/gcc"),
    ("perl", "/usr/bin/perl"),
    ("git", "/usr/bin/git"),
    ("rsync", "/usr/bin/rsync"),
    ("fdisk", "/sbin/sfdisk"),
    // checkpatch.pl's SPDX check (scripts/spdxcheck.py) needs these.
    (
        "python3-ply",
        "/usr/lib/python3/dist-packages/ply/__init__.py",
    ),
    (
        "python3-git",
        "/usr/lib/python3/dist-packages/git/__init__.py",
    ),
    (
        "debian-archive-keyring",
        "/usr/share/keyrings/debian-archive-keyring.gpg",
    ),
];

pub const BPF_LINKER_VERSION: &str = "0.10.4";

pub fn setup() -> Result<()> {
    let missing: Vec<&str> = PACKAGES
        .iter()
        .filter(|(_, probe)| !std::path::Path::new(probe).exists())
        .map(|(p, _)| *p)
        .collect();
    if !missing.is_empty() {
        install_packages(&missing, is_root(), &cache_dir()?.join("logs"))?;
    }

    if !nightly_has_rust_src()? {
        say("setup: installing rust-src for the nightly toolchain");
        run_logged(
            "rustup component add rust-src",
            cmd("rustup").args(["component", "add", "rust-src", "--toolchain", "nightly"]),
            &log_path("rustup-rust-src.log")?,
        )?;
    }

    if !bpf_linker_ok() {
        say(format!(
            "setup: installing bpf-linker@{BPF_LINKER_VERSION} (builds against rustc's LLVM, ~2 min)"
        ));
        run_logged(
            "cargo install bpf-linker",
            cmd("cargo").args([
                "+nightly",
                "install",
                &format!("bpf-linker@{BPF_LINKER_VERSION}"),
                "--locked",
            ]),
            &log_path("bpf-linker-install.log")?,
        )?;
    }
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

fn nightly_has_rust_src() -> Result<bool> {
    let out = cmd("rustup")
        .args(["component", "list", "--installed", "--toolchain", "nightly"])
        .output()
        .context("setup: rustup is not available")?;
    if !out.status.success() {
        bail!(
            "setup: the nightly toolchain is missing (needed for the BPF build): {}",
            String::from_utf8_lossy(&out.stderr)
                .lines()
                .next()
                .unwrap_or("")
        );
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .lines()
        .any(|l| l.starts_with("rust-src")))
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
