//! Test suites written by others (issue 27): blktests and liburing's
//! `test/`, from the unmodified snapshots in `../shared/third_party/`
//! (`UBLK_THIRD_PARTY` overrides the directory). They are unpacked and
//! built in the cache (`~/.cache/ublk-ebpf/suites/SHA/`), never copied into
//! the repository; what the guest runs is staged in `target/suites/`
//! (blktests with its `src/` built, miniublk against our uapi headers;
//! liburing's `test/*.t`). VM test 44 runs the CI part; `cargo xtask
//! suites` runs all of it on the unpatched kernel (the distro flavor) and
//! on ours and writes the baseline, `tests/suites-baseline.txt`, which CI
//! compares with (test 44) instead of booting the unpatched kernel.
//!
//! The baseline holds one `result` line per (suite, test, device) with the
//! status on the unpatched kernel and on ours (`-`: not run there), and a
//! `why` line for every difference that is the suite's or the
//! environment's. A test's reference is the unpatched kernel for the tests
//! that take no device (device `-`), and the kernel loop driver on our
//! kernel (device `loop`, the control) for those run on a device. CI
//! requires every test whose reference passes to pass, except those a
//! `why` line explains.

use crate::kernel::{self, Flavor, Kernel};
use crate::util::{cache_dir, cmd, lock, log_path, root, run_logged, say};
use crate::vm::{self, VmOpts};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

pub const BLKTESTS: &str = "blktests-613b837.tar.gz";
pub const LIBURING: &str = "liburing-2.15-25-g27255f4c.tar.gz";
pub const FILE: &str = "tests/suites-baseline.txt";
/// What test 44 reads: `SUITE TEST DEVICE` lines that must pass, or one
/// `error: ...` line.
pub const EXPECT: &str = "target/suites/expect-pass.txt";
const STAGE: &str = "target/suites";
const REGEN: &str = "cargo xtask suites";

/// Where the snapshots are: `$UBLK_THIRD_PARTY`, else the first
/// `shared/third_party` beside the repository or beside one of its parent
/// directories (`../shared/third_party` for a checkout next to the share),
/// else the same search from the repository this one was cloned from, when
/// `origin` is a local path (a CI clone may live anywhere, e.g. in /tmp,
/// while its origin is the checkout next to the share), else the directory
/// an earlier run on this machine found (remembered in the cache, outside
/// the repository).
pub fn third_party() -> PathBuf {
    if let Some(d) = std::env::var_os("UBLK_THIRD_PARTY") {
        return PathBuf::from(d);
    }
    let root = root();
    let beside = |r: &Path| {
        r.ancestors()
            .skip(1)
            .map(|a| a.join("shared/third_party"))
            .find(|d| d.is_dir())
    };
    let memo = cache_dir().ok().map(|c| c.join("third-party-dir"));
    let found = beside(&root).or_else(|| local_origin(&root).and_then(|o| beside(&o)));
    match (found, &memo) {
        (Some(d), Some(m)) => {
            // best effort: only a later run from elsewhere reads it
            let _ = fs::write(m, d.as_os_str().as_encoded_bytes());
            d
        }
        (Some(d), None) => d,
        (None, _) => memo
            .and_then(|m| fs::read_to_string(m).ok())
            .map(PathBuf::from)
            .filter(|d| d.is_dir())
            .unwrap_or_else(|| root.join("../shared/third_party")),
    }
}

/// `git remote get-url origin` of `root`, if it is a directory here.
fn local_origin(root: &Path) -> Option<PathBuf> {
    let out = cmd("git")
        .arg("-C")
        .arg(root)
        .args(["remote", "get-url", "origin"])
        .output()
        .ok()?;
    let url = String::from_utf8(out.stdout).ok()?;
    let url = url.trim();
    let path = Path::new(url.strip_prefix("file://").unwrap_or(url));
    (out.status.success() && path.is_absolute() && path.is_dir()).then(|| path.to_path_buf())
}

fn sha256(p: &Path) -> Result<String> {
    let out = cmd("sha256sum")
        .arg(p)
        .output()
        .with_context(|| format!("cannot run sha256sum on {}", p.display()))?;
    if !out.status.success() {
        bail!("sha256sum {} failed", p.display());
    }
    Ok(String::from_utf8_lossy(&out.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The snapshots' sha256: (blktests, liburing).
pub fn hashes() -> Result<(String, String)> {
    let dir = third_party();
    let h = |name: &str| -> Result<String> {
        let p = dir.join(name);
        if !p.is_file() {
            bail!(
                "no {} (the suites' snapshots; set UBLK_THIRD_PARTY to their directory)",
                p.display()
            );
        }
        sha256(&p)
    };
    Ok((h(BLKTESTS)?, h(LIBURING)?))
}

/// Unpack `tarball` into `dir` (once) and return the directory it made.
fn unpack(tarball: &Path, dir: &Path, top: &str) -> Result<PathBuf> {
    let out = dir.join(top);
    if out.join(".xtask-unpacked").is_file() {
        return Ok(out);
    }
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(dir)?;
    run_logged(
        &format!("tar xzf {}", tarball.display()),
        cmd("tar").current_dir(dir).arg("xzf").arg(tarball),
        &log_path("suites-unpack.log")?,
    )?;
    if !out.is_dir() {
        bail!("{} has no {top}/ at its top", tarball.display());
    }
    fs::write(out.join(".xtask-unpacked"), "")?;
    Ok(out)
}

/// Build both suites in the cache and stage them in `target/suites`,
/// miniublk against the uapi headers of `k` (ours: a superset of the
/// unpatched kernel's). Returns the staged directory.
pub fn stage(k: &Kernel) -> Result<PathBuf> {
    let (hb, hl) = hashes()?;
    let tp = third_party();
    let cache = cache_dir()?.join("suites");
    fs::create_dir_all(&cache)?;
    let _l = lock(&cache.join(".lock"), "the suites' build")?;
    let uring = unpack(&tp.join(LIBURING), &cache.join(&hl[..16]), "liburing")?;
    let blk = unpack(&tp.join(BLKTESTS), &cache.join(&hb[..16]), "blktests")?;
    let jobs = format!(
        "-j{}",
        std::thread::available_parallelism().map_or(2, |n| n.get())
    );
    let hdrs = k.build.join("usr/include");
    if !hdrs.join("linux/ublk_cmd.h").is_file() {
        k.headers_install("suites-headers.log")?;
    }
    let key = format!("{}\n", hdrs.display());
    let inc = format!("-I{}", hdrs.display());
    // Against our kernel's uapi headers (a superset of the unpatched
    // kernel's): with the host's, liburing's configure finds no ublk_cmd.h
    // and builds uring_cmd_ublk.t as a test that always skips.
    let ustamp = uring.join(".xtask-built");
    if fs::read_to_string(&ustamp).ok().as_deref() != Some(&key) {
        say("suites: building liburing and its test/ (cache)");
        run_logged(
            "liburing ./configure",
            cmd("sh")
                .current_dir(&uring)
                .arg("./configure")
                .env("CFLAGS", &inc),
            &log_path("suites-liburing.log")?,
        )?;
        let cfg = fs::read_to_string(uring.join("config-host.h")).unwrap_or_default();
        if !cfg.contains("CONFIG_HAVE_UBLK_HEADER") {
            bail!("liburing's configure did not find linux/ublk_cmd.h in {inc}");
        }
        run_logged(
            "make -C src",
            cmd("make").current_dir(&uring).args([&jobs, "-C", "src"]),
            &log_path("suites-liburing-src.log")?,
        )?;
        run_logged(
            "make -C test",
            cmd("make")
                .current_dir(&uring)
                .args([&jobs, "-C", "test"])
                .env("CPPFLAGS", &inc),
            &log_path("suites-liburing-test.log")?,
        )?;
        fs::write(&ustamp, &key)?;
    }
    let stamp = blk.join(".xtask-built");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(&key) {
        say("suites: building blktests' src/ with miniublk (cache)");
        // The C programs and miniublk; not discontiguous-io (C++, for
        // scsi tests not run here).
        let mut targets: Vec<String> = [
            "loblksize",
            "loop_change_fd",
            "loop_get_status_null",
            "mount_clear_sock",
            "nbdsetsize",
            "openclose",
            "sg/dxfer-from-dev",
            "sg/syzkaller1",
            "zbdioctl",
        ]
        .iter()
        .map(|s| s.to_string())
        .collect();
        targets.push("miniublk".into());
        run_logged(
            "make -C src (blktests)",
            cmd("make")
                .current_dir(&blk)
                .args(["-C", "src"])
                .arg(format!(
                    "CFLAGS=-I{} -I{}",
                    hdrs.display(),
                    uring.join("src/include").display()
                ))
                .arg(format!(
                    "MINIUBLK_LIBS=-lpthread {}",
                    uring.join("src/liburing.a").display()
                ))
                .args(&targets),
            &log_path("suites-blktests.log")?,
        )?;
        if !blk.join("src/miniublk").is_file() {
            bail!("blktests: make produced no src/miniublk");
        }
        fs::write(&stamp, &key)?;
    }
    let out = root().join(STAGE);
    let version = format!("{BLKTESTS} sha256:{hb}\n{LIBURING} sha256:{hl}\n{key}");
    // Already staged from these builds (another boot may be using it).
    if fs::read_to_string(out.join("VERSION")).ok().as_deref() == Some(&version)
        && out.join("blktests/src/miniublk").is_file()
    {
        return Ok(out);
    }
    fs::create_dir_all(&out)?;
    for d in ["blktests", "liburing"] {
        let _ = fs::remove_dir_all(out.join(d));
    }
    run_logged(
        "stage blktests",
        cmd("cp").arg("-a").arg(&blk).arg(out.join("blktests")),
        &log_path("suites-stage.log")?,
    )?;
    fs::create_dir_all(out.join("liburing"))?;
    let mut n = 0;
    for e in fs::read_dir(uring.join("test"))?.flatten() {
        let p = e.path();
        if p.extension().is_some_and(|x| x == "t") {
            fs::copy(&p, out.join("liburing").join(e.file_name()))?;
            n += 1;
        }
    }
    if n == 0 {
        bail!("liburing: make -C test produced no *.t");
    }
    fs::write(out.join("VERSION"), version)?;
    Ok(out)
}

/// One result line of the baseline.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Row {
    pub suite: String,
    pub test: String,
    /// `-` (no device) or the device label: loop, copy, zc, bpf, bpf-kernel.
    pub device: String,
    /// On the unpatched kernel (`-`: not run there).
    pub vanilla: String,
    /// On ours.
    pub ours: String,
}

#[derive(Debug, Default, PartialEq, Eq)]
pub struct Baseline {
    /// `NAME sha256:HEX` of each snapshot.
    pub blktests: String,
    pub liburing: String,
    pub vanilla: String,
    pub ours: String,
    pub rows: Vec<Row>,
    /// (suite, test, device, explanation) of the differences.
    pub why: Vec<(String, String, String, String)>,
}

const STATUSES: &[&str] = &["pass", "fail", "skip", "timeout", "-"];
const DEVICES: &[&str] = &["-", "loop", "copy", "zc", "bpf", "bpf-kernel"];

pub fn parse(text: &str) -> Result<Baseline> {
    let mut b = Baseline::default();
    for (n, line) in text.lines().enumerate() {
        let at = || format!("{FILE}:{}", n + 1);
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let (k, rest) = line.split_once(' ').unwrap_or((line, ""));
        match k {
            "blktests:" => b.blktests = rest.trim().into(),
            "liburing:" => b.liburing = rest.trim().into(),
            "vanilla:" => b.vanilla = rest.trim().into(),
            "ours:" => b.ours = rest.trim().into(),
            "result" => {
                let f: Vec<&str> = rest.split_whitespace().collect();
                let [suite, test, device, vanilla, ours] = f[..] else {
                    bail!("{}: expected `result SUITE TEST DEVICE VANILLA OURS`", at());
                };
                if !["blktests", "liburing"].contains(&suite) {
                    bail!("{}: unknown suite {suite:?}", at());
                }
                if !DEVICES.contains(&device) {
                    bail!("{}: unknown device {device:?}", at());
                }
                for s in [vanilla, ours] {
                    if !STATUSES.contains(&s) {
                        bail!("{}: unknown status {s:?}", at());
                    }
                }
                if b.find(suite, test, device).is_some() {
                    bail!("{}: {suite} {test} on {device} is listed twice", at());
                }
                b.rows.push(Row {
                    suite: suite.into(),
                    test: test.into(),
                    device: device.into(),
                    vanilla: vanilla.into(),
                    ours: ours.into(),
                });
            }
            "why" => {
                let mut it = rest.splitn(4, ' ');
                let (Some(s), Some(t), Some(d), Some(w)) =
                    (it.next(), it.next(), it.next(), it.next())
                else {
                    bail!("{}: expected `why SUITE TEST DEVICE: TEXT`", at());
                };
                let Some(d) = d.strip_suffix(':') else {
                    bail!("{}: expected `why SUITE TEST DEVICE: TEXT`", at());
                };
                b.why
                    .push((s.into(), t.into(), d.into(), w.trim().to_string()));
            }
            _ => bail!("{}: unknown line {k:?}", at()),
        }
    }
    for (name, v) in [
        ("blktests", &b.blktests),
        ("liburing", &b.liburing),
        ("vanilla", &b.vanilla),
        ("ours", &b.ours),
    ] {
        if v.is_empty() {
            bail!("{FILE} has no `{name}:` line");
        }
    }
    if b.rows.is_empty() {
        bail!("{FILE} lists no results");
    }
    Ok(b)
}

impl Baseline {
    fn find(&self, suite: &str, test: &str, device: &str) -> Option<&Row> {
        self.rows
            .iter()
            .find(|r| r.suite == suite && r.test == test && r.device == device)
    }

    fn why_of(&self, r: &Row) -> Option<&str> {
        self.why
            .iter()
            .find(|(s, t, d, _)| *s == r.suite && *t == r.test && *d == r.device)
            .map(|w| w.3.as_str())
    }

    /// The reference status of a row: the unpatched kernel's for a test
    /// without a device, the loop control's (on ours) for a device test.
    pub fn reference(&self, r: &Row) -> String {
        if r.device == "-" {
            r.vanilla.clone()
        } else {
            self.find(&r.suite, &r.test, "loop")
                .map_or("-".into(), |l| l.ours.clone())
        }
    }

    /// Rows whose reference passes but ours does not, with no `why`. A
    /// test ours did not run (`-`: the run stopped early) is no difference;
    /// `cargo xtask suites` lists those apart.
    pub fn unexplained(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| self.reference(r) == "pass" && !["pass", "-"].contains(&r.ours.as_str()))
            .filter(|r| self.why_of(r).is_none())
            .collect()
    }

    /// What CI requires to pass: reference passes, no `why` excuses it.
    pub fn expected(&self) -> Vec<&Row> {
        self.rows
            .iter()
            .filter(|r| self.reference(r) == "pass" && self.why_of(r).is_none())
            .collect()
    }
}

/// The baseline is usable for these snapshots and explains every difference.
pub fn check(b: &Baseline, hb: &str, hl: &str) -> Result<()> {
    for (name, have, want) in [(BLKTESTS, &b.blktests, hb), (LIBURING, &b.liburing, hl)] {
        if *have != format!("{name} sha256:{want}") {
            bail!(
                "{FILE} was made from `{have}` but the snapshot in use is `{name} \
                 sha256:{want}`: regenerate it with `{REGEN}`"
            );
        }
    }
    let bad = b.unexplained();
    if !bad.is_empty() {
        let list: Vec<String> = bad
            .iter()
            .map(|r| format!("{} {} on {} ({})", r.suite, r.test, r.device, r.ours))
            .collect();
        bail!(
            "{FILE}: passes on the reference, not on ours, and no `why` line: {}",
            list.join(", ")
        );
    }
    Ok(())
}

/// Before a boot that runs test 44: stage the suites and write `EXPECT`
/// (or the reason they cannot run, which test 44 then fails with).
pub fn prepare(patched: Flavor) -> Result<()> {
    let r = kernel::ensure(patched).and_then(|k| stage(&k));
    if let Err(e) = r {
        let out = root().join(EXPECT);
        fs::create_dir_all(out.parent().unwrap())?;
        fs::write(&out, format!("error: {e:#}\n"))?;
        return Err(e);
    }
    prepare_expect()
}

/// Write `EXPECT` for test 44 (or the reason the baseline is unusable).
pub fn prepare_expect() -> Result<()> {
    let out = root().join(EXPECT);
    fs::create_dir_all(out.parent().unwrap())?;
    let r = (|| -> Result<String> {
        let text = fs::read_to_string(root().join(FILE))
            .with_context(|| format!("cannot read {FILE}: generate it with `{REGEN}`"))?;
        let b = parse(&text)?;
        let (hb, hl) = hashes()?;
        check(&b, &hb, &hl)?;
        Ok(b.expected()
            .iter()
            .map(|r| format!("{} {} {}\n", r.suite, r.test, r.device))
            .collect())
    })();
    match r {
        Ok(s) => {
            fs::write(&out, s)?;
            Ok(())
        }
        Err(e) => {
            fs::write(&out, format!("error: {e:#}\n"))?;
            Err(e)
        }
    }
}

/// `SUITE TEST DEVICE STATUS SECS` lines of a guest results file:
/// ((suite, test, device), status).
pub fn parse_results(text: &str) -> Vec<((String, String, String), String)> {
    text.lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split_whitespace().collect();
            match f[..] {
                [s, t, d, st, _] => Some(((s.into(), t.into(), d.into()), st.into())),
                _ => None,
            }
        })
        .collect()
}

/// The baseline from the two runs' results; `old` keeps its `why` lines
/// for the differences that remain.
pub fn merge(vanilla: &str, ours: &str, heads: [String; 4], old: Option<&Baseline>) -> Baseline {
    let v = parse_results(vanilla);
    let o = parse_results(ours);
    let mut keys: Vec<(String, String, String)> = Vec::new();
    for (k, _) in v.iter().chain(o.iter()) {
        if !keys.contains(k) {
            keys.push(k.clone());
        }
    }
    let get = |list: &[((String, String, String), String)], k: &(String, String, String)| {
        list.iter()
            .find(|(x, _)| x == k)
            .map_or("-".to_string(), |(_, s)| s.clone())
    };
    let [blktests, liburing, vk, ok] = heads;
    let mut b = Baseline {
        blktests,
        liburing,
        vanilla: vk,
        ours: ok,
        ..Default::default()
    };
    for k in keys {
        b.rows.push(Row {
            vanilla: get(&v, &k),
            ours: get(&o, &k),
            suite: k.0,
            test: k.1,
            device: k.2,
        });
    }
    if let Some(old) = old {
        for w in &old.why {
            if b.find(&w.0, &w.1, &w.2).is_some() {
                b.why.push(w.clone());
            }
        }
    }
    b
}

pub fn render(b: &Baseline) -> String {
    let mut s = String::from(
        "# Test suites written by others on the unpatched kernel and on ours (issue 27;\n\
         # xtask/src/suites.rs). `result SUITE TEST DEVICE VANILLA OURS`: DEVICE `-` for a\n\
         # test that takes no device, else the device blktests' TEST_DEVS (or liburing's\n\
         # file argument) named: `loop` (the kernel loop driver, the control) or a\n\
         # ublk-user loop device in that mode. VANILLA: Debian's build of plain 7.2.12\n\
         # (the distro flavor; it has no bpf modes); OURS: our patched kernel. `-`: not\n\
         # run there. A test's reference is VANILLA for DEVICE `-`, the `loop` row's OURS\n\
         # otherwise; test 44 (CI) requires every test whose reference passes to pass,\n\
         # but those a `why` line explains (the suite's or the environment's, not ours).\n\
         # Regenerate (a distro and an ours boot): cargo xtask suites\n",
    );
    s.push_str(&format!("blktests: {}\n", b.blktests));
    s.push_str(&format!("liburing: {}\n", b.liburing));
    s.push_str(&format!("vanilla: {}\n", b.vanilla));
    s.push_str(&format!("ours: {}\n", b.ours));
    for w in &b.why {
        s.push_str(&format!("why {} {} {}: {}\n", w.0, w.1, w.2, w.3));
    }
    let wt = b.rows.iter().map(|r| r.test.len()).max().unwrap_or(8);
    for r in &b.rows {
        s.push_str(&format!(
            "result {:<8} {:<wt$} {:<10} {:<7} {}\n",
            r.suite, r.test, r.device, r.vanilla, r.ours
        ));
    }
    s
}

/// `cargo xtask suites`: everything on the distro kernel and on ours (one
/// boot each), then the baseline from both.
/// `merge_only`: no boot, the baseline from the last results of both.
pub fn run(opts: &VmOpts, no_build: bool, only: Option<Flavor>, merge_only: bool) -> Result<i32> {
    let ours_k = kernel::ensure(Flavor::Ublk)?;
    let results = |f: Flavor| format!("{STAGE}/results-{}.txt", f.name());
    if !merge_only {
        stage(&ours_k)?;
        if !no_build {
            crate::build::build()?;
        }
    }
    let (hb, hl) = hashes()?;
    for f in [Flavor::Distro, Flavor::Ublk] {
        let res = results(f);
        if merge_only || only.is_some_and(|o| o != f) {
            continue;
        }
        let k = kernel::ensure(f)?;
        say(format!(
            "suites: blktests and liburing on the {} kernel {} (all of it; long under TCG)",
            f.name(),
            k.release
        ));
        let script = format!(
            "export SUITES_PLAN=full SUITES_RESULTS={res}\n\
             export TEST_TMP=$(mktemp -d /tmp/suites.XXXXXX)\n\
             sh tests/vm/44-suites.sh\n"
        );
        let o = VmOpts {
            flavor: f,
            ..opts.clone()
        };
        let t0 = std::time::Instant::now();
        let r = vm::run_script(&o, &script);
        let secs = t0.elapsed().as_secs();
        let text = fs::read_to_string(root().join(&res)).unwrap_or_default();
        // A run that stopped early (timeout, a wedged test) keeps what it
        // finished: the tests it did not reach are `-` in the baseline.
        match r {
            Ok(r) if r.status == 0 => say(format!(
                "suites: {} kernel: {} results in {secs}s",
                f.name(),
                text.lines().count()
            )),
            Ok(r) => say(format!(
                "suites: the {} run stopped early (exit {}) after {secs}s with {} results; \
                 console log: {}",
                f.name(),
                r.status,
                text.lines().count(),
                r.console.display()
            )),
            Err(e) => say(format!(
                "suites: the {} run failed after {secs}s with {} results: {e:#}",
                f.name(),
                text.lines().count()
            )),
        }
    }
    // Both read after the boots: with `--only`, the other kernel's run may
    // have been going on beside this one.
    let texts: Vec<String> = [Flavor::Distro, Flavor::Ublk]
        .iter()
        .map(|f| fs::read_to_string(root().join(results(*f))).unwrap_or_default())
        .collect();
    let (abi, dver) = crate::distro::version()?;
    let old = fs::read_to_string(root().join(FILE))
        .ok()
        .and_then(|t| parse(&t).ok());
    let b = merge(
        &texts[0],
        &texts[1],
        [
            format!("{BLKTESTS} sha256:{hb}"),
            format!("{LIBURING} sha256:{hl}"),
            format!("{abi} (Debian linux-binary-{abi} {dver})"),
            format!("{} (kernel-patches/ on linux-source-7.2)", ours_k.release),
        ],
        old.as_ref(),
    );
    fs::write(root().join(FILE), render(&b))?;
    let not_run = b.rows.iter().filter(|r| r.ours == "-").count();
    if not_run > 0 {
        say(format!(
            "suites: {not_run} results of the distro run have no counterpart in ours (not run there)"
        ));
    }
    let bad = b.unexplained();
    say(format!(
        "suites: wrote {FILE}: {} results; {} differences without a `why` line",
        b.rows.len(),
        bad.len()
    ));
    for r in &bad {
        say(format!(
            "  {} {} on {}: reference pass, ours {}",
            r.suite, r.test, r.device, r.ours
        ));
    }
    Ok(if bad.is_empty() { 0 } else { 1 })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clone_anywhere_finds_the_share_beside_its_origin() {
        let t = std::env::temp_dir().join(format!("xtask-origin-{}", std::process::id()));
        let _ = fs::remove_dir_all(&t);
        let origin = t.join("work/main");
        fs::create_dir_all(t.join("work/shared/third_party")).unwrap();
        fs::create_dir_all(&origin).unwrap();
        let git = |dir: &Path, args: &[&str]| {
            let st = cmd("git").arg("-C").arg(dir).args(args).output().unwrap();
            assert!(st.status.success(), "git {args:?}: {st:?}");
        };
        git(&origin, &["init", "-q"]);
        let clone = t.join("elsewhere/ci");
        fs::create_dir_all(&clone).unwrap();
        git(&clone, &["init", "-q"]);
        git(
            &clone,
            &["remote", "add", "origin", origin.to_str().unwrap()],
        );
        assert_eq!(local_origin(&clone), Some(origin.clone()));
        // a remote that is not a local directory is no origin to search
        git(
            &origin,
            &["remote", "add", "origin", "https://example.invalid/x.git"],
        );
        assert_eq!(local_origin(&origin), None);
        let _ = fs::remove_dir_all(&t);
    }

    fn heads() -> [String; 4] {
        [
            format!("{BLKTESTS} sha256:aa"),
            format!("{LIBURING} sha256:bb"),
            "7.2.12+deb13-amd64".into(),
            "7.2.12+".into(),
        ]
    }

    #[test]
    fn merge_render_parse_round_trip_and_references() {
        let v =
            "blktests ublk/001 - pass 10\nliburing nop.t - pass 1\nliburing iopoll.t - fail 1\n\
                 blktests block/003 loop pass 5\n";
        let o = "blktests ublk/001 - pass 9\nliburing nop.t - fail 1\nliburing iopoll.t - fail 1\n\
                 blktests block/003 loop pass 5\nblktests block/003 bpf-kernel fail 5\n\
                 blktests block/005 bpf-kernel pass 5\n";
        let b = merge(v, o, heads(), None);
        assert_eq!(parse(&render(&b)).unwrap(), b);
        // nop.t (vanilla pass, ours fail) and block/003 on bpf-kernel (loop
        // pass, ours fail) are differences; iopoll fails on both; block/005
        // has no loop reference.
        let bad: Vec<(&str, &str)> = b
            .unexplained()
            .iter()
            .map(|r| (r.test.as_str(), r.device.as_str()))
            .collect();
        assert_eq!(bad, [("nop.t", "-"), ("block/003", "bpf-kernel")]);
        assert!(check(&b, "aa", "bb").is_err());
        // A `why` line excuses one, and keeps it out of what CI requires.
        let mut old = b;
        old.why.push((
            "liburing".into(),
            "nop.t".into(),
            "-".into(),
            "TCG timing".into(),
        ));
        let b = merge(v, o, heads(), Some(&old));
        assert_eq!(b.why.len(), 1);
        assert_eq!(b.unexplained().len(), 1);
        let exp: Vec<(&str, &str)> = b
            .expected()
            .iter()
            .map(|r| (r.test.as_str(), r.device.as_str()))
            .collect();
        assert_eq!(
            exp,
            [
                ("ublk/001", "-"),
                ("block/003", "loop"),
                ("block/003", "bpf-kernel")
            ]
        );
    }

    #[test]
    fn stale_snapshot_or_bad_lines_fail_loudly() {
        let b = merge(
            "liburing nop.t - pass 1\n",
            "liburing nop.t - pass 1\n",
            heads(),
            None,
        );
        check(&b, "aa", "bb").unwrap();
        let e = check(&b, "aa", "cc").unwrap_err();
        assert!(
            format!("{e:#}").contains("regenerate it with `cargo xtask suites`"),
            "{e:#}"
        );
        let text = render(&b);
        let e = parse(&format!("{text}result liburing x.t - pass maybe\n")).unwrap_err();
        assert!(
            format!("{e:#}").contains("unknown status \"maybe\""),
            "{e:#}"
        );
        let e = parse(&format!("{text}result liburing nop.t - pass pass\n")).unwrap_err();
        assert!(format!("{e:#}").contains("listed twice"), "{e:#}");
        let e = parse(&text.replace("vanilla:", "# vanilla:")).unwrap_err();
        assert!(format!("{e:#}").contains("no `vanilla:` line"), "{e:#}");
    }

    /// The committed baseline parses, matches the snapshots when they are
    /// here, and explains every difference.
    #[test]
    fn committed_baseline_is_consistent() {
        let Ok(text) = fs::read_to_string(root().join(FILE)) else {
            panic!("{FILE} is missing: `cargo xtask suites` writes it");
        };
        let b = parse(&text).unwrap();
        assert!(b.unexplained().is_empty(), "{:?}", b.unexplained());
        if let Ok((hb, hl)) = hashes() {
            check(&b, &hb, &hl).unwrap();
        }
    }
}
