//! Builds the BPF program in `ublk-ebpf/` for the two host-side users:
//! `ublk-user/build.rs`, which embeds the object in the binary, and `cargo
//! xtask build-ebpf` / `cargo xtask build`. One place for what the build
//! needs (the nightly toolchain with rust-src, bpf-linker), the command, and
//! the error a person reads when something is missing.
//!
//! The build is the one `ublk-ebpf/` documents: `rustup run nightly cargo
//! build --release --target bpfel-unknown-none -Z build-std=core` in that
//! directory (its `.cargo/config.toml` names bpf-linker as the linker), with
//! `ublk-ebpf/target` as the target directory. Every caller shares that
//! directory, so the object is built once and later builds only check that it
//! is fresh.
//!
//! std only: this crate is a build-dependency.

use std::ffi::{OsStr, OsString};
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};

/// The toolchain the BPF program is built with (`rustup run TOOLCHAIN`).
pub const TOOLCHAIN: &str = "nightly";
/// The BPF target.
pub const TARGET: &str = "bpfel-unknown-none";
/// The linker `ublk-ebpf/.cargo/config.toml` names.
pub const BPF_LINKER: &str = "bpf-linker";
/// The bpf-linker release `cargo xtask setup` installs.
pub const BPF_LINKER_VERSION: &str = "0.10.4";

/// Variables cargo sets for a build script (or a user sets for the host
/// build) that would steer the nested BPF build to the wrong compiler,
/// flags, target or target directory, or merely change its fingerprints (a
/// build script's `HOST`, which aya-ebpf's build script watches, would make
/// every switch between `cargo build` and `cargo xtask build-ebpf` rebuild
/// aya-ebpf and the program). Also the prefixes in [`HOST_BUILD_PREFIXES`].
const HOST_BUILD_ENV: &[&str] = &[
    "HOST",
    "TARGET",
    "OUT_DIR",
    "NUM_JOBS",
    "OPT_LEVEL",
    "DEBUG",
    "PROFILE",
    "RUSTC_LINKER",
    "CARGO_PRIMARY_PACKAGE",
    "CARGO_CRATE_NAME",
    "RUSTUP_TOOLCHAIN",
    "RUSTC",
    "RUSTC_WRAPPER",
    "RUSTC_WORKSPACE_WRAPPER",
    "RUSTDOC",
    "RUSTFLAGS",
    "CARGO_ENCODED_RUSTFLAGS",
    "CARGO_BUILD_RUSTC",
    "CARGO_BUILD_RUSTC_WRAPPER",
    "CARGO_BUILD_RUSTC_WORKSPACE_WRAPPER",
    "CARGO_BUILD_RUSTFLAGS",
    "CARGO_BUILD_TARGET",
    "CARGO_BUILD_TARGET_DIR",
    "CARGO_TARGET_DIR",
    "CARGO_MANIFEST_DIR",
    "CARGO_PKG_NAME",
    "CARGO",
];

/// Prefixes of more such variables: the package's metadata, features and
/// cfgs, and the `links` metadata of its dependencies.
const HOST_BUILD_PREFIXES: &[&str] = &[
    "CARGO_PKG_",
    "CARGO_MANIFEST_",
    "CARGO_FEATURE_",
    "CARGO_CFG_",
    "DEP_",
];

/// Which of `names` (an environment's variable names) the nested BPF build
/// must not inherit.
pub fn host_build_vars(names: impl IntoIterator<Item = OsString>) -> Vec<OsString> {
    let mut v: Vec<OsString> = HOST_BUILD_ENV.iter().map(OsString::from).collect();
    for name in names {
        let Some(n) = name.to_str() else { continue };
        if HOST_BUILD_PREFIXES.iter().any(|p| n.starts_with(p)) && !v.contains(&name) {
            v.push(name);
        }
    }
    v
}

/// `c` without the host build's variables of this process's environment.
fn clean_env(c: &mut Command) {
    for var in host_build_vars(std::env::vars_os().map(|(k, _)| k)) {
        c.env_remove(var);
    }
}

/// Something the BPF build needs that this machine lacks.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Missing {
    /// `rustup` is not on `PATH`.
    Rustup,
    /// rustup has no such toolchain (rustup's first error line).
    Toolchain(String),
    /// The toolchain has no `rust-src` (`-Z build-std=core` needs it).
    RustSrc,
    /// `bpf-linker` is not on `PATH`.
    BpfLinker,
}

impl fmt::Display for Missing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Missing::Rustup => write!(f, "rustup (not on PATH)"),
            Missing::Toolchain(why) => write!(f, "the {TOOLCHAIN} toolchain ({why})"),
            Missing::RustSrc => write!(f, "rust-src of the {TOOLCHAIN} toolchain"),
            Missing::BpfLinker => write!(f, "{BPF_LINKER} (not on PATH)"),
        }
    }
}

/// The first executable file `name` in `path` (`PATH` syntax).
pub fn find_in(name: &str, path: Option<&OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?)
        .map(|d| d.join(name))
        .find(|p| is_executable(p))
}

fn is_executable(p: &Path) -> bool {
    use std::os::unix::fs::PermissionsExt;
    fs::metadata(p).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0)
}

/// What the BPF build needs and `path` (`PATH` syntax) does not give: rustup,
/// the toolchain (`rustup run TOOLCHAIN rustc --print sysroot`, which never
/// installs it), its rust-src, bpf-linker. Empty when all is there. Runs no
/// build and installs nothing; takes some tens of milliseconds.
pub fn missing_tools(path: Option<&OsStr>) -> Vec<Missing> {
    let mut missing = Vec::new();
    match find_in("rustup", path) {
        None => missing.push(Missing::Rustup),
        Some(rustup) => match sysroot(&rustup, path) {
            Err(why) => missing.push(Missing::Toolchain(why)),
            Ok(sysroot) => {
                let core = sysroot.join("lib/rustlib/src/rust/library/core/Cargo.toml");
                if !core.is_file() {
                    missing.push(Missing::RustSrc);
                }
            }
        },
    }
    if find_in(BPF_LINKER, path).is_none() {
        missing.push(Missing::BpfLinker);
    }
    missing
}

/// The toolchain's sysroot, or rustup's reason why there is none.
fn sysroot(rustup: &Path, path: Option<&OsStr>) -> Result<PathBuf, String> {
    let mut c = Command::new(rustup);
    c.args(["run", TOOLCHAIN, "rustc", "--print", "sysroot"])
        // rustup may otherwise install a missing toolchain on its own.
        .env("RUSTUP_AUTO_INSTALL", "0")
        .stdin(Stdio::null());
    clean_env(&mut c);
    match path {
        Some(p) => c.env("PATH", p),
        None => c.env_remove("PATH"),
    };
    let out = c
        .output()
        .map_err(|e| format!("cannot run {}: {e}", rustup.display()))?;
    if !out.status.success() {
        let err = String::from_utf8_lossy(&out.stderr);
        let line = err
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty())
            .unwrap_or("no message");
        return Err(format!("`rustup run {TOOLCHAIN} rustc` failed: {line}"));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}

/// Why the BPF object could not be built.
#[derive(Debug)]
pub enum Error {
    /// Tools are missing; nothing was run.
    Missing(Vec<Missing>),
    /// There is no BPF crate at this path.
    NoCrate(PathBuf),
    /// The build log could not be created or cargo could not be started.
    Io(String, io::Error),
    /// cargo ran and failed: its exit status, the log, the error lines.
    Failed {
        status: ExitStatus,
        log: PathBuf,
        errors: Vec<String>,
    },
    /// cargo succeeded but left no object where expected.
    NoObject(PathBuf),
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Error::Missing(m) => {
                let names: Vec<String> = m.iter().map(Missing::to_string).collect();
                write!(
                    f,
                    "building the BPF program needs what this machine lacks: {}",
                    names.join(", ")
                )
            }
            Error::NoCrate(dir) => write!(f, "no BPF crate at {}", dir.display()),
            Error::Io(what, e) => write!(f, "{what}: {e}"),
            Error::Failed {
                status,
                log,
                errors,
            } => write!(
                f,
                "the BPF program build failed ({status}): {} (full log: {})",
                errors
                    .first()
                    .map(String::as_str)
                    .unwrap_or("no error line"),
                log.display()
            ),
            Error::NoObject(p) => write!(f, "the BPF build produced no {}", p.display()),
        }
    }
}

impl std::error::Error for Error {}

/// The BPF crate (`ublk-ebpf/`) and where its build goes.
#[derive(Clone, Debug)]
pub struct EbpfCrate {
    dir: PathBuf,
}

impl EbpfCrate {
    /// The crate in `dir` (the directory holding its `Cargo.toml`).
    pub fn at(dir: impl Into<PathBuf>) -> Self {
        Self { dir: dir.into() }
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// The target directory every caller shares.
    pub fn target_dir(&self) -> PathBuf {
        self.dir.join("target")
    }

    /// The object a successful build leaves.
    pub fn object(&self) -> PathBuf {
        self.target_dir()
            .join(TARGET)
            .join("release")
            .join("ublk-ebpf")
    }

    /// What the object is built from, for `cargo:rerun-if-changed`: the
    /// crate's sources and manifests and those of `ublk-ebpf-common` (its
    /// one path dependency). Not the crate directory itself: `target/`
    /// changes on every build.
    pub fn inputs(&self) -> Vec<PathBuf> {
        let mut v: Vec<PathBuf> = [
            "src",
            "Cargo.toml",
            "Cargo.lock",
            ".cargo/config.toml",
            "rust-toolchain.toml",
        ]
        .iter()
        .map(|p| self.dir.join(p))
        .collect();
        let common = self.dir.with_file_name("ublk-ebpf-common");
        v.push(common.join("src"));
        v.push(common.join("Cargo.toml"));
        v
    }

    /// The build command (not started), its environment cleaned of the
    /// host build's compiler, flags and target directory.
    pub fn command(&self) -> Command {
        let mut c = Command::new("rustup");
        c.current_dir(&self.dir)
            .env("RUSTUP_AUTO_INSTALL", "0")
            .args(["run", TOOLCHAIN, "cargo", "build", "--release"])
            .args(["--target", TARGET, "-Z", "build-std=core"])
            .arg("--target-dir")
            .arg(self.target_dir());
        clean_env(&mut c);
        c
    }

    /// Checks the tools on `PATH`, builds, returns the object's path. cargo's
    /// output goes to `log`; on failure its error lines are in the error.
    pub fn build(&self, log: &Path) -> Result<PathBuf, Error> {
        if !self.dir.join("Cargo.toml").is_file() {
            return Err(Error::NoCrate(self.dir.clone()));
        }
        let path: Option<OsString> = std::env::var_os("PATH");
        let missing = missing_tools(path.as_deref());
        if !missing.is_empty() {
            return Err(Error::Missing(missing));
        }
        let out = File::create(log)
            .map_err(|e| Error::Io(format!("cannot create {}", log.display()), e))?;
        let err = out
            .try_clone()
            .map_err(|e| Error::Io(format!("cannot reopen {}", log.display()), e))?;
        let status = self
            .command()
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(err)
            .status()
            .map_err(|e| Error::Io("cannot start rustup".into(), e))?;
        if !status.success() {
            let text = fs::read_to_string(log).unwrap_or_default();
            return Err(Error::Failed {
                status,
                log: log.to_path_buf(),
                errors: error_lines(&text, 40),
            });
        }
        let obj = self.object();
        if !obj.is_file() {
            return Err(Error::NoObject(obj));
        }
        Ok(obj)
    }
}

/// cargo's error messages in `log`: each line starting with `error` and
/// what follows it up to the next blank line, at most `max` lines; the last
/// non-empty line when there is no such line.
pub fn error_lines(log: &str, max: usize) -> Vec<String> {
    let mut out = Vec::new();
    let mut inside = false;
    for line in log.lines() {
        if line.starts_with("error") {
            inside = true;
        } else if line.trim().is_empty() {
            inside = false;
        }
        if inside && out.len() < max {
            out.push(line.to_string());
        }
    }
    if out.is_empty() {
        if let Some(l) = log.lines().rev().find(|l| !l.trim().is_empty()) {
            out.push(l.to_string());
        }
    }
    out
}

/// Whether `bytes` look like the BPF program: a 64-bit little-endian ELF
/// for `EM_BPF` (247), as `bpfel-unknown-none` produces.
pub fn check_object(bytes: &[u8]) -> Result<(), String> {
    const EM_BPF: u16 = 247;
    if bytes.len() < 64 || !bytes.starts_with(b"\x7fELF") {
        return Err("not an ELF file".into());
    }
    if bytes[4] != 2 || bytes[5] != 1 {
        return Err("not a 64-bit little-endian ELF (bpfel)".into());
    }
    let machine = u16::from_le_bytes([bytes[18], bytes[19]]);
    if machine != EM_BPF {
        return Err(format!("an ELF for machine {machine}, not BPF ({EM_BPF})"));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A fresh directory under the temp dir, removed when dropped.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(tag: &str) -> Self {
            static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
            let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
            let d = std::env::temp_dir()
                .join(format!("ublk-ebpf-build-{tag}-{}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&d);
            fs::create_dir_all(&d).unwrap();
            TempDir(d)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn executable(p: &Path, text: &str) {
        fs::write(p, text).unwrap();
        fs::set_permissions(p, fs::Permissions::from_mode(0o755)).unwrap();
    }

    /// A `bin/` with a fake rustup whose `run nightly rustc --print
    /// sysroot` prints `sysroot/` (or fails like rustup does for a missing
    /// toolchain), a sysroot with or without rust-src, and maybe a
    /// bpf-linker.
    fn fake_tools(t: &TempDir, toolchain: bool, rust_src: bool, linker: bool) -> OsString {
        let bin = t.0.join("bin");
        let sysroot = t.0.join("sysroot");
        fs::create_dir_all(&bin).unwrap();
        if rust_src {
            let core = sysroot.join("lib/rustlib/src/rust/library/core");
            fs::create_dir_all(&core).unwrap();
            fs::write(core.join("Cargo.toml"), "").unwrap();
        }
        let rustup = if toolchain {
            format!(
                "#!/bin/sh\n[ \"$*\" = 'run nightly rustc --print sysroot' ] || exit 9\n\
                 [ \"$RUSTUP_AUTO_INSTALL\" = 0 ] || exit 8\necho '{}'\n",
                sysroot.display()
            )
        } else {
            "#!/bin/sh\necho \"error: toolchain 'nightly-x86_64-unknown-linux-gnu' is not installed\" >&2\n\
             exit 1\n"
                .to_string()
        };
        executable(&bin.join("rustup"), &rustup);
        if linker {
            executable(&bin.join(BPF_LINKER), "#!/bin/sh\nexit 0\n");
        }
        std::env::join_paths([&bin]).unwrap()
    }

    #[test]
    fn all_tools_present_is_nothing_missing() {
        let t = TempDir::new("all");
        let path = fake_tools(&t, true, true, true);
        assert_eq!(missing_tools(Some(&path)), []);
    }

    #[test]
    fn missing_bpf_linker_is_named() {
        let t = TempDir::new("no-linker");
        let path = fake_tools(&t, true, true, false);
        assert_eq!(missing_tools(Some(&path)), [Missing::BpfLinker]);
    }

    #[test]
    fn missing_rust_src_is_named() {
        let t = TempDir::new("no-src");
        let path = fake_tools(&t, true, false, true);
        assert_eq!(missing_tools(Some(&path)), [Missing::RustSrc]);
    }

    #[test]
    fn missing_toolchain_carries_rustups_error() {
        let t = TempDir::new("no-nightly");
        let path = fake_tools(&t, false, false, false);
        assert_eq!(
            missing_tools(Some(&path)),
            [
                Missing::Toolchain(
                    "`rustup run nightly rustc` failed: error: toolchain \
                     'nightly-x86_64-unknown-linux-gnu' is not installed"
                        .into()
                ),
                Missing::BpfLinker
            ]
        );
    }

    #[test]
    fn empty_path_misses_rustup_and_linker() {
        let t = TempDir::new("empty");
        let path = std::env::join_paths([&t.0]).unwrap();
        assert_eq!(
            missing_tools(Some(&path)),
            [Missing::Rustup, Missing::BpfLinker]
        );
        assert_eq!(missing_tools(None), [Missing::Rustup, Missing::BpfLinker]);
        assert_eq!(
            Error::Missing(missing_tools(Some(&path))).to_string(),
            "building the BPF program needs what this machine lacks: \
             rustup (not on PATH), bpf-linker (not on PATH)"
        );
    }

    #[test]
    fn a_file_without_the_execute_bit_is_not_a_tool() {
        let t = TempDir::new("noexec");
        fs::write(t.0.join(BPF_LINKER), "").unwrap();
        let path = std::env::join_paths([&t.0]).unwrap();
        assert_eq!(find_in(BPF_LINKER, Some(&path)), None);
    }

    #[test]
    fn build_without_a_crate_says_so_and_runs_nothing() {
        let t = TempDir::new("nocrate");
        let e = EbpfCrate::at(t.0.join("ublk-ebpf"))
            .build(&t.0.join("log"))
            .unwrap_err();
        assert!(matches!(e, Error::NoCrate(_)), "{e}");
        assert!(!t.0.join("log").exists());
    }

    #[test]
    fn command_builds_in_the_crate_with_the_host_env_removed() {
        let k = EbpfCrate::at("/src/ublk-ebpf");
        let c = k.command();
        assert_eq!(c.get_program(), "rustup");
        assert_eq!(c.get_current_dir(), Some(Path::new("/src/ublk-ebpf")));
        let args: Vec<_> = c.get_args().map(|a| a.to_string_lossy()).collect();
        assert_eq!(
            args,
            [
                "run",
                "nightly",
                "cargo",
                "build",
                "--release",
                "--target",
                "bpfel-unknown-none",
                "-Z",
                "build-std=core",
                "--target-dir",
                "/src/ublk-ebpf/target"
            ]
        );
        let envs: Vec<_> = c.get_envs().collect();
        for var in [
            "RUSTC",
            "CARGO_TARGET_DIR",
            "CARGO_ENCODED_RUSTFLAGS",
            "RUSTC_WORKSPACE_WRAPPER",
        ] {
            assert!(envs.contains(&(OsStr::new(var), None)), "{var} not removed");
        }
        assert_eq!(
            k.object(),
            Path::new("/src/ublk-ebpf/target/bpfel-unknown-none/release/ublk-ebpf")
        );
        assert!(k
            .inputs()
            .contains(&PathBuf::from("/src/ublk-ebpf-common/src")));
        assert!(!k.inputs().contains(&PathBuf::from("/src/ublk-ebpf")));
    }

    #[test]
    fn the_build_scripts_own_variables_are_not_inherited() {
        let names = [
            "PATH",
            "HOME",
            "CARGO_HOME",
            "CARGO_MAKEFLAGS",
            "CARGO_FEATURE_BPF",
            "CARGO_CFG_TARGET_ARCH",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_PATH",
            "DEP_Z_INCLUDE",
        ]
        .map(OsString::from);
        let v = host_build_vars(names);
        for keep in ["PATH", "HOME", "CARGO_HOME", "CARGO_MAKEFLAGS"] {
            assert!(!v.contains(&OsString::from(keep)), "{keep} removed");
        }
        for drop in [
            "HOST",
            "TARGET",
            "OUT_DIR",
            "RUSTC",
            "CARGO_TARGET_DIR",
            "CARGO_FEATURE_BPF",
            "CARGO_CFG_TARGET_ARCH",
            "CARGO_PKG_NAME",
            "CARGO_MANIFEST_PATH",
            "DEP_Z_INCLUDE",
        ] {
            assert!(v.contains(&OsString::from(drop)), "{drop} kept");
        }
        assert_eq!(v.iter().filter(|n| *n == "CARGO_PKG_NAME").count(), 1);
    }

    #[test]
    fn error_lines_keep_each_message_and_cap() {
        let log =
            "   Compiling core v0.0.0\nwarning: unused\n\nerror[E0425]: cannot find value `x`\n \
                   --> src/main.rs:3:5\n\nerror: could not compile `ublk-ebpf`\n";
        assert_eq!(
            error_lines(log, 10),
            [
                "error[E0425]: cannot find value `x`",
                " --> src/main.rs:3:5",
                "error: could not compile `ublk-ebpf`"
            ]
        );
        assert_eq!(error_lines(log, 1), ["error[E0425]: cannot find value `x`"]);
        assert_eq!(error_lines("a\nlast words\n\n", 5), ["last words"]);
    }

    #[test]
    fn object_check() {
        let mut elf = vec![0u8; 64];
        elf[..4].copy_from_slice(b"\x7fELF");
        elf[4] = 2;
        elf[5] = 1;
        elf[18] = 247;
        assert_eq!(check_object(&elf), Ok(()));
        let mut x86 = elf.clone();
        x86[18] = 62;
        assert_eq!(
            check_object(&x86).unwrap_err(),
            "an ELF for machine 62, not BPF (247)"
        );
        let mut big = elf.clone();
        big[5] = 2;
        assert!(check_object(&big).is_err());
        assert_eq!(check_object(b"hello").unwrap_err(), "not an ELF file");
    }
}
