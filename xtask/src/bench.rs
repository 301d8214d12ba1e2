//! `cargo xtask bench` (v2): fio comparisons of the kernel loop driver, the
//! ublk-user data paths (copy, zero copy, BPF, BPF kernel completion) and
//! the driver's own selftest server kublk, over several backing stores, in
//! one VM boot per timing model.
//!
//! Timing: by default the guest runs under QEMU's icount cost model
//! (`-icount shift=0,sleep=off`: guest time = executed instructions, so a
//! cell is a deterministic function of the instructions one I/O costs over
//! all vCPUs); plain TCG wall-clock timing is the secondary table
//! (`--timing tcg|both`). The host writes a plan (one fio run a line,
//! stores outermost, then repetitions, the contender order rotated per cell
//! and repetition; under icount a conditional third repetition runs where
//! the first two disagree by more than 2 %) into `target/bench-out/<run>/`,
//! boots the VM with `bench/run-in-guest.sh`, which runs the plan and
//! leaves fio's JSON, CPU samples and counters in that directory (shared
//! over 9p), then aggregates (median, 95 % interval from order statistics,
//! `~` where intervals overlap) and writes a markdown report, SVG plots and
//! a CSV of every run.

mod json;
mod report;
pub mod stats;
mod svg;

use crate::util::{root, say, shell_quote};
use crate::vm::{self, VmOpts};
use anyhow::{bail, Context, Result};
use json::Json;
pub use stats::Stat;
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Contenders, in the order they are listed in tables and plots.
pub const CONTENDERS: &[&str] = &[
    "loop",
    "dm",
    "copy",
    "zc",
    "bpf",
    "bpf-kernel",
    "kublk",
    "kublk-zc",
    "kublk-batch",
    "raw",
    "qemu-nbd",
    "loop-bpfk",
];
/// The contenders on a single backing store: all but dm-stripe, which
/// needs two, and the qcow2 stores' own (qemu-nbd, loop-bpfk).
pub fn single_contenders() -> Vec<&'static str> {
    CONTENDERS
        .iter()
        .copied()
        .filter(|c| !["dm", "qemu-nbd", "loop-bpfk"].contains(c))
        .collect()
}
/// ublk-user's data paths (counters in `ublk-user list --json`).
pub const OURS: &[&str] = &["copy", "zc", "bpf", "bpf-kernel"];
/// The driver's selftest server in its three configurations.
pub const KUBLK: &[&str] = &["kublk", "kublk-zc", "kublk-batch"];
/// Backing stores, each its own table. The `stripe-*` stores are two
/// backing stores striped in 64 KiB chunks: dm-stripe ("dm", over loop
/// devices for files) is the kernel's reference there, and the ublk
/// contenders serve a stripe target (ours `add stripe`, kublk `-t stripe`).
/// The `qcow2-*` stores are a qcow2 image on tmpfs with 64 KiB clusters:
/// fully allocated (`qcow2-tmpfs`, the hot path) or sparse with every
/// write allocating a cluster (`qcow2-alloc`, the first-write path); QEMU's
/// own qcow2 through the kernel's nbd driver (`qemu-nbd`) is the reference
/// there, our loop target on a raw image in bpf-kernel (`loop-bpfk`) the
/// ceiling.
pub const STORES: &[&str] = &[
    "tmpfs",
    "nullb",
    "virtio",
    "stripe-tmpfs",
    "stripe-nullb",
    "qcow2-tmpfs",
    "qcow2-alloc",
];

/// The reference every contender on a store is compared with: the loop
/// driver, dm-stripe on a stripe store, QEMU's qcow2 (qemu-nbd) on a qcow2
/// store.
pub fn kernel_ref(store: &str) -> &'static str {
    if store.starts_with("stripe-") {
        "dm"
    } else if store.starts_with("qcow2-") {
        "qemu-nbd"
    } else {
        "loop"
    }
}

/// The ceiling of a store, if it has one: on a qcow2 store our own loop
/// target on a raw image in bpf-kernel (what the cluster mapping costs).
pub fn ceiling(store: &str) -> Option<&'static str> {
    store.starts_with("qcow2-").then_some("loop-bpfk")
}
const RWS: &[&str] = &["randread", "randwrite", "read", "write"];

/// The contenders that have a server process (whose CPU is counted).
pub fn is_server(c: &str) -> bool {
    OURS.contains(&c) || KUBLK.contains(&c) || c == "qemu-nbd" || c == "loop-bpfk"
}

/// icount: the repetitions of a cell must agree within this (percent).
pub const AGREE_PCT: f64 = 2.0;
/// Plain TCG: a cell's spread ((max - min) / min) should stay under this.
pub const TCG_SPREAD_PCT: f64 = 10.0;
/// icount: interval floor, +- percent of the median (see stats::stat_floor).
pub const ICOUNT_FLOOR_PCT: f64 = 1.0;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum Timing {
    /// QEMU `-icount shift=0,sleep=off`: deterministic, primary.
    Icount,
    /// Plain TCG wall-clock timing: noisy, secondary.
    Tcg,
    /// Both, one boot each: the icount report with the TCG tables appended.
    Both,
}

impl Timing {
    pub fn name(self) -> &'static str {
        match self {
            Timing::Icount => "icount",
            Timing::Tcg => "tcg",
            Timing::Both => "both",
        }
    }
}

#[derive(clap::Args, Clone, Debug)]
pub struct BenchOpts {
    /// A few cells only (tmpfs: 4k randread qd32 and the RFC v2 job, 1 s
    /// runs): a smoke run.
    #[arg(long)]
    pub quick: bool,
    /// Only matching runs: comma-separated terms, OR within a kind and AND
    /// across kinds. Kinds: contender (loop,copy,zc,bpf,bpf-kernel,kublk,
    /// kublk-zc,kublk-batch,raw), store (tmpfs,nullb,virtio), rw
    /// (randread,randwrite,read,write), block size (4k,512k,2m), depth
    /// (qd16,qd32) and job (rfc, matrix). E.g. `tmpfs,loop,copy,kublk,randread`.
    #[arg(long)]
    pub filter: Option<String>,
    /// Timing model: icount (default, deterministic), tcg (wall clock,
    /// secondary) or both (two boots).
    #[arg(long, value_enum, default_value = "icount")]
    pub timing: Timing,
    /// Shorthand for --timing icount.
    #[arg(long, conflicts_with_all = ["tcg", "timing"])]
    pub icount: bool,
    /// Shorthand for --timing tcg.
    #[arg(long, conflicts_with = "timing")]
    pub tcg: bool,
    /// Boot with `-cpu max,-erms,-fsrm` (no fast `rep movsb`): copies are
    /// no longer one icount instruction per byte-loop iteration, which shows
    /// how much the copy weighting moves the ratios.
    #[arg(long)]
    pub no_erms: bool,
    /// Repetitions of each cell (default: 2 under icount, plus a third where
    /// the two disagree by more than 2 %; 6 under plain TCG, the fewest
    /// whose order-statistics interval reaches 95 %).
    #[arg(long)]
    pub reps: Option<u32>,
    /// Seconds per fio run after the ramp (default: 1 under icount, 2 under
    /// TCG; 1 with --quick).
    #[arg(long)]
    pub runtime: Option<u32>,
    /// fio ramp_time in milliseconds (default 500; 250 with --quick).
    #[arg(long)]
    pub ramp_ms: Option<u32>,
    /// Size of the tmpfs backing file in MiB (the guest's /tmp holds 2 GiB).
    #[arg(long, default_value_t = 512)]
    pub size_mb: u32,
    /// Write the plain-TCG headline even though the host was busy (load
    /// average above 1 at the start or the end); the report says so.
    #[arg(long)]
    pub force: bool,
    /// Print the plan and its estimated duration, boot nothing.
    #[arg(long)]
    pub plan: bool,
    /// Do not boot: re-render the report from an earlier run's raw directory
    /// (target/bench-out/NAME).
    #[arg(long, value_name = "DIR")]
    pub from: Option<PathBuf>,
    /// Where the report goes (default: bench/results for the full matrix and
    /// --quick, the run's raw directory when --filter is given).
    #[arg(long, value_name = "DIR")]
    pub out: Option<PathBuf>,
}

impl BenchOpts {
    pub fn timing(&self) -> Timing {
        if self.icount {
            Timing::Icount
        } else if self.tcg {
            Timing::Tcg
        } else {
            self.timing
        }
    }
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
    pub fn matrix(rw: &'static str, bs: u64, qd: u32) -> Self {
        Workload {
            job: "matrix",
            rw,
            bs,
            qd,
        }
    }

    /// First writes of a sparse image: a sequential write of a fixed
    /// amount (bench/fio/alloc.fio), each repetition into fresh clusters.
    pub fn alloc(bs: u64, qd: u32) -> Self {
        Workload {
            job: "alloc",
            rw: "write",
            bs,
            qd,
        }
    }

    /// The RFC's job: randwrite, iodepth 16, bs 512K (v1) or 2048K (v2).
    pub fn rfc(bs: u64) -> Self {
        Workload {
            job: "rfc",
            rw: "randwrite",
            bs,
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

    /// From the plan's fields.
    fn parse(job: &str, rw: &str, bs: &str, qd: &str) -> Option<Workload> {
        let job = ["matrix", "rfc", "alloc"].into_iter().find(|j| *j == job)?;
        let rw = RWS.iter().copied().find(|r| *r == rw)?;
        Some(Workload {
            job,
            rw,
            bs: parse_bs(bs)?,
            qd: qd.parse().ok()?,
        })
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

/// One backing store's part of the matrix.
#[derive(Clone, Debug, PartialEq)]
pub struct StorePlan {
    pub store: &'static str,
    pub workloads: Vec<Workload>,
    pub contenders: Vec<&'static str>,
}

/// The full matrix, sized so an icount run takes about 80 minutes on this
/// 2-core host (see [`estimate_secs`]; an hour before the qcow2 stores):
/// on tmpfs and null_blk, 4 KiB random
/// read at iodepth 1 and 32, 4 KiB random write and 64 KiB random read at
/// iodepth 32, and the RFC's two jobs, every contender; on virtio-blk the
/// 4 KiB read and the RFC v2 job with the reference (raw, loop), our copy
/// and bpf-kernel and kublk's batch configuration.
pub fn full_matrix() -> Vec<StorePlan> {
    let core = vec![
        Workload::matrix("randread", 4 << 10, 1),
        Workload::matrix("randread", 4 << 10, 32),
        Workload::matrix("randwrite", 4 << 10, 32),
        Workload::matrix("randread", 64 << 10, 32),
        Workload::rfc(512 << 10),
        Workload::rfc(2 << 20),
    ];
    vec![
        StorePlan {
            store: "tmpfs",
            workloads: core.clone(),
            contenders: single_contenders(),
        },
        StorePlan {
            store: "nullb",
            workloads: core,
            contenders: single_contenders(),
        },
        StorePlan {
            store: "virtio",
            workloads: vec![
                Workload::matrix("randread", 4 << 10, 32),
                Workload::rfc(2 << 20),
            ],
            contenders: vec!["raw", "loop", "copy", "bpf-kernel", "kublk-batch"],
        },
        StorePlan {
            store: "stripe-tmpfs",
            workloads: stripe_workloads(),
            contenders: STRIPE_CONTENDERS.to_vec(),
        },
        StorePlan {
            store: "stripe-nullb",
            workloads: stripe_workloads(),
            contenders: STRIPE_CONTENDERS.to_vec(),
        },
        StorePlan {
            store: "qcow2-tmpfs",
            workloads: vec![
                Workload::matrix("randread", 4 << 10, 32),
                Workload::matrix("randwrite", 4 << 10, 32),
                Workload::rfc(512 << 10),
            ],
            contenders: QCOW2_CONTENDERS.to_vec(),
        },
        StorePlan {
            store: "qcow2-alloc",
            workloads: vec![Workload::alloc(64 << 10, 32)],
            contenders: vec!["qemu-nbd", "copy", "bpf", "bpf-kernel"],
        },
    ]
}

/// Who serves a qcow2 store (zc is refused for qcow2: it stays in the
/// table as n/a with the reason).
pub const QCOW2_CONTENDERS: &[&str] = &["qemu-nbd", "copy", "zc", "bpf", "bpf-kernel", "loop-bpfk"];

/// Who serves a stripe store (kublk's stripe target has no batch mode).
pub const STRIPE_CONTENDERS: &[&str] =
    &["dm", "copy", "zc", "bpf", "bpf-kernel", "kublk", "kublk-zc"];

/// A stripe store's workloads: 4 KiB random read and write at iodepth 32.
fn stripe_workloads() -> Vec<Workload> {
    vec![
        Workload::matrix("randread", 4 << 10, 32),
        Workload::matrix("randwrite", 4 << 10, 32),
    ]
}

/// What the full matrix leaves out (for the report).
pub const LEFT_OUT: &str = "sequential read/write; random write below 512k except 4k qd32; \
     iodepth 1 except 4k randread; block sizes 256k and 1m; more than one ublk queue or fio job; \
     on virtio-blk every contender but raw, loop, copy, bpf-kernel and kublk-batch and every \
     workload but 4k randread qd32 and the RFC v2 job; runs longer than a few guest seconds \
     (the RFC ran 60 s); `-cpu max,-erms,-fsrm` (a separate `--no-erms` run); plain-TCG tables \
     (a separate `--timing tcg` or `--timing both` run)";

fn quick_matrix() -> Vec<StorePlan> {
    vec![StorePlan {
        store: "tmpfs",
        workloads: vec![
            Workload::matrix("randread", 4 << 10, 32),
            Workload::rfc(2 << 20),
        ],
        contenders: single_contenders(),
    }]
}

/// `--filter`: sets of accepted values per kind; an empty set accepts all.
#[derive(Debug, Default, PartialEq)]
pub struct Filter {
    contenders: Vec<String>,
    stores: Vec<String>,
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
            } else if STORES.contains(&t.as_str()) {
                f.stores.push(t);
            } else if RWS.contains(&t.as_str()) {
                f.rws.push(t);
            } else if t == "rfc" || t == "matrix" || t == "alloc" {
                f.jobs.push(t);
            } else if let Some(qd) = t.strip_prefix("qd").and_then(|q| q.parse().ok()) {
                f.qds.push(qd);
            } else if let Some(bs) = parse_bs(&t).filter(|b| *b >= 512) {
                f.bss.push(bs);
            } else {
                bail!(
                    "--filter: unknown term {t:?} (contenders {}, stores {}, rw {}, block sizes like 4k or 2m, depths like qd32, jobs rfc/matrix)",
                    CONTENDERS.join("/"),
                    STORES.join("/"),
                    RWS.join("/")
                );
            }
        }
        Ok(f)
    }

    fn contender(&self, c: &str) -> bool {
        self.contenders.is_empty() || self.contenders.iter().any(|x| x == c)
    }

    fn store(&self, s: &str) -> bool {
        self.stores.is_empty() || self.stores.iter().any(|x| x == s)
    }

    fn workload(&self, w: &Workload) -> bool {
        (self.rws.is_empty() || self.rws.iter().any(|x| x == w.rw))
            && (self.bss.is_empty() || self.bss.contains(&w.bs))
            && (self.qds.is_empty() || self.qds.contains(&w.qd))
            && (self.jobs.is_empty() || self.jobs.iter().any(|x| x == w.job))
    }

    /// The matrix narrowed by the filter (stores left empty are dropped).
    pub fn apply(&self, m: Vec<StorePlan>) -> Vec<StorePlan> {
        m.into_iter()
            .filter(|s| self.store(s.store))
            .map(|mut s| {
                s.workloads.retain(|w| self.workload(w));
                s.contenders.retain(|c| self.contender(c));
                s
            })
            .filter(|s| !s.workloads.is_empty() && !s.contenders.is_empty())
            .collect()
    }
}

/// One fio run of the plan.
#[derive(Clone, Debug, PartialEq)]
pub struct Run {
    pub idx: usize,
    pub store: &'static str,
    pub rep: u32,
    pub contender: &'static str,
    pub wl: Workload,
    /// Run only if the earlier repetitions of the cell disagree.
    pub conditional: bool,
}

/// Stores outermost (each sets its contenders up once), then repetitions
/// (a partial run still covers every cell), cells in order, contenders
/// rotated by repetition + cell index so drift favours nobody. With
/// `conditional`, one more repetition follows that runs only where the
/// earlier ones disagree (the icount rule).
pub fn plan(m: &[StorePlan], reps: u32, conditional: bool) -> Vec<Run> {
    let mut runs = Vec::new();
    for sp in m {
        let k = sp.contenders.len();
        let last = reps + u32::from(conditional);
        for rep in 1..=last {
            for (wi, w) in sp.workloads.iter().enumerate() {
                for j in 0..k {
                    let c = sp.contenders[(j + rep as usize - 1 + wi) % k];
                    runs.push(Run {
                        idx: runs.len() + 1,
                        store: sp.store,
                        rep,
                        contender: c,
                        wl: w.clone(),
                        conditional: rep > reps,
                    });
                }
            }
        }
    }
    runs
}

pub fn plan_text(runs: &[Run]) -> String {
    let mut s = String::new();
    for r in runs {
        let w = &r.wl;
        s.push_str(&format!(
            "{} {} {} {} {} {} {} {} {} {}\n",
            r.idx,
            r.store,
            r.rep,
            r.contender,
            w.job,
            w.rw,
            bs_name(w.bs),
            w.qd,
            w.id(),
            if r.conditional { "agree" } else { "-" }
        ));
    }
    s
}

/// A plan line back: (idx, store, rep, contender, workload, conditional).
/// Old (v1) plans, "IDX REP CONTENDER JOB RW BS QD WORKLOAD", read as tmpfs.
fn parse_plan_line(l: &str) -> Option<(usize, String, u32, String, Workload, bool)> {
    let f: Vec<&str> = l.split_whitespace().collect();
    match f.len() {
        10 => Some((
            f[0].parse().ok()?,
            f[1].to_string(),
            f[2].parse().ok()?,
            f[3].to_string(),
            Workload::parse(f[4], f[5], f[6], f[7])?,
            f[9] == "agree",
        )),
        8 => Some((
            f[0].parse().ok()?,
            "tmpfs".into(),
            f[1].parse().ok()?,
            f[2].to_string(),
            Workload::parse(f[3], f[4], f[5], f[6])?,
            false,
        )),
        _ => None,
    }
}

/// Wall-time model of a run, calibrated on this 2-core host (2026-12-02,
/// load average 5.5: 24 planned runs, 35 s of guest time in 205 s of wall
/// time, boot and initramfs build included): under icount one guest second
/// costs about `ICOUNT_WALL_PER_GUEST_S` host seconds; each fio run adds
/// 0.8 guest seconds (fio start-up, the samplers, `ublk-user list`), each
/// store its setup (the 512 MiB tmpfs file, the contenders).
pub const ICOUNT_WALL_PER_GUEST_S: f64 = 5.5;
const RUN_OVERHEAD_GUEST_S: f64 = 0.8;
const TCG_RUN_OVERHEAD_S: f64 = 3.0;
const BOOT_WALL_S: f64 = 60.0;
const STORE_SETUP_GUEST_S: f64 = 4.0;
/// Share of conditional repetitions expected to run.
const CONDITIONAL_SHARE: f64 = 0.15;

pub fn estimate_secs(runs: &[Run], timing: Timing, runtime_s: f64, ramp_s: f64) -> f64 {
    let stores = {
        let mut v: Vec<&str> = runs.iter().map(|r| r.store).collect();
        v.dedup();
        v.len() as f64
    };
    let n: f64 = runs
        .iter()
        .map(|r| {
            if r.conditional {
                CONDITIONAL_SHARE
            } else {
                1.0
            }
        })
        .sum();
    match timing {
        Timing::Tcg => BOOT_WALL_S + n * (runtime_s + ramp_s + TCG_RUN_OVERHEAD_S) + stores * 10.0,
        _ => {
            BOOT_WALL_S
                + ICOUNT_WALL_PER_GUEST_S
                    * (n * (runtime_s + ramp_s + RUN_OVERHEAD_GUEST_S)
                        + stores * STORE_SETUP_GUEST_S)
        }
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

/// Metrics of one fio run.
#[derive(Clone, Debug, Default)]
pub struct Sample {
    pub iops: f64,
    /// Bytes per second.
    pub bw: f64,
    pub p50_us: f64,
    pub p99_us: f64,
    /// fio's bytes (after the ramp).
    pub bytes: f64,
    pub runtime_s: f64,
    /// Length of the CPU-sampled window (ramp included), seconds of guest time.
    pub window_s: f64,
    /// Server utime+stime over the window (None without a server).
    pub srv_s: Option<f64>,
    pub guest_busy_s: f64,
    pub guest_total_s: f64,
    /// Requests the device completed around the run (/sys/block/X/stat).
    pub reqs: Option<f64>,
    /// Bytes the device moved around the run (sectors x 512).
    pub dev_bytes: Option<f64>,
    /// Server context switches (voluntary, involuntary), all threads.
    pub ctxsw: Option<(f64, f64)>,
    /// ublk-user's own counters: CQEs reaped, SQEs submitted, io_uring_enter calls.
    pub cqes: Option<f64>,
    pub sqes: Option<f64>,
    pub enters: Option<f64>,
    /// Steady state: mean IOPS of the second half of fio's IOPS log over
    /// the first half's (RFC jobs).
    pub steady: Option<f64>,
}

/// fio's IOPS log ("msec, value, dir, bs[, offset]" a line, averaged over
/// `log_avg_msec`): the mean of the second half of the samples over the
/// first half's. None with fewer than 4 samples.
pub fn steady_ratio(log: &str) -> Option<f64> {
    let v: Vec<f64> = log
        .lines()
        .filter_map(|l| l.split(',').nth(1)?.trim().parse::<f64>().ok())
        .collect();
    if v.len() < 4 {
        return None;
    }
    let h = v.len() / 2;
    let mean = |x: &[f64]| x.iter().sum::<f64>() / x.len() as f64;
    let (a, b) = (mean(&v[..h]), mean(&v[v.len() - h..]));
    (a > 0.0).then(|| b / a)
}

const GIB: f64 = (1u64 << 30) as f64;

impl Sample {
    /// Bytes in the CPU window: the device's count when there is one (it
    /// covers the ramp like the CPU samples), else fio's.
    fn window_gib(&self) -> f64 {
        self.dev_bytes.unwrap_or(self.bytes) / GIB
    }
    pub fn srv_per_gib(&self) -> Option<f64> {
        self.srv_s
            .filter(|_| self.window_gib() > 0.0)
            .map(|s| s / self.window_gib())
    }
    pub fn guest_per_gib(&self) -> Option<f64> {
        (self.window_gib() > 0.0).then(|| self.guest_busy_s / self.window_gib())
    }
    /// Server CPU as `top` shows it: percent of one CPU over the window.
    pub fn srv_util(&self) -> Option<f64> {
        let w = if self.window_s > 0.0 {
            self.window_s
        } else {
            self.runtime_s
        };
        self.srv_s.filter(|_| w > 0.0).map(|s| 100.0 * s / w)
    }
    /// Busy share of all guest vCPUs, in percent.
    pub fn guest_util(&self) -> Option<f64> {
        (self.guest_total_s > 0.0).then(|| 100.0 * self.guest_busy_s / self.guest_total_s)
    }
    fn per_req(&self, v: Option<f64>) -> Option<f64> {
        let r = self.reqs.filter(|r| *r > 0.0)?;
        v.map(|v| v / r)
    }
}

/// What the guest reported about a contender on one store.
#[derive(Clone, Debug, Default)]
pub struct Contender {
    pub store: String,
    pub name: String,
    pub ok: bool,
    pub dev: String,
    pub mode: String,
    pub note: String,
}

/// What the guest reported about a backing store.
#[derive(Clone, Debug, Default)]
pub struct Store {
    pub name: String,
    pub ok: bool,
    pub dev: String,
    pub note: String,
}

/// (store, workload index, contender).
pub type Key = (String, usize, String);

/// Every run's outcome of one boot.
pub struct Results {
    pub timing: Timing,
    pub workloads: Vec<Workload>,
    /// Stores in plan order, with what the guest said.
    pub stores: Vec<Store>,
    pub contenders: Vec<Contender>,
    pub env: BTreeMap<String, String>,
    /// Cells of the plan: store -> (workload indices, contenders).
    pub cells: Vec<(String, Vec<usize>, Vec<String>)>,
    pub samples: BTreeMap<Key, Vec<Sample>>,
    pub failures: BTreeMap<Key, Vec<String>>,
    pub csv: String,
    pub planned: usize,
    pub na: usize,
    /// Conditional repetitions not needed (the earlier ones agreed).
    pub skipped: usize,
    pub completed: bool,
}

/// Medians and intervals of one cell.
#[derive(Clone, Copy, Debug)]
pub struct CellStats {
    pub iops: Stat,
    /// MiB/s.
    pub bw: Stat,
    pub p50: Option<Stat>,
    pub p99: Option<Stat>,
    /// Server CPU seconds per GiB moved.
    pub srv: Option<Stat>,
    /// Server CPU, percent of one CPU (top).
    pub srv_util: Option<Stat>,
    /// Guest CPU seconds (all vCPUs) per GiB moved.
    pub guest: Option<Stat>,
    /// Guest busy share of all vCPUs, percent.
    pub util: Option<Stat>,
    pub cqes: Option<Stat>,
    pub sqes: Option<Stat>,
    pub enters: Option<Stat>,
    /// Context switches (voluntary + involuntary) per request.
    pub ctxsw: Option<Stat>,
    pub ctxsw_vol: Option<Stat>,
    /// Second-half / first-half IOPS of fio's log (RFC jobs).
    pub steady: Option<Stat>,
    /// IOPS of all repetitions within AGREE_PCT (icount) or TCG_SPREAD_PCT.
    pub agree: bool,
}

impl Results {
    fn floor(&self) -> f64 {
        if self.timing == Timing::Tcg {
            0.0
        } else {
            ICOUNT_FLOOR_PCT
        }
    }

    pub fn cell(&self, store: &str, wl: usize, c: &str) -> Option<CellStats> {
        let v = self.samples.get(&(store.to_string(), wl, c.to_string()))?;
        let f = self.floor();
        let st = |it: Vec<f64>| stats::stat_floor(it, f);
        let iops: Vec<f64> = v.iter().map(|s| s.iops).collect();
        Some(CellStats {
            iops: st(iops.clone())?,
            bw: st(v.iter().map(|s| s.bw / (1u64 << 20) as f64).collect())?,
            p50: st(v.iter().map(|s| s.p50_us).collect()),
            p99: st(v.iter().map(|s| s.p99_us).collect()),
            srv: st(v.iter().filter_map(Sample::srv_per_gib).collect()),
            srv_util: st(v.iter().filter_map(Sample::srv_util).collect()),
            guest: st(v.iter().filter_map(Sample::guest_per_gib).collect()),
            util: st(v.iter().filter_map(Sample::guest_util).collect()),
            cqes: st(v.iter().filter_map(|s| s.per_req(s.cqes)).collect()),
            sqes: st(v.iter().filter_map(|s| s.per_req(s.sqes)).collect()),
            enters: st(v.iter().filter_map(|s| s.per_req(s.enters)).collect()),
            ctxsw: st(v
                .iter()
                .filter_map(|s| s.per_req(s.ctxsw.map(|(a, b)| a + b)))
                .collect()),
            ctxsw_vol: st(v
                .iter()
                .filter_map(|s| s.per_req(s.ctxsw.map(|(a, _)| a)))
                .collect()),
            steady: st(v.iter().filter_map(|s| s.steady).collect()),
            agree: stats::agree(
                &iops,
                if self.timing == Timing::Tcg {
                    TCG_SPREAD_PCT
                } else {
                    AGREE_PCT
                },
            ),
        })
    }

    pub fn contender(&self, store: &str, c: &str) -> Option<&Contender> {
        self.contenders
            .iter()
            .find(|x| x.name == c && x.store == store)
    }

    pub fn store(&self, s: &str) -> Option<&Store> {
        self.stores.iter().find(|x| x.name == s)
    }

    /// The workloads and contenders of a store's cells, in table order.
    pub fn store_cells(&self, store: &str) -> (Vec<usize>, Vec<&'static str>) {
        let Some((_, w, c)) = self.cells.iter().find(|(s, _, _)| s == store) else {
            return (Vec::new(), Vec::new());
        };
        let names = CONTENDERS
            .iter()
            .copied()
            .filter(|x| c.iter().any(|y| y == x))
            .collect();
        (w.clone(), names)
    }

    /// Why a contender has no numbers on a store (n/a reason), if it has none.
    pub fn na_reason(&self, store: &str, c: &str) -> Option<String> {
        if let Some(s) = self.store(store).filter(|s| !s.ok) {
            return Some(format!("store n/a: {}", s.note));
        }
        match self.contender(store, c) {
            Some(x) if !x.ok => Some(x.note.clone()),
            None => Some("not set up (the guest stopped before this store?)".into()),
            _ => None,
        }
    }

    /// kublk's best configuration in a cell: highest median IOPS.
    pub fn kublk_best(&self, store: &str, wl: usize) -> Option<(&'static str, CellStats)> {
        KUBLK
            .iter()
            .filter_map(|k| self.cell(store, wl, k).map(|c| (*k, c)))
            .max_by(|a, b| a.1.iops.med.total_cmp(&b.1.iops.med))
    }
}

fn parse_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A counter of DEV's entry in a `ublk-user list --json` file.
fn list_counter(path: &Path, dev: &str, key: &str) -> Option<f64> {
    let j = Json::parse(&fs::read_to_string(path).ok()?).ok()?;
    j.as_array()
        .iter()
        .find(|d| d.get("bdev").and_then(Json::as_str) == Some(dev))?
        .get(key)?
        .as_f64()
}

/// Read a run directory written by bench/run-in-guest.sh.
pub fn collect(dir: &Path, timing: Timing) -> Result<Results> {
    let env = parse_kv(&fs::read_to_string(dir.join("env.txt")).unwrap_or_default());
    let hz: f64 = env
        .get("clk_tck")
        .and_then(|h| h.parse().ok())
        .unwrap_or(100.0);
    let split = |name: &str, n: usize| -> Vec<Vec<String>> {
        fs::read_to_string(dir.join(name))
            .unwrap_or_default()
            .lines()
            .map(|l| l.splitn(n, '|').map(str::to_string).collect::<Vec<_>>())
            .filter(|f| f.len() == n)
            .collect()
    };
    let contenders: Vec<Contender> = split("contenders.txt", 7)
        .into_iter()
        .map(|f| Contender {
            store: f[0].clone(),
            name: f[1].clone(),
            ok: f[2] == "ok",
            dev: f[3].clone(),
            mode: f[5].clone(),
            note: f[6].clone(),
        })
        .collect();
    let guest_stores: Vec<Store> = split("stores.txt", 4)
        .into_iter()
        .map(|f| Store {
            name: f[0].clone(),
            ok: f[1] == "ok",
            dev: f[2].clone(),
            note: f[3].clone(),
        })
        .collect();
    let plan_text = fs::read_to_string(dir.join("plan.txt"))
        .with_context(|| format!("no plan.txt in {}", dir.display()))?;
    let mut workloads: Vec<Workload> = Vec::new();
    let mut cells: Vec<(String, Vec<usize>, Vec<String>)> = Vec::new();
    let mut planned = 0;
    for l in plan_text.lines() {
        let Some((_, store, _, cont, w, _)) = parse_plan_line(l) else {
            continue;
        };
        planned += 1;
        let wi = match workloads.iter().position(|x| *x == w) {
            Some(i) => i,
            None => {
                workloads.push(w);
                workloads.len() - 1
            }
        };
        if !cells.iter().any(|(s, _, _)| *s == store) {
            cells.push((store.clone(), Vec::new(), Vec::new()));
        }
        let e = cells.iter_mut().find(|(s, _, _)| *s == store).unwrap();
        if !e.1.contains(&wi) {
            e.1.push(wi);
        }
        if !e.2.contains(&cont) {
            e.2.push(cont);
        }
    }
    // Matrix workloads by block size within a group, the RFC jobs last.
    for (_, w, _) in &mut cells {
        w.sort_by_key(|&i| {
            let x = &workloads[i];
            (x.job == "rfc", x.group(), x.bs)
        });
    }
    let stores = cells
        .iter()
        .map(|(s, _, _)| {
            guest_stores
                .iter()
                .find(|g| g.name == *s)
                .cloned()
                .unwrap_or(Store {
                    name: s.clone(),
                    ok: false,
                    dev: String::new(),
                    note: "not reached (the guest stopped before this store)".into(),
                })
        })
        .collect();
    let ids: BTreeMap<String, usize> = workloads
        .iter()
        .enumerate()
        .map(|(i, w)| (w.id(), i))
        .collect();
    let runs = fs::read_to_string(dir.join("runs.csv"))
        .with_context(|| format!("no runs.csv in {}: did the guest run?", dir.display()))?;
    let mut samples: BTreeMap<Key, Vec<Sample>> = BTreeMap::new();
    let mut failures: BTreeMap<Key, Vec<String>> = BTreeMap::new();
    let (mut na, mut skipped) = (0, 0);
    let mut csv = String::from(
        "timing,idx,store,rep,contender,workload,status,iops,bw_mib_s,p50_us,p99_us,bytes,runtime_s,window_s,\
         server_cpu_s,guest_busy_s,guest_total_s,requests,dev_bytes,ctxsw_vol,ctxsw_invol,server_cqes,server_sqes,server_enters,\
         server_cpu_s_per_gib,server_cpu_pct_one_cpu,guest_cpu_s_per_gib\n",
    );
    let t = timing.name();
    for line in runs.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 6 {
            continue;
        }
        let (idx, store, rep, cont, wl, rc) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        let Some(&wi) = ids.get(wl) else { continue };
        let key = (store.to_string(), wi, cont.to_string());
        let blank = ",".repeat(20);
        if rc == "na" || rc == "skip" {
            if rc == "na" {
                na += 1;
            } else {
                skipped += 1;
            }
            let st = if rc == "na" { "n/a" } else { "skipped" };
            csv.push_str(&format!(
                "{t},{idx},{store},{rep},{cont},{wl},{st}{blank}\n"
            ));
            continue;
        }
        let num = |i: usize| f.get(i).and_then(|x| x.trim().parse::<f64>().ok());
        let sample = (|| -> Result<Sample> {
            if rc != "0" {
                bail!("fio exit status {rc}");
            }
            let text =
                fs::read_to_string(dir.join(format!("fio/{idx}.json"))).context("no fio JSON")?;
            let mut s = parse_fio(&text)?;
            let (Some(pb), Some(pt), Some(qb), Some(qt)) = (num(6), num(7), num(10), num(11))
            else {
                bail!("no CPU samples");
            };
            s.guest_busy_s = (qb - pb) / hz;
            s.guest_total_s = (qt - pt) / hz;
            if let (Some(a), Some(b)) = (num(9), num(13)) {
                s.window_s = b - a;
            }
            if is_server(cont) {
                if let (Some(a), Some(b)) = (num(8), num(12)) {
                    s.srv_s = Some((b - a) / hz);
                }
            }
            let d = |a: usize, b: usize| Some(num(b)? - num(a)?);
            let reqs = d(14, 19).zip(d(15, 20)).map(|(r, w)| r + w);
            s.reqs = reqs.filter(|r| *r > 0.0);
            s.dev_bytes = d(16, 21).map(|x| x * 512.0).filter(|b| *b > 0.0);
            if is_server(cont) {
                s.ctxsw = d(17, 22).zip(d(18, 23));
            }
            s.steady = fs::read_to_string(dir.join(format!("fio/{idx}-iops.log")))
                .ok()
                .and_then(|t| steady_ratio(&t));
            if OURS.contains(&cont) {
                let dev = contenders
                    .iter()
                    .find(|c| c.store == store && c.name == cont)
                    .map(|c| c.dev.clone())
                    .unwrap_or_default();
                let pre = dir.join(format!("list/{idx}-pre.json"));
                let post = dir.join(format!("list/{idx}-post.json"));
                let delta =
                    |k: &str| Some(list_counter(&post, &dev, k)? - list_counter(&pre, &dev, k)?);
                s.cqes = delta("server_cqes");
                s.sqes = delta("server_sqes");
                s.enters = delta("server_enters");
            }
            Ok(s)
        })();
        match sample {
            Ok(s) => {
                let o =
                    |v: Option<f64>, p: usize| v.map(|v| format!("{v:.p$}")).unwrap_or_default();
                csv.push_str(&format!(
                    "{t},{idx},{store},{rep},{cont},{wl},ok,{:.1},{:.2},{:.1},{:.1},{},{:.3},{:.3},{},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{}\n",
                    s.iops,
                    s.bw / (1 << 20) as f64,
                    s.p50_us,
                    s.p99_us,
                    s.bytes,
                    s.runtime_s,
                    s.window_s,
                    o(s.srv_s, 2),
                    s.guest_busy_s,
                    s.guest_total_s,
                    o(s.reqs, 0),
                    o(s.dev_bytes, 0),
                    o(s.ctxsw.map(|c| c.0), 0),
                    o(s.ctxsw.map(|c| c.1), 0),
                    o(s.cqes, 0),
                    o(s.sqes, 0),
                    o(s.enters, 0),
                    o(s.srv_per_gib(), 3),
                    o(s.srv_util(), 1),
                    o(s.guest_per_gib(), 3),
                ));
                samples.entry(key).or_default().push(s);
            }
            Err(e) => {
                csv.push_str(&format!(
                    "{t},{idx},{store},{rep},{cont},{wl},failed{blank}\n"
                ));
                failures.entry(key).or_default().push(format!("{e:#}"));
            }
        }
    }
    Ok(Results {
        timing,
        workloads,
        stores,
        contenders,
        env,
        cells,
        samples,
        failures,
        csv,
        planned,
        na,
        skipped,
        completed: dir.join("done").exists(),
    })
}

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

/// kublk, as `cargo xtask test` stages it, or why it is n/a.
fn kublk_binary(vm_opts: &VmOpts, no_build: bool) -> std::result::Result<PathBuf, String> {
    let p = root().join("target/selftests/ublk/kublk");
    if p.is_file() {
        return Ok(p);
    }
    if !no_build && std::env::var_os("UBLK_EBPF_KERNEL_IMAGE").is_none() {
        match crate::kernel::ensure(vm_opts.flavor).and_then(|k| crate::selftests::build(&k)) {
            Ok(d) if d.join("kublk").is_file() => return Ok(d.join("kublk")),
            Ok(_) => {}
            Err(e) => return Err(format!("building kublk failed: {e:#}")),
        }
    }
    Err(format!(
        "{} is not built: `cargo xtask test` builds it (its selftests step), or run bench without --no-build and without UBLK_EBPF_KERNEL_IMAGE",
        p.strip_prefix(root()).unwrap_or(&p).display()
    ))
}

/// Extra QEMU arguments of a boot: icount, the CPU model, the virtio disk.
fn qemu_extra(timing: Timing, no_erms: bool, virtio_img: Option<&Path>) -> String {
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

fn run_boot(
    o: &BenchOpts,
    vm_opts: &VmOpts,
    b: &Boot,
    dir: &Path,
    kublk: &std::result::Result<PathBuf, String>,
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
    let opts = VmOpts {
        accel: vm::Accel::Tcg,
        timeout: vm_opts
            .timeout
            .max(Duration::from_secs_f64(est * 2.5 + 600.0)),
        ..vm_opts.clone()
    };
    let (kpath, kwhy) = match kublk {
        Ok(p) => (p.to_string_lossy().into_owned(), String::new()),
        Err(w) => (String::new(), w.clone()),
    };
    let script = format!(
        "export BENCH_RUNTIME={} BENCH_RAMP={}ms BENCH_SIZE_MB={} BENCH_AGREE_PCT={AGREE_PCT} BENCH_TIMING={} BENCH_KUBLK={} BENCH_KUBLK_WHY={}\nexec sh {} {}\n",
        b.runtime,
        b.ramp_ms,
        o.size_mb,
        b.timing.name(),
        shell_quote(&kpath),
        shell_quote(&kwhy),
        shell_quote(&root().join("bench/run-in-guest.sh").to_string_lossy()),
        shell_quote(&dir.to_string_lossy())
    );
    say(format!(
        "bench: booting ({}; QEMU extra: {extra}); raw output in {}",
        b.timing.name(),
        dir.display()
    ));
    let saved = std::env::var_os("XTASK_QEMU_EXTRA");
    std::env::set_var("XTASK_QEMU_EXTRA", &extra);
    let r = vm::run_script(&opts, &script);
    match saved {
        Some(v) => std::env::set_var("XTASK_QEMU_EXTRA", v),
        None => std::env::remove_var("XTASK_QEMU_EXTRA"),
    }
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
    let mut command = String::from("cargo xtask bench");
    if o.quick {
        command.push_str(" --quick");
    }
    command.push_str(&format!(" --timing {}", o.timing().name()));
    if o.no_erms {
        command.push_str(" --no-erms");
    }
    if let Some(f) = &o.filter {
        command.push_str(&format!(" --filter {}", shell_quote(f)));
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
    let mut trimmed = Vec::new();
    if o.quick {
        trimmed.push("--quick: tmpfs only, 4k randread qd32 and the RFC v2 job".to_string());
    }
    if let Some(f) = &o.filter {
        trimmed.push(format!("--filter {f}"));
    }
    let text = format!(
        "timing={}\nhost_cpu={}\nhost_cores={}\nload_start={load_start}\nload_end={}\ncommit={}\ncommand={command}\nqemu_extra={}\ntrimmed={}\nsuffix={}\nforce={}\nestimate_s={:.0}\nvm_error={}\n",
        b.timing.name(),
        host_cpu(),
        std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        loadavg(),
        git_commit(),
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
fn boot_dirs(raw: &Path) -> Vec<(Timing, PathBuf)> {
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

fn info_of(dir: &Path, res: &Results, raw: &Path) -> RunInfo {
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
fn render(raw: &Path, out: Option<&Path>, force: bool) -> Result<i32> {
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
    let base = format!("{date}-{kernel}-{timing}{suffix}");
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

pub fn bench(o: &BenchOpts, vm_opts: &VmOpts, no_build: bool) -> Result<i32> {
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
    if !no_build {
        crate::build::build()?;
    }
    let kublk = kublk_binary(vm_opts, no_build);
    if let Err(w) = &kublk {
        say(format!("bench: kublk contenders n/a: {w}"));
    }
    let raw = root()
        .join("target/bench-out")
        .join(format!("{}{}", stamp(), suffix(o)));
    let mut status = 0;
    for b in &boots {
        let (s, _) = run_boot(o, vm_opts, b, &raw.join(b.timing.name()), &kublk)?;
        status |= s;
    }
    status |= render(&raw, o.out.as_deref(), o.force)?;
    Ok(status)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every committed run (`bench/results/*.raw.tar.xz`, the raw run
    /// directory as `cargo xtask bench` left it) renders byte for byte into
    /// the report, CSV and plots committed beside it.
    #[test]
    fn committed_raw_runs_regenerate_their_reports() {
        let results = crate::util::root().join("bench/results");
        let mut raws: Vec<PathBuf> = fs::read_dir(&results)
            .unwrap()
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.to_string_lossy().ends_with(".raw.tar.xz"))
            .collect();
        raws.sort();
        assert!(
            !raws.is_empty(),
            "no bench/results/*.raw.tar.xz: every published run commits its raw data"
        );
        for (i, raw) in raws.iter().enumerate() {
            let tmp = std::env::temp_dir().join(format!("xtask-regen-{}-{i}", std::process::id()));
            let _ = fs::remove_dir_all(&tmp);
            fs::create_dir_all(tmp.join("out")).unwrap();
            let st = std::process::Command::new("tar")
                .arg("-C")
                .arg(&tmp)
                .arg("-xJf")
                .arg(raw)
                .status()
                .unwrap();
            assert!(st.success(), "tar -xJf {}", raw.display());
            let dir = fs::read_dir(&tmp)
                .unwrap()
                .filter_map(|e| e.ok().map(|e| e.path()))
                .find(|p| p.file_name().is_some_and(|n| n != "out"))
                .expect("the tarball holds one run directory");
            render(&dir, Some(&tmp.join("out")), false).unwrap();
            let mut n = 0;
            for e in fs::read_dir(tmp.join("out")).unwrap() {
                let p = e.unwrap().path();
                let name = p.file_name().unwrap();
                if name.to_string_lossy().ends_with(".raw.tar.xz") {
                    continue; // rendering saves the raw run too
                }
                let committed = fs::read(results.join(name))
                    .unwrap_or_else(|e| panic!("{} is not committed: {e}", name.to_string_lossy()));
                assert!(
                    fs::read(&p).unwrap() == committed,
                    "{} does not regenerate from {}",
                    name.to_string_lossy(),
                    raw.display()
                );
                n += 1;
            }
            assert!(n >= 2, "{}: the report and the CSV at least", raw.display());
            fs::remove_dir_all(&tmp).unwrap();
        }
    }

    fn sp(store: &'static str, w: Vec<Workload>, c: &[&'static str]) -> StorePlan {
        StorePlan {
            store,
            workloads: w,
            contenders: c.to_vec(),
        }
    }

    #[test]
    fn full_matrix_fits_an_hour_and_a_half() {
        let m = full_matrix();
        assert_eq!(m.iter().map(|s| s.store).collect::<Vec<_>>(), STORES);
        for s in &m[..2] {
            assert_eq!(
                s.contenders,
                single_contenders(),
                "{}: every contender",
                s.store
            );
            let ids: Vec<String> = s.workloads.iter().map(Workload::id).collect();
            assert!(ids.contains(&"rfc-randwrite-512k-qd16".to_string()));
            assert!(ids.contains(&"rfc-randwrite-2m-qd16".to_string()));
        }
        let runs = plan(&m, 2, true);
        let fixed = runs.iter().filter(|r| !r.conditional).count();
        assert_eq!(fixed, 2 * (6 * 9 + 6 * 9 + 2 * 5 + 2 * 2 * 7 + 3 * 6 + 4));
        assert_eq!(runs.len(), fixed * 3 / 2);
        let est = estimate_secs(&runs, Timing::Icount, 1.0, 0.5);
        assert!(
            (60.0 * 60.0..90.0 * 60.0).contains(&est),
            "{} min",
            est / 60.0
        );
        // Plain TCG: 6 reps, no conditional runs.
        let runs = plan(&m, 6, false);
        assert!(runs.iter().all(|r| !r.conditional));
    }

    #[test]
    fn plan_rotates_contenders() {
        let w = vec![
            Workload::matrix("randread", 4096, 32),
            Workload::rfc(2 << 20),
        ];
        let c = ["loop", "copy", "zc"];
        let p = plan(&[sp("tmpfs", w.clone(), &c)], 3, false);
        assert_eq!(p.len(), w.len() * 3 * 3);
        assert_eq!(p[0].idx, 1);
        // Each (cell, rep) runs every contender once ...
        for chunk in p.chunks(3) {
            let mut names: Vec<&str> = chunk.iter().map(|r| r.contender).collect();
            names.sort();
            assert_eq!(names, ["copy", "loop", "zc"]);
            assert!(chunk
                .iter()
                .all(|r| r.wl == chunk[0].wl && r.rep == chunk[0].rep));
        }
        // ... and each contender goes first once per cell over 3 reps.
        for wl in &w {
            let firsts: Vec<&str> = p
                .iter()
                .filter(|r| r.wl == *wl)
                .collect::<Vec<_>>()
                .chunks(3)
                .map(|ch| ch[0].contender)
                .collect();
            let mut sorted = firsts.clone();
            sorted.sort();
            assert_eq!(sorted, ["copy", "loop", "zc"], "{}: {firsts:?}", wl.id());
        }
        assert!(
            plan_text(&p).starts_with("1 tmpfs 1 loop matrix randread 4k 32 randread-4k-qd32 -\n")
        );
    }

    #[test]
    fn plan_stores_outermost_and_conditional_last() {
        let w = vec![Workload::matrix("randread", 4096, 32)];
        let m = [
            sp("tmpfs", w.clone(), &["loop", "copy"]),
            sp("nullb", w, &["loop"]),
        ];
        let p = plan(&m, 2, true);
        let stores: Vec<&str> = p.iter().map(|r| r.store).collect();
        assert_eq!(
            stores,
            ["tmpfs"; 6]
                .iter()
                .chain(&["nullb"; 3])
                .copied()
                .collect::<Vec<_>>()
        );
        let t: Vec<(u32, bool)> = p.iter().take(6).map(|r| (r.rep, r.conditional)).collect();
        assert_eq!(
            t,
            [
                (1, false),
                (1, false),
                (2, false),
                (2, false),
                (3, true),
                (3, true)
            ]
        );
        // The plan text round-trips, conditional lines marked.
        let text = plan_text(&p);
        let back: Vec<_> = text.lines().map(|l| parse_plan_line(l).unwrap()).collect();
        assert_eq!(back.len(), p.len());
        for (b, r) in back.iter().zip(&p) {
            assert_eq!(
                (b.0, b.1.as_str(), b.2, b.3.as_str(), &b.4, b.5),
                (r.idx, r.store, r.rep, r.contender, &r.wl, r.conditional)
            );
        }
        // A v1 plan line reads as tmpfs.
        let v1 = parse_plan_line("1 1 loop matrix randread 4k 32 randread-4k-qd32").unwrap();
        assert_eq!(
            (v1.1.as_str(), v1.3.as_str(), v1.4.id()),
            ("tmpfs", "loop", "randread-4k-qd32".into())
        );
    }

    #[test]
    fn filter_terms() {
        let f = Filter::parse("zc,bpf,randread,4k,1M,qd32,nullb").unwrap();
        assert!(f.contender("zc") && !f.contender("copy"));
        assert!(f.store("nullb") && !f.store("tmpfs"));
        assert!(f.workload(&Workload::matrix("randread", 4096, 32)));
        assert!(f.workload(&Workload::matrix("randread", 1 << 20, 32)));
        assert!(!f.workload(&Workload::matrix("randread", 64 << 10, 32)));
        assert!(!f.workload(&Workload::matrix("randread", 4096, 1)));
        assert!(!f.workload(&Workload::rfc(2 << 20)));
        let r = Filter::parse("rfc,kublk-batch").unwrap();
        assert!(r.workload(&Workload::rfc(512 << 10)));
        assert!(!r.workload(&Workload::matrix("randwrite", 2 << 20, 16)));
        let m = r.apply(full_matrix());
        assert_eq!(m.len(), 3);
        assert!(m.iter().all(|s| s.contenders == ["kublk-batch"]));
        assert_eq!(Filter::parse("").unwrap(), Filter::default());
        assert!(Filter::parse("bogus").is_err());
        assert!(Filter::parse("virtio,zc")
            .unwrap()
            .apply(full_matrix())
            .is_empty());
    }

    #[test]
    fn steady_state_from_the_iops_log() {
        let flat = "100, 1000, 1, 2097152, 0\n200, 1010, 1, 2097152, 0\n300, 990, 1, 2097152, 0\n400, 1000, 1, 2097152, 0\n";
        assert!((steady_ratio(flat).unwrap() - 995.0 / 1005.0).abs() < 1e-9);
        let rising = "100, 500, 1\n200, 500, 1\n300, 1000, 1\n400, 1000, 1\n500, 1000, 1\n";
        assert_eq!(steady_ratio(rising), Some(2.0));
        assert_eq!(steady_ratio("100, 5, 1\n"), None);
        assert_eq!(steady_ratio(""), None);
    }

    #[test]
    fn block_size_names() {
        assert_eq!(bs_name(4096), "4k");
        assert_eq!(bs_name(2 << 20), "2m");
        assert_eq!(bs_name(512), "512");
        assert_eq!(parse_bs("256K"), Some(256 << 10));
        assert_eq!(parse_bs("x"), None);
        assert_eq!(Workload::rfc(512 << 10).id(), "rfc-randwrite-512k-qd16");
    }

    #[test]
    fn qemu_extra_args() {
        let e = qemu_extra(Timing::Icount, true, Some(Path::new("/x/v.img")));
        assert!(e.contains("-icount shift=0,sleep=off"), "{e}");
        assert!(e.contains("-cpu max,-erms,-fsrm"), "{e}");
        assert!(
            e.contains("file=/x/v.img")
                && e.contains("iothread=benchio")
                && e.contains("serial=ublkbench"),
            "{e}"
        );
        let t = qemu_extra(Timing::Tcg, false, None);
        assert!(!t.contains("-icount") && !t.contains("-cpu"), "{t}");
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
            window_s: 2.5,
            reqs: Some(1000.0),
            cqes: Some(2000.0),
            ..s
        };
        assert_eq!(s.srv_per_gib(), Some(0.5));
        assert_eq!(s.guest_per_gib(), Some(1.5));
        assert_eq!(s.guest_util(), Some(75.0));
        assert_eq!(s.srv_util(), Some(40.0));
        assert_eq!(s.per_req(s.cqes), Some(2.0));
        // The device's byte count, when known, is what the CPU window saw.
        let s = Sample {
            dev_bytes: Some(GIB * 4.0),
            ..s
        };
        assert_eq!(s.srv_per_gib(), Some(0.25));
    }

    fn write_synthetic(raw: &Path) {
        let d = raw.join("icount");
        fs::create_dir_all(d.join("fio")).unwrap();
        fs::create_dir_all(d.join("list")).unwrap();
        let w = vec![
            Workload::matrix("randread", 4 << 10, 32),
            Workload::rfc(2 << 20),
        ];
        let m = [
            sp("tmpfs", w.clone(), &["loop", "copy", "kublk-zc"]),
            sp("nullb", w, &["loop", "copy"]),
        ];
        let p = plan(&m, 2, true);
        fs::write(d.join("plan.txt"), plan_text(&p)).unwrap();
        let mut runs = String::from("idx,store,rep,contender,workload,rc,pre_busy,pre_total,pre_srv,pre_up,post_busy,post_total,post_srv,post_up,c0_rd,c0_wr,c0_sect,c0_vol,c0_invol,c1_rd,c1_wr,c1_sect,c1_vol,c1_invol\n");
        for r in &p {
            let wl = r.wl.id();
            if r.store == "nullb" {
                runs.push_str(&format!(
                    "{},{},{},{},{wl},na\n",
                    r.idx, r.store, r.rep, r.contender
                ));
                continue;
            }
            if r.conditional {
                runs.push_str(&format!(
                    "{},{},{},{},{wl},skip\n",
                    r.idx, r.store, r.rep, r.contender
                ));
                continue;
            }
            // copy 100k IOPS, loop 150k, kublk-zc 101k (~ copy); rep 2 +0.3 %.
            let base = match r.contender {
                "loop" => 150_000.0,
                "copy" => 100_000.0,
                _ => 101_000.0,
            } * if r.rep == 2 { 1.003 } else { 1.0 };
            let bs = r.wl.bs as f64;
            let fio = format!(
                r#"{{"jobs":[{{"error":0,"{}":{{"io_bytes":{},"bw_bytes":{},"iops":{base},"runtime":1000,"total_ios":{},"clat_ns":{{"percentile":{{"50.000000":7000,"99.000000":21000}}}}}}}}]}}"#,
                if r.wl.rw == "randread" {
                    "read"
                } else {
                    "write"
                },
                base * bs,
                base * bs,
                base
            );
            fs::write(d.join(format!("fio/{}.json", r.idx)), fio).unwrap();
            let srv = if r.contender == "loop" { 0 } else { 60 };
            let n = base * 1.5;
            runs.push_str(&format!(
                "{},{},{},{},{wl},0,100,200,10,5.0,250,500,{},6.5,0,0,0,0,0,{n},0,{},{},{}\n",
                r.idx,
                r.store,
                r.rep,
                r.contender,
                10 + srv,
                n * bs / 512.0,
                if r.contender == "loop" { 0.0 } else { n * 0.5 },
                if r.contender == "loop" { 0 } else { 7 }
            ));
            if r.contender == "copy" {
                let dev = "/dev/ublkb0";
                fs::write(
                    d.join(format!("list/{}-pre.json", r.idx)),
                    format!(
                        r#"[{{"bdev":"{dev}","server_cqes":0,"server_sqes":0,"server_enters":0}}]"#
                    ),
                )
                .unwrap();
                fs::write(
                    d.join(format!("list/{}-post.json", r.idx)),
                    format!(r#"[{{"bdev":"{dev}","server_cqes":{},"server_sqes":{},"server_enters":{}}}]"#, n * 2.0, n * 2.0, n * 0.1),
                )
                .unwrap();
            }
        }
        fs::write(d.join("runs.csv"), runs).unwrap();
        fs::write(
            d.join("env.txt"),
            "kernel=7.2.12+\naccel=tcg\ntiming=icount\nvcpus=2\nstart=2026-12-02T10:00:00Z\nend=2026-12-02T11:00:00Z\nclk_tck=100\nfio_cpu=1\nsrv_cpu=0\n",
        )
        .unwrap();
        fs::write(
            d.join("stores.txt"),
            "tmpfs|ok|/tmp/bench.img|tmpfs file\nnullb|na||no null_blk in this kernel\n",
        )
        .unwrap();
        fs::write(
            d.join("contenders.txt"),
            "tmpfs|loop|ok|/dev/loop0||dio|x\ntmpfs|copy|ok|/dev/ublkb0|55|copy|x\ntmpfs|kublk-zc|ok|/dev/ublkb1|56|0x40|x\n",
        )
        .unwrap();
        fs::write(
            d.join("host.txt"),
            "timing=icount\ncommit=abc\ncommand=cargo xtask bench\nload_start=3.1 3.0 2.9\nload_end=0.5 1 1\nqemu_extra=-icount shift=0,sleep=off\nsuffix=\n",
        )
        .unwrap();
        fs::write(d.join("done"), "").unwrap();
    }

    /// `--from` renders a synthetic run directory into `--out` without
    /// building or booting anything.
    #[test]
    fn from_renders_a_synthetic_run_offline() {
        let t = crate::util::TempDir::new("bench-from");
        let raw = t.path().join("raw");
        let out = t.path().join("out");
        write_synthetic(&raw);
        let o = BenchOpts {
            quick: false,
            filter: None,
            timing: Timing::Icount,
            icount: false,
            tcg: false,
            no_erms: false,
            reps: None,
            runtime: None,
            ramp_ms: None,
            size_mb: 512,
            force: false,
            plan: false,
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
        let md = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount.md")).unwrap();
        // Per-store sections; the n/a store says why.
        assert!(md.contains("## Backing store: tmpfs"), "{md}");
        assert!(md.contains("no null_blk in this kernel"), "{md}");
        // loop vs copy is outside the noise; copy vs kublk-zc (1 %) is `~`.
        assert!(md.contains("0.67× [0.65–0.68]"), "{md}");
        assert!(md.contains(" ~ "), "{md}");
        // Counted per request: copy 2 CQEs / request (n = 1.5 x iops, cqes 2n).
        assert!(md.contains("2.00"), "{md}");
        // icount's limits and what was left out are stated.
        assert!(md.contains("rep movs"), "{md}");
        assert!(md.contains("left out"), "{md}");
        assert!(md.contains("vCPU 1") && md.contains("vCPU 0"), "{md}");
        let csv = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount.csv")).unwrap();
        assert!(csv.contains("icount,1,tmpfs,1,"), "{csv}");
        assert!(csv.contains(",skipped"), "{csv}");
        assert!(csv.contains(",n/a"), "{csv}");
        assert!(out.join("2026-12-02-7.2.12+-icount-tmpfs-bw.svg").is_file());
    }

    #[test]
    fn busy_host_refuses_the_tcg_headline() {
        let t = crate::util::TempDir::new("bench-busy");
        let raw = t.path().join("raw");
        write_synthetic(&raw);
        // Relabel the synthetic boot as plain TCG.
        fs::rename(raw.join("icount"), raw.join("tcg")).unwrap();
        let res = collect(&raw.join("tcg"), Timing::Tcg).unwrap();
        let mut info = info_of(&raw.join("tcg"), &res, &raw);
        assert!(info.busy());
        let md = report::markdown(&[(res, info.clone())], &[], "x.csv");
        assert!(md.contains("No headline"), "{md}");
        info.force = true;
        let res = collect(&raw.join("tcg"), Timing::Tcg).unwrap();
        let md = report::markdown(&[(res, info)], &[], "x.csv");
        assert!(md.contains("--force"), "{md}");
        assert!(!md.contains("No headline"), "{md}");
    }

    /// `--timing both`: the plain-TCG boot renders as a secondary section
    /// after the icount tables, with its own headline gate.
    #[test]
    fn both_timings_render_tcg_as_secondary() {
        let t = crate::util::TempDir::new("bench-both");
        let raw = t.path().join("raw");
        let out = t.path().join("out");
        write_synthetic(&raw);
        let tmp = t.path().join("tcg-src");
        write_synthetic(&tmp);
        fs::rename(tmp.join("icount"), raw.join("tcg")).unwrap();
        let dirs = boot_dirs(&raw);
        assert_eq!(
            dirs.iter().map(|d| d.0).collect::<Vec<_>>(),
            [Timing::Icount, Timing::Tcg]
        );
        assert_eq!(render(&raw, Some(&out), false).unwrap(), 0);
        let md = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount+tcg.md")).unwrap();
        let i = md
            .find("# Secondary: plain TCG")
            .expect("secondary section");
        assert!(md[..i].contains("## Backing store: tmpfs"));
        assert!(md[i..].contains("## Backing store: tmpfs"));
        // The synthetic host was busy at the start: no TCG headline.
        assert!(md[i..].contains("No headline"), "{}", &md[i..]);
        assert!(!md[..i].contains("No headline"));
        let csv = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount+tcg.csv")).unwrap();
        assert!(
            csv.contains("\nicount,1,") && csv.contains("\ntcg,1,"),
            "{csv}"
        );
        assert_eq!(csv.matches("timing,idx").count(), 1);
    }

    /// ublk-user stand-in for the host-side run of the guest script: `add`
    /// makes a file "device" and a sleeping "server", `list --json` reports
    /// them with counters that grow by 2 CQEs/SQEs per call, `del --all`
    /// ends the sleepers (only the ones it started).
    const STUB_UBLK_USER: &str = r#"#!/bin/sh
D=$STUB_DIR
case $1 in
add)
  mode=copy
  while [ $# -gt 0 ]; do [ "$1" = --mode ] && mode=$2; shift; done
  n=$(cat "$D/devs" 2>/dev/null | wc -l)
  f=$D/stubdev$n
  truncate -s 64M "$f"
  sleep 600 > /dev/null 2>&1 &
  echo "$f $! $mode" >> "$D/devs"
  echo "$f" ;;
list)
  c=$(( $(cat "$D/calls" 2>/dev/null || echo 0) + 1000 ))
  echo $c > "$D/calls"
  printf '['
  sep=
  while read -r f pid mode; do
    printf '%s{"bdev":"%s","pid":%s,"mode":"%s","server_served":0,"server_cqes":%s,"server_sqes":%s,"server_enters":%s}' "$sep" "$f" "$pid" "$mode" $((2 * c)) $((2 * c)) $((c / 10))
    sep=,
  done < "$D/devs"
  echo ']' ;;
del)
  while read -r f pid mode; do kill "$pid" 2>/dev/null; done < "$D/devs" 2>/dev/null
  : > "$D/devs" ;;
esac
exit 0
"#;

    const STUB_LOSETUP: &str = r#"#!/bin/sh
case $1 in -d) exit 0 ;; esac
f=$STUB_DIR/stubloop
truncate -s 64M "$f"
echo "$f"
"#;

    /// kublk stand-in whose device never appears (the n/a path).
    const STUB_KUBLK: &str = "#!/bin/sh\ncase $1 in add) echo 'dev id 97' ;; list) echo 'dev id 97: nr_hw_queues 1 queue_depth 128 block size 512 dev_capacity 0' ;; esac\nexit 0\n";

    /// The guest script, run on the host against stub tools and real fio
    /// on files: plan driving, stores, n/a contenders, counters and the
    /// conditional repetition end up in a directory `collect` can read.
    #[test]
    fn guest_script_runs_a_plan_with_stub_tools() {
        if crate::util::which_in("fio", std::env::var_os("PATH").as_deref()).is_none() {
            eprintln!("skipped: no fio on this host");
            return;
        }
        use std::os::unix::fs::PermissionsExt;
        let t = crate::util::TempDir::new("bench-guest");
        let (bin, stub, out) = (
            t.path().join("bin"),
            t.path().join("stub"),
            t.path().join("out"),
        );
        fs::create_dir_all(&bin).unwrap();
        fs::create_dir_all(&stub).unwrap();
        fs::create_dir_all(&out).unwrap();
        for (name, text) in [
            ("ublk-user", STUB_UBLK_USER),
            ("losetup", STUB_LOSETUP),
            ("kublk", STUB_KUBLK),
        ] {
            let p = bin.join(name);
            fs::write(&p, text).unwrap();
            fs::set_permissions(&p, fs::Permissions::from_mode(0o755)).unwrap();
        }
        let w = vec![
            Workload::matrix("randread", 4 << 10, 32),
            Workload::rfc(512 << 10),
        ];
        let m = [
            sp("tmpfs", w.clone(), &["loop", "copy", "kublk-zc", "raw"]),
            sp("virtio", w[..1].to_vec(), &["copy"]),
        ];
        let p = plan(&m, 2, true);
        fs::write(out.join("plan.txt"), plan_text(&p)).unwrap();
        let path = format!(
            "{}:{}",
            bin.display(),
            std::env::var("PATH").unwrap_or_default()
        );
        let status = std::process::Command::new("sh")
            .arg(root().join("bench/run-in-guest.sh"))
            .arg(&out)
            .env("PATH", path)
            .env("STUB_DIR", &stub)
            .env("BENCH_DRY", "1")
            .env("BENCH_RUNTIME", "200ms")
            .env("BENCH_RAMP", "50ms")
            .env("BENCH_SIZE_MB", "8")
            .env("BENCH_IMG", t.path().join("bench.img"))
            .env("BENCH_WORKDIR", t.path().join("w"))
            .env("BENCH_LOSETUP", bin.join("losetup"))
            .env("BENCH_KUBLK", bin.join("kublk"))
            .stdout(std::process::Stdio::null())
            .status()
            .unwrap();
        // End any stub server left behind (ours only).
        if let Ok(devs) = fs::read_to_string(stub.join("devs")) {
            for pid in devs.lines().filter_map(|l| l.split_whitespace().nth(1)) {
                let _ = std::process::Command::new("kill").arg(pid).status();
            }
        }
        assert!(status.success(), "{status}");
        assert!(out.join("done").is_file());
        let res = collect(&out, Timing::Icount).unwrap();
        assert!(res.failures.is_empty(), "{:?}", res.failures);
        // tmpfs: loop, copy and raw measured twice in every cell.
        for c in ["loop", "copy", "raw"] {
            for wi in 0..2 {
                let n = res
                    .samples
                    .get(&("tmpfs".into(), wi, c.into()))
                    .map(Vec::len);
                assert!(matches!(n, Some(2) | Some(3)), "{c} {wi}: {n:?}");
            }
        }
        // copy's counters: the stub adds 2 CQEs per list call around each run.
        // (Per request needs /sys/block/<dev>/stat, which a file has not.)
        let key = ("tmpfs".to_string(), 0, "copy".to_string());
        let s0 = &res.samples[&key][0];
        assert!(
            s0.cqes.is_some_and(|c| c > 0.0) && s0.sqes.is_some() && s0.enters.is_some(),
            "{s0:?}"
        );
        assert!(
            s0.ctxsw.is_some() && s0.srv_s.is_some() && s0.window_s > 0.0,
            "{s0:?}"
        );
        assert!(
            res.samples[&("tmpfs".to_string(), 0, "loop".to_string())][0]
                .ctxsw
                .is_none()
        );
        // kublk-zc: its device never appeared, n/a with the reason.
        let why = res.na_reason("tmpfs", "kublk-zc").unwrap();
        assert!(why.contains("no device"), "{why}");
        // virtio: no disk with the bench's serial on this host.
        assert!(res
            .na_reason("virtio", "copy")
            .unwrap()
            .contains("ublkbench"));
        // Conditional repetitions: run or skipped, never failed or missing.
        let runs = fs::read_to_string(out.join("runs.csv")).unwrap();
        let third: Vec<&str> = runs
            .lines()
            .filter(|l| l.split(',').nth(2) == Some("3"))
            .collect();
        assert_eq!(third.len(), 4 * 2 + 1, "{runs}");
        assert!(
            third.iter().all(|l| {
                let rc = l.split(',').nth(5).unwrap();
                rc == "0" || rc == "skip" || rc == "na"
            }),
            "{runs}"
        );
        // The RFC job left its IOPS log (empty: 200 ms runs log no 100 ms sample).
        let rfc = p
            .iter()
            .find(|r| r.wl.job == "rfc" && r.contender == "loop")
            .unwrap();
        assert!(out.join(format!("fio/{}-iops.log", rfc.idx)).is_file());
        let md = report::markdown(
            &[(
                res,
                RunInfo {
                    host_cpu: String::new(),
                    host_cores: 2,
                    load_start: "0.1".into(),
                    load_end: "0.1".into(),
                    commit: String::new(),
                    command: String::new(),
                    qemu_extra: String::new(),
                    raw_dir: out.clone(),
                    trimmed: String::new(),
                    force: false,
                },
            )],
            &[],
            "x.csv",
        );
        assert!(
            md.contains("## Backing store: tmpfs") && md.contains("kublk-zc"),
            "{md}"
        );
    }

    #[test]
    fn dates() {
        assert_eq!(civil_from_days(0), (1970, 1, 1));
        assert_eq!(civil_from_days(20_416), (2025, 11, 24));
        assert_eq!(civil_from_days(11_016), (2000, 2, 29));
    }
}
