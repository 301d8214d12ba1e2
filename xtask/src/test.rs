//! `cargo xtask test`: static checks, host tests, checkpatch, the kernel
//! build and the VM tests. The last line is `N passed, N failed` (VM tests).

use crate::kernel::{self, Flavor};
use crate::util::{cmd, log_path, root, run_logged, say};
use crate::vm::{self, VmOpts};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;
use std::time::{Duration, Instant};

struct VmTest {
    name: String,
    path: PathBuf,
    flavor: Flavor,
    /// `# cost: SECS`: what the test measured in CI (warm, this machine).
    cost: Option<u64>,
}

/// What `cargo xtask test` may spend on VM tests (all boots, warm caches):
/// the sum of the CI set's declared costs plus `BOOT_COST` per kernel must
/// stay under it (checked by a host unit test, not by a timer a busy host
/// could trip). 60 minutes: the declared costs are upper bounds (at 43
/// declared minutes the whole clean-clone `cargo xtask test`, host steps
/// included, took 29); 46 until test 44 (blktests and liburing, issue 27)
/// added its 7 and test 72 (qcow2, issue 23) its 8.
pub const VM_BUDGET_SECS: u64 = 60 * 60;
/// One VM boot: initramfs, boot to /init, power-off (distro: module loads).
pub const BOOT_COST: u64 = 60;

/// The options of one `cargo xtask test`.
pub struct TestOpts<'a> {
    pub filter: Option<&'a str>,
    pub vm_only: bool,
    pub soak: bool,
    pub full_selftests: bool,
    /// Time `setup` took before the test started.
    pub setup: Duration,
}

/// `# NAME: VALUE` header line of a test script.
fn header<'a>(script: &'a str, name: &str) -> Option<&'a str> {
    let key = format!("# {name}:");
    script
        .lines()
        .find_map(|l| l.trim().strip_prefix(key.as_str()))
        .map(str::trim)
}

/// A test is in the default (CI) set unless its header says `# ci: no`
/// (e.g. the benchmark); `--filter` naming it runs it anyway.
fn in_ci(script: &str) -> bool {
    !header(script, "ci").is_some_and(|v| v.starts_with("no"))
}

/// The `# cost: SECS` header.
fn cost_of(script: &str) -> Option<u64> {
    header(script, "cost").and_then(|v| v.split_whitespace().next()?.parse().ok())
}

/// `--filter a,b,c`: the test name contains any of the comma-separated parts.
fn matches_filter(name: &str, filter: &str) -> bool {
    filter
        .split(',')
        .map(str::trim)
        .filter(|f| !f.is_empty())
        .any(|f| name.contains(f))
}

/// tests/vm/NN-name.sh, in order; `# kernel: distro` runs a test on
/// Debian's prebuilt kernel instead of ours; `# ci: no` leaves it out unless
/// a `filter` names it.
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
        let script = fs::read_to_string(&path)?;
        if filter.is_none() && !in_ci(&script) {
            continue;
        }
        let flavor = flavor_of(&script, patched);
        let cost = cost_of(&script);
        tests.push(VmTest {
            name,
            path,
            flavor,
            cost,
        });
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

pub fn test(t: &TestOpts, opts: &VmOpts) -> Result<i32> {
    let (filter, vm_only, soak) = (t.filter, t.vm_only, t.soak);
    let started = Instant::now();
    let root = root();
    let mut failed_steps: Vec<String> = Vec::new();
    let mut times: Vec<(String, Duration)> = vec![("setup".into(), t.setup)];
    let mut step = |name: &str, c: &mut std::process::Command, times: &mut Vec<_>| {
        let log = log_path(&format!("test-{}.log", name.replace(' ', "-"))).unwrap();
        let t0 = Instant::now();
        match run_logged(name, c.current_dir(&root), &log) {
            Ok(()) => say(format!("test: {name}: ok")),
            Err(e) => {
                say(format!("test: {name}: FAILED: {e:#}"));
                failed_steps.push(name.to_string());
            }
        }
        times.push((name.to_string(), t0.elapsed()));
    };
    if !vm_only {
        step(
            "cargo fmt",
            cmd("cargo").args(["fmt", "--all", "--", "--check"]),
            &mut times,
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
                &mut times,
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
            &mut times,
        );
        step(
            "unit tests",
            cmd("cargo").args(["test", "--workspace"]),
            &mut times,
        );
        // The library's rustdoc: every public item documented (missing_docs
        // is checked by clippy), no broken or private links.
        step(
            "cargo doc",
            cmd("cargo")
                .args([
                    "doc",
                    "--package",
                    "ublk-user",
                    "--all-features",
                    "--no-deps",
                ])
                .env("RUSTDOCFLAGS", "-D warnings"),
            &mut times,
        );
        // The build without the `bpf` feature (no aya, no BPF program) stays
        // warning-free and refuses the BPF modes (its own unit test).
        step(
            "clippy no-bpf",
            cmd("cargo").args([
                "clippy",
                "--package",
                "ublk-user",
                "--package",
                "ublk-user-cli",
                "--package",
                "ublk-bpf-fixture",
                "--no-default-features",
                "--all-targets",
                "--",
                "-D",
                "warnings",
            ]),
            &mut times,
        );
        step(
            "unit tests no-bpf",
            cmd("cargo").args([
                "test",
                "--package",
                "ublk-user",
                "--package",
                "ublk-user-cli",
                "--no-default-features",
            ]),
            &mut times,
        );
        // What a library user gets: README's example builds as a crate of
        // its own, without the CLI's or BPF's dependencies (consumer.rs);
        // and every publishable crate packages and builds from its package
        // (the CLI's BPF feature takes the object built above).
        forget_packaged_sources();
        step(
            "cargo publish dry-run",
            cmd("cargo")
                .args(["publish", "--workspace", "--dry-run", "--allow-dirty"])
                .args(["--exclude", "xtask", "--exclude", "ublk-bpf-fixture"])
                .args(["--target-dir", "target/publish"])
                .env("UBLK_EBPF_OBJ", crate::build::ebpf_crate().object()),
            &mut times,
        );
        let t0 = Instant::now();
        if let Err(e) = crate::consumer::check() {
            say(format!("test: library consumer: FAILED: {e:#}"));
            failed_steps.push("library consumer".into());
        } else {
            say("test: library consumer: ok");
        }
        times.push(("library consumer".into(), t0.elapsed()));
        let t0 = Instant::now();
        checkpatch(&mut failed_steps)?;
        times.push(("checkpatch".into(), t0.elapsed()));
    }

    // `--debug-kernel` runs the patched-kernel tests on the debug flavor.
    let patched = if opts.flavor.unpatched() {
        Flavor::Ublk
    } else {
        opts.flavor
    };
    let mut tests = discover(filter, patched)?;
    // The power-cut step (xtask/src/powercut.rs): a boot of its own.
    let powercut = filter.is_none_or(|f| matches_filter(crate::powercut::NAME, f));
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
        let t0 = Instant::now();
        let k = kernel::ensure(*f);
        times.push((format!("kernel ({})", f.name()), t0.elapsed()));
        match k {
            // kublk is built once, against our kernel's (superset) uapi.
            Ok(k) if !f.unpatched() && tests.iter().any(|t| t.name.contains("kublk")) => {
                let t0 = Instant::now();
                if let Err(e) = crate::selftests::build(&k) {
                    say(format!("test: kublk selftests build: FAILED: {e:#}"));
                    failed_steps.push("kublk build".into());
                }
                times.push(("kublk build".into(), t0.elapsed()));
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
        let t0 = Instant::now();
        match w1_check() {
            Ok(()) => {}
            Err(e) => {
                say(format!("test: W=1 warnings: FAILED: {e:#}"));
                failed_steps.push("W=1 warnings".into());
            }
        }
        times.push(("W=1 check".into(), t0.elapsed()));
    }
    let t0 = Instant::now();
    if let Err(e) = crate::build::build() {
        say(format!("test: build: FAILED: {e:#}"));
        failed_steps.push("build".into());
        kernel_ok = false;
    }
    times.push(("build (BPF object, binaries)".into(), t0.elapsed()));
    // Test 40 compares with the committed baseline; a stale one fails it.
    if kernel_ok && tests.iter().any(|t| t.name.starts_with("40-kublk")) {
        if let Err(e) = crate::baseline::prepare_expect() {
            say(format!("test: kublk baseline: FAILED: {e:#}"));
            failed_steps.push("kublk baseline".into());
        }
    }

    // Test 44 runs blktests and liburing (staged from ../shared/third_party)
    // and compares with the committed tests/suites-baseline.txt.
    if kernel_ok && tests.iter().any(|t| t.name.starts_with("44-suites")) {
        let t0 = Instant::now();
        if let Err(e) = crate::suites::prepare(patched) {
            say(format!("test: suites (blktests, liburing): FAILED: {e:#}"));
            failed_steps.push("suites baseline".into());
        }
        times.push(("suites build".into(), t0.elapsed()));
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
            if t.full_selftests {
                script.push_str("export UBLK_FULL_SELFTESTS=1\n");
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
            let t0 = Instant::now();
            let run = vm::run_script(&o, &script);
            times.push((format!("VM boot ({})", f.name()), t0.elapsed()));
            match run {
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
        if powercut {
            use crate::powercut::{self, NAME};
            say(format!(
                "test: {NAME}: fsynced and FUA data of a bpf-kernel device across a VM power cut"
            ));
            let o = powercut::run(opts, patched, timeout_scale(patched, soak));
            let detail = match o.verdict {
                "PASS" => o.secs.to_string(),
                v => {
                    say(format!("test: {NAME}: {v}: {}", o.why));
                    format!("{}s: {}", o.secs, o.why)
                }
            };
            results.push((NAME.into(), o.verdict.into(), detail));
            tests.push(VmTest {
                name: NAME.into(),
                path: root.join("tests/vm/powercut-guest.sh"),
                flavor: patched,
                cost: Some(powercut::COST_SECS),
            });
        }
    } else {
        for t in &tests {
            results.push((
                t.name.clone(),
                "FAIL".into(),
                "not run: build failed".into(),
            ));
        }
        if powercut {
            let why = "not run: build failed".into();
            results.push((crate::powercut::NAME.into(), "FAIL".into(), why));
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
    print_times(&times, &results, &tests, started.elapsed());
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

/// Whether a measured time is far over the declared cost: twice it and
/// then some (a busy host slows TCG guests, but not by 2x + a minute).
fn over_cost(secs: u64, cost: u64) -> bool {
    secs > 2 * cost + 60
}

fn fmt_secs(d: u64) -> String {
    if d >= 60 {
        format!("{}m{:02}s", d / 60, d % 60)
    } else {
        format!("{d}s")
    }
}

/// The wall time of each step and each VM test, slowest first, and the
/// total; a test far over its declared `# cost:` is flagged.
fn print_times(
    steps: &[(String, Duration)],
    results: &[(String, String, String)],
    tests: &[VmTest],
    total: Duration,
) {
    let mut rows: Vec<(u64, String)> = steps
        .iter()
        .map(|(n, d)| (d.as_secs(), format!("step  {n}")))
        .collect();
    let mut flagged = Vec::new();
    for (name, _, secs) in results {
        let Ok(secs) = secs.parse::<u64>() else {
            continue;
        };
        let cost = tests.iter().find(|t| &t.name == name).and_then(|t| t.cost);
        let note = match cost {
            Some(c) if over_cost(secs, c) => {
                flagged.push(format!("{name} took {secs}s, declared cost {c}s"));
                format!("  (cost {c}s: FAR OVER)")
            }
            Some(c) => format!("  (cost {c}s)"),
            None => "  (no # cost: header)".into(),
        };
        rows.push((secs, format!("test  {name}{note}")));
    }
    rows.sort_by_key(|r| std::cmp::Reverse(r.0));
    println!();
    println!("Wall time, slowest first:");
    for (secs, what) in &rows {
        println!("  {:>7}  {what}", fmt_secs(*secs));
    }
    println!("  {:>7}  total", fmt_secs(total.as_secs()));
    let boots = results
        .iter()
        .filter_map(|(n, _, _)| tests.iter().find(|t| &t.name == n))
        .map(|t| t.flavor.name())
        .collect::<std::collections::BTreeSet<_>>()
        .len() as u64;
    let declared: u64 = tests.iter().filter_map(|t| t.cost).sum::<u64>() + BOOT_COST * boots;
    println!(
        "  declared VM cost of these tests: {} (+{}s per boot); CI budget {}",
        fmt_secs(declared),
        BOOT_COST,
        fmt_secs(VM_BUDGET_SECS)
    );
    for f in &flagged {
        println!("test: {f}: far over it (a regression, or re-measure and update the header)");
    }
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
            // The tree is Debian's source tarball, without git history:
            // checkpatch cannot look up the commit a Fixes: tag names.
            .args(["scripts/checkpatch.pl", "--strict", "--no-color", "--terse"])
            .args(["--ignore", "UNKNOWN_COMMIT_ID"])
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

/// `cargo publish --workspace --dry-run` verifies each crate against the
/// others through a local registry in `<target dir>/package/tmp-registry`, and
/// cargo unpacks that registry's crates under `$CARGO_HOME/registry/src/-HASH/`,
/// keyed by the registry's path and the crate's version only. A clone at a
/// path an earlier clone had (CI's) would then build against that clone's
/// stale sources of the same version: drop our crates from those local
/// registries first (crates.io's directory is never touched), and the
/// verify builds of an earlier dry-run in this checkout (its own target
/// directory, `target/publish`: cargo does not rebuild a registry crate
/// whose version did not change).
fn forget_packaged_sources() {
    let _ = std::fs::remove_dir_all(crate::util::root().join("target/publish"));
    let home = std::env::var_os("CARGO_HOME")
        .map(std::path::PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| std::path::Path::new(&h).join(".cargo")));
    let Some(src) = home.map(|h| h.join("registry/src")) else {
        return;
    };
    let Ok(regs) = std::fs::read_dir(&src) else {
        return;
    };
    for reg in regs.flatten() {
        if !reg.file_name().to_string_lossy().starts_with('-') {
            continue; // a remote registry (index.crates.io-...)
        }
        let Ok(crates) = std::fs::read_dir(reg.path()) else {
            continue;
        };
        for c in crates.flatten() {
            let name = c.file_name().to_string_lossy().into_owned();
            if ["ublk-ebpf-build-", "ublk-ebpf-common-", "ublk-user-"]
                .iter()
                .any(|p| name.starts_with(p))
            {
                let _ = std::fs::remove_dir_all(c.path());
            }
        }
    }
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
        assert!(is_test_name("34-bpf-fallback-distro.sh"));
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

    /// The budget: every test `cargo xtask test` runs declares its cost, and
    /// the declared costs of the CI set (plus one boot per kernel) fit in
    /// VM_BUDGET_SECS. A new test that would break the budget fails here,
    /// on the host, the day it lands.
    #[test]
    fn ci_set_fits_the_vm_budget() {
        let tests = discover(None, Flavor::Ublk).unwrap();
        assert!(tests.len() > 10, "found only {} VM tests", tests.len());
        let missing: Vec<&str> = tests
            .iter()
            .filter(|t| t.cost.is_none())
            .map(|t| t.name.as_str())
            .collect();
        assert!(
            missing.is_empty(),
            "VM tests without a `# cost: SECS` header (measure them with \
             `cargo xtask test --vm-only --filter NAME` and declare it): {missing:?}"
        );
        let mut kernels: Vec<Flavor> = Vec::new();
        for t in &tests {
            if !kernels.contains(&t.flavor) {
                kernels.push(t.flavor);
            }
        }
        // The powercut step's cost includes its own boot.
        let total: u64 = tests.iter().filter_map(|t| t.cost).sum::<u64>()
            + BOOT_COST * kernels.len() as u64
            + crate::powercut::COST_SECS;
        assert!(
            total <= VM_BUDGET_SECS,
            "the CI VM tests declare {total}s, over the {VM_BUDGET_SECS}s budget: make a test \
             cheaper or move its long variant behind a flag (--soak, --full-selftests)"
        );
        // Nothing in CI needs a kernel build beyond ours.
        assert!(
            kernels
                .iter()
                .all(|f| matches!(f, Flavor::Ublk | Flavor::Distro)),
            "{kernels:?}"
        );
        // The benchmark is not in CI.
        assert!(!tests.iter().any(|t| t.name.starts_with("13-")));
    }

    #[test]
    fn headers_and_cost_flag() {
        let s = "#!/bin/sh\n# timeout: 900\n# cost: 155 (measured)\n# ci: no (benchmark)\n";
        assert_eq!(cost_of(s), Some(155));
        assert!(!in_ci(s));
        assert!(in_ci("#!/bin/sh\n# cost: 3\n"));
        assert_eq!(cost_of("#!/bin/sh\n"), None);
        assert!(!over_cost(100, 60));
        assert!(over_cost(181, 60));
        assert_eq!(fmt_secs(59), "59s");
        assert_eq!(fmt_secs(3725), "62m05s");
    }

    #[test]
    fn flavor_header() {
        let d = "#!/bin/sh\n# kernel: distro\nexit 0\n";
        assert_eq!(flavor_of(d, Flavor::Ublk), Flavor::Distro);
        let v = "#!/bin/sh\n# kernel: vanilla\nexit 0\n";
        assert_eq!(flavor_of(v, Flavor::Ublk), Flavor::Vanilla);
        assert_eq!(
            flavor_of("#!/bin/sh\nexit 0\n", Flavor::Debug),
            Flavor::Debug
        );
    }
}
