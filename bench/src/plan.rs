//! The matrix (stores x workloads x contenders), `--filter`, the plan the
//! guest runs (one fio run a line) and its wall-time estimate.

use crate::{single_contenders, Timing, CONTENDERS, STORES};
use anyhow::{bail, Result};

/// fio's rw values a workload may have.
pub(crate) const RWS: &[&str] = &["randread", "randwrite", "read", "write"];

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

    /// The RFC's job: randwrite, iodepth 16, bs 512K (v1) or 2048K (v2).
    pub fn rfc(bs: u64) -> Self {
        Workload {
            job: "rfc",
            rw: "randwrite",
            bs,
            qd: 16,
        }
    }

    /// First writes of a sparse image: a sequential write of a fixed
    /// amount (fio/alloc.fio), each repetition into fresh clusters.
    pub fn alloc(bs: u64, qd: u32) -> Self {
        Workload {
            job: "alloc",
            rw: "write",
            bs,
            qd,
        }
    }

    /// The 2 queues x 2 fio jobs cell (fio/mq.fio, store nullb-2q): random
    /// read, `qd` per job, one job on each vCPU.
    pub fn mq(bs: u64, qd: u32) -> Self {
        Workload {
            job: "mq",
            rw: "randread",
            bs,
            qd,
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
        let job = ["matrix", "rfc", "mq", "alloc"]
            .into_iter()
            .find(|j| *j == job)?;
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

pub(crate) fn parse_bs(s: &str) -> Option<u64> {
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

/// The full matrix, sized so an icount run takes about an hour and a half (an hour before the qcow2 stores) on this
/// 2-core host (see [`estimate_secs`]): on tmpfs and null_blk, 4 KiB random
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
            store: "nullb-2q",
            workloads: vec![Workload::mq(4 << 10, 32)],
            contenders: NULLB_2Q_CONTENDERS.to_vec(),
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

/// Who serves a qcow2 store (zc with its slow path through user copy).
pub const QCOW2_CONTENDERS: &[&str] = &["qemu-nbd", "copy", "zc", "bpf", "bpf-kernel", "loop-bpfk"];

/// The 2 queues x 2 jobs cell: the reference, our zero-copy and kernel
/// modes, kublk's best configurations.
pub const NULLB_2Q_CONTENDERS: &[&str] =
    &["loop", "zc", "bpf-kernel", "kublk-zc", "kublk-batch", "raw"];

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

/// What the v3 matrix leaves out (for the report).
pub const LEFT_OUT_V3: &str = "sequential read/write; random write below 512k except 4k qd32; \
     iodepth 1 except 4k randread; block sizes 256k and 1m; more than one ublk queue or fio job \
     except the nullb-2q cell (4k randread qd32, 2 queues x 2 jobs, on null_blk only); \
     on virtio-blk every contender but raw, loop, copy, bpf-kernel and kublk-batch and every \
     workload but 4k randread qd32 and the RFC v2 job; runs longer than a few guest seconds \
     (the RFC ran 60 s); `-cpu max,-erms,-fsrm` (a separate `--no-erms` run); plain-TCG tables \
     (a separate `--timing tcg` or `--timing both` run)";

pub(crate) fn quick_matrix() -> Vec<StorePlan> {
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
            } else if t == "rfc" || t == "matrix" || t == "mq" || t == "alloc" {
                f.jobs.push(t);
            } else if let Some(qd) = t.strip_prefix("qd").and_then(|q| q.parse().ok()) {
                f.qds.push(qd);
            } else if let Some(bs) = parse_bs(&t).filter(|b| *b >= 512) {
                f.bss.push(bs);
            } else {
                bail!(
                    "--filter: unknown term {t:?} (contenders {}, stores {}, rw {}, block sizes like 4k or 2m, depths like qd32, jobs rfc/matrix/mq)",
                    CONTENDERS.join("/"),
                    STORES.join("/"),
                    RWS.join("/")
                );
            }
        }
        Ok(f)
    }

    pub(crate) fn contender(&self, c: &str) -> bool {
        self.contenders.is_empty() || self.contenders.iter().any(|x| x == c)
    }

    pub(crate) fn store(&self, s: &str) -> bool {
        self.stores.is_empty() || self.stores.iter().any(|x| x == s)
    }

    pub(crate) fn workload(&self, w: &Workload) -> bool {
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
    /// A `perf record` run (report v3): profiled, not measured.
    pub profile: bool,
}

/// The profiled cells (report v3, under icount only, where the profile's
/// clock counts instructions): these contenders at 4 KiB random read
/// iodepth 32 on null_blk, one `perf record` run each after the store's
/// measured runs.
pub const PROFILE_STORE: &str = "nullb";
pub const PROFILE_CONTENDERS: &[&str] = &["loop", "zc", "bpf-kernel"];
pub fn profile_workload() -> Workload {
    Workload::matrix("randread", 4 << 10, 32)
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
                        profile: false,
                    });
                }
            }
        }
        if conditional && sp.store == PROFILE_STORE && sp.workloads.contains(&profile_workload()) {
            for c in PROFILE_CONTENDERS
                .iter()
                .filter(|c| sp.contenders.contains(c))
            {
                runs.push(Run {
                    idx: runs.len() + 1,
                    store: sp.store,
                    rep: 0,
                    contender: c,
                    wl: profile_workload(),
                    conditional: false,
                    profile: true,
                });
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
            if r.profile {
                "profile"
            } else if r.conditional {
                "agree"
            } else {
                "-"
            }
        ));
    }
    s
}

/// A plan line back: (idx, store, rep, contender, workload, conditional).
/// Old (v1) plans, "IDX REP CONTENDER JOB RW BS QD WORKLOAD", read as tmpfs.
pub(crate) fn parse_plan_line(l: &str) -> Option<(usize, String, u32, String, Workload, bool)> {
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
