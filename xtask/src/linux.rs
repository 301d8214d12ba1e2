//! Debian's linux-source-7.2: the pinned versions, the download and the
//! unpacked pristine tree (a one-commit git repository) that the patched
//! flavors (kernel.rs) and the distro kernel's headers (distro.rs) are made
//! from; and what a kernel image is to the VM ([`Kernel`]).
//!
//! It depends on neither kernel.rs nor distro.rs: kernel.rs builds images
//! (and asks distro.rs for the Debian one), distro.rs fetches that one,
//! both from here.

use crate::util::{cache_dir, cmd, lock, log_path, run_logged, say};
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// Pinned first, then fallbacks seen in trixie-backports / sid.
pub(crate) const VERSIONS: &[&str] = &[
    "7.2.12-1~bpo13+1",
    "7.2.11-1~bpo13+1",
    "7.2.13-1",
    "7.2.9-1~bpo13+1",
    "7.2.6-1~bpo13+1",
];

/// A kernel the VM can boot.
pub struct Kernel {
    pub tree: PathBuf,
    pub build: PathBuf,
    pub image: PathBuf,
    pub release: String,
    /// A second initramfs (gzip'd cpio) the VM loads after the common one:
    /// the distro flavor's modules.
    pub initrd_extra: Option<PathBuf>,
}

impl Kernel {
    /// `make headers_install` into the build directory (`usr/include`): the
    /// uapi headers the selftests and the suites build against.
    pub fn headers_install(&self, log: &str) -> Result<()> {
        run_logged(
            "make headers_install",
            cmd("make")
                .current_dir(&self.tree)
                .arg(format!("O={}", self.build.display()))
                .arg("headers_install"),
            &log_path(log)?,
        )
    }
}

pub fn sanitize(ver: &str) -> String {
    ver.replace('~', "_")
}

/// The unpatched source tree (for scripts/checkpatch.pl).
pub fn ensure_pristine() -> Result<PathBuf> {
    Ok(pristine()?.1)
}

/// The Debian version of linux-source-7.2 in use and its unpatched tree.
pub fn pristine() -> Result<(String, PathBuf)> {
    let cache = cache_dir()?;
    let _lock = lock(
        &cache.join(".kernel-src.lock"),
        "the kernel source download",
    )?;
    let ver = ensure_source(&cache)?;
    let tree = cache.join("src").join(sanitize(&ver)).join("pristine");
    Ok((ver, tree))
}

/// The version already unpacked in the cache, in preference order.
pub fn unpacked_version(cache: &Path) -> Option<&'static str> {
    VERSIONS.iter().copied().find(|ver| {
        cache
            .join("src")
            .join(sanitize(ver))
            .join("pristine/.git")
            .is_dir()
    })
}

/// Download and unpack linux-source-7.2 once; returns the Debian version.
pub(crate) fn ensure_source(cache: &Path) -> Result<String> {
    if let Some(ver) = unpacked_version(cache) {
        return Ok(ver.to_string());
    }
    let dl = cache.join("dl");
    fs::create_dir_all(&dl)?;
    let deb = |ver: &str| {
        dl.join(format!(
            "linux-source-7.2_{}_all.deb",
            ver.replace(':', "%3a")
        ))
    };
    let mut have = VERSIONS
        .iter()
        .find(|v| deb(v).is_file())
        .map(|v| v.to_string());
    if have.is_none() {
        let opts = newer_apt(cache, true)?;
        for ver in VERSIONS {
            say(format!(
                "kernel: downloading linux-source-7.2={ver} (165 MB)"
            ));
            let ok = run_logged(
                "apt-get download",
                cmd("apt-get")
                    .current_dir(&dl)
                    .args(&opts)
                    .args(["download", &format!("linux-source-7.2={ver}")]),
                &log_path("apt-download.log")?,
            );
            match ok {
                Ok(()) if deb(ver).is_file() => {
                    have = Some(ver.to_string());
                    break;
                }
                Ok(()) => say(format!("kernel: {ver} downloaded under an unexpected name")),
                Err(e) => say(format!(
                    "kernel: {ver} not available ({e:#}); trying the next"
                )),
            }
        }
    }
    let Some(ver) = have else {
        bail!(
            "kernel: none of linux-source-7.2 {} could be downloaded",
            VERSIONS.join(", ")
        );
    };

    let base = cache.join("src").join(sanitize(&ver));
    let tmp = base.join("unpack.tmp");
    let _ = fs::remove_dir_all(&tmp);
    fs::create_dir_all(&tmp)?;
    say(format!("kernel: unpacking linux-source-7.2 {ver}"));
    run_logged(
        "dpkg -x",
        cmd("dpkg").arg("-x").arg(deb(&ver)).arg(tmp.join("deb")),
        &log_path("unpack.log")?,
    )?;
    run_logged(
        "tar xf linux-source-7.2.tar.xz",
        cmd("tar")
            .current_dir(&tmp)
            .arg("xf")
            .arg(tmp.join("deb/usr/src/linux-source-7.2.tar.xz")),
        &log_path("unpack.log")?,
    )?;
    let src = tmp.join("linux-source-7.2");
    say("kernel: recording the pristine tree in git (for incremental patching)");
    let git = |args: &[&str]| -> Result<()> {
        run_logged(
            &format!("git {}", args[0]),
            cmd("git")
                .current_dir(&src)
                .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
                .args(args),
            &log_path("git-pristine.log")?,
        )
    };
    git(&["init", "-q"])?;
    git(&["add", "-A", "-f"])?;
    git(&["commit", "-q", "-m", &format!("linux-source-7.2 {ver}")])?;
    git(&["tag", "base"])?;
    fs::rename(&src, base.join("pristine"))?;
    let _ = fs::remove_dir_all(&tmp);
    Ok(ver)
}

/// apt options for a private source list with trixie-backports and sid
/// (the system's apt config is left alone); `update` refreshes the lists.
pub fn newer_apt(cache: &Path, update: bool) -> Result<Vec<String>> {
    let apt = cache.join("apt");
    fs::create_dir_all(apt.join("sources"))?;
    fs::create_dir_all(apt.join("lists/partial"))?;
    fs::write(
        apt.join("sources/newer.sources"),
        "Types: deb\nURIs: http://deb.debian.org/debian\nSuites: trixie-backports sid\n\
         Components: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n",
    )?;
    let opts = vec![
        "-o".to_string(),
        "Dir::Etc::SourceList=/dev/null".to_string(),
        "-o".to_string(),
        format!("Dir::Etc::SourceParts={}", apt.join("sources").display()),
        "-o".to_string(),
        format!("Dir::State::Lists={}", apt.join("lists").display()),
    ];
    if update {
        say("fetching the package lists of trixie-backports and sid");
        run_logged(
            "apt-get update (trixie-backports, sid)",
            cmd("apt-get").args(&opts).arg("update"),
            &log_path("apt-newer-update.log")?,
        )?;
    }
    Ok(opts)
}
