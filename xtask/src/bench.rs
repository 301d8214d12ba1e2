//! `cargo xtask bench`: fio comparisons of the kernel loop driver and the
//! ublk-user data paths (copy, zero copy, BPF) on one RAM-backed store, in
//! one VM boot.
//!
//! The host writes a plan (one fio run a line, repetitions outermost and the
//! contender order rotated from cell to cell and repetition to repetition so
//! drift favours nobody) into `target/bench-out/<run>/`, boots the VM once
//! with `bench/run-in-guest.sh`, which runs the plan and leaves fio's JSON
//! and CPU samples in that directory (the repo is shared over 9p), then
//! aggregates (median, min-max) and writes a markdown report, SVG plots and
//! a CSV of every run.

mod json;
mod report;
mod svg;

use crate::util::{root, say, shell_quote};
use crate::vm::{self, VmOpts};
use anyhow::{bail, Context, Result};
use json::Json;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Contenders, in the order they are listed in tables and plots.
pub const CONTENDERS: &[&str] = &["loop", "copy", "zc", "bpf", "bpf-kernel", "raw"];
/// The contenders that have a ublk server process.
pub const SERVERS: &[&str] = &["copy", "zc", "bpf", "bpf-kernel"];
const RWS: &[&str] = &["randread", "randwrite", "read", "write"];
const BSS: &[u64] = &[4 << 10, 64 << 10, 256 << 10, 1 << 20, 2 << 20];
const QDS: &[u32] = &[1, 32];

#[derive(clap::Args, Clone, Debug)]
pub struct BenchOpts {
    /// A few cells only (randread qd32 at 4k, 256k and 1m, the RFC job; 1 s
    /// runs): a smoke run that takes a few minutes.
    #[arg(long)]
    pub quick: bool,
    /// Only matching runs: comma-separated terms, OR within a kind and AND
    /// across kinds. Kinds: contender (loop,copy,zc,bpf,raw), rw
    /// (randread,randwrite,read,write), block size (4k,64k,256k,1m,2m),
    /// depth (qd1,qd32,qd16) and job (rfc, matrix). E.g. `zc,bpf,randread,qd32`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Repetitions of each cell (median and min-max are reported).
    #[arg(long, default_value_t = 3)]
    pub reps: u32,
    /// Seconds per fio run (default: 1 with --quick, else 2).
    #[arg(long)]
    pub runtime: Option<u32>,
    /// Size of the tmpfs backing file in MiB (the guest's /tmp holds 2 GiB).
    #[arg(long, default_value_t = 512)]
    pub size_mb: u32,
    /// Do not boot: re-render the report from an earlier run's raw directory
    /// (target/bench-out/NAME).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Where the report goes (default: bench/results for the full matrix and
    /// --quick, the run's raw directory when --filter is given).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

/// One fio job shape.
#[derive(Clone, Debug, PartialEq)]
pub struct Workload {
    /// fio job file under bench/fio/ (without .fio).
    pub job: &'static str,
    pub rw: &'static str,
    pub bs: u64,
    pub qd: u32,
}

impl Workload {
    fn matrix(rw: &'static str, bs: u64, qd: u32) -> Self {
        Workload {
            job: "matrix",
            rw,
            bs,
            qd,
        }
    }

    fn rfc() -> Self {
        Workload {
            job: "rfc",
            rw: "randwrite",
            bs: 2 << 20,
            qd: 16,
        }
    }

    /// A stable name: `randread-4k-qd32`, `rfc-randwrite-2m-qd16`.
    pub fn id(&self) -> String {
        let base = format!("{}-{}-qd{}", self.rw, bs_name(self.bs), self.qd);
        if self.job == "matrix" {
            base
        } else {
            format!("{}-{base}", self.job)
        }
    }

    /// The table a workload belongs to: `randread qd32`, `rfc`.
    pub fn group(&self) -> String {
        if self.job == "matrix" {
            format!("{} qd{}", self.rw, self.qd)
        } else {
            self.job.to_string()
        }
    }
}

/// `4k`, `64k`, `1m` (fio's syntax, powers of 1024).
pub fn bs_name(bs: u64) -> String {
    if bs >= 1 << 20 && bs.is_multiple_of(1 << 20) {
        format!("{}m", bs >> 20)
    } else if bs >= 1 << 10 && bs.is_multiple_of(1 << 10) {
        format!("{}k", bs >> 10)
    } else {
        bs.to_string()
    }
}

fn parse_bs(s: &str) -> Option<u64> {
    let s = s.to_ascii_lowercase();
    let (num, mult) = match s.as_bytes().last()? {
        b'k' => (&s[..s.len() - 1], 1u64 << 10),
        b'm' => (&s[..s.len() - 1], 1 << 20),
        _ => (&s[..], 1),
    };
    num.parse::<u64>().ok().map(|n| n * mult)
}

/// The full matrix: 4 rw x 5 block sizes x 2 depths, then the RFC job.
pub fn all_workloads() -> Vec<Workload> {
    let mut v = Vec::new();
    for &rw in RWS {
        for &qd in QDS {
            for &bs in BSS {
                v.push(Workload::matrix(rw, bs, qd));
            }
        }
    }
    v.push(Workload::rfc());
    v
}

fn quick_workloads() -> Vec<Workload> {
    vec![
        Workload::matrix("randread", 4 << 10, 32),
        Workload::matrix("randread", 256 << 10, 32),
        Workload::matrix("randread", 1 << 20, 32),
        Workload::rfc(),
    ]
}

/// `--filter`: sets of accepted values per kind; an empty set accepts all.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    contenders: Vec<String>,
    rws: Vec<String>,
    bss: Vec<u64>,
    qds: Vec<u32>,
    jobs: Vec<String>,
}

impl Filter {
    pub fn parse(s: &str) -> Result<Filter> {
        let mut f = Filter::default();
        for t in s.split([',', ' ']).map(str::trim).filter(|t| !t.is_empty()) {
            let t = t.to_ascii_lowercase();
            if CONTENDERS.contains(&t.as_str()) {
                f.contenders.push(t);
            } else if RWS.contains(&t.as_str()) {
                f.rws.push(t);
            } else if t == "rfc" || t == "matrix" {
                f.jobs.push(t);
            } else if let Some(qd) = t.strip_prefix("qd").and_then(|q| q.parse().ok()) {
                f.qds.push(qd);
            } else if let Some(bs) = parse_bs(&t).filter(|b| *b >= 512) {
                f.bss.push(bs);
            } else {
                bail!(
                    "--filter: unknown term {t:?} (contenders {}, rw {}, block sizes like 4k or 1m, depths like qd32, jobs rfc/matrix)",
                    CONTENDERS.join("/"),
                    RWS.join("/")
                );
            }
        }
        Ok(f)
    }

    fn contender(&self, c: &str) -> bool {
        self.contenders.is_empty() || self.contenders.iter().any(|x| x == c)
    }

    fn workload(&self, w: &Workload) -> bool {
        (self.rws.is_empty() || self.rws.iter().any(|x| x == w.rw))
            && (self.bss.is_empty() || self.bss.contains(&w.bs))
            && (self.qds.is_empty() || self.qds.contains(&w.qd))
            && (self.jobs.is_empty() || self.jobs.iter().any(|x| x == w.job))
    }
}

/// One fio run of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub idx: usize,
    pub rep: u32,
    pub contender: &'static str,
    pub wl: usize,
}

/// Repetitions outermost (a partial run still covers every cell), cells in
/// order, contenders rotated by repetition + cell index.
pub fn plan(workloads: &[Workload], contenders: &[&'static str], reps: u32) -> Vec<Run> {
    let mut runs = Vec::new();
    let k = contenders.len();
    for rep in 1..=reps {
        for wl in 0..workloads.len() {
            for j in 0..k {
                let c = contenders[(j + rep as usize - 1 + wl) % k];
                runs.push(Run {
                    idx: runs.len() + 1,
                    rep,
                    contender: c,
                    wl,
                });
            }
        }
    }
    runs
}

fn plan_text(runs: &[Run], workloads: &[Workload]) -> String {
    let mut s = String::new();
    for r in runs {
        let w = &workloads[r.wl];
        s.push_str(&format!(
            "{} {} {} {} {} {} {} {}\n",
            r.idx,
            r.rep,
            r.contender,
            w.job,
            w.rw,
            bs_name(w.bs),
            w.qd,
            w.id()
        ));
    }
    s
}

/// Metrics of one fio run.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub iops: f64,
    /// Bytes per second.
    pub bw: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    pub bytes: f64,
    pub runtime_s: f64,
    /// Server utime+stime over the I/O phase (None without a server).
    pub srv_s: Option<f64>,
    pub guest_busy_s: f64,
    pub guest_total_s: f64,
}

impl Sample {
    fn gib(&self) -> f64 {
        self.bytes / (1u64 << 30) as f64
    }
    pub fn srv_per_gib(&self) -> Option<f64> {
        self.srv_s
            .filter(|_| self.bytes > 0.0)
            .map(|s| s / self.gib())
    }
    pub fn guest_per_gib(&self) -> Option<f64> {
        (self.bytes > 0.0).then(|| self.guest_busy_s / self.gib())
    }
    /// Server CPU as a percentage of one CPU over the run (the RFC's unit).
    pub fn srv_util(&self) -> Option<f64> {
        self.srv_s
            .filter(|_| self.runtime_s > 0.0)
            .map(|s| 100.0 * s / self.runtime_s)
    }
    /// Busy share of all guest vCPUs, in percent.
    pub fn guest_util(&self) -> Option<f64> {
        (self.guest_total_s > 0.0).then(|| 100.0 * self.guest_busy_s / self.guest_total_s)
    }
}

/// fio's JSON: sum the directions; latency percentiles (completion latency)
/// from the direction that did the most I/O.
fn parse_fio(text: &str) -> Result<Sample> {
    let j = Json::parse(text)?;
    let job = j
        .get("jobs")
        .and_then(|a| a.at(0))
        .context("fio JSON has no jobs")?;
    let mut s = Sample::default();
    let mut best_ios = -1.0;
    for dir in ["read", "write", "trim"] {
        let Some(d) = job.get(dir) else { continue };
        let num = |k: &str| d.get(k).and_then(Json::as_f64).unwrap_or(0.0);
        s.iops += num("iops");
        s.bw += num("bw_bytes");
        s.bytes += num("io_bytes");
        s.runtime_s = s.runtime_s.max(num("runtime") / 1000.0);
        let ios = num("total_ios");
        if ios > best_ios && num("io_bytes") > 0.0 {
            best_ios = ios;
            let pct = |p: &str| {
                d.path(&["clat_ns", "percentile", p])
                    .and_then(Json::as_f64)
                    .unwrap_or(f64::NAN)
                    / 1000.0
            };
            s.p50_us = pct("50.000000");
            s.p99_us = pct("99.000000");
        }
    }
    if let Some(e) = job
        .get("error")
        .and_then(Json::as_f64)
        .filter(|e| *e != 0.0)
    {
        bail!("fio reported error {e}");
    }
    Ok(s)
}

/// What the guest reported about a contender.
#[derive(Clone, Debug, Default)]
pub struct Contender {
    pub name: String,
    pub ok: bool,
    pub dev: String,
    pub mode: String,
    pub note: String,
}

/// Every run's outcome, keyed by (workload index, contender).
pub struct Results {
    pub workloads: Vec<Workload>,
    pub contenders: Vec<Contender>,
    pub env: BTreeMap<String, String>,
    /// (workload index, contender) -> samples of the runs that worked.
    pub samples: BTreeMap<(usize, String), Vec<Sample>>,
    /// (workload index, contender) -> messages of runs that failed.
    pub failures: BTreeMap<(usize, String), Vec<String>>,
    /// CSV of every run (for bench/results).
    pub csv: String,
    pub planned: usize,
    /// Runs skipped because their contender was n/a.
    pub na: usize,
    pub completed: bool,
    /// `ublk-user list --json` after the runs (BPF counters).
    pub list_end: Option<Json>,
}

/// Medians and spreads of one (workload, contender) cell.
#[derive(Clone, Copy, Debug)]
pub struct CellStats {
    pub iops: Stat,
    /// MiB/s.
    pub bw: Stat,
    pub p50: Option<Stat>,
    pub p99: Option<Stat>,
    /// Server CPU seconds per GiB moved.
    pub srv: Option<Stat>,
    /// Server CPU, percent of one CPU.
    pub srv_util: Option<Stat>,
    /// Guest CPU seconds (all vCPUs) per GiB moved.
    pub guest: Option<Stat>,
    /// Guest busy share of all vCPUs, percent.
    pub util: Option<Stat>,
}

impl Results {
    pub fn cell(&self, wl: usize, c: &str) -> Option<CellStats> {
        let v = self.samples.get(&(wl, c.to_string()))?;
        Some(CellStats {
            iops: stat(v.iter().map(|s| s.iops))?,
            bw: stat(v.iter().map(|s| s.bw / (1u64 << 20) as f64))?,
            p50: stat(v.iter().map(|s| s.p50_us)),
            p99: stat(v.iter().map(|s| s.p99_us)),
            srv: stat(v.iter().filter_map(Sample::srv_per_gib)),
            srv_util: stat(v.iter().filter_map(Sample::srv_util)),
            guest: stat(v.iter().filter_map(Sample::guest_per_gib)),
            util: stat(v.iter().filter_map(Sample::guest_util)),
        })
    }

    pub fn contender(&self, c: &str) -> Option<&Contender> {
        self.contenders.iter().find(|x| x.name == c)
    }

    /// The contenders of this run, in table order.
    pub fn contender_names(&self) -> Vec<&'static str> {
        CONTENDERS
            .iter()
            .copied()
            .filter(|c| self.contender(c).is_some())
            .collect()
    }

    /// Why a contender has no numbers (n/a reason), if it has none.
    pub fn na_reason(&self, c: &str) -> Option<String> {
        match self.contender(c) {
            Some(x) if !x.ok => Some(x.note.clone()),
            None => Some("not set up".into()),
            _ => None,
        }
    }
}

fn parse_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// Read a run directory written by bench/run-in-guest.sh.
pub fn collect(dir: &Path, workloads: Vec<Workload>) -> Result<Results> {
    let env = parse_kv(&fs::read_to_string(dir.join("env.txt")).unwrap_or_default());
    let hz: f64 = env
        .get("clk_tck")
        .and_then(|h| h.parse().ok())
        .unwrap_or(100.0);
    let contenders = fs::read_to_string(dir.join("contenders.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.splitn(6, '|').collect();
            (f.len() == 6).then(|| Contender {
                name: f[0].into(),
                ok: f[1] == "ok",
                dev: f[2].into(),
                mode: f[4].into(),
                note: f[5].into(),
            })
        })
        .collect();
    let planned = fs::read_to_string(dir.join("plan.txt"))
        .unwrap_or_default()
        .lines()
        .count();
    let ids: BTreeMap<String, usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id(), i))
        .collect();
    let runs = fs::read_to_string(dir.join("runs.csv"))
        .with_context(|| format!("no runs.csv in {}: did the guest run?", dir.display()))?;
    let mut samples: BTreeMap<(usize, String), Vec<Sample>> = BTreeMap::new();
    let mut failures: BTreeMap<(usize, String), Vec<String>> = BTreeMap::new();
    let mut na = 0;
    let mut csv = String::from(
        "idx,rep,contender,workload,status,iops,bw_mib_s,p50_us,p99_us,bytes,runtime_s,server_cpu_s,guest_busy_s,guest_total_s\n",
    );
    for line in runs.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 11 {
            continue;
        }
        let (idx, rep, cont, wl, rc) = (f[0], f[1], f[2], f[3], f[4]);
        let Some(&wi) = ids.get(wl) else { continue };
        let key = (wi, cont.to_string());
        if rc == "na" {
            na += 1;
            csv.push_str(&format!("{idx},{rep},{cont},{wl},n/a,,,,,,,,,\n"));
            continue;
        }
        let num = |i: usize| f[i].trim().parse::<f64>().ok();
        let sample = (|| -> Result<Sample> {
            if rc != "0" {
                bail!("fio exit status {rc}");
            }
            let text =
                fs::read_to_string(dir.join(format!("fio/{idx}.json"))).context("no fio JSON")?;
            let mut s = parse_fio(&text)?;
            let (pb, pt, ps, qb, qt, qs) = (num(5), num(6), num(7), num(8), num(9), num(10));
            let (Some(pb), Some(pt), Some(qb), Some(qt)) = (pb, pt, qb, qt) else {
                bail!("no CPU samples");
            };
            s.guest_busy_s = (qb - pb) / hz;
            s.guest_total_s = (qt - pt) / hz;
            if SERVERS.contains(&cont) {
                s.srv_s = match (ps, qs) {
                    (Some(a), Some(b)) => Some((b - a) / hz),
                    _ => None,
                };
            }
            Ok(s)
        })();
        match sample {
            Ok(s) => {
                csv.push_str(&format!(
                    "{idx},{rep},{cont},{wl},ok,{:.1},{:.2},{:.1},{:.1},{},{:.3},{},{:.2},{:.2}\n",
                    s.iops,
                    s.bw / (1 << 20) as f64,
                    s.p50_us,
                    s.p99_us,
                    s.bytes,
                    s.runtime_s,
                    s.srv_s.map(|v| format!("{v:.2}")).unwrap_or_default(),
                    s.guest_busy_s,
                    s.guest_total_s
                ));
                samples.entry(key).or_default().push(s);
            }
            Err(e) => {
                csv.push_str(&format!("{idx},{rep},{cont},{wl},failed,,,,,,,,,\n"));
                failures.entry(key).or_default().push(format!("{e:#}"));
            }
        }
    }
    let list_end = fs::read_to_string(dir.join("list-end.json"))
        .ok()
        .and_then(|t| Json::parse(&t).ok());
    Ok(Results {
        workloads,
        contenders,
        env,
        samples,
        failures,
        csv,
        planned,
        na,
        completed: dir.join("done").exists(),
        list_end,
    })
}

/// Median and spread of one metric over the repetitions.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct Stat {
    pub med: f64,
    pub min: f64,
    pub max: f64,
    pub n: usize,
}

pub fn stat(values: impl IntoIterator<Item = f64>) -> Option<Stat> {
    let mut v: Vec<f64> = values.into_iter().filter(|x| x.is_finite()).collect();
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    let med = if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    };
    Some(Stat {
        med,
        min: v[0],
        max: v[n - 1],
        n,
    })
}

/// Facts about the host and the run, for the report header.
pub struct RunInfo {
    pub host_cpu: String,
    pub host_cores: usize,
    pub load_start: String,
    pub load_end: String,
    pub commit: String,
    pub command: String,
    pub raw_dir: PathBuf,
    pub trimmed: String,
}

fn loadavg() -> String {
    fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(" ")
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
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    let (y, m, d) = civil_from_days((secs / 86400) as i64);
    let t = secs % 86400;
    format!(
        "{y:04}{m:02}{d:02}-{:02}{:02}{:02}",
        t / 3600,
        t / 60 % 60,
        t % 60
    )
}

/// Days since 1970-01-01 to (year, month, day) (H. Hinnant's algorithm).
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

pub fn bench(o: &BenchOpts, vm_opts: &VmOpts, no_build: bool) -> Result<i32> {
    let filter = Filter::parse(o.filter.as_deref().unwrap_or(""))?;
    let mut workloads = if o.quick {
        quick_workloads()
    } else {
        all_workloads()
    };
    workloads.retain(|w| filter.workload(w));
    let contenders: Vec<&'static str> = CONTENDERS
        .iter()
        .copied()
        .filter(|c| filter.contender(c))
        .collect();
    if workloads.is_empty() || contenders.is_empty() {
        bail!(
            "--filter {:?} selects no runs",
            o.filter.as_deref().unwrap_or("")
        );
    }
    if o.reps == 0 {
        bail!("--reps must be at least 1");
    }
    let runtime = o.runtime.unwrap_or(if o.quick { 1 } else { 2 });
    let mut trimmed = Vec::new();
    if o.quick {
        trimmed.push(format!(
            "--quick: {} cells only",
            quick_workloads()
                .iter()
                .map(Workload::id)
                .collect::<Vec<_>>()
                .join(", ")
        ));
    }
    if o.filter.is_some() {
        trimmed.push(format!(
            "--filter {}",
            o.filter.as_deref().unwrap_or_default()
        ));
    }
    trimmed.push(format!(
        "{runtime} s per fio run (the RFC ran 60 s), no ramp, {} repetitions",
        o.reps
    ));

    let (raw_dir, load_start) = if let Some(from) = &o.from {
        (from.clone(), String::new())
    } else {
        let name = format!(
            "{}{}",
            stamp(),
            if o.quick {
                "-quick"
            } else if o.filter.is_some() {
                "-filtered"
            } else {
                ""
            }
        );
        (root().join("target/bench-out").join(name), loadavg())
    };

    let mut status = 0;
    let mut vm_note = String::new();
    if o.from.is_none() {
        let runs = plan(&workloads, &contenders, o.reps);
        let _ = fs::remove_dir_all(&raw_dir);
        fs::create_dir_all(raw_dir.join("fio"))?;
        fs::write(raw_dir.join("plan.txt"), plan_text(&runs, &workloads))?;
        if !no_build {
            crate::build::build()?;
        }
        // fio start-up, the CPU sampler and teardown cost ~2 s a run under TCG.
        let estimate = runs.len() as u64 * (u64::from(runtime) + 3) + 120;
        say(format!(
            "bench: {} runs ({} cells x {} contenders x {} reps, {runtime} s each, ~{} min); raw output in {}",
            runs.len(),
            workloads.len(),
            contenders.len(),
            o.reps,
            estimate.div_ceil(60),
            raw_dir.display()
        ));
        let opts = VmOpts {
            timeout: vm_opts.timeout.max(Duration::from_secs(estimate * 2 + 300)),
            ..vm_opts.clone()
        };
        let script = format!(
            "export BENCH_RUNTIME={runtime} BENCH_SIZE_MB={}\nexec sh {} {}\n",
            o.size_mb,
            shell_quote(&root().join("bench/run-in-guest.sh").to_string_lossy()),
            shell_quote(&raw_dir.to_string_lossy())
        );
        match vm::run_script(&opts, &script) {
            Ok(r) if r.status == 0 => {}
            Ok(r) => {
                vm_note = format!("the guest script exited with {}", r.status);
                say(format!(
                    "bench: {vm_note} (console log: {}); reporting what it left",
                    r.console.display()
                ));
                status = 1;
            }
            Err(e) => {
                vm_note = format!("{e:#}");
                say(format!("bench: {vm_note}; reporting what the guest left"));
                status = 1;
            }
        }
    }
    // Host facts go next to the raw data, so `--from` re-renders them.
    let host_file = raw_dir.join("host.txt");
    if o.from.is_none() {
        let mut command = String::from("cargo xtask bench");
        if o.quick {
            command.push_str(" --quick");
        }
        if let Some(f) = &o.filter {
            command.push_str(&format!(" --filter {}", shell_quote(f)));
        }
        if o.reps != 3 {
            command.push_str(&format!(" --reps {}", o.reps));
        }
        if let Some(r) = o.runtime {
            command.push_str(&format!(" --runtime {r}"));
        }
        if o.size_mb != 512 {
            command.push_str(&format!(" --size-mb {}", o.size_mb));
        }
        let text = format!(
            "host_cpu={}\nhost_cores={}\nload_start={load_start}\nload_end={}\ncommit={}\ncommand={command}\ntrimmed={}\nsuffix={}\nvm_error={}\n",
            host_cpu(),
            std::thread::available_parallelism()
                .map(|n| n.get())
                .unwrap_or(0),
            loadavg(),
            git_commit(),
            trimmed.join("; "),
            if o.quick {
                "-quick"
            } else if o.filter.is_some() {
                "-filtered"
            } else {
                ""
            },
            vm_note.replace('\n', " ")
        );
        fs::write(&host_file, text)?;
    }
    let host = parse_kv(&fs::read_to_string(&host_file).unwrap_or_default());
    let h = |k: &str| host.get(k).cloned().unwrap_or_default();

    // The cells are those of the plan (so `--from` needs no other flags).
    let planned: Vec<String> = fs::read_to_string(raw_dir.join("plan.txt"))
        .with_context(|| format!("no plan.txt in {}", raw_dir.display()))?
        .lines()
        .filter_map(|l| l.split_whitespace().nth(7).map(str::to_string))
        .collect();
    let workloads: Vec<Workload> = all_workloads()
        .into_iter()
        .filter(|w| planned.contains(&w.id()))
        .collect();
    let res = collect(&raw_dir, workloads)?;
    if !res.completed {
        status = 1;
    }
    let kernel = res.env.get("kernel").cloned().unwrap_or("unknown".into());
    let accel = res.env.get("accel").cloned().unwrap_or("unknown".into());
    let date = res
        .env
        .get("start")
        .map(|s| s.chars().take(10).collect::<String>())
        .unwrap_or_else(|| "unknown".into());
    let suffix = h("suffix");
    let base = format!("{date}-{kernel}-{accel}{suffix}");
    let out_dir = match &o.out {
        Some(d) => d.clone(),
        None if suffix == "-filtered" => raw_dir.clone(),
        None => root().join("bench/results"),
    };
    fs::create_dir_all(&out_dir)?;
    let mut trimmed_text = h("trimmed");
    if !res.completed {
        trimmed_text.push_str("; **INCOMPLETE**: the guest stopped before the end of the plan");
        let why = h("vm_error");
        if !why.is_empty() {
            trimmed_text.push_str(&format!(" ({why})"));
        }
    }
    let info = RunInfo {
        host_cpu: h("host_cpu"),
        host_cores: h("host_cores").parse().unwrap_or(0),
        load_start: h("load_start"),
        load_end: h("load_end"),
        commit: h("commit"),
        command: h("command"),
        raw_dir: raw_dir.clone(),
        trimmed: trimmed_text,
    };
    let svgs = [
        ("bw", svg::Metric::Bandwidth),
        ("server-cpu", svg::Metric::ServerCpu),
        ("guest-cpu", svg::Metric::GuestCpu),
    ];
    let mut svg_names = Vec::new();
    for (suffix, metric) in svgs {
        let name = format!("{base}-{suffix}.svg");
        if let Some(text) = svg::plot(&res, metric) {
            fs::write(out_dir.join(&name), text)?;
            svg_names.push((metric, name));
        }
    }
    let csv_name = format!("{base}.csv");
    fs::write(out_dir.join(&csv_name), &res.csv)?;
    let md = report::markdown(&res, &info, &svg_names, &csv_name);
    let md_path = out_dir.join(format!("{base}.md"));
    fs::write(&md_path, &md)?;
    println!("{}", report::console_summary(&res));
    say(format!("bench: report: {}", md_path.display()));
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_shape() {
        let w = all_workloads();
        assert_eq!(w.len(), 4 * 5 * 2 + 1);
        assert_eq!(w[0].id(), "randread-4k-qd1");
        assert_eq!(w.last().unwrap().id(), "rfc-randwrite-2m-qd16");
        assert_eq!(w.last().unwrap().group(), "rfc");
        assert_eq!(w[5].group(), "randread qd32");
    }

    #[test]
    fn plan_rotates_contenders() {
        let w = quick_workloads();
        let c = ["loop", "copy", "zc"];
        let p = plan(&w, &c, 3);
        assert_eq!(p.len(), w.len() * 3 * 3);
        assert_eq!(p[0].idx, 1);
        // Each (cell, rep) runs every contender once ...
        for chunk in p.chunks(3) {
            let mut names: Vec<&str> = chunk.iter().map(|r| r.contender).collect();
            names.sort();
            assert_eq!(names, ["copy", "loop", "zc"]);
        }
        // ... and each contender goes first once per cell over 3 reps.
        for wl in 0..w.len() {
            let firsts: Vec<&str> = p
                .iter()
                .filter(|r| r.wl == wl)
                .collect::<Vec<_>>()
                .chunks(3)
                .map(|ch| ch[0].contender)
                .collect();
            let mut sorted = firsts.clone();
            sorted.sort();
            assert_eq!(sorted, ["copy", "loop", "zc"], "cell {wl}: {firsts:?}");
        }
        assert!(plan_text(&p, &w).starts_with("1 1 loop matrix randread 4k 32 randread-4k-qd32\n"));
    }

    #[test]
    fn filter_terms() {
        let f = Filter::parse("zc,bpf,randread,4k,1M,qd32").unwrap();
        assert!(f.contender("zc") && !f.contender("copy"));
        assert!(f.workload(&Workload::matrix("randread", 4096, 32)));
        assert!(f.workload(&Workload::matrix("randread", 1 << 20, 32)));
        assert!(!f.workload(&Workload::matrix("randread", 64 << 10, 32)));
        assert!(!f.workload(&Workload::matrix("randread", 4096, 1)));
        assert!(!f.workload(&Workload::rfc()));
        let r = Filter::parse("rfc").unwrap();
        assert!(r.workload(&Workload::rfc()));
        assert!(!r.workload(&Workload::matrix("randwrite", 2 << 20, 16)));
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
        assert!(Filter::parse("bogus").is_err());
    }

    #[test]
    fn block_size_names() {
        assert_eq!(bs_name(4096), "4k");
        assert_eq!(bs_name(2 << 20), "2m");
        assert_eq!(bs_name(512), "512");
        assert_eq!(parse_bs("256K"), Some(256 << 10));
        assert_eq!(parse_bs("x"), None);
    }

    #[test]
    fn median_and_spread() {
        let s = stat([3.0, 1.0, 2.0]).unwrap();
        assert_eq!((s.med, s.min, s.max, s.n), (2.0, 1.0, 3.0, 3));
        assert_eq!(stat([4.0, 1.0]).unwrap().med, 2.5);
        assert!(stat([f64::NAN]).is_none());
    }

    #[test]
    fn fio_json_fields() {
        let text = r#"{"jobs":[{"error":0,
          "read":{"io_bytes":1073741824,"bw_bytes":536870912,"iops":131072.0,"runtime":2000,"total_ios":262144,
                  "clat_ns":{"percentile":{"50.000000":7000,"99.000000":21000}}},
          "write":{"io_bytes":0,"bw_bytes":0,"iops":0.0,"runtime":0,"total_ios":0,"clat_ns":{}}}]}"#;
        let s = parse_fio(text).unwrap();
        assert_eq!(s.iops, 131072.0);
        assert_eq!(s.bw, 536870912.0);
        assert_eq!((s.p50_us, s.p99_us), (7.0, 21.0));
        assert_eq!(s.runtime_s, 2.0);
        let s = Sample {
            bytes: (2u64 << 30) as f64,
            srv_s: Some(1.0),
            guest_busy_s: 3.0,
            guest_total_s: 4.0,
            ..s
        };
        assert_eq!(s.srv_per_gib(), Some(0.5));
        assert_eq!(s.guest_per_gib(), Some(1.5));
        assert_eq!(s.guest_util(), Some(75.0));
    }

    /// `--from` renders an earlier run's raw directory into `--out`
    /// without building or booting anything (a VM run here would fail: the
    /// options name a kernel flavor and a timeout, nothing else is set up).
    #[test]
    fn from_renders_a_raw_directory_offline() {
        let t = crate::util::TempDir::new("bench-from");
        let raw = t.path().join("raw");
        let out = t.path().join("out");
        fs::create_dir_all(raw.join("fio")).unwrap();
        let wl = [Workload::matrix("randread", 4 << 10, 32)];
        fs::write(
            raw.join("plan.txt"),
            plan_text(&plan(&wl, &["copy"], 1), &wl),
        )
        .unwrap();
        fs::write(
            raw.join("runs.csv"),
            "idx,rep,contender,workload,rc,pb,pt,ps,qb,qt,qs\n1,1,copy,randread-4k-qd32,0,100,200,10,150,400,20\n",
        )
        .unwrap();
        fs::write(
            raw.join("fio/1.json"),
            r#"{"jobs":[{"error":0,"read":{"io_bytes":1073741824,"bw_bytes":536870912,"iops":131072.0,
               "runtime":2000,"total_ios":262144,"clat_ns":{"percentile":{"50.000000":7000,"99.000000":21000}}}}]}"#,
        )
        .unwrap();
        fs::write(
            raw.join("env.txt"),
            "kernel=7.2.12+\naccel=tcg\nstart=2026-12-02T10:00:00\nclk_tck=100\n",
        )
        .unwrap();
        fs::write(raw.join("contenders.txt"), "copy|ok|/dev/ublkb0|0|copy|\n").unwrap();
        fs::write(
            raw.join("host.txt"),
            "commit=abc\ncommand=cargo xtask bench\nsuffix=\n",
        )
        .unwrap();
        fs::write(raw.join("done"), "").unwrap();
        let o = BenchOpts {
            quick: false,
            filter: None,
            reps: 3,
            runtime: None,
            size_mb: 512,
            from: Some(raw.clone()),
            out: Some(out.clone()),
        };
        let vm_opts = VmOpts {
            flavor: crate::kernel::Flavor::Ublk,
            cpus: 1,
            mem: "1G".into(),
            timeout: Duration::from_secs(1),
            boot_timeout: Duration::from_secs(1),
            accel: vm::Accel::Tcg,
            tmp_size: "1G".into(),
        };
        assert_eq!(bench(&o, &vm_opts, false).unwrap(), 0);
        let md = fs::read_to_string(out.join("2026-12-02-7.2.12+-tcg.md")).unwrap();
        assert!(md.contains("randread"), "{md}");
        let csv = fs::read_to_string(out.join("2026-12-02-7.2.12+-tcg.csv")).unwrap();
        assert!(
            csv.contains("1,1,copy,randread-4k-qd32,ok,131072.0"),
            "{csv}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
