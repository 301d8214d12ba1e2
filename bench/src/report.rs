//! The markdown report (v2): header, method, headline (differences outside
//! the noise only), one section per backing store (throughput and CPU with
//! intervals, cost per request, the RFC's jobs), plots, contenders, what the
//! matrix left out and icount's limits; a plain-TCG boot follows as a
//! clearly marked secondary section.

use crate::stats::{compare, spread_pct, Stat};
use crate::svg::Metric;
use crate::{
    bs_name, is_server, CellStats, Results, RunInfo, Timing, AGREE_PCT, ICOUNT_FLOOR_PCT, LEFT_OUT,
    LEFT_OUT_V3, OURS, TCG_SPREAD_PCT,
};
use std::fmt::Write;

/// 3 significant-ish digits: 12345, 123, 12.3, 1.23, 0.123.
pub fn num(v: f64) -> String {
    if !v.is_finite() {
        "-".into()
    } else if v.abs() >= 100.0 {
        format!("{v:.0}")
    } else if v.abs() >= 10.0 {
        format!("{v:.1}")
    } else if v.abs() >= 1.0 {
        format!("{v:.2}")
    } else {
        format!("{v:.3}")
    }
}

fn iops(v: f64) -> String {
    if v >= 1e6 {
        format!("{:.2}M", v / 1e6)
    } else if v >= 1e4 {
        format!("{:.1}k", v / 1e3)
    } else {
        format!("{v:.0}")
    }
}

/// Ratio of two plain numbers (no interval).
#[cfg(test)]
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}×", a / b),
        _ => "-".into(),
    }
}

/// `median [lo–hi]`.
fn with_ci(s: &Stat, f: fn(f64) -> String) -> String {
    if s.n > 1 {
        format!("{} [{}–{}]", f(s.med), f(s.lo), f(s.hi))
    } else {
        f(s.med)
    }
}

fn opt(s: Option<Stat>, f: fn(f64) -> String) -> String {
    s.map(|s| with_ci(&s, f)).unwrap_or_else(|| "-".into())
}

/// a / b with the `~` rule: `~` when the intervals overlap.
fn cmp_text(a: Option<Stat>, b: Option<Stat>) -> String {
    match (a, b) {
        (Some(a), Some(b)) => compare(&a, &b)
            .map(|c| {
                if c.same {
                    "~".to_string()
                } else {
                    format!("{} [{:.2}–{:.2}]", c.text(), c.lo, c.hi)
                }
            })
            .unwrap_or_else(|| "-".into()),
        _ => "-".into(),
    }
}

/// The value shown for a contender without numbers in a cell.
fn missing(res: &Results, store: &str, wl: usize, c: &str) -> String {
    if res.na_reason(store, c).is_some() {
        "n/a".into()
    } else if res
        .failures
        .contains_key(&(store.to_string(), wl, c.to_string()))
    {
        "failed".into()
    } else {
        "-".into()
    }
}

fn timing_title(t: Timing) -> &'static str {
    match t {
        Timing::Tcg => "plain TCG wall-clock timing (secondary, noisy)",
        _ => "QEMU icount cost model (deterministic, primary)",
    }
}

/// Whether this boot may have a headline, and the note that says why not.
fn headline_gate(res: &Results, info: &RunInfo) -> (bool, String) {
    if res.timing != Timing::Tcg {
        return (true, String::new());
    }
    match (info.busy(), info.force) {
        (false, _) => (true, String::new()),
        (true, false) => (
            false,
            format!(
                "**No headline**: plain-TCG timing depends on the host's load, and the host was busy \
                 (load average {} at start, {} at end; the limit is 1 on this 2-core machine). \
                 Rerun on an idle host, or pass `--force` to write one anyway.\n",
                info.load_start, info.load_end
            ),
        ),
        (true, true) => (
            true,
            format!(
                "**Headline written with `--force` on a busy host** (load average {} at start, {} at \
                 end, above 1): plain-TCG cells move with the load; trust only the icount tables.\n",
                info.load_start, info.load_end
            ),
        ),
    }
}

fn header(res: &Results, info: &RunInfo, secondary: Option<&Results>) -> String {
    let env = |k: &str| res.env.get(k).cloned().unwrap_or_else(|| "?".into());
    let mut s = String::new();
    let date = env("start");
    let _ = writeln!(
        s,
        "# ublk-ebpf benchmark: kernel {}, {}{}, {}\n",
        env("kernel"),
        timing_title(res.timing),
        if secondary.is_some() {
            " + plain TCG (secondary)"
        } else {
            ""
        },
        date.get(..10).unwrap_or(&date)
    );
    if res.timing == Timing::Tcg {
        let _ = writeln!(
            s,
            "> **Secondary, emulated wall-clock numbers.** This guest ran under plain QEMU TCG with \
             no cost model: timing depends on the host's load (cells moved by up to 2x between runs \
             on this shared host). Use the icount tables for ratios.\n"
        );
    } else {
        let _ = writeln!(
            s,
            "> **What these numbers are.** QEMU ran with `-icount shift=0,sleep=off`: guest time \
             advances 1 ns per executed guest instruction, so IOPS are the inverse of the \
             instructions one I/O costs **summed over all vCPUs** (fio, block layer, driver, server, \
             backing store). Repetitions of a cell agree to within a few tenths of a percent to ~1.5 % \
             (the *spread* column shows each cell's). It is a \
             single-CPU cost model, not a measurement of hardware: see *icount's limits* below.\n"
        );
    }
    let ok: usize = res.samples.values().map(Vec::len).sum();
    let failed: usize = res.failures.values().map(Vec::len).sum();
    let not_run = res
        .planned
        .saturating_sub(ok + failed + res.na + res.skipped);
    let rows = [
        (
            "machine",
            format!(
                "{}, {} host cores; load average {} at start, {} at end (1/5/15 min; the host is shared)",
                info.host_cpu, info.host_cores, info.load_start, info.load_end
            ),
        ),
        (
            "emulation",
            format!(
                "QEMU TCG, `-cpu max` (guest CPU flags: {}); extra QEMU arguments: `{}`",
                env("cpu_flags"),
                if info.qemu_extra.is_empty() {
                    "none"
                } else {
                    &info.qemu_extra
                }
            ),
        ),
        (
            "guest",
            format!(
                "{} vCPUs, {} MiB RAM, kernel {} ({})",
                env("vcpus"),
                env("mem_kb")
                    .parse::<u64>()
                    .map(|k| (k / 1024).to_string())
                    .unwrap_or_else(|_| "?".into()),
                env("kernel"),
                env("kernel_version")
            ),
        ),
        (
            "git commit",
            if res.version >= 3 {
                crate::report3::commit_row(info)
            } else {
                format!("`{}`", info.commit)
            },
        ),
        ("command", format!("`{}`", info.command)),
        (
            "fio",
            format!(
                "{}, ioengine=libaio, direct=1, numjobs=1, time_based, ramp_time={}, runtime={} s; \
                 latency = {}",
                env("fio"),
                env("ramp"),
                env("runtime"),
                if res.version >= 3 {
                    "total latency (fio's `lat`, submission included) percentiles; the p50/p99 \
                     columns of the throughput tables are completion latency (`clat`), which \
                     misses work done inside `io_submit`"
                } else {
                    "completion latency (clat) percentiles"
                }
            ),
        ),
        (
            "pinning",
            if res.version >= 3 {
                // Since the kernel mode was made safe its backing I/O mostly
                // runs in the device's unbound worker (CPU attribution).
                format!(
                    "fio on vCPU {}; every thread of each ublk server (ublk-user, kublk) on vCPU \
                     {} (`taskset -a`); bpf-kernel's requests are issued in fio's context (vCPU \
                     {}) or by the device's unbound worker (`kworker/u*-ublkN-kio`); kernel \
                     workers (loop's, bpf-kernel's, kblockd) are not pinned",
                    env("fio_cpu"),
                    env("srv_cpu"),
                    env("fio_cpu")
                )
            } else {
                format!(
                    "fio on vCPU {}; every thread of each ublk server (ublk-user, kublk) on vCPU \
                     {} (`taskset -a`); bpf-kernel's work runs in fio's context (vCPU {}); kernel \
                     workers (loop's, kblockd) are not pinned",
                    env("fio_cpu"),
                    env("srv_cpu"),
                    env("fio_cpu")
                )
            },
        ),
        ("trimmed", info.trimmed.clone()),
        (
            "runs",
            format!(
                "{} planned: {ok} measured, {failed} failed, {} n/a, {} conditional repetitions not \
                 needed, {not_run} not run; {} to {}",
                res.planned,
                res.na,
                res.skipped,
                env("start"),
                res.env
                    .get("end")
                    .cloned()
                    .unwrap_or("(did not finish)".into())
            ),
        ),
    ];
    let _ = writeln!(s, "| | |\n|---|---|");
    for (k, v) in rows {
        let _ = writeln!(s, "| {k} | {} |", v.replace('|', "\\|"));
    }
    s
}

fn method(res: &Results) -> String {
    let mut s = String::from("\n## Method\n\n");
    if res.timing == Timing::Tcg {
        let _ = writeln!(
            s,
            "- Plain TCG: every cell runs {} times; the median is shown with a 95 % \
             distribution-free interval from order statistics (at n = 6: the range, 96.9 % \
             coverage). Cells whose spread ((max - min) / min) exceeds {TCG_SPREAD_PCT} % are \
             marked †: runs too short for this host's noise.",
            res.samples.values().map(Vec::len).max().unwrap_or(0)
        );
    } else {
        let _ = writeln!(
            s,
            "- icount: two repetitions per cell that must agree within {AGREE_PCT} % in IOPS; a \
             third runs where they do not (planned as a conditional repetition, decided in the \
             guest). Cells whose repetitions still disagree are marked †. The interval shown is \
             the range of the repetitions (order statistics; at n = 2 a pair cannot reach 95 % \
             coverage, so it is widened to at least ±{ICOUNT_FLOOR_PCT} % of the median: the \
             model's known repeat noise)."
        );
    }
    s.push_str(
        "- A warm-up (`ramp_time`) before each measured run; the contender order is rotated per \
         cell and repetition, repetitions are the outer loop within each backing store.\n\
         - A ratio whose two intervals overlap is printed as `~` and never counted as a win; \
         otherwise the ratio of medians is followed by [low–high] (ratio of the interval ends).\n\
         - Counted per request (deterministic under any timing): *requests* are the device's \
         completed reads + writes (`/sys/block/<dev>/stat`) over the run, ramp included; ublk-user's \
         CQEs reaped, SQEs submitted and `io_uring_enter` calls come from its per-queue counters \
         (`ublk-user list --json`: `server_cqes`, `server_sqes`, `server_enters`), sampled before \
         and after fio; context switches are `voluntary_ctxt_switches` + \
         `nonvoluntary_ctxt_switches` summed over `/proc/<pid>/task/*/status` (every thread of the \
         server). kublk has no such counters: for it, context switches and CPU only.\n\
         - CPU: *server CPU* is utime+stime of the server's whole thread group \
         (`/proc/<pid>/stat`), *guest CPU* the busy time of all vCPUs (`/proc/stat`), both sampled \
         by fio's `exec_prerun`/`exec_postrun` around the job (ramp included) and divided by the \
         device's bytes over the same window; *server CPU %* is the server's CPU time over the \
         window's length, i.e. percent of one CPU as `top` shows it. Clock ticks are 10 ms.\n",
    );
    s
}

/// Headline: for each store and workload, where each of our modes stands
/// against kublk's best configuration and the kernel loop driver; only
/// differences outside the noise count.
fn headline(res: &Results, info: &RunInfo) -> String {
    let mut s = String::from("\n## Headline\n\n");
    let (ok, note) = headline_gate(res, info);
    s.push_str(&note);
    if !ok {
        return s;
    }
    let stripes = res.cells.iter().any(|(st, ..)| st.starts_with("stripe-"));
    let qcow2 = res.cells.iter().any(|(st, ..)| st.starts_with("qcow2-"));
    let singles = res
        .cells
        .iter()
        .any(|(st, ..)| !st.starts_with("stripe-") && !st.starts_with("qcow2-"));
    let reference = match (singles, stripes, qcow2) {
        (false, true, false) => "dm-stripe's",
        (false, false, true) => "QEMU's qcow2 through the kernel nbd driver (qemu-nbd)",
        (true, false, false) => "the kernel loop driver's",
        _ => "the reference of each store (the loop driver; dm-stripe on a stripe store; qemu-nbd on a qcow2 store)",
    };
    let _ = writeln!(
        s,
        "IOPS of each of our modes divided by {reference} and by kublk's best \
         configuration in that cell (highest median IOPS of kublk, kublk-zc, kublk-batch); \
         server CPU per GiB against kublk's best (below 1× is better). `~`: the intervals \
         overlap, no difference outside the noise.",
    );
    type Tally = (String, usize, usize, usize, usize, usize, usize);
    let mut tally: Vec<Tally> = Vec::new();
    let mut gtally: Vec<(String, usize, usize, usize)> = Vec::new();
    let v3 = res.version >= 3;
    let mut disagree = 0;
    for (store, ..) in &res.cells {
        if let Some(x) = res.store(store).filter(|x| !x.ok) {
            let _ = writeln!(s, "\n**{store}**: n/a ({}).", x.note);
            continue;
        }
        if v3 && store == "virtio" && res.timing != Timing::Tcg {
            s.push_str(crate::report3::VIRTIO_NOT_IN_HEADLINE);
            continue;
        }
        let (wls, names) = res.store_cells(store);
        let ours: Vec<&str> = OURS.iter().copied().filter(|c| names.contains(c)).collect();
        if ours.is_empty() {
            continue;
        }
        let _ = write!(s, "\n**{store}**\n\n| workload | kublk best |");
        let kref = crate::kernel_ref(store);
        for c in &ours {
            let _ = write!(s, " {c} ×{kref} | {c} ×kublk | {c} srv CPU ×kublk |");
            if v3 {
                let _ = write!(s, " {c} guest CPU/GiB ×kublk |");
            }
        }
        s.push_str("\n|---|---|");
        for _ in &ours {
            s.push_str(if v3 {
                "---:|---:|---:|---:|"
            } else {
                "---:|---:|---:|"
            });
        }
        s.push('\n');
        let (mut win, mut loss, mut same) = (0, 0, 0);
        let (mut cwin, mut closs, mut csame) = (0, 0, 0);
        let (mut gwin, mut gloss, mut gsame) = (0, 0, 0);
        for &wi in &wls {
            let best = res.kublk_best(store, wi);
            let lp = res.cell(store, wi, kref);
            let _ = write!(
                s,
                "| {} | {} |",
                res.workloads[wi].id(),
                best.map(|b| b.0).unwrap_or("n/a")
            );
            for c in &ours {
                let x = res.cell(store, wi, c);
                let b = best.map(|b| b.1);
                if v3 {
                    use crate::report3::ratio3;
                    let xs = x.as_ref();
                    let _ = write!(
                        s,
                        " {} | {} | {} | {} |",
                        ratio3(xs, lp.as_ref(), |c| Some(c.iops)),
                        ratio3(xs, b.as_ref(), |c| Some(c.iops)),
                        ratio3(xs, b.as_ref(), |c| c.srv),
                        ratio3(xs, b.as_ref(), |c| c.guest),
                    );
                    let off = |c: Option<CellStats>| c.is_some_and(|c| !c.agree);
                    if x.is_some() && (off(x) || off(lp) || off(b)) {
                        disagree += 1;
                    }
                    if x.zip(b).is_some_and(|(x, b)| !x.agree || !b.agree) {
                        continue;
                    }
                    if let Some(c) = x
                        .and_then(|x| x.guest)
                        .zip(b.and_then(|b| b.guest))
                        .and_then(|(a, b)| compare(&a, &b))
                    {
                        if c.win_lower() {
                            gwin += 1;
                        } else if c.same {
                            gsame += 1;
                        } else {
                            gloss += 1;
                        }
                    }
                } else {
                    let _ = write!(
                        s,
                        " {} | {} | {} |",
                        cmp_text(x.map(|x| x.iops), lp.map(|l| l.iops)),
                        cmp_text(x.map(|x| x.iops), b.map(|b| b.iops)),
                        cmp_text(x.and_then(|x| x.srv), b.and_then(|b| b.srv)),
                    );
                }
                if let (Some(x), Some(b)) = (x, b) {
                    if let Some(c) = compare(&x.iops, &b.iops) {
                        if c.win_higher() {
                            win += 1;
                        } else if c.same {
                            same += 1;
                        } else {
                            loss += 1;
                        }
                    }
                    if let Some(c) = x.srv.zip(b.srv).and_then(|(a, b)| compare(&a, &b)) {
                        if c.win_lower() {
                            cwin += 1;
                        } else if c.same {
                            csame += 1;
                        } else {
                            closs += 1;
                        }
                    }
                }
            }
            s.push('\n');
        }
        if let Some(ceil) = crate::ceiling(store).filter(|c| names.contains(c)) {
            let _ = write!(
                s,
                "\nAgainst the ceiling, {ceil} (our loop target on a raw image, bpf-kernel): \
                 IOPS of each of our modes divided by its.\n\n| workload |"
            );
            for c in &ours {
                let _ = write!(s, " {c} ×{ceil} |");
            }
            s.push_str("\n|---|");
            for _ in &ours {
                s.push_str("---:|");
            }
            s.push('\n');
            for &wi in &wls {
                let top = res.cell(store, wi, ceil);
                let _ = write!(s, "| {} |", res.workloads[wi].id());
                for c in &ours {
                    let x = res.cell(store, wi, c);
                    let _ = write!(s, " {} |", cmp_text(x.map(|x| x.iops), top.map(|t| t.iops)));
                }
                s.push('\n');
            }
        }
        tally.push((store.clone(), win, loss, same, cwin, closs, csame));
        if v3 {
            gtally.push((store.clone(), gwin, gloss, gsame));
        }
    }
    if !tally.is_empty() {
        s.push_str("\nOur modes against kublk's best, outside the noise (cells x modes): ");
        let parts: Vec<String> = tally
            .iter()
            .map(|(st, w, l, m, cw, cl, cm)| {
                format!(
                    "{st}: IOPS {w} higher, {l} lower, {m} `~`; server CPU/GiB {cw} lower, {cl} higher, {cm} `~`"
                )
            })
            .collect();
        s.push_str(&parts.join("; "));
        s.push_str(".\n");
    }
    if v3 {
        s.push_str(&crate::report3::headline_tail(&gtally, disagree));
    }
    s
}

fn store_section(res: &Results, store: &str) -> String {
    let mut s = format!("\n## Backing store: {store}\n\n");
    let st = res.store(store);
    match st {
        Some(x) if x.ok => {
            let _ = writeln!(s, "`{}`: {}.", x.dev, x.note);
        }
        Some(x) => {
            let _ = writeln!(s, "**n/a**: {}. Every cell of this store is n/a.", x.note);
            return s;
        }
        None => {
            s.push_str("**n/a**: not reached.\n");
            return s;
        }
    }
    if store == "nullb" {
        s.push_str(
            "\nnull_blk with `memory_backed=0` stores nothing: a write moves no data at all, a read \
             gets its buffer zero-filled by the driver (`zero_fill_bio`, a memset in the guest, \
             itself weighed per `rep stos` iteration under icount). So the write cells (the RFC's \
             jobs) show the cost of each data path alone, as on a device that moves data by DMA.\n",
        );
    }
    if store == "virtio" {
        s.push_str(
            "\nvirtio-blk: the data moves in QEMU's iothread (host CPU), not on the guest's vCPUs. \
             Under icount the guest does not see that work as instructions, and waits for the \
             disk are skipped (`sleep=off`), so this table shows what the guest's CPUs spend per \
             request on a device that moves data by \"DMA\"; compare *guest CPU s/GiB* of `raw` here \
             with `raw` on tmpfs (a memcpy in the guest) to see how much data movement left the guest.\n",
        );
    }
    let (wls, names) = res.store_cells(store);
    if store == "virtio" && res.timing != Timing::Tcg {
        let spread: Vec<String> = wls
            .iter()
            .flat_map(|&wi| names.iter().map(move |c| (wi, *c)))
            .filter_map(|(wi, c)| {
                res.cell(store, wi, c)
                    .filter(|x| !x.agree)
                    .map(|x| (wi, c, x))
            })
            .map(|(wi, c, x)| {
                format!(
                    "{} {c}: {}–{} IOPS",
                    res.workloads[wi].id(),
                    iops(x.iops.min),
                    iops(x.iops.max)
                )
            })
            .collect();
        if !spread.is_empty() {
            let _ = writeln!(
                s,
                "\n**Not deterministic under icount** (measured here: {}): the disk's completions \
                 come from a host thread in real time while icount skips the guest's idle time, so \
                 this store's IOPS depend on the host. Only the counts per request and the guest's \
                 CPU per GiB mean something in this table; take its throughput from a plain-TCG \
                 boot.",
                spread.join("; ")
            );
        }
    }
    if store == "virtio" {
        // Measured: does the data movement leave the guest? The same
        // contender and workload on tmpfs (a memcpy on a guest CPU).
        let mut rows = Vec::new();
        for &wi in &wls {
            for &c in &names {
                let v = res.cell(store, wi, c).and_then(|x| x.guest);
                let t = res.cell("tmpfs", wi, c).and_then(|x| x.guest);
                if let (Some(v), Some(t)) = (v, t) {
                    rows.push(format!(
                        "{} {c}: {} here vs {} on tmpfs ({})",
                        res.workloads[wi].id(),
                        num(v.med),
                        num(t.med),
                        cmp_text(Some(v), Some(t))
                    ));
                }
            }
        }
        if rows.is_empty() {
            s.push_str(
                "\nWhether the data movement left the guest's CPUs was not measured in this run \
                 (no contender ran on both virtio and tmpfs).\n",
            );
        } else {
            let _ = writeln!(
                s,
                "\nMeasured: guest CPU s/GiB on virtio-blk against the same cell on tmpfs (below 1× \
                 = less guest CPU per byte, the data moved elsewhere): {}.",
                rows.join("; ")
            );
        }
    }
    // Throughput and CPU.
    let _ = writeln!(
        s,
        "\n### Throughput and CPU\n\n| workload | contender | IOPS [interval] | MiB/s | p50 µs | p99 µs | ×{} | ×kublk best | server CPU s/GiB | server CPU % | guest CPU s/GiB | n (spread) |\n\
         |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        crate::kernel_ref(store)
    );
    for &wi in &wls {
        let w = &res.workloads[wi];
        let kref = crate::kernel_ref(store);
        let lp = res.cell(store, wi, kref);
        let best = res.kublk_best(store, wi);
        for &c in &names {
            let Some(x) = res.cell(store, wi, c) else {
                let m = missing(res, store, wi, c);
                let _ = writeln!(s, "| {} | {c} | {m} | | | | | | | | | |", w.id());
                continue;
            };
            let srv = |v: Option<Stat>| {
                if is_server(c) {
                    opt(v, num)
                } else {
                    "–".into()
                }
            };
            let _ = writeln!(
                s,
                "| {} | {c}{} | {} | {} | {} | {} | {} | {} | {} | {} | {} | {} |",
                w.id(),
                if x.agree { "" } else { " †" },
                with_ci(&x.iops, iops),
                num(x.bw.med),
                opt(x.p50, num),
                opt(x.p99, num),
                if c == kref {
                    "1".into()
                } else {
                    cmp_text(Some(x.iops), lp.map(|l| l.iops))
                },
                match best {
                    Some((b, _)) if b == c => "best".into(),
                    Some((_, b)) => cmp_text(Some(x.iops), Some(b.iops)),
                    None => "-".into(),
                },
                srv(x.srv),
                if is_server(c) {
                    x.srv_util
                        .map(|u| format!("{:.1}", u.med))
                        .unwrap_or("-".into())
                } else {
                    "–".into()
                },
                opt(x.guest, num),
                if x.iops.n > 1 {
                    format!("{} ({:.1} %)", x.iops.n, spread_pct(&x.iops))
                } else {
                    x.iops.n.to_string()
                }
            );
        }
    }
    // Cost per request.
    let servers: Vec<&str> = names.iter().copied().filter(|c| is_server(c)).collect();
    if !servers.is_empty() {
        s.push_str(
            "\n### Cost per request, counted\n\nPer device request (`/sys/block/<dev>/stat`). \
             kublk keeps no CQE/SQE/enter counters (`-`).\n\n\
             | workload | contender | server CQEs | server SQEs | io_uring_enter | ctx switches (vol+invol) | of which voluntary | server CPU s/GiB | guest CPU s/GiB |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for &wi in &wls {
            for &c in &servers {
                let Some(x) = res.cell(store, wi, c) else {
                    let _ = writeln!(
                        s,
                        "| {} | {c} | {} | | | | | | |",
                        res.workloads[wi].id(),
                        missing(res, store, wi, c)
                    );
                    continue;
                };
                let m = |v: Option<Stat>| v.map(|v| format!("{:.3}", v.med)).unwrap_or("-".into());
                let _ = writeln!(
                    s,
                    "| {} | {c} | {} | {} | {} | {} | {} | {} | {} |",
                    res.workloads[wi].id(),
                    m(x.cqes),
                    m(x.sqes),
                    m(x.enters),
                    m(x.ctxsw),
                    m(x.ctxsw_vol),
                    opt(x.srv, num),
                    opt(x.guest, num)
                );
            }
        }
    }
    // The RFC's jobs.
    let rfc: Vec<usize> = wls
        .iter()
        .copied()
        .filter(|&i| res.workloads[i].job == "rfc")
        .collect();
    if !rfc.is_empty() {
        s.push_str(
            "\n### The RFC's jobs\n\nfio direct libaio randwrite, iodepth 16, one job pinned to one \
             vCPU; ublk with 1 queue of depth 128. v1 used bs=512K, v2 bs=2048K. The RFC reported \
             server CPU ~12.5 % (copy) vs ~1 % (BPF) of one CPU on a real disk (60 s runs); compare \
             *server CPU %* (of one CPU, as `top` shows it).\n\n\
             *steady* is fio's IOPS over the second half of the run divided by the first half's \
             (100 ms samples): within 0.98–1.02 the run had reached a steady state.\n\n\
             | job | contender | MiB/s | server CPU % of one CPU | server CPU s/GiB | guest CPU s/GiB | guest busy % of all vCPUs | steady |\n\
             |---|---|---:|---:|---:|---:|---:|---:|\n",
        );
        for &wi in &rfc {
            let w = &res.workloads[wi];
            for &c in &names {
                let job = format!(
                    "{} ({})",
                    bs_name(w.bs),
                    if w.bs == 512 << 10 { "v1" } else { "v2" }
                );
                let Some(x) = res.cell(store, wi, c) else {
                    let _ = writeln!(
                        s,
                        "| {job} | {c} | {} | | | | |",
                        missing(res, store, wi, c)
                    );
                    continue;
                };
                let _ = writeln!(
                    s,
                    "| {job} | {c} | {} | {} | {} | {} | {} | {} |",
                    with_ci(&x.bw, num),
                    if is_server(c) {
                        opt(x.srv_util, num)
                    } else {
                        "–".into()
                    },
                    if is_server(c) {
                        opt(x.srv, num)
                    } else {
                        "–".into()
                    },
                    opt(x.guest, num),
                    opt(x.util, num),
                    x.steady
                        .map(|v| format!("{:.3}", v.med))
                        .unwrap_or_else(|| "not logged".into())
                );
            }
        }
    }
    if res.version >= 3 {
        s.push_str(&crate::report3::store_extras(res, store));
    }
    s
}

fn contenders(res: &Results) -> String {
    let mut s = String::from(
        "\n## Contenders\n\n| store | contender | status | device | mode / flags | note |\n|---|---|---|---|---|---|\n",
    );
    for (store, ..) in &res.cells {
        let (_, names) = res.store_cells(store);
        for c in names {
            match res.contender(store, c) {
                Some(x) => {
                    let _ = writeln!(
                        s,
                        "| {store} | {c} | {} | `{}` | {} | {} |",
                        if x.ok { "ok" } else { "**n/a**" },
                        if x.dev.is_empty() { "-" } else { &x.dev },
                        if x.mode.is_empty() { "-" } else { &x.mode },
                        x.note.replace('|', "\\|")
                    );
                }
                None => {
                    let _ = writeln!(
                        s,
                        "| {store} | {c} | **n/a** | - | - | {} |",
                        res.na_reason(store, c)
                            .unwrap_or_default()
                            .replace('|', "\\|")
                    );
                }
            }
        }
    }
    s.push_str(
        "\nloop: `losetup --direct-io=on`; copy / zc / bpf / bpf-kernel: `ublk-user add loop --mode M` \
         (zc = UBLK_F_AUTO_BUF_REG; bpf* with `--no-fallback`); kublk: the driver's selftest server \
         (tools/testing/selftests/ublk, built by `cargo xtask test`), `kublk add -t loop -q 1 -d 128`, \
         kublk-zc adds `--auto_zc` (UBLK_F_AUTO_BUF_REG), kublk-batch `--auto_zc -b` \
         (UBLK_F_BATCH_IO); raw: fio on the store itself. Every device runs the I/O scheduler `none`.\n",
    );
    s
}

fn limits(res: &Results) -> String {
    let left_out = if res.version >= 3 {
        LEFT_OUT_V3
    } else {
        LEFT_OUT
    };
    format!(
        "\n## What the matrix left out\n\n{left_out}.\n\n\
         ## icount's limits\n\n\
         - No parallelism: all vCPUs run in one host thread, round robin, and guest time is the \
         instruction count over all of them. Work that would overlap on two real CPUs (fio on one, \
         the server on the other) adds up here; a design that moves work off the submitting CPU \
         gains nothing from it in this model.\n\
         - It measures instructions, not time: no caches, no memory bandwidth, no DMA, no device \
         latency (waits are skipped with `sleep=off`).\n\
         - `rep movs`/`rep stos` count one instruction per iteration: with ERMS/FSRM (`-cpu max` \
         has them) the kernel copies with `rep movsb`, one instruction per byte, so copies weigh \
         far more than on hardware. `--no-erms` boots `-cpu max,-erms,-fsrm` (copies by 8-byte \
         `rep movsq` or unrolled loops) to show how much the ratios move with the copy weighting.\n\
         - Results are exact for this guest kernel and binaries; any change to either changes the \
         numbers.\n"
    )
}

fn failures(res: &Results) -> String {
    if res.failures.is_empty() {
        return String::new();
    }
    let mut s = String::from("\n## Failed runs\n\n");
    for ((store, wi, c), msgs) in &res.failures {
        let _ = writeln!(
            s,
            "- {store} {} {c}: {} failed ({})",
            res.workloads[*wi].id(),
            msgs.len(),
            msgs.first().cloned().unwrap_or_default()
        );
    }
    s
}

/// The report of one or two boots (the first primary, a plain-TCG one after
/// it secondary).
pub fn markdown(
    boots: &[(Results, RunInfo)],
    svgs: &[(String, Metric, String)],
    csv: &str,
) -> String {
    let (res, info) = &boots[0];
    let secondary = boots.get(1).map(|b| &b.0);
    let mut s = header(res, info, secondary);
    s.push_str(&method(res));
    s.push_str(&headline(res, info));
    for (store, ..) in &res.cells {
        s.push_str(&store_section(res, store));
    }
    if !svgs.is_empty() {
        s.push_str("\n## Plots\n\nMedian per cell, bars = the interval.\n\n");
        for (store, m, name) in svgs {
            let _ = writeln!(s, "![{store}: {}]({name})\n", m.title());
        }
    }
    s.push_str(&contenders(res));
    s.push_str(&failures(res));
    if let Some((r2, i2)) = boots.get(1) {
        s.push_str("\n---\n\n# Secondary: plain TCG wall-clock timing\n\n");
        s.push_str(&header(r2, i2, None).replacen("# ", "#### ", 1));
        s.push_str(&method(r2));
        s.push_str(&headline(r2, i2));
        for (store, ..) in &r2.cells {
            s.push_str(&store_section(r2, store));
        }
        s.push_str(&failures(r2));
    }
    s.push_str(&limits(res));
    let _ = writeln!(
        s,
        "\n## Raw data\n\nEvery run: [{csv}]({csv}) (one line a run: timing, store, IOPS, MiB/s, \
         p50/p99 µs, bytes, window, server and guest CPU, device requests and bytes, context \
         switches, ublk-user counters, and the derived per-GiB and % values). The run \
         directory `{}` (fio's JSON of each run, the guest's counters, the plan) is committed as \
         [{stem}.raw.tar.xz]({stem}.raw.tar.xz); `cargo xtask bench --from` on it, unpacked, \
         regenerates this report, the CSV and the plots byte for byte (a host test checks it for \
         the newest run).",
        info.raw_dir
            .file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_default(),
        stem = csv.trim_end_matches(".csv"),
    );
    s
}

/// A few lines for the terminal: IOPS, ×loop and server CPU of each cell.
pub fn console_summary(res: &Results, info: &RunInfo) -> String {
    let mut s = format!("{}\n", timing_title(res.timing));
    let (ok, note) = headline_gate(res, info);
    if !ok {
        s.push_str(&note);
    }
    for (store, ..) in &res.cells {
        let (wls, names) = res.store_cells(store);
        let _ = writeln!(s, "[{store}]");
        for &wi in &wls {
            let kref = crate::kernel_ref(store);
            let lp = res.cell(store, wi, kref);
            for &c in &names {
                let line = match res.cell(store, wi, c) {
                    Some(x) => format!(
                        "{} IOPS (n={}{}), ×{kref} {}, server CPU {} s/GiB, ctxsw/req {}",
                        with_ci(&x.iops, iops),
                        x.iops.n,
                        if x.agree { "" } else { ", reps disagree" },
                        cmp_text(Some(x.iops), lp.map(|l| l.iops)),
                        x.srv.map(|v| num(v.med)).unwrap_or("-".into()),
                        x.ctxsw
                            .map(|v| format!("{:.3}", v.med))
                            .unwrap_or("-".into())
                    ),
                    None => missing(res, store, wi, c),
                };
                let _ = writeln!(s, "  {:<24} {:<12} {line}", res.workloads[wi].id(), c);
            }
        }
        if let Some(x) = res.store(store).filter(|x| !x.ok) {
            let _ = writeln!(s, "  n/a: {}", x.note);
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::stats;

    #[test]
    fn number_formats() {
        assert_eq!(num(1234.4), "1234");
        assert_eq!(num(12.34), "12.3");
        assert_eq!(num(1.234), "1.23");
        assert_eq!(num(0.1234), "0.123");
        assert_eq!(iops(123_456.0), "123.5k");
        assert_eq!(ratio(Some(3.0), Some(2.0)), "1.50×");
        assert_eq!(ratio(Some(3.0), None), "-");
    }

    #[test]
    fn ratio_texts() {
        let a = stats::stat_floor([100.0, 100.2], 1.0).unwrap();
        let b = stats::stat_floor([150.0, 150.3], 1.0).unwrap();
        assert_eq!(cmp_text(Some(a), Some(a)), "~");
        assert!(
            cmp_text(Some(b), Some(a)).starts_with("1.50× ["),
            "{}",
            cmp_text(Some(b), Some(a))
        );
        assert_eq!(cmp_text(None, Some(a)), "-");
        assert_eq!(with_ci(&a, num), "100 [99.1–101]");
    }
}
