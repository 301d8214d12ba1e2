//! Report v3's per-run extras from the guest: the block device settings
//! of each contender (`limits.txt`), per-vCPU busy time and every task's
//! CPU time over the window (`cpu/IDX-{pre,post}.{cpus,threads}`, written
//! by cpu-sample.sh).

use crate::Sample;
use std::collections::BTreeMap;
use std::fs;
use std::path::Path;

/// A `perf record` run: its output is `perf/IDX.txt` (perf report).
#[derive(Clone, Debug, PartialEq)]
pub struct Profile {
    pub idx: usize,
    pub store: String,
    pub contender: String,
    pub workload: String,
}

/// The profile's top lines: `perf report --stdio` rows (share, command,
/// object, symbol), at most `n`, or why there are none.
pub fn profile_top(dir: &Path, idx: usize, n: usize) -> Result<Vec<String>, String> {
    let text = fs::read_to_string(dir.join(format!("perf/{idx}.txt")))
        .map_err(|_| "no profile (perf/IDX.txt missing: the guest had no perf?)".to_string())?;
    let rows: Vec<String> = text
        .lines()
        .filter(|l| !l.trim_start().starts_with('#') && l.trim_start().contains('%'))
        .take(n)
        .map(|l| l.trim().to_string())
        .collect();
    if rows.is_empty() {
        let why = text
            .lines()
            .find(|l| !l.trim().is_empty())
            .unwrap_or("empty");
        return Err(format!("no samples ({})", why.trim()));
    }
    Ok(rows)
}

/// A contender's block device as the guest left it for the runs.
#[derive(Clone, Debug, PartialEq)]
pub struct Limit {
    pub store: String,
    pub name: String,
    /// blk-mq hardware queues (`/sys/block/X/mq/*`).
    pub queues: String,
    /// `queue/nr_requests`.
    pub nr_requests: String,
    /// `queue/max_sectors_kb`: the largest request the device gets.
    pub max_kb: String,
    /// `queue/max_hw_sectors_kb`: the driver's ceiling.
    pub max_hw_kb: String,
}

/// `limits.txt`: STORE|NAME|QUEUES|NR_REQUESTS|MAX_SECTORS_KB|MAX_HW_SECTORS_KB.
pub fn read_limits(dir: &Path) -> Vec<Limit> {
    fs::read_to_string(dir.join("limits.txt"))
        .unwrap_or_default()
        .lines()
        .filter_map(|l| {
            let f: Vec<&str> = l.split('|').collect();
            (f.len() == 6).then(|| Limit {
                store: f[0].into(),
                name: f[1].into(),
                queues: f[2].into(),
                nr_requests: f[3].into(),
                max_kb: f[4].into(),
                max_hw_kb: f[5].into(),
            })
        })
        .collect()
}

/// "cpuN BUSY TOTAL" lines: busy ticks by vCPU number.
fn cpus(text: &str) -> BTreeMap<usize, f64> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.split_whitespace();
            let n = f.next()?.strip_prefix("cpu")?.parse().ok()?;
            Some((n, f.next()?.parse().ok()?))
        })
        .collect()
}

/// "PID TID TICKS COMM" lines: ticks by (pid, tid), with the name.
fn threads(text: &str) -> BTreeMap<(u64, u64), (f64, String)> {
    text.lines()
        .filter_map(|l| {
            let mut f = l.splitn(4, ' ');
            let pid = f.next()?.parse().ok()?;
            let tid = f.next()?.parse().ok()?;
            let ticks = f.next()?.parse().ok()?;
            Some(((pid, tid), (ticks, f.next()?.trim().to_string())))
        })
        .collect()
}

/// A task's name for the tables: kworkers by the work they ran last
/// (`kworker/0:1H-kblockd` -> `kworker/0:*H-kblockd`), so that the same
/// work on another worker of the CPU adds up.
pub fn task_name(comm: &str) -> String {
    match comm.strip_prefix("kworker/") {
        Some(rest) => {
            let (id, work) = rest.split_once('-').unwrap_or((rest, ""));
            let (cpu, n) = id.split_once(':').unwrap_or((id, ""));
            let hi = if n.ends_with('H') { "H" } else { "" };
            let work = if work.is_empty() {
                String::new()
            } else {
                format!("-{work}")
            };
            format!("kworker/{cpu}:*{hi}{work}")
        }
        None => comm.to_string(),
    }
}

/// Fill a run's per-vCPU busy seconds and task CPU seconds.
pub fn read_run(dir: &Path, idx: &str, hz: f64, s: &mut Sample) {
    let read = |name: &str| fs::read_to_string(dir.join(format!("cpu/{idx}-{name}"))).ok();
    if let (Some(a), Some(b)) = (read("pre.cpus"), read("post.cpus")) {
        let (a, b) = (cpus(&a), cpus(&b));
        s.cpu_busy = b
            .iter()
            .map(|(n, v)| (v - a.get(n).copied().unwrap_or(*v)) / hz)
            .collect();
    }
    if let (Some(a), Some(b)) = (read("pre.threads"), read("post.threads")) {
        let a = threads(&a);
        let mut by: BTreeMap<String, f64> = BTreeMap::new();
        for (k, (t1, comm)) in threads(&b) {
            let t0 = a.get(&k).map(|x| x.0).unwrap_or(0.0);
            if t1 > t0 {
                *by.entry(task_name(&comm)).or_default() += (t1 - t0) / hz;
            }
        }
        let mut v: Vec<(String, f64)> = by.into_iter().collect();
        v.sort_by(|x, y| y.1.total_cmp(&x.1).then(x.0.cmp(&y.0)));
        s.threads = v;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kworkers_add_up_by_work() {
        assert_eq!(task_name("kworker/0:1H-kblockd"), "kworker/0:*H-kblockd");
        assert_eq!(task_name("kworker/1:2-events"), "kworker/1:*-events");
        assert_eq!(task_name("kworker/u8:0"), "kworker/u8:*");
        assert_eq!(task_name("fio"), "fio");
    }

    #[test]
    fn window_deltas() {
        let t = tempfile::tempdir().unwrap();
        let d = t.path();
        fs::create_dir_all(d.join("cpu")).unwrap();
        fs::write(d.join("cpu/7-pre.cpus"), "cpu0 100 200\ncpu1 50 200\n").unwrap();
        fs::write(d.join("cpu/7-post.cpus"), "cpu0 250 400\ncpu1 60 400\n").unwrap();
        fs::write(
            d.join("cpu/7-pre.threads"),
            "5 5 10 fio\n9 9 0 kworker/0:1H-kblockd\n",
        )
        .unwrap();
        fs::write(
            d.join("cpu/7-post.threads"),
            "5 5 30 fio\n9 9 40 kworker/0:1H-kblockd\n11 11 5 kworker/0:2H-kblockd\n12 12 0 idle\n",
        )
        .unwrap();
        let mut s = Sample::default();
        read_run(d, "7", 100.0, &mut s);
        assert_eq!(s.cpu_busy, vec![1.5, 0.1]);
        assert_eq!(
            s.threads,
            vec![
                ("kworker/0:*H-kblockd".to_string(), 0.45),
                ("fio".to_string(), 0.2)
            ]
        );
    }
}
