//! Reading a boot's raw directory (what bench/run-in-guest.sh left): fio's
//! JSON, the CPU samples and counters, into per-cell statistics.

use crate::plan::{parse_plan_line, Workload};
use crate::{
    is_server, stats, Stat, Timing, AGREE_PCT, CONTENDERS, ICOUNT_FLOOR_PCT, KUBLK, OURS,
    TCG_SPREAD_PCT,
};
use anyhow::{bail, Context, Result};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// The part of fio's `--output-format=json` the report reads.
#[derive(Deserialize)]
struct FioOutput {
    jobs: Vec<FioJob>,
}

#[derive(Deserialize)]
struct FioJob {
    #[serde(default)]
    error: f64,
    read: Option<FioDir>,
    write: Option<FioDir>,
    trim: Option<FioDir>,
}

/// One direction of a job.
#[derive(Deserialize)]
struct FioDir {
    #[serde(default)]
    iops: f64,
    #[serde(default)]
    bw_bytes: f64,
    #[serde(default)]
    io_bytes: f64,
    /// Milliseconds.
    #[serde(default)]
    runtime: f64,
    #[serde(default)]
    total_ios: f64,
    clat_ns: Option<FioLat>,
    /// Total latency (submission included); percentiles with
    /// `lat_percentiles=1` (report v3's jobs).
    lat_ns: Option<FioLat>,
}

#[derive(Deserialize)]
struct FioLat {
    /// "50.000000" -> nanoseconds.
    #[serde(default)]
    percentile: BTreeMap<String, f64>,
}

/// The first JSON document in `text`: what precedes the first `{` or `[`
/// is skipped (fio prints warnings such as "fio: ..." ahead of its JSON),
/// and so is what follows the document.
fn first_json<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
    let start = text
        .find(['{', '['])
        .context("no JSON object or array in the text")?;
    serde_json::Deserializer::from_str(&text[start..])
        .into_iter::<T>()
        .next()
        .context("no JSON document")?
        .context("malformed JSON")
}

/// fio's JSON: sum the directions; latency percentiles (completion latency)
/// from the direction that did the most I/O.
pub(crate) fn parse_fio(text: &str) -> Result<Sample> {
    let out: FioOutput = first_json(text)?;
    let job = out.jobs.first().context("fio JSON has no jobs")?;
    let mut s = Sample::default();
    let mut best_ios = -1.0;
    for d in [&job.read, &job.write, &job.trim].into_iter().flatten() {
        s.iops += d.iops;
        s.bw += d.bw_bytes;
        s.bytes += d.io_bytes;
        s.runtime_s = s.runtime_s.max(d.runtime / 1000.0);
        if d.total_ios > best_ios && d.io_bytes > 0.0 {
            best_ios = d.total_ios;
            let pct = |p: &str| {
                d.clat_ns
                    .as_ref()
                    .and_then(|l| l.percentile.get(p).copied())
                    .unwrap_or(f64::NAN)
                    / 1000.0
            };
            s.p50_us = pct("50.000000");
            s.p99_us = pct("99.000000");
            let lat = |p: &str| {
                d.lat_ns
                    .as_ref()
                    .and_then(|l| l.percentile.get(p).copied())
                    .map(|v| v / 1000.0)
            };
            s.lat = match (lat("50.000000"), lat("99.000000"), lat("99.900000")) {
                (Some(a), Some(b), Some(c)) => Some([a, b, c]),
                _ => None,
            };
        }
    }
    if job.error != 0.0 {
        bail!("fio reported error {}", job.error);
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
    /// Total latency (fio's `lat`) p50, p99, p99.9 in µs (report v3).
    pub lat: Option<[f64; 3]>,
    /// Busy seconds of each vCPU over the window (report v3).
    pub cpu_busy: Vec<f64>,
    /// CPU seconds of each task over the window, by name, largest first
    /// (report v3; tasks of one name summed).
    pub threads: Vec<(String, f64)>,
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

pub(crate) const GIB: f64 = (1u64 << 30) as f64;

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
    pub(crate) fn per_req(&self, v: Option<f64>) -> Option<f64> {
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
    /// The report version the run was made for (`report=` in host.txt; 2
    /// without it).
    pub version: u32,
    /// The boot's raw directory.
    pub dir: std::path::PathBuf,
    /// The `perf record` runs of the plan (report v3).
    pub profiles: Vec<crate::attrib::Profile>,
    /// What each contender's block device was set to (report v3).
    pub limits: Vec<crate::attrib::Limit>,
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
    /// Total latency p50, p99, p99.9 (µs; report v3).
    pub lat: Option<[Stat; 3]>,
    /// Busy seconds of vCPU 0 and vCPU 1 over the window (report v3).
    pub cpu0: Option<Stat>,
    pub cpu1: Option<Stat>,
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
            lat: (|| {
                let l = |i: usize| st(v.iter().filter_map(|s| s.lat.map(|l| l[i])).collect());
                Some([l(0)?, l(1)?, l(2)?])
            })(),
            cpu0: st(v
                .iter()
                .filter_map(|s| s.cpu_busy.first().copied())
                .collect()),
            cpu1: st(v
                .iter()
                .filter_map(|s| s.cpu_busy.get(1).copied())
                .collect()),
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

pub(crate) fn parse_kv(text: &str) -> BTreeMap<String, String> {
    text.lines()
        .filter_map(|l| l.split_once('='))
        .map(|(k, v)| (k.trim().to_string(), v.trim().to_string()))
        .collect()
}

/// A counter of DEV's entry in a `ublk-user list --json` file.
fn list_counter(path: &Path, dev: &str, key: &str) -> Option<f64> {
    let list: Vec<serde_json::Value> = first_json(&fs::read_to_string(path).ok()?).ok()?;
    list.iter()
        .find(|d| d.get("bdev").and_then(serde_json::Value::as_str) == Some(dev))?
        .get(key)?
        .as_f64()
}

/// Read a run directory written by bench/run-in-guest.sh.
pub fn collect(dir: &Path, timing: Timing) -> Result<Results> {
    let env = parse_kv(&fs::read_to_string(dir.join("env.txt")).unwrap_or_default());
    let host = parse_kv(&fs::read_to_string(dir.join("host.txt")).unwrap_or_default());
    let version: u32 = host.get("report").and_then(|v| v.parse().ok()).unwrap_or(2);
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
    let mut profiles = Vec::new();
    for l in plan_text.lines() {
        let Some((idx, store, _, cont, w, _)) = parse_plan_line(l) else {
            continue;
        };
        if l.split_whitespace().nth(9) == Some("profile") {
            profiles.push(crate::attrib::Profile {
                idx,
                store,
                contender: cont,
                workload: w.id(),
            });
            continue;
        }
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
         server_cpu_s_per_gib,server_cpu_pct_one_cpu,guest_cpu_s_per_gib",
    );
    let v3 = version >= 3;
    if v3 {
        csv.push_str(",lat_p50_us,lat_p99_us,lat_p999_us,cpu0_busy_s,cpu1_busy_s");
    }
    csv.push('\n');
    let t = timing.name();
    for line in runs.lines().skip(1) {
        let f: Vec<&str> = line.split(',').collect();
        if f.len() < 6 {
            continue;
        }
        let (idx, store, rep, cont, wl, rc) = (f[0], f[1], f[2], f[3], f[4], f[5]);
        if rc.starts_with("prof") {
            continue; // a profile run (attrib::Profile), not measured
        }
        let Some(&wi) = ids.get(wl) else { continue };
        let key = (store.to_string(), wi, cont.to_string());
        let blank = ",".repeat(if v3 { 25 } else { 20 });
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
            if v3 {
                crate::attrib::read_run(dir, idx, hz, &mut s);
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
                    "{t},{idx},{store},{rep},{cont},{wl},ok,{:.1},{:.2},{:.1},{:.1},{},{:.3},{:.3},{},{:.2},{:.2},{},{},{},{},{},{},{},{},{},{}",
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
                if v3 {
                    let l = |i: usize| o(s.lat.map(|l| l[i]), 1);
                    let c = |i: usize| o(s.cpu_busy.get(i).copied(), 3);
                    csv.push_str(&format!(",{},{},{},{},{}", l(0), l(1), l(2), c(0), c(1)));
                }
                csv.push('\n');
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
        version,
        profiles,
        dir: dir.to_path_buf(),
        limits: if v3 {
            crate::attrib::read_limits(dir)
        } else {
            Vec::new()
        },
    })
}
