//! The committed kublk baseline, `tests/kublk-baseline.txt`: which of the
//! driver's upstream selftests pass on a kernel without our series (Debian's
//! prebuilt 7.2, the distro flavor). CI compares our kernel's results with
//! it (test 40) instead of booting an unpatched kernel for the whole list.
//!
//! The file records the linux-source-7.2 version and a hash of the upstream
//! selftest sources it was made from: `tools/testing/selftests/ublk` of the
//! UNPATCHED tree (what upstream ships, without our patch 0006 that adds
//! test_bpf_01), hashed as
//! `cd tools/testing/selftests/ublk && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum`.
//! When either no longer matches the tree in use, the comparison fails and
//! names the command that regenerates the file: `cargo xtask kublk-baseline`.

use crate::kernel::{self, Flavor};
use crate::util::{root, say};
use crate::vm::{self, VmOpts};
use anyhow::{bail, Context, Result};
use std::fs;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

pub const FILE: &str = "tests/kublk-baseline.txt";
/// What test 40 reads (written before each VM boot that runs it): the tests
/// that pass in the baseline, one per line, or one `error: ...` line.
pub const EXPECT: &str = "target/selftests/baseline-pass.txt";
const REGEN: &str = "cargo xtask kublk-baseline";

#[derive(Debug, PartialEq, Eq)]
pub struct Baseline {
    /// Debian version of linux-source-7.2 whose selftests were hashed.
    pub source: String,
    /// sha256 of the upstream selftest sources (see the module doc).
    pub hash: String,
    /// The kernel the verdicts were made on (free text, for people).
    pub kernel: String,
    /// (test, verdict) in file order.
    pub verdicts: Vec<(String, String)>,
}

const VERDICTS: &[&str] = &["pass", "skip", "fail", "hang", "notrun", "wedges"];

pub fn parse(text: &str) -> Result<Baseline> {
    let (mut source, mut hash, mut kernel) = (None, None, None);
    let mut verdicts = Vec::new();
    for (n, line) in text.lines().enumerate() {
        let line = line.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        if let Some((k, v)) = line.split_once(": ") {
            let v = v.trim().to_string();
            match k {
                "source" => source = Some(v),
                "selftests-sha256" => hash = Some(v),
                "kernel" => kernel = Some(v),
                _ => bail!("{FILE}:{}: unknown field {k:?}", n + 1),
            }
            continue;
        }
        let mut it = line.split_whitespace();
        let (Some(t), Some(v), None) = (it.next(), it.next(), it.next()) else {
            bail!("{FILE}:{}: expected `test verdict`, got {line:?}", n + 1);
        };
        if !t.starts_with("test_") || !t.ends_with(".sh") {
            bail!("{FILE}:{}: {t:?} is not a selftest name", n + 1);
        }
        if !VERDICTS.contains(&v) {
            bail!("{FILE}:{}: unknown verdict {v:?} for {t}", n + 1);
        }
        if verdicts.iter().any(|(x, _): &(String, String)| x == t) {
            bail!("{FILE}:{}: {t} is listed twice", n + 1);
        }
        verdicts.push((t.to_string(), v.to_string()));
    }
    let need =
        |f: Option<String>, name: &str| f.with_context(|| format!("{FILE} has no `{name}:` line"));
    let b = Baseline {
        source: need(source, "source")?,
        hash: need(hash, "selftests-sha256")?,
        kernel: need(kernel, "kernel")?,
        verdicts,
    };
    if b.verdicts.is_empty() {
        bail!("{FILE} lists no selftests");
    }
    Ok(b)
}

/// The baseline holds for this tree: same source version, same hash, and
/// one verdict for every upstream test.
pub fn check(b: &Baseline, source: &str, hash: &str, upstream: &[String]) -> Result<()> {
    if b.source != source {
        bail!(
            "{FILE} was made from linux-source-7.2 {} but the tree in use is {source}: \
             regenerate it with `{REGEN}`",
            b.source
        );
    }
    if b.hash != hash {
        bail!(
            "{FILE} was made from selftests with sha256 {} but tools/testing/selftests/ublk \
             of the unpatched tree now hashes to {hash}: regenerate it with `{REGEN}`",
            b.hash
        );
    }
    let missing: Vec<&str> = upstream
        .iter()
        .filter(|t| !b.verdicts.iter().any(|(x, _)| x == *t))
        .map(String::as_str)
        .collect();
    if !missing.is_empty() {
        bail!(
            "{FILE} has no verdict for {}: regenerate it with `{REGEN}`",
            missing.join(", ")
        );
    }
    Ok(())
}

pub fn render(b: &Baseline) -> String {
    let mut s = String::new();
    s.push_str(
        "# kublk selftest verdicts on a kernel WITHOUT our series: Debian's own build of\n\
         # plain Linux 7.2 (the `distro` kernel flavor of cargo xtask), one line per\n\
         # upstream selftest (TEST_PROGS of the unpatched tree; test_bpf_01 is ours).\n\
         # Test 40 requires every test that passes here to pass on our kernel.\n\
         # `wedges`: not run, it can wedge plain 7.2 (no patch 0001; see test 42).\n\
         # `skip`: stress tests (UBLK_SELFTEST_STRESS=1) or the test skipped itself.\n\
         # selftests-sha256 is, in the unpatched tree:\n\
         #   cd tools/testing/selftests/ublk && find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum\n\
         # Regenerate (one distro VM boot, ~33 min): cargo xtask kublk-baseline\n",
    );
    s.push_str(&format!("kernel: {}\n", b.kernel));
    s.push_str(&format!("source: {}\n", b.source));
    s.push_str(&format!("selftests-sha256: {}\n", b.hash));
    for (t, v) in &b.verdicts {
        s.push_str(&format!("{t} {v}\n"));
    }
    s
}

/// `TEST_PROGS := test_x_NN.sh` / `+=` lines of the selftests Makefile.
pub fn test_progs(makefile: &str) -> Vec<String> {
    makefile
        .lines()
        .filter_map(|l| l.strip_prefix("TEST_PROGS"))
        .filter_map(|l| {
            let l = l.trim_start();
            l.strip_prefix(":=").or_else(|| l.strip_prefix("+="))
        })
        .filter_map(|v| v.split_whitespace().next())
        .filter(|t| t.starts_with("test_") && t.ends_with(".sh"))
        .map(str::to_string)
        .collect()
}

/// sha256 of the selftest sources (see the module doc for the shell form).
pub fn sources_hash(dir: &Path) -> Result<String> {
    fn walk(dir: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
        for e in fs::read_dir(dir)?.flatten() {
            let name = e.file_name().to_string_lossy().to_string();
            let r = format!("{rel}/{name}");
            let ft = e.file_type()?;
            if ft.is_dir() {
                walk(&e.path(), &r, out)?;
            } else if ft.is_file() {
                out.push(r);
            }
        }
        Ok(())
    }
    let mut files = Vec::new();
    walk(dir, ".", &mut files)
        .with_context(|| format!("cannot list the selftests in {}", dir.display()))?;
    files.sort();
    let out = Command::new("sha256sum")
        .current_dir(dir)
        .args(&files)
        .output()
        .context("cannot run sha256sum")?;
    if !out.status.success() {
        bail!("sha256sum failed in {}", dir.display());
    }
    let mut c = Command::new("sha256sum")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()?;
    c.stdin.take().unwrap().write_all(&out.stdout)?;
    let o = c.wait_with_output()?;
    Ok(String::from_utf8_lossy(&o.stdout)
        .split_whitespace()
        .next()
        .unwrap_or("")
        .to_string())
}

/// The unpatched tree's version, selftests hash and upstream test list.
fn current() -> Result<(String, String, Vec<String>)> {
    let (ver, tree) = kernel::pristine()?;
    let dir = tree.join("tools/testing/selftests/ublk");
    let hash = sources_hash(&dir)?;
    let tests = test_progs(&fs::read_to_string(dir.join("Makefile"))?);
    if tests.is_empty() {
        bail!("no TEST_PROGS in {}", dir.join("Makefile").display());
    }
    Ok((ver, hash, tests))
}

/// Write `EXPECT` for test 40: the baseline's passing tests, or the reason
/// the baseline cannot be used (test 40 then fails with it). Returns that
/// reason as an error too, for the step list.
pub fn prepare_expect() -> Result<()> {
    let out = root().join(EXPECT);
    fs::create_dir_all(out.parent().unwrap())?;
    let r = (|| -> Result<Vec<String>> {
        let text = fs::read_to_string(root().join(FILE))
            .with_context(|| format!("cannot read {FILE}: generate it with `{REGEN}`"))?;
        let b = parse(&text)?;
        let (ver, hash, tests) = current()?;
        check(&b, &ver, &hash, &tests)?;
        Ok(b.verdicts
            .into_iter()
            .filter(|(_, v)| v == "pass")
            .map(|(t, _)| t)
            .collect())
    })();
    match r {
        Ok(pass) => {
            fs::write(&out, pass.join("\n") + "\n")?;
            Ok(())
        }
        Err(e) => {
            fs::write(&out, format!("error: {e:#}\n"))?;
            Err(e)
        }
    }
}

/// `cargo xtask kublk-baseline`: every upstream kublk selftest on the distro
/// kernel in one VM boot; writes `FILE`.
pub fn generate(opts: &VmOpts, no_build: bool) -> Result<i32> {
    let (ver, hash, tests) = current()?;
    // kublk is built once, against our kernel's (superset) uapi, as in CI.
    let ours = kernel::ensure(Flavor::Ublk)?;
    crate::selftests::build(&ours)?;
    if !no_build {
        crate::build::build()?;
    }
    let distro = kernel::ensure(Flavor::Distro)?;
    let (abi, dver) = crate::distro::version()?;
    let results = "target/selftests/results-distro.txt";
    let script = format!(
        "export KUBLK_TESTS={tests:?}\n\
         export KUBLK_WEDGING=test_generic_17.sh\n\
         export KUBLK_WEDGING_WHY='plain 7.2 lacks patch 0001; see 42-kublk-recovery-exit'\n\
         export TEST_TMP=$(mktemp -d /tmp/baseline.XXXXXX)\n\
         . tests/vm/lib.sh\n. tests/vm/lib-kublk.sh\n\
         run_kublk_selftests {results}\n",
        tests = tests.join(" ")
    );
    say(format!(
        "kublk-baseline: {} upstream selftests on the distro kernel {} (~33 min under TCG)",
        tests.len(),
        distro.release
    ));
    let o = VmOpts {
        flavor: Flavor::Distro,
        timeout: opts.timeout.max(std::time::Duration::from_secs(4500)),
        ..opts.clone()
    };
    let r = vm::run_script(&o, &script)?;
    let path: PathBuf = root().join(results);
    let text = fs::read_to_string(&path)
        .with_context(|| format!("the baseline run wrote no {}", path.display()))?;
    if r.status != 0 {
        bail!(
            "the baseline run failed (exit {}): {FILE} not written; console log: {}",
            r.status,
            r.console.display()
        );
    }
    let mut verdicts = Vec::new();
    for t in &tests {
        let v = text
            .lines()
            .find_map(|l| l.strip_prefix(&format!("{t} ")))
            .with_context(|| format!("no verdict for {t} in {}", path.display()))?;
        verdicts.push((t.clone(), v.trim().to_string()));
    }
    let b = Baseline {
        source: ver,
        hash,
        kernel: format!(
            "{abi} (Debian linux-binary-{abi} {dver}: Debian's build of plain {})",
            abi.split('+').next().unwrap_or(&abi)
        ),
        verdicts,
    };
    fs::write(root().join(FILE), render(&b))?;
    let pass = b.verdicts.iter().filter(|(_, v)| v == "pass").count();
    say(format!(
        "kublk-baseline: wrote {FILE}: {pass} of {} pass; per-test seconds in {}.times",
        b.verdicts.len(),
        results
    ));
    Ok(0)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Baseline {
        Baseline {
            source: "7.2.12-1~bpo13+1".into(),
            hash: "ab12".into(),
            kernel: "7.2.12+deb13-amd64 (Debian)".into(),
            verdicts: vec![
                ("test_generic_02.sh".into(), "pass".into()),
                ("test_generic_17.sh".into(), "wedges".into()),
                ("test_stress_01.sh".into(), "skip".into()),
            ],
        }
    }

    #[test]
    fn render_then_parse_round_trips() {
        let b = sample();
        assert_eq!(parse(&render(&b)).unwrap(), b);
    }

    #[test]
    fn bad_lines_are_errors_naming_the_line() {
        let head = "kernel: k\nsource: s\nselftests-sha256: h\n";
        let e = parse(&format!("{head}test_a_01.sh maybe\n")).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "tests/kublk-baseline.txt:4: unknown verdict \"maybe\" for test_a_01.sh"
        );
        let e = parse(&format!("{head}test_a_01.sh pass extra\n")).unwrap_err();
        assert!(
            format!("{e:#}").contains(":4: expected `test verdict`"),
            "{e:#}"
        );
        let e = parse(&format!("{head}test_a_01.sh pass\ntest_a_01.sh fail\n")).unwrap_err();
        assert!(format!("{e:#}").contains("listed twice"), "{e:#}");
        let e = parse("source: s\nselftests-sha256: h\ntest_a_01.sh pass\n").unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "tests/kublk-baseline.txt has no `kernel:` line"
        );
        let e = parse(head).unwrap_err();
        assert!(format!("{e:#}").contains("lists no selftests"), "{e:#}");
        let e = parse(&format!("{head}colour: blue\n")).unwrap_err();
        assert!(format!("{e:#}").contains("unknown field"), "{e:#}");
    }

    #[test]
    fn version_or_hash_mismatch_fails_loudly() {
        let b = sample();
        let up: Vec<String> = vec!["test_generic_02.sh".into()];
        check(&b, "7.2.12-1~bpo13+1", "ab12", &up).unwrap();
        let e = check(&b, "7.2.13-1", "ab12", &up).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "tests/kublk-baseline.txt was made from linux-source-7.2 7.2.12-1~bpo13+1 but the \
             tree in use is 7.2.13-1: regenerate it with `cargo xtask kublk-baseline`"
        );
        let e = check(&b, "7.2.12-1~bpo13+1", "cd34", &up).unwrap_err();
        assert!(
            format!("{e:#}").starts_with(
                "tests/kublk-baseline.txt was made from selftests with sha256 ab12 but"
            ),
            "{e:#}"
        );
        assert!(format!("{e:#}").ends_with("`cargo xtask kublk-baseline`"));
        let up2: Vec<String> = vec!["test_generic_02.sh".into(), "test_new_01.sh".into()];
        let e = check(&b, "7.2.12-1~bpo13+1", "ab12", &up2).unwrap_err();
        assert!(
            format!("{e:#}").contains("has no verdict for test_new_01.sh"),
            "{e:#}"
        );
    }

    #[test]
    fn makefile_test_progs() {
        let mk = "TEST_PROGS := test_generic_02.sh\nTEST_PROGS += test_null_01.sh  # c\n\
                  TEST_GEN_PROGS_EXTENDED = kublk\nTEST_PROGS+=test_loop_01.sh\n";
        assert_eq!(
            test_progs(mk),
            ["test_generic_02.sh", "test_null_01.sh", "test_loop_01.sh"]
        );
    }

    #[test]
    fn sources_hash_matches_the_shell_form() {
        let t = crate::util::TempDir::new("baseline-hash");
        let d = t.path();
        fs::create_dir(d.join("trace")).unwrap();
        fs::write(d.join("b.sh"), "b\n").unwrap();
        fs::write(d.join("a.c"), "a\n").unwrap();
        fs::write(d.join("trace/x.bt"), "x\n").unwrap();
        let ours = sources_hash(d).unwrap();
        let out = Command::new("sh")
            .current_dir(d)
            .args([
                "-c",
                "find . -type f | LC_ALL=C sort | xargs sha256sum | sha256sum",
            ])
            .output()
            .unwrap();
        let shell = String::from_utf8_lossy(&out.stdout);
        assert_eq!(ours, shell.split_whitespace().next().unwrap());
        assert_eq!(ours.len(), 64);
    }
}
