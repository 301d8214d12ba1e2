//! `cargo xtask test`: static checks, host tests, checkpatch, the kernel
//! build and the VM tests. The last line is `N passed, N failed` (VM tests).

use crate::kernel::{self, Flavor};
use crate::util::{cmd, log_path, root, run_logged, say};
use crate::vm::{self, VmOpts};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

struct VmTest {
    name: String,
    path: PathBuf,
    flavor: Flavor,
}

/// `--filter a,b,c`: the test name contains any of the comma-separated parts.
fn matches_filter(name: &str, filter: &str) -> bool {
    filter
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .any(|f| name.contains(f))
}

/// tests/vm/NN-name.sh, in order; `# kernel: vanilla` runs a test on the
/// unpatched kernel instead of ours.
fn discover(filter: Option<&str>, patched: Flavor) -> Result<Vec<VmTest>> {
    let dir = root().join("tests/vm");
    let mut tests = Vec::new();
    for e in fs::read_dir(&dir).with_context(|| format!("cannot list {}", dir.display()))? {
        let path = e?.path();
        let name = path.file_stem().unwrap().to_string_lossy().to_string();
        let is_test = is_test_name(&path.file_name().unwrap().to_string_lossy());
        if !is_test || filter.is_some_and(|f| !matches_filter(&name, f)) {
            continue;
        }
        let flavor = flavor_of(&fs::read_to_string(&path)?, patched);
        tests.push(VmTest { name, path, flavor });
    }
    tests.sort_by(|a, b| a.name.cmp(&b.name));
    Ok(tests)
}

/// The verdicts of one VM boot from its results file ("VERDICT name secs"
/// lines). The first test without a line was running when the VM stopped;
/// the ones after it never started.
fn group_results(names: &[&str], text: &str, why: &str) -> Vec<(String, String, String)> {
    let mut out = Vec::new();
    let mut stopped = false;
    for name in names {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().nth(1) == Some(*name));
        let (verdict, secs) = match line {
            Some(l) => {
                let mut it = l.split_whitespace();
                (
                    it.next().unwrap_or("FAIL").to_string(),
                    it.nth(1).unwrap_or("?").to_string(),
                )
            }
            None if !stopped => {
                stopped = true;
                ("FAIL".into(), format!("{why} during this test"))
            }
            None => ("FAIL".into(), format!("not run: {why}")),
        };
        out.push((name.to_string(), verdict, secs));
    }
    out
}

/// Which kernel a test runs on: `# kernel: distro` (Debian's prebuilt 7.2)
/// or `# kernel: vanilla` (7.2 built here without our series; not in CI) in
/// its header, else ours.
fn flavor_of(script: &str, patched: Flavor) -> Flavor {
    for l in script.lines().map(str::trim) {
        match l {
            "# kernel: distro" => return Flavor::Distro,
            "# kernel: vanilla" => return Flavor::Vanilla,
            _ => {}
        }
    }
    patched
}

/// Whether a file name is a VM test: `NN-name.sh`.
fn is_test_name(file: &str) -> bool {
    let Some(stem) = file.strip_suffix(".sh") else {
        return false;
    };
    let b = stem.as_bytes();
    b.len() > 3 && b[..2].iter().all(u8::is_ascii_digit) && b[2] == b'-'
}

pub fn test(filter: Option<&str>, vm_only: bool, soak: bool, opts: &VmOpts) -> Result<i32> {
    let root = root();
    let mut failed_steps: Vec<String> = Vec::new();
    let mut step = |name: &str, c: &mut std::process::Command| {
        let log = log_path(&format!("test-{}.log", name.replace(' ', "-"))).unwrap();
        match run_logged(name, c.current_dir(&root), &log) {
            Ok(()) => say(format!("test: {name}: ok")),
            Err(e) => {
                say(format!("test: {name}: FAILED: {e:#}"));
                failed_steps.push(name.to_string());
            }
        }
    };
    if !vm_only {
        step(
            "cargo fmt",
            cmd("cargo").args(["fmt", "--all", "--", "--check"]),
        );
        if root.join("ublk-ebpf/Cargo.toml").exists() {
            step(
                "cargo fmt ublk-ebpf",
                cmd("cargo").args([
                    "fmt",
                    "--manifest-path",
                    "ublk-ebpf/Cargo.toml",
                    "--",
                    "--check",
                ]),
            );
        }
        step(
            "cargo clippy",
            cmd("cargo").args([
                "clippy",
                "--workspace",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
        );
        step("unit tests", cmd("cargo").args(["test", "--workspace"]));
        checkpatch(&mut failed_steps)?;
    }

    // `--debug-kernel` runs the patched-kernel tests on the debug flavor.
    let patched = if opts.flavor.unpatched() {
        Flavor::Ublk
    } else {
        opts.flavor
    };
    let tests = discover(filter, patched)?;
    // Build what the VM tests need: kernels first (longest), then binaries.
    let mut flavors: Vec<Flavor> = Vec::new();
    for t in &tests {
        if !flavors.contains(&t.flavor) {
            flavors.push(t.flavor);
        }
    }
    if flavors.is_empty() {
        flavors.push(patched);
    }
    let mut kernel_ok = true;
    for f in &flavors {
        match kernel::ensure(*f) {
            // kublk is built once, against our kernel's (superset) uapi.
            Ok(k) if !f.unpatched() && tests.iter().any(|t| t.name.contains("kublk")) => {
                if let Err(e) = crate::selftests::build(&k) {
                    say(format!("test: kublk selftests build: FAILED: {e:#}"));
                    failed_steps.push("kublk build".into());
                }
            }
            Ok(_) => {}
            Err(e) => {
                say(format!("test: kernel build ({}): FAILED: {e:#}", f.name()));
                failed_steps.push(format!("kernel build ({})", f.name()));
                kernel_ok = false;
            }
        }
    }
    if kernel_ok && !vm_only {
        match w1_check() {
            Ok(()) => {}
            Err(e) => {
                say(format!("test: W=1 warnings: FAILED: {e:#}"));
                failed_steps.push("W=1 warnings".into());
            }
        }
    }
    if let Err(e) = crate::build::build() {
        say(format!("test: build: FAILED: {e:#}"));
        failed_steps.push("build".into());
        kernel_ok = false;
    }

    let mut results: Vec<(String, String, String)> = Vec::new();
    if kernel_ok {
        for f in &flavors {
            let group: Vec<&VmTest> = tests.iter().filter(|t| t.flavor == *f).collect();
            if group.is_empty() {
                continue;
            }
            say(format!(
                "test: {} VM tests on the {} kernel",
                group.len(),
                f.name()
            ));
            let scale = timeout_scale(*f, soak);
            let mut script = String::new();
            if soak {
                script.push_str("export UBLK_SOAK=1\n");
            }
            script.push_str(&format!("export UBLK_TIMEOUT_SCALE={scale}\n"));
            script.push_str("sh tests/vm/run.sh /xtask/results");
            for t in &group {
                script.push(' ');
                script.push_str(&t.path.strip_prefix(&root)?.to_string_lossy());
            }
            script.push('\n');
            let o = VmOpts {
                flavor: *f,
                timeout: opts.timeout * scale,
                ..opts.clone()
            };
            let names: Vec<&str> = group.iter().map(|t| t.name.as_str()).collect();
            match vm::run_script(&o, &script) {
                Ok(r) => {
                    let text = fs::read_to_string(r.dir.join("results")).unwrap_or_default();
                    results.extend(group_results(&names, &text, "VM stopped early"));
                    if fs::read_to_string(&r.console)
                        .unwrap_or_default()
                        .contains("Kernel panic")
                    {
                        say(format!(
                            "test: the kernel panicked; console log: {}",
                            r.console.display()
                        ));
                    }
                }
                Err(e) => {
                    say(format!("test: VM run failed: {e:#}"));
                    // A timeout keeps the results of the tests that finished.
                    let text = e
                        .downcast_ref::<vm::TimedOut>()
                        .and_then(|t| fs::read_to_string(t.dir.join("results")).ok())
                        .unwrap_or_default();
                    results.extend(group_results(&names, &text, "VM failed"));
                }
            }
        }
    } else {
        for t in &tests {
            results.push((
                t.name.clone(),
                "FAIL".into(),
                "not run: build failed".into(),
            ));
        }
    }

    println!();
    println!("VM tests:");
    for (name, verdict, secs) in &results {
        let detail = if secs.parse::<u64>().is_ok() {
            format!("{secs}s")
        } else {
            secs.clone()
        };
        println!("  {verdict:<4} {name} ({detail})");
    }
    let passed = results.iter().filter(|r| r.1 == "PASS").count();
    let failed = results.iter().filter(|r| r.1 == "FAIL").count();
    let skipped = results.iter().filter(|r| r.1 == "SKIP").count();
    if !failed_steps.is_empty() {
        println!("failed steps: {}", failed_steps.join(", "));
    }
    if skipped > 0 {
        println!("{skipped} skipped");
    }
    println!("{passed} passed, {failed} failed");
    Ok(if failed == 0 && failed_steps.is_empty() {
        0
    } else {
        1
    })
}

/// How much longer than their `# timeout:` the VM tests (and the VM) may
/// take: soak variants repeat the fault cases many times, and the debug
/// kernel (KASAN inline, lockdep, kmemleak) runs several times slower.
fn timeout_scale(flavor: Flavor, soak: bool) -> u32 {
    let mut scale = 1;
    if soak {
        scale *= 5;
    }
    if flavor == Flavor::Debug {
        scale *= 4;
    }
    scale
}

/// `make W=1` on every kernel C file the series touches: our kernel may not
/// warn where vanilla 7.2 does not.
pub fn w1_check() -> Result<()> {
    let mut objects = std::collections::BTreeSet::new();
    for p in kernel::series()? {
        for line in fs::read_to_string(&p)?.lines() {
            if let Some(f) = line.strip_prefix("+++ b/") {
                if f.ends_with(".c") && !f.starts_with("tools/") {
                    objects.insert(f.trim_end_matches(".c").to_string() + ".o");
                }
            }
        }
    }
    if objects.is_empty() {
        return Ok(());
    }
    let objects: Vec<String> = objects.into_iter().collect();
    let ours = kernel::w1_warnings(Flavor::Ublk, &objects)?;
    // Files the series adds do not exist in the unpatched tree.
    let pristine = kernel::ensure_pristine()?;
    let existing: Vec<String> = objects
        .iter()
        .filter(|o| {
            pristine
                .join(o.trim_end_matches(".o").to_string() + ".c")
                .is_file()
        })
        .cloned()
        .collect();
    let (theirs, _) = kernel::w1_pristine_warnings(&existing)?;
    let new: Vec<&String> = ours.difference(&theirs).collect();
    if !new.is_empty() {
        for w in &new {
            eprintln!("    {w}");
        }
        anyhow::bail!("{} new warning(s) in files the series touches", new.len());
    }
    say(format!(
        "test: make W=1 on the {} files the series touches: no new warnings",
        objects.len()
    ));
    Ok(())
}

/// scripts/checkpatch.pl --strict on every patch in the series.
fn checkpatch(failed: &mut Vec<String>) -> Result<()> {
    let patches = kernel::series()?;
    if patches.is_empty() {
        say("test: checkpatch: no patches in kernel-patches/series");
        return Ok(());
    }
    let tree = kernel::ensure_pristine()?;
    let mut bad = Vec::new();
    for p in &patches {
        // Debian's python3 first: spdxcheck.py needs its python3-ply/-git.
        let path = format!(
            "/usr/bin:/bin:{}",
            std::env::var("PATH").unwrap_or_default()
        );
        let out = cmd("perl")
            .env("PATH", path)
            .current_dir(&tree)
            .args(["scripts/checkpatch.pl", "--strict", "--no-color", "--terse"])
            .arg(p)
            .output()?;
        if !out.status.success() {
            let text = String::from_utf8_lossy(&out.stdout);
            say(format!(
                "test: checkpatch: {}:",
                p.file_name().unwrap().to_string_lossy()
            ));
            for l in text.lines().take(20) {
                eprintln!("    {l}");
            }
            bad.push(p.file_name().unwrap().to_string_lossy().to_string());
        }
    }
    if bad.is_empty() {
        say(format!(
            "test: checkpatch --strict: ok ({} patches)",
            patches.len()
        ));
    } else {
        failed.push(format!("checkpatch ({})", bad.join(", ")));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn results_of_a_vm_that_stopped_keep_the_finished_tests() {
        let text = "PASS 00-boot 1\nFAIL 40-kublk 3000\nPASS 50-fault 161\n";
        let names = ["00-boot", "40-kublk", "50-fault", "54-tools", "60-bpf"];
        let r = group_results(&names, text, "VM failed");
        let got: Vec<(&str, &str, &str)> = r
            .iter()
            .map(|(n, v, s)| (n.as_str(), v.as_str(), s.as_str()))
            .collect();
        assert_eq!(
            got,
            [
                ("00-boot", "PASS", "1"),
                ("40-kublk", "FAIL", "3000"),
                ("50-fault", "PASS", "161"),
                ("54-tools", "FAIL", "VM failed during this test"),
                ("60-bpf", "FAIL", "not run: VM failed"),
            ]
        );
        // Nothing written at all: the first test is blamed, none passes.
        let r = group_results(&names[..2], "", "VM failed");
        assert!(r.iter().all(|(_, v, _)| v == "FAIL"));
        assert_eq!(r[0].2, "VM failed during this test");
    }

    #[test]
    fn timeouts_scale_for_soak_and_debug() {
        assert_eq!(timeout_scale(Flavor::Ublk, false), 1);
        assert_eq!(timeout_scale(Flavor::Vanilla, false), 1);
        assert_eq!(timeout_scale(Flavor::Ublk, true), 5);
        assert_eq!(timeout_scale(Flavor::Debug, false), 4);
        assert_eq!(timeout_scale(Flavor::Debug, true), 20);
    }

    #[test]
    fn test_names() {
        assert!(is_test_name("00-boot.sh"));
        assert!(is_test_name("41-kublk-selftests-vanilla.sh"));
        assert!(!is_test_name("run.sh"));
        assert!(!is_test_name("lib.sh"));
        assert!(!is_test_name("1-x.sh"));
        assert!(!is_test_name("00-boot.sh~"));
    }

    #[test]
    fn filter_parts() {
        assert!(matches_filter("30-bpf-verify", "30-"));
        assert!(matches_filter("30-bpf-verify", "10-,30-"));
        assert!(matches_filter("51-fault-del", " 5 , 99"));
        assert!(!matches_filter("40-kublk-selftests", "10-,30-"));
        assert!(!matches_filter("40-kublk-selftests", ","));
    }

    #[test]
    fn flavor_header() {
        let v = "#!/bin/sh\n# kernel: vanilla\nexit 0\n";
        assert_eq!(flavor_of(v, Flavor::Ublk), Flavor::Vanilla);
        assert_eq!(
            flavor_of("#!/bin/sh\nexit 0\n", Flavor::Debug),
            Flavor::Debug
        );
    }
}
