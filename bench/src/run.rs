//! One benchmark run: the boots (plan, guest script, host facts) and the
//! rendering of a raw run directory into the report, CSV and plots.

use crate::plan::{
    estimate_secs, full_matrix, plan, plan_text, quick_matrix, Filter, Run, StorePlan, Workload,
};
use crate::{
    collect, parse_kv, report, root, say, svg, BenchOpts, GuestRun, Harness, Results, Timing,
    AGREE_PCT, MAX_SECTORS_KB, OURS, REPORT_VERSION,
};
use anyhow::{bail, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Facts about the host and the run, for the report header.
#[derive(Clone)]
pub struct RunInfo {
    pub host_cpu: String,
    pub host_cores: usize,
    pub load_start: String,
    pub load_end: String,
    pub commit: String,
    pub command: String,
    pub qemu_extra: String,
    pub raw_dir: PathBuf,
    pub trimmed: String,
    pub force: bool,
}

impl RunInfo {
    /// The host was busy: a 1-minute load average above 1 at start or end.
    pub fn busy(&self) -> bool {
        [&self.load_start, &self.load_end].iter().any(|l| {
            l.split_whitespace()
                .next()
                .and_then(|x| x.parse::<f64>().ok())
                .is_some_and(|x| x > 1.0)
        })
    }
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
}

/// The data modes `ublk-user modes --json` lists, in its order.
fn binary_modes(json: &[u8]) -> Result<Vec<String>> {
    let v: Vec<serde_json::Value> = serde_json::from_slice(json)?;
    v.iter()
        .map(|m| match m["name"].as_str() {
            Some(n) => Ok(n.to_string()),
            None => bail!("`ublk-user modes --json`: an entry without a name: {m}"),
        })
        .collect()
}

/// The guest script takes its contenders' modes from the binary; the
/// report's tables, colours and headline know [`OURS`]. A mode the binary
/// gains (or loses) must not be measured under no name, or vanish: refuse.
pub(crate) fn check_modes(json: &[u8]) -> Result<()> {
    let got = binary_modes(json)?;
    if got != OURS {
        bail!(
            "ublk-user offers the modes {got:?} but the bench reports {OURS:?}: add the new mode to \
             OURS (bench/src/lib.rs), its colour (svg.rs) and the stores it runs on (plan.rs)"
        );
    }
    Ok(())
}

fn git_commit() -> String {
    std::process::Command::new("git")
        .current_dir(root())
        .args(["describe", "--always", "--dirty", "--abbrev=12"])
        .output()
        .ok()
        .filter(|o| o.status.success())
        .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

fn host_cpu() -> String {
    fs::read_to_string("/proc/cpuinfo")
        .unwrap_or_default()
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .and_then(|l| l.split_once(':'))
        .map(|(_, m)| m.trim().to_string())
        .unwrap_or_else(|| "unknown".into())
}

/// UTC `YYYYmmdd-HHMMSS` for run directory names.
fn stamp() -> String {
    stamp_of(time::OffsetDateTime::now_utc())
}

pub(crate) fn stamp_of(t: time::OffsetDateTime) -> String {
    format!(
        "{:04}{:02}{:02}-{:02}{:02}{:02}",
        t.year(),
        u8::from(t.month()),
        t.day(),
        t.hour(),
        t.minute(),
        t.second()
    )
}

/// The parameters of one boot.
struct Boot {
    timing: Timing,
    reps: u32,
    runtime: u32,
    ramp_ms: u32,
    runs: Vec<Run>,
}

fn boot_params(o: &BenchOpts, m: &[StorePlan], timing: Timing) -> Boot {
    let tcg = timing == Timing::Tcg;
    let reps = o.reps.unwrap_or(if tcg { 6 } else { 2 });
    let conditional = !tcg;
    let runtime = o.runtime.unwrap_or(if o.quick || !tcg { 1 } else { 2 });
    let ramp_ms = o.ramp_ms.unwrap_or(if o.quick { 250 } else { 500 });
    Boot {
        timing,
        reps,
        runtime,
        ramp_ms,
        runs: plan(m, reps, conditional),
    }
}

fn describe_plan(m: &[StorePlan], b: &Boot) -> String {
    let mut s = String::new();
    let est = estimate_secs(
        &b.runs,
        b.timing,
        f64::from(b.runtime),
        f64::from(b.ramp_ms) / 1000.0,
    );
    let fixed = b.runs.iter().filter(|r| !r.conditional).count();
    s.push_str(&format!(
        "bench plan ({}): {} runs ({} always + {} conditional third repetitions), {} reps, {} s runs after a {} ms ramp; estimated {} min here\n",
        b.timing.name(),
        b.runs.len(),
        fixed,
        b.runs.len() - fixed,
        b.reps,
        b.runtime,
        b.ramp_ms,
        (est / 60.0).ceil()
    ));
    for sp in m {
        s.push_str(&format!(
            "  {}: {} workloads ({}) x {} contenders ({})\n",
            sp.store,
            sp.workloads.len(),
            sp.workloads
                .iter()
                .map(Workload::id)
                .collect::<Vec<_>>()
                .join(", "),
            sp.contenders.len(),
            sp.contenders.join(", ")
        ));
    }
    s
}

/// Extra QEMU arguments of a boot: icount, the CPU model, the virtio disk.
pub(crate) fn qemu_extra(timing: Timing, no_erms: bool, virtio_img: Option<&Path>) -> String {
    let mut v: Vec<String> = Vec::new();
    let user = std::env::var("XTASK_QEMU_EXTRA").unwrap_or_default();
    if !user.trim().is_empty() {
        v.push(user.trim().to_string());
    }
    if timing != Timing::Tcg && !user.contains("-icount") {
        v.push("-icount shift=0,sleep=off".into());
    }
    if no_erms {
        // The last -cpu wins: vm.rs passes `-cpu max` first.
        v.push("-cpu max,-erms,-fsrm".into());
    }
    if let Some(img) = virtio_img {
        v.push(format!(
            "-object iothread,id=benchio -drive file={},if=none,id=benchdisk,format=raw,cache=none,aio=threads \
             -device virtio-blk-pci,drive=benchdisk,iothread=benchio,num-queues=1,serial=ublkbench",
            img.display()
        ));
    }
    v.join(" ")
}

/// The command a run records (`host.txt`, the report's header): the
/// options that change what was measured, the kernel flag included.
pub(crate) fn command_line(o: &BenchOpts, kernel_flag: Option<&str>) -> String {
    let mut command = String::from("cargo xtask bench");
    if o.quick {
        command.push_str(" --quick");
    }
    command.push_str(&format!(" --timing {}", o.timing().name()));
    if let Some(k) = kernel_flag {
        command.push(' ');
        command.push_str(k);
    }
    if o.no_erms {
        command.push_str(" --no-erms");
    }
    if let Some(f) = &o.filter {
        command.push_str(&format!(
            " --filter {}",
            shlex::try_quote(f).unwrap_or_default()
        ));
    }
    if let Some(r) = o.reps {
        command.push_str(&format!(" --reps {r}"));
    }
    if let Some(r) = o.runtime {
        command.push_str(&format!(" --runtime {r}"));
    }
    if let Some(r) = o.ramp_ms {
        command.push_str(&format!(" --ramp-ms {r}"));
    }
    if o.size_mb != 512 {
        command.push_str(&format!(" --size-mb {}", o.size_mb));
    }
    if o.force {
        command.push_str(" --force");
    }
    command
}

fn run_boot(
    o: &BenchOpts,
    h: &dyn Harness,
    b: &Boot,
    dir: &Path,
    kublk: &std::result::Result<PathBuf, String>,
    commit: &str,
) -> Result<(i32, String)> {
    let _ = fs::remove_dir_all(dir);
    fs::create_dir_all(dir.join("fio"))?;
    fs::write(dir.join("plan.txt"), plan_text(&b.runs))?;
    let virtio = b
        .runs
        .iter()
        .any(|r| r.store == "virtio")
        .then(|| dir.join("virtio.img"));
    if let Some(img) = &virtio {
        let f = fs::File::create(img)?;
        f.set_len(1 << 30)?;
    }
    let extra = qemu_extra(b.timing, o.no_erms, virtio.as_deref());
    let load_start = loadavg();
    let est = estimate_secs(
        &b.runs,
        b.timing,
        f64::from(b.runtime),
        f64::from(b.ramp_ms) / 1000.0,
    );
    let (kpath, kwhy) = match kublk {
        Ok(p) => (p.to_string_lossy().into_owned(), String::new()),
        Err(w) => (String::new(), w.clone()),
    };
    let (ppath, pwhy) = if b.runs.iter().any(|r| r.profile) {
        match h.perf() {
            Ok(p) => (p.to_string_lossy().into_owned(), String::new()),
            Err(w) => (String::new(), w),
        }
    } else {
        (String::new(), String::new())
    };
    let guest = GuestRun {
        script: root().join("bench/run-in-guest.sh"),
        args: vec![dir.to_string_lossy().into_owned()],
        env: vec![
            ("BENCH_RUNTIME", b.runtime.to_string()),
            ("BENCH_RAMP", format!("{}ms", b.ramp_ms)),
            ("BENCH_SIZE_MB", o.size_mb.to_string()),
            ("BENCH_AGREE_PCT", AGREE_PCT.to_string()),
            ("BENCH_TIMING", b.timing.name().to_string()),
            ("BENCH_MAX_SECTORS_KB", MAX_SECTORS_KB.to_string()),
            ("BENCH_PERF", ppath),
            ("BENCH_PERF_WHY", pwhy),
            ("BENCH_KUBLK", kpath),
            ("BENCH_KUBLK_WHY", kwhy),
        ],
        qemu_extra: extra.clone(),
        min_timeout: Duration::from_secs_f64(est * 2.5 + 600.0),
    };
    say(format!(
        "bench: booting ({}; QEMU extra: {extra}); raw output in {}",
        b.timing.name(),
        dir.display()
    ));
    let r = h.run_guest(&guest);
    if let Some(img) = &virtio {
        let _ = fs::remove_file(img);
    }
    let (status, vm_note) = match r {
        Ok(r) if r.status == 0 => (0, String::new()),
        Ok(r) => {
            let n = format!("the guest script exited with {}", r.status);
            say(format!(
                "bench: {n} (console log: {}); reporting what it left",
                r.console.display()
            ));
            (1, n)
        }
        Err(e) => {
            let n = format!("{e:#}");
            say(format!("bench: {n}; reporting what the guest left"));
            (1, n)
        }
    };
    let command = command_line(o, h.kernel_flag());
    let mut trimmed = Vec::new();
    if o.quick {
        trimmed.push("--quick: tmpfs only, 4k randread qd32 and the RFC v2 job".to_string());
    }
    if let Some(f) = &o.filter {
        trimmed.push(format!("--filter {f}"));
    }
    let text = format!(
        "timing={}\nhost_cpu={}\nhost_cores={}\nload_start={load_start}\nload_end={}\ncommit={}\ncommand={command}\nqemu_extra={}\ntrimmed={}\nsuffix={}\nforce={}\nestimate_s={:.0}\nvm_error={}\nreport={REPORT_VERSION}\n",
        b.timing.name(),
        host_cpu(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        loadavg(),
        commit,
        extra.replace(&dir.to_string_lossy().into_owned(), "<run>"),
        trimmed.join("; "),
        suffix(o),
        o.force,
        est,
        vm_note.replace('\n', " ")
    );
    fs::write(dir.join("host.txt"), text)?;
    Ok((status, vm_note))
}

/// Whether the run's report goes to bench/results (see `render`).
fn publishes(o: &BenchOpts) -> bool {
    match &o.out {
        Some(d) => {
            let r = root().join("bench/results");
            d.canonicalize().ok() == r.canonicalize().ok()
        }
        None => o.filter.is_none(),
    }
}

fn suffix(o: &BenchOpts) -> String {
    let mut s = String::new();
    if o.no_erms {
        s.push_str("-noerms");
    }
    if o.quick {
        s.push_str("-quick");
    } else if o.filter.is_some() {
        s.push_str("-filtered");
    }
    s
}

/// The boots' raw directories under a run directory: `icount/`, `tcg/`,
/// or the directory itself (a v1 run, plain TCG).
pub(crate) fn boot_dirs(raw: &Path) -> Vec<(Timing, PathBuf)> {
    let mut v = Vec::new();
    for t in [Timing::Icount, Timing::Tcg] {
        let d = raw.join(t.name());
        if d.join("plan.txt").is_file() {
            v.push((t, d));
        }
    }
    if v.is_empty() {
        let host = parse_kv(&fs::read_to_string(raw.join("host.txt")).unwrap_or_default());
        let t = match host.get("timing").map(String::as_str) {
            Some("icount") => Timing::Icount,
            _ => Timing::Tcg,
        };
        v.push((t, raw.to_path_buf()));
    }
    v
}

pub(crate) fn info_of(dir: &Path, res: &Results, raw: &Path) -> RunInfo {
    let host = parse_kv(&fs::read_to_string(dir.join("host.txt")).unwrap_or_default());
    let h = |k: &str| host.get(k).cloned().unwrap_or_default();
    let mut trimmed = h("trimmed");
    if !res.completed {
        trimmed.push_str("; **INCOMPLETE**: the guest stopped before the end of the plan");
        let why = h("vm_error");
        if !why.is_empty() {
            trimmed.push_str(&format!(" ({why})"));
        }
    }
    RunInfo {
        host_cpu: h("host_cpu"),
        host_cores: h("host_cores").parse().unwrap_or(0),
        load_start: h("load_start"),
        load_end: h("load_end"),
        commit: h("commit"),
        command: h("command"),
        qemu_extra: h("qemu_extra"),
        raw_dir: raw.to_path_buf(),
        trimmed,
        force: h("force") == "true",
    }
}

/// Render the report of a run directory; returns 1 if a boot was incomplete.
pub(crate) fn render(raw: &Path, out: Option<&Path>, force: bool) -> Result<i32> {
    let mut status = 0;
    let mut boots = Vec::new();
    let dirs = boot_dirs(raw);
    for (t, d) in &dirs {
        let res = collect(d, *t)?;
        if !res.completed {
            status = 1;
        }
        let mut info = info_of(d, &res, raw);
        info.force |= force;
        boots.push((res, info));
    }
    let host = parse_kv(&fs::read_to_string(dirs[0].1.join("host.txt")).unwrap_or_default());
    let suffix = host.get("suffix").cloned().unwrap_or_default();
    let (res, _) = &boots[0];
    let kernel = res.env.get("kernel").cloned().unwrap_or("unknown".into());
    let date = res
        .env
        .get("start")
        .map(|s| s.chars().take(10).collect::<String>())
        .unwrap_or_else(|| "unknown".into());
    let timing = if boots.len() > 1 {
        "icount+tcg".to_string()
    } else {
        res.timing.name().to_string()
    };
    let mut base = format!("{date}-{kernel}-{timing}{suffix}");
    if res.version >= 3 {
        // Two runs of a day with the same options do not share a name: the
        // time of the run directory's name (YYYYmmdd-HHMMSS...) follows.
        if let Some(t) = raw
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.split('-').nth(1))
            .filter(|t| t.len() == 6 && t.bytes().all(|b| b.is_ascii_digit()))
        {
            base.push('-');
            base.push_str(t);
        }
    }
    let out_dir = match out {
        Some(d) => d.to_path_buf(),
        None if suffix.ends_with("-filtered") => raw.to_path_buf(),
        None => root().join("bench/results"),
    };
    fs::create_dir_all(&out_dir)?;
    let mut svg_names = Vec::new();
    for (store, ..) in &res.cells {
        for (sfx, metric) in [
            ("bw", svg::Metric::Bandwidth),
            ("server-cpu", svg::Metric::ServerCpu),
            ("guest-cpu", svg::Metric::GuestCpu),
        ] {
            let name = format!("{base}-{store}-{sfx}.svg");
            if let Some(text) = svg::plot(res, store, metric) {
                fs::write(out_dir.join(&name), text)?;
                svg_names.push((store.clone(), metric, name));
            }
        }
    }
    let csv_name = format!("{base}.csv");
    let mut csv = String::new();
    for (i, (r, _)) in boots.iter().enumerate() {
        let body = if i == 0 {
            r.csv.as_str()
        } else {
            r.csv.split_once('\n').map(|x| x.1).unwrap_or("")
        };
        csv.push_str(body);
    }
    fs::write(out_dir.join(&csv_name), &csv)?;
    let md = report::markdown(&boots, &svg_names, &csv_name);
    let md_path = out_dir.join(format!("{base}.md"));
    fs::write(&md_path, &md)?;
    // The raw run beside the report it makes, unless it is already there
    // (rendering a committed run again) or the report stays in it.
    let tarball = out_dir.join(format!("{base}.raw.tar.xz"));
    if out_dir != raw && !tarball.exists() {
        let (parent, name) = (
            raw.parent().unwrap_or(raw),
            raw.file_name().unwrap_or_default(),
        );
        let st = std::process::Command::new("tar")
            .arg("-C")
            .arg(parent)
            .arg("-cJf")
            .arg(&tarball)
            .arg(name)
            .status()?;
        if !st.success() {
            say(format!(
                "bench: tar of {} failed: raw data not saved beside the report",
                raw.display()
            ));
        }
    }
    for (r, i) in &boots {
        println!("{}", report::console_summary(r, i));
    }
    say(format!("bench: report: {}", md_path.display()));
    Ok(status)
}

/// `cargo xtask bench`: plan, boot (through the harness), render; or only
/// the plan (`--plan`) or only the rendering (`--from`).
pub fn bench(o: &BenchOpts, h: &dyn Harness) -> Result<i32> {
    if let Some(file) = &o.summary {
        let changed = crate::summary::update(file, &root())?;
        say(format!(
            "bench: {}: generated results {}",
            file.display(),
            if changed {
                "rewritten"
            } else {
                "already current"
            }
        ));
        return Ok(0);
    }
    if let Some(from) = &o.from {
        return render(from, o.out.as_deref(), o.force);
    }
    let filter = Filter::parse(o.filter.as_deref().unwrap_or(""))?;
    let m = filter.apply(if o.quick {
        quick_matrix()
    } else {
        full_matrix()
    });
    if m.is_empty() {
        bail!(
            "--filter {:?} selects no runs",
            o.filter.as_deref().unwrap_or("")
        );
    }
    if o.reps == Some(0) {
        bail!("--reps must be at least 1");
    }
    let timings = match o.timing() {
        Timing::Both => vec![Timing::Icount, Timing::Tcg],
        t => vec![t],
    };
    let boots: Vec<Boot> = timings.iter().map(|t| boot_params(o, &m, *t)).collect();
    let mut total = 0.0;
    for b in &boots {
        print!("{}", describe_plan(&m, b));
        total += estimate_secs(
            &b.runs,
            b.timing,
            f64::from(b.runtime),
            f64::from(b.ramp_ms) / 1000.0,
        );
    }
    say(format!(
        "bench: estimated wall time {} min in all",
        (total / 60.0).ceil()
    ));
    if o.plan {
        for b in &boots {
            print!("{}", plan_text(&b.runs));
        }
        return Ok(0);
    }
    let commit = git_commit();
    if publishes(o) && commit.ends_with("-dirty") && !o.force {
        bail!(
            "the tree has uncommitted changes ({commit}): a published run (bench/results) comes from a \
             clean tree; commit first, or pass --force (the report then says the tree was dirty), or \
             use --filter/--out to keep the report out of bench/results"
        );
    }
    h.build()?;
    let bin = root().join("target/release/ublk-user");
    let out = std::process::Command::new(&bin)
        .args(["modes", "--json"])
        .output()
        .map_err(|e| anyhow::anyhow!("cannot run {} modes --json: {e}", bin.display()))?;
    if !out.status.success() {
        bail!(
            "{} modes --json failed: {}",
            bin.display(),
            String::from_utf8_lossy(&out.stderr)
        );
    }
    check_modes(&out.stdout)?;
    let kublk = h.kublk();
    if let Err(w) = &kublk {
        say(format!("bench: kublk contenders n/a: {w}"));
    }
    let raw = root()
        .join("target/bench-out")
        .join(format!("{}{}", stamp(), suffix(o)));
    let mut status = 0;
    for b in &boots {
        let (s, _) = run_boot(o, h, b, &raw.join(b.timing.name()), &kublk, &commit)?;
        status |= s;
    }
    status |= render(&raw, o.out.as_deref(), o.force)?;
    Ok(status)
}
