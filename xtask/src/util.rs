//! Small helpers shared by the subcommands: paths, running commands with a
//! one-line error, progress lines, cache keys and locks.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

/// The workspace root (parent of `xtask/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("xtask lives in the workspace")
        .to_path_buf()
}

/// Where the cache is: `$UBLK_EBPF_CACHE` or `~/.cache/ublk-ebpf` (nothing
/// is created: for queries such as `kernel --print-path`).
pub fn cache_root() -> Result<PathBuf> {
    Ok(match std::env::var_os("UBLK_EBPF_CACHE") {
        Some(d) => PathBuf::from(d),
        None => {
            let home = std::env::var_os("HOME").context("HOME is not set")?;
            PathBuf::from(home).join(".cache/ublk-ebpf")
        }
    })
}

/// The cache, created if needed, with its `logs/`.
pub fn cache_dir() -> Result<PathBuf> {
    let dir = cache_root()?;
    fs::create_dir_all(dir.join("logs"))
        .with_context(|| format!("cannot create cache dir {}", dir.display()))?;
    Ok(dir)
}

/// A log file under the cache's `logs/`.
pub fn log_path(name: &str) -> Result<PathBuf> {
    Ok(cache_dir()?.join("logs").join(name))
}

/// Print a progress line for the user (stderr, so stdout stays for results).
pub fn say(msg: impl AsRef<str>) {
    eprintln!("xtask: {}", msg.as_ref());
}

/// Build a `Command` with the environment cargo set for us removed, so nested
/// cargo/rustup calls pick their own toolchain.
pub fn cmd(program: &str) -> Command {
    let mut c = Command::new(program);
    for var in [
        "RUSTUP_TOOLCHAIN",
        "RUSTC",
        "RUSTC_WRAPPER",
        "RUSTDOC",
        "RUSTFLAGS",
        "CARGO_ENCODED_RUSTFLAGS",
        "CARGO_BUILD_TARGET",
        "CARGO_TARGET_DIR",
        "CARGO_MANIFEST_DIR",
        "CARGO_PKG_NAME",
    ] {
        c.env_remove(var);
    }
    c
}

/// Run a command with its output captured to `log`; on failure, one line
/// naming what failed, its last meaningful output line and the log.
pub fn run_logged(what: &str, c: &mut Command, log: &Path) -> Result<()> {
    let out = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let err = out.try_clone()?;
    let status = c
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .status()
        .with_context(|| format!("{what}: cannot start {:?}", c.get_program()))?;
    if !status.success() {
        bail!(
            "{what} failed ({status}): {} (full log: {})",
            last_error_line(log),
            log.display()
        );
    }
    Ok(())
}

/// The most telling line of a failed command's log: the first line that
/// looks like an error, else the last non-empty line.
pub fn last_error_line(log: &Path) -> String {
    let text = fs::read_to_string(log).unwrap_or_default();
    let lines: Vec<&str> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty())
        .collect();
    lines
        .iter()
        .find(|l| {
            l.contains("error:")
                || l.starts_with("E: ")
                || l.contains("Error ")
                || l.contains("FAILED")
                || l.contains("does not apply")
        })
        .or(lines.last())
        .map(|l| l.to_string())
        .unwrap_or_else(|| "no output".into())
}

/// Run a long command, streaming its output to `log` and printing a progress
/// line every `every` with a count of lines matching `unit` and the last one.
pub fn run_with_progress(
    what: &str,
    c: &mut Command,
    log: &Path,
    unit: impl Fn(&str) -> bool,
    expected: Option<u64>,
) -> Result<u64> {
    let mut logf = File::create(log).with_context(|| format!("cannot create {}", log.display()))?;
    let mut child = c
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .with_context(|| format!("{what}: cannot start {:?}", c.get_program()))?;
    // Merge stderr into the same log through a thread.
    let stderr = child.stderr.take().expect("piped");
    let (tx, rx) = std::sync::mpsc::channel::<String>();
    let tx2 = tx.clone();
    std::thread::spawn(move || {
        for line in BufReader::new(stderr).lines().map_while(Result::ok) {
            let _ = tx2.send(line);
        }
    });
    let stdout = child.stdout.take().expect("piped");
    std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines().map_while(Result::ok) {
            let _ = tx.send(line);
        }
    });
    let start = Instant::now();
    let mut last_report = Instant::now();
    let mut count = 0u64;
    let mut last = String::new();
    loop {
        match rx.recv_timeout(Duration::from_secs(1)) {
            Ok(line) => {
                writeln!(logf, "{line}")?;
                if unit(&line) {
                    count += 1;
                    last = line.trim().to_string();
                }
            }
            Err(std::sync::mpsc::RecvTimeoutError::Timeout) => {}
            Err(std::sync::mpsc::RecvTimeoutError::Disconnected) => break,
        }
        if last_report.elapsed() >= Duration::from_secs(15) {
            last_report = Instant::now();
            let pct = expected
                .filter(|e| *e > 0)
                .map(|e| format!(" ~{}%", (count * 100 / e).min(99)))
                .unwrap_or_default();
            say(format!(
                "{what}: {count} steps{pct}, {}s elapsed, now: {last}",
                start.elapsed().as_secs()
            ));
        }
    }
    let status = child.wait()?;
    if !status.success() {
        bail!(
            "{what} failed ({status}): {} (full log: {})",
            last_error_line(log),
            log.display()
        );
    }
    Ok(count)
}

/// FNV-1a 64: a stable cache key (no crypto needed, just change detection).
#[derive(Clone)]
pub struct Fnv(u64);

impl Default for Fnv {
    fn default() -> Self {
        Fnv(0xcbf2_9ce4_8422_2325)
    }
}

impl Fnv {
    pub fn add(&mut self, bytes: &[u8]) -> &mut Self {
        for b in bytes {
            self.0 ^= u64::from(*b);
            self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        }
        // Separator so ("ab","c") and ("a","bc") differ.
        self.0 ^= 0xff;
        self.0 = self.0.wrapping_mul(0x0000_0100_0000_01b3);
        self
    }
    pub fn hex(&self) -> String {
        format!("{:016x}", self.0)
    }
}

/// An exclusive lock held for the life of the value (advisory, flock).
pub struct Lock(#[allow(dead_code)] File);

pub fn lock(path: &Path, what: &str) -> Result<Lock> {
    let f = File::create(path).with_context(|| format!("cannot create {}", path.display()))?;
    if f.try_lock().is_err() {
        say(format!("waiting for another xtask to finish {what}..."));
        f.lock()?;
    }
    Ok(Lock(f))
}

/// `which`: the first executable `name` on PATH.
pub fn which(name: &str) -> Option<PathBuf> {
    which_in(name, std::env::var_os("PATH").as_deref())
}

/// `which` with an explicit search path (`PATH` syntax); `/usr/sbin` and
/// `/sbin` are searched last, as they are often missing from a user's PATH.
/// The search itself is the BPF build's ([`ublk_ebpf_build::find_in`]).
pub fn which_in(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    let dirs =
        std::env::split_paths(path?).chain([PathBuf::from("/usr/sbin"), PathBuf::from("/sbin")]);
    ublk_ebpf_build::find_in(name, Some(&std::env::join_paths(dirs).ok()?))
}

/// `stage` as a gzipped newc cpio archive at `out` (written under a
/// temporary name, then renamed); `stage` is removed afterwards.
pub fn pack_cpio(stage: &Path, out: &Path, what: &str, log: &str) -> Result<()> {
    let tmp = out.with_extension("tmp");
    let script = format!(
        "cd {} && find . -print0 | cpio --null -o -H newc --quiet | gzip -1 > {}",
        shell_quote(stage.to_str().context("stage path is not UTF-8")?),
        shell_quote(tmp.to_str().context("cache path is not UTF-8")?)
    );
    run_logged(
        what,
        Command::new("sh").args(["-c", &script]),
        &log_path(log)?,
    )?;
    fs::rename(&tmp, out)?;
    let _ = fs::remove_dir_all(stage);
    Ok(())
}

/// Quote a string for a POSIX shell.
pub fn shell_quote(s: &str) -> String {
    if !s.is_empty()
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-_./=:,+@%".contains(&b))
    {
        return s.to_string();
    }
    format!("'{}'", s.replace('\'', r"'\''"))
}

/// A fresh, uniquely named directory under the system's temp dir, removed
/// with its contents when dropped (for tests).
#[cfg(test)]
pub struct TempDir(PathBuf);

#[cfg(test)]
impl TempDir {
    pub fn new(tag: &str) -> TempDir {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir = std::env::temp_dir().join(format!("xtask-test-{tag}-{}-{n}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir_all(&dir).expect("cannot create a temp dir");
        TempDir(dir)
    }
    pub fn path(&self) -> &Path {
        &self.0
    }
}

#[cfg(test)]
impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn which_in_searches_the_given_path_only() {
        let a = TempDir::new("which-a");
        let b = TempDir::new("which-b");
        let tool = b.path().join("xtask-fake-tool");
        fs::write(&tool, "").unwrap();
        let only_a = std::env::join_paths([a.path()]).unwrap();
        // Not executable: not found.
        assert_eq!(
            which_in(
                "xtask-fake-tool",
                Some(&std::env::join_paths([b.path()]).unwrap())
            ),
            None
        );
        use std::os::unix::fs::PermissionsExt;
        fs::set_permissions(&tool, fs::Permissions::from_mode(0o755)).unwrap();
        let path = std::env::join_paths([a.path(), b.path()]).unwrap();
        assert_eq!(
            which_in("xtask-fake-tool", Some(&path)),
            Some(b.path().join("xtask-fake-tool"))
        );
        assert_eq!(which_in("xtask-fake-tool", Some(&only_a)), None);
        assert_eq!(which_in("xtask-fake-tool", None), None);
    }

    #[test]
    fn quoting() {
        assert_eq!(shell_quote("abc"), "abc");
        assert_eq!(shell_quote("exit 3"), "'exit 3'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote(""), "''");
    }

    #[test]
    fn fnv_separates_fields() {
        let a = Fnv::default().add(b"ab").add(b"c").hex();
        let b = Fnv::default().add(b"a").add(b"bc").hex();
        assert_ne!(a, b);
        assert_eq!(a, Fnv::default().add(b"ab").add(b"c").hex());
    }
}
