//! What report v3 adds to a store's section and to the headline: the
//! device settings of every contender, total latency, CPU attribution per
//! cell, no ratio where the repetitions disagree, and virtio out of the
//! headline. Only runs made for v3 (`report=3` in host.txt) get them, so
//! that older committed runs regenerate byte for byte.

use crate::stats::{compare, Stat};
use crate::{CellStats, Results, RunInfo};
use std::collections::BTreeMap;
use std::fmt::Write;

/// Tasks listed per cell in the CPU attribution table.
const TOP_TASKS: usize = 5;

pub const VIRTIO_NOT_IN_HEADLINE: &str = "\n**virtio**: not in the headline. Its backing I/O \
    runs in QEMU's iothread on the host, outside the guest's instruction count, so its cells are \
    not a deterministic cost (see its section for the numbers).\n";

/// The commit row of the header: the commit, and whether the tree was
/// clean (a dirty tree publishes only with `--force`, and says so).
pub fn commit_row(info: &RunInfo) -> String {
    if info.commit.ends_with("-dirty") {
        format!(
            "`{}`: **the tree had uncommitted changes** (published with `--force`): the commit \
             does not hold every line that made these numbers",
            info.commit
        )
    } else {
        format!("`{}` (clean tree)", info.commit)
    }
}

/// a / b of one metric with the `~` rule; no ratio when either cell's
/// repetitions disagree beyond the rule (the cell is shown, not counted).
pub fn ratio3(
    a: Option<&CellStats>,
    b: Option<&CellStats>,
    f: fn(&CellStats) -> Option<Stat>,
) -> String {
    let (Some(a), Some(b)) = (a, b) else {
        return "-".into();
    };
    if !a.agree || !b.agree {
        return "≠ (reps disagree)".into();
    }
    match f(a).zip(f(b)).and_then(|(x, y)| compare(&x, &y)) {
        Some(c) if c.same => "~".into(),
        Some(c) => format!("{} [{:.2}–{:.2}]", c.text(), c.lo, c.hi),
        None => "-".into(),
    }
}

/// The headline's closing lines: whole-guest CPU per GiB, counted as the
/// IOPS are, and the cells left out because their repetitions disagree.
pub fn headline_tail(tally: &[(String, usize, usize, usize)], disagree: usize) -> String {
    let mut s = String::new();
    if !tally.is_empty() {
        let parts: Vec<String> = tally
            .iter()
            .map(|(st, w, l, m)| format!("{st}: {w} lower, {l} higher, {m} `~`"))
            .collect();
        let _ = writeln!(
            s,
            "\nWhole-guest CPU per GiB (every vCPU: fio, block layer, driver, server, workers) of \
             our modes against kublk's best, outside the noise (below 1× is better): {}.",
            parts.join("; ")
        );
    }
    let _ = writeln!(
        s,
        "\n{disagree} mode-cell rows show `≠` in at least one column, not counted: the \
         repetitions of one of the two cells compared there disagree beyond the rule (see \
         *Method*)."
    );
    s
}

/// A median with its interval in a short form.
fn med(s: &Stat, digits: usize) -> String {
    format!("{:.digits$}", s.med)
}

/// Settings, total latency and CPU attribution of a store.
pub fn store_extras(res: &Results, store: &str) -> String {
    let mut s = String::new();
    let (wls, names) = res.store_cells(store);
    let limits: Vec<_> = res.limits.iter().filter(|l| l.store == store).collect();
    if !limits.is_empty() {
        let _ = writeln!(
            s,
            "\n### Device settings\n\nAs the guest left each contender's block device for the \
             runs (`max_sectors_kb` set to {} KiB for every one, where the driver allows; the \
             store's own device included):\n\n\
             | contender | hardware queues | nr_requests | max_sectors_kb | max_hw_sectors_kb |\n\
             |---|---:|---:|---:|---:|",
            res.env
                .get("max_sectors_kb")
                .filter(|v| !v.is_empty())
                .map(String::as_str)
                .unwrap_or("(not set)")
        );
        for l in &limits {
            let _ = writeln!(
                s,
                "| {} | {} | {} | {} | {} |",
                l.name, l.queues, l.nr_requests, l.max_kb, l.max_hw_kb
            );
        }
    }
    let lat_wls: Vec<usize> = wls
        .iter()
        .copied()
        .filter(|&w| matches!(res.workloads[w].qd, 1 | 32))
        .collect();
    if !lat_wls.is_empty() {
        let _ = write!(
            s,
            "\n### Total latency\n\nfio's `lat` (submission included), µs, median of the \
             repetitions: p50 / p99 / p99.9.\n\n| workload |"
        );
        for c in &names {
            let _ = write!(s, " {c} |");
        }
        s.push_str("\n|---|");
        for _ in &names {
            s.push_str("---:|");
        }
        s.push('\n');
        for &w in &lat_wls {
            let _ = write!(s, "| {} |", res.workloads[w].id());
            for c in &names {
                let v = res
                    .cell(store, w, c)
                    .and_then(|x| x.lat)
                    .map(|l| format!("{} / {} / {}", med(&l[0], 1), med(&l[1], 1), med(&l[2], 1)))
                    .unwrap_or_else(|| "-".into());
                let _ = write!(s, " {v} |");
            }
            s.push('\n');
        }
    }
    s.push_str(&cpu_attribution(res, store, &wls, &names));
    s.push_str(&profiles(res, store));
    s
}

/// Functions listed per profile.
const PROFILE_ROWS: usize = 25;

/// The `perf record` runs on this store: where one I/O's instructions go.
fn profiles(res: &Results, store: &str) -> String {
    let mut s = String::new();
    for p in res.profiles.iter().filter(|p| p.store == store) {
        if s.is_empty() {
            let _ = writeln!(
                s,
                "\n### Profiles\n\n`perf record -a -e cpu-clock` over one extra run of the cell \
                 (not measured), `perf report --sort comm,dso,sym`: the share of all samples of \
                 every vCPU. Under icount the sampling clock is guest time, so the shares are \
                 shares of executed instructions (the idle loop's rows are time a vCPU had \
                 nothing to do). The top {PROFILE_ROWS} rows:"
            );
        }
        let _ = writeln!(
            s,
            "\n**{}, {}** (run {}):\n",
            p.contender, p.workload, p.idx
        );
        match crate::attrib::profile_top(&res.dir, p.idx, PROFILE_ROWS) {
            Ok(rows) => {
                s.push_str("```\n");
                for r in rows {
                    let _ = writeln!(s, "{r}");
                }
                s.push_str("```\n");
            }
            Err(why) => {
                let _ = writeln!(s, "{why}.");
            }
        }
    }
    s
}

/// Per-vCPU busy seconds and the tasks that used the most CPU, per cell.
fn cpu_attribution(res: &Results, store: &str, wls: &[usize], names: &[&str]) -> String {
    let mut s = String::new();
    let mut rows = String::new();
    for &w in wls {
        for c in names {
            let key = (store.to_string(), w, c.to_string());
            let Some(v) = res.samples.get(&key) else {
                continue;
            };
            let Some(x) = res.cell(store, w, c) else {
                continue;
            };
            let window = crate::stats::median(&{
                let mut t: Vec<f64> = v.iter().map(|s| s.window_s).collect();
                t.sort_by(f64::total_cmp);
                t
            });
            let mut by: BTreeMap<&str, Vec<f64>> = BTreeMap::new();
            for s in v {
                for (name, _) in &s.threads {
                    by.entry(name.as_str()).or_default();
                }
            }
            let mut top: Vec<(&str, f64)> = by
                .keys()
                .map(|name| {
                    let mut t: Vec<f64> = v
                        .iter()
                        .map(|s| {
                            s.threads
                                .iter()
                                .find(|(n, _)| n == name)
                                .map_or(0.0, |x| x.1)
                        })
                        .collect();
                    t.sort_by(f64::total_cmp);
                    (*name, crate::stats::median(&t))
                })
                .filter(|(_, t)| *t > 0.0)
                .collect();
            top.sort_by(|a, b| b.1.total_cmp(&a.1).then(a.0.cmp(b.0)));
            let tasks: Vec<String> = top
                .iter()
                .take(TOP_TASKS)
                .map(|(n, t)| format!("{n} {t:.2}"))
                .collect();
            if x.cpu0.is_none() && tasks.is_empty() {
                continue;
            }
            let o = |v: Option<Stat>| v.map(|v| med(&v, 2)).unwrap_or_else(|| "-".into());
            let _ = writeln!(
                rows,
                "| {} | {c} | {window:.2} | {} | {} | {} |",
                res.workloads[w].id(),
                o(x.cpu0),
                o(x.cpu1),
                tasks.join(", ")
            );
        }
    }
    if !rows.is_empty() {
        let _ = write!(
            s,
            "\n### CPU attribution\n\nGuest seconds over the CPU window (ramp included), median \
             of the repetitions: each vCPU's busy time (user, system, irq, softirq) and the {TOP_TASKS} \
             tasks that used the most CPU (utime + stime; kworkers by the work they ran last, \
             `kworker/CPU:*` sums the workers of one CPU).\n\n\
             | workload | contender | window s | vCPU 0 busy s | vCPU 1 busy s | top tasks (s) |\n\
             |---|---|---:|---:|---:|---|\n{rows}"
        );
    }
    s
}
