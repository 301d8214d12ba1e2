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

mod attrib;
mod collect;
mod plan;
mod report;
mod report3;
mod run;
pub mod stats;
pub mod summary;
mod svg;
#[cfg(test)]
mod tests;

pub use collect::*;
pub use plan::*;
pub use run::{bench, RunInfo};
pub use stats::Stat;

use std::path::{Path, PathBuf};
use std::time::Duration;

/// What the benchmark needs from the harness that builds the binaries and
/// boots the VM (`cargo xtask`): the bench itself only plans, drives the
/// guest script and reports.
pub trait Harness {
    /// Build ublk-user and what else the guest runs.
    fn build(&self) -> anyhow::Result<()>;
    /// kublk (the driver's selftest server) for the guest, or why it is n/a.
    fn kublk(&self) -> Result<PathBuf, String>;
    /// A `perf` the guest can run (for the profile runs), or why there is
    /// none.
    fn perf(&self) -> Result<PathBuf, String>;
    /// Boot the VM and run the guest script in it.
    fn run_guest(&self, g: &GuestRun) -> anyhow::Result<GuestExit>;
    /// The option that chose a kernel other than the patched one (e.g.
    /// `--vanilla`), recorded in the run's command; none by default.
    fn kernel_flag(&self) -> Option<&'static str> {
        None
    }
}

/// One boot: `sh SCRIPT ARGS...` with ENV exported, QEMU started with the
/// extra arguments, for at least `min_timeout`.
#[derive(Clone, Debug)]
pub struct GuestRun {
    pub script: PathBuf,
    pub args: Vec<String>,
    pub env: Vec<(&'static str, String)>,
    pub qemu_extra: String,
    pub min_timeout: Duration,
}

/// How the guest script ended; `console` is the boot's console log.
#[derive(Clone, Debug)]
pub struct GuestExit {
    pub status: i32,
    pub console: PathBuf,
}

/// The workspace root (the parent of `bench/`).
pub fn root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .expect("bench lives in the workspace")
        .to_path_buf()
}

/// A progress line on stderr (stdout is for results).
fn say(msg: impl AsRef<str>) {
    eprintln!("xtask: {}", msg.as_ref());
}

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
pub const STORES: &[&str] = &[
    "tmpfs",
    "nullb",
    "virtio",
    "nullb-2q",
    "stripe-tmpfs",
    "stripe-nullb",
    "qcow2-tmpfs",
    "qcow2-alloc",
];

/// The reference every contender on a store is compared with: the loop
/// driver, dm-stripe on a stripe store, QEMU's qcow2 (qemu-nbd) on a qcow2
/// store. The `qcow2-*` stores are a qcow2 image on tmpfs with 64 KiB
/// clusters: fully allocated (`qcow2-tmpfs`, the hot path) or sparse with
/// every write allocating a cluster (`qcow2-alloc`, the first-write path).
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

/// The contenders that have a server process (whose CPU is counted).
pub fn is_server(c: &str) -> bool {
    OURS.contains(&c) || KUBLK.contains(&c) || c == "qemu-nbd" || c == "loop-bpfk"
}

/// The report a new run is made for: v3 adds the device settings, total
/// latency, CPU attribution, no ratio for disagreeing cells and no virtio
/// in the headline. Runs without `report=` in host.txt render as v2.
pub const REPORT_VERSION: u32 = 3;

/// The largest request (`max_sectors_kb`) of every contender's device, and
/// of a block store's own: the loop driver's default. ublk-user (2 MiB)
/// and kublk (1 MiB) would otherwise get larger requests than loop in the
/// 2M job, and the cells would compare different request counts.
pub const MAX_SECTORS_KB: u32 = 512;

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
    /// Do not boot: rewrite the generated results blocks of FILE (README.md,
    /// the cover letter) from the committed reports they name.
    #[arg(long, value_name = "FILE")]
    pub summary: Option<PathBuf>,
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
