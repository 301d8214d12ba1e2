//! The markdown report: header, contenders, summary tables, one table per
//! workload with absolute numbers and ratios to copy and to kernel loop.

use super::json::Json;
use super::svg::Metric;
use super::{bs_name, CellStats, Results, RunInfo, Stat, SERVERS};
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

fn spread(s: &Stat) -> String {
    if s.n > 1 {
        format!("{} ({}–{})", num(s.med), num(s.min), num(s.max))
    } else {
        num(s.med)
    }
}

fn opt(s: Option<Stat>, f: fn(&Stat) -> String) -> String {
    s.map(|s| f(&s)).unwrap_or_else(|| "-".into())
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a.is_finite() => format!("{:.2}×", a / b),
        _ => "-".into(),
    }
}

fn med(s: Option<Stat>) -> Option<f64> {
    s.map(|s| s.med)
}

/// The value shown for a contender without numbers in a cell.
fn missing(res: &Results, wl: usize, c: &str) -> String {
    if res.na_reason(c).is_some() {
        "n/a".into()
    } else if res.failures.contains_key(&(wl, c.to_string())) {
        "failed".into()
    } else {
        "-".into()
    }
}

fn header(res: &Results, info: &RunInfo) -> String {
    let env = |k: &str| res.env.get(k).cloned().unwrap_or_else(|| "?".into());
    let accel = env("accel");
    let mut s = String::new();
    let date = env("start");
    let _ = writeln!(
        s,
        "# ublk-ebpf benchmark: kernel {}, {}, {}\n",
        env("kernel"),
        accel.to_uppercase(),
        date.get(..10).unwrap_or(&date)
    );
    if accel == "tcg" {
        let _ = writeln!(
            s,
            "> **Emulated numbers.** This guest ran under QEMU TCG (binary translation, no \
             hardware virtualisation). TCG makes CPU work (memory copies, syscalls, \
             io_uring and BPF execution) far more expensive than I/O to a RAM-backed \
             store, so it distorts absolute bandwidth and the CPU ratios between data \
             paths. Real hardware or KVM numbers will differ; read these as relative \
             and qualitative.\n"
        );
    }
    let loads = if info.load_start.is_empty() {
        "not recorded".to_string()
    } else {
        format!(
            "{} at start, {} at end (1/5/15 min; the host is shared)",
            info.load_start, info.load_end
        )
    };
    let mem_mib = env("mem_kb")
        .parse::<u64>()
        .map(|k| format!("{} MiB", k / 1024))
        .unwrap_or_else(|_| "?".into());
    let ok: usize = res.samples.values().map(Vec::len).sum();
    let failed: usize = res.failures.values().map(Vec::len).sum();
    let not_run = res.planned.saturating_sub(ok + failed + res.na);
    let reps_n: Vec<usize> = res.samples.values().map(Vec::len).collect();
    let reps_text = match (reps_n.iter().min(), reps_n.iter().max()) {
        (Some(a), Some(b)) if a == b => format!("{a} measured repetitions in every cell"),
        (Some(a), Some(b)) => format!("{a} to {b} measured repetitions per cell"),
        _ => "no measurements".into(),
    };
    let rows = [
        (
            "machine",
            format!(
                "{}, {} host cores; load average {loads}",
                info.host_cpu, info.host_cores
            ),
        ),
        (
            "accelerator",
            match accel.as_str() {
                "tcg" => "TCG (QEMU `-accel tcg -cpu max`)".to_string(),
                "kvm" => "KVM (QEMU `-accel kvm -cpu max`)".to_string(),
                a => a.to_string(),
            },
        ),
        (
            "guest",
            format!(
                "{} vCPUs, {mem_mib} RAM, kernel {} ({})",
                env("vcpus"),
                env("kernel"),
                env("kernel_version")
            ),
        ),
        ("git commit", format!("`{}`", info.commit)),
        ("command", format!("`{}`", info.command)),
        (
            "fio",
            format!(
                "{}, ioengine=libaio, direct=1, numjobs=1, time_based, {} s a run, no ramp; \
                 latency = completion latency (clat) percentiles",
                env("fio"),
                env("runtime")
            ),
        ),
        ("backing store", env("backing")),
        (
            "repetitions",
            format!(
                "{reps_text}; median shown, (min–max) over the repetitions; contender order \
                 rotated per cell and repetition, repetitions outermost"
            ),
        ),
        ("trimmed", info.trimmed.clone()),
        (
            "runs",
            format!(
                "{} planned: {ok} measured, {failed} failed, {} n/a, {not_run} not run; {} to {}",
                res.planned,
                res.na,
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

fn contenders(res: &Results) -> String {
    let mut s = String::from(
        "\n## Contenders\n\n| contender | status | device | mode | what |\n|---|---|---|---|---|\n",
    );
    let what = |c: &str| {
        match c {
        "loop" => "kernel loop driver, `losetup --direct-io=on` (reference)",
        "copy" => "`ublk-user add loop --mode copy`: the kernel copies between the request and the server's buffer",
        "zc" => "`ublk-user add loop --mode zc`: mainline zero copy, UBLK_F_AUTO_BUF_REG + READ/WRITE_FIXED",
        "bpf" => "`ublk-user add loop --mode bpf --no-fallback`: the BPF program submits the backing I/O with the request's pages (this project)",
        "bpf-kernel" => "`ublk-user add loop --mode bpf-kernel --no-fallback`: the program runs in the submitter's context, the driver issues and completes the backing I/O (this project)",
        "raw" => "fio on the backing file itself, O_DIRECT (upper bound, no block device in between)",
        _ => "",
    }
    };
    for c in res.contender_names() {
        let x = res.contender(c).expect("listed");
        let status = if x.ok { "ok" } else { "**n/a**" };
        let _ = writeln!(
            s,
            "| {c} | {status} | `{}` | {} | {}; {} |",
            if x.dev.is_empty() { "-" } else { &x.dev },
            if x.mode.is_empty() { "-" } else { &x.mode },
            what(c),
            x.note.replace('|', "\\|")
        );
    }
    s.push_str(
        "\nAll contenders exist for the whole run and serve the same file; \
         the ublk servers run 1 queue of depth 128 (as in the RFC) and open the file with \
         O_DIRECT (their default; tmpfs accepts O_DIRECT since Linux 6.6), so every \
         contender but raw goes block layer -> driver -> O_DIRECT read/write on tmpfs.\n\n\
         **CPU.** *server CPU* is utime+stime of the ublk server process \
         (`/proc/<pid>/stat` of the pid in `ublk-user list --json`: the whole thread group, \
         queue threads and io-wq workers included), sampled by fio's `exec_prerun` / \
         `exec_postrun` right around the I/O phase, per GiB moved; the kernel loop driver \
         has no server (its work runs in kernel workers and shows in guest CPU). \
         *guest CPU* is busy time (user+nice+system+irq+softirq) summed over all vCPUs \
         from `/proc/stat` over the same window, per GiB: it includes fio itself and any \
         kernel work, so it is the fair whole-system cost. Clock ticks are 10 ms.\n",
    );
    s
}

/// Summary across all matrix cells for one metric.
fn summary(
    res: &Results,
    title: &str,
    names: &[&'static str],
    f: fn(&CellStats) -> Option<f64>,
) -> String {
    let mut s = format!("\n## {title}\n\n| workload | bs |");
    for c in names {
        let _ = write!(s, " {c} |");
    }
    let has = |c: &str| names.contains(&c);
    let ratios: Vec<(&str, &str)> = [
        ("bpf", "zc"),
        ("bpf", "copy"),
        ("zc", "copy"),
        ("bpf", "loop"),
        ("bpf-kernel", "copy"),
        ("bpf-kernel", "loop"),
    ]
    .into_iter()
    .filter(|(a, b)| has(a) && has(b))
    .collect();
    for (a, b) in &ratios {
        let _ = write!(s, " {a}/{b} |");
    }
    s.push_str("\n|---|---|");
    for _ in 0..names.len() + ratios.len() {
        s.push_str("---:|");
    }
    s.push('\n');
    for (i, w) in res.workloads.iter().enumerate() {
        let _ = write!(s, "| {} | {} |", w.group(), bs_name(w.bs));
        for c in names {
            let v = res.cell(i, c).and_then(|x| f(&x));
            let _ = write!(s, " {} |", v.map(num).unwrap_or_else(|| missing(res, i, c)));
        }
        for (a, b) in &ratios {
            let va = res.cell(i, a).and_then(|x| f(&x));
            let vb = res.cell(i, b).and_then(|x| f(&x));
            let _ = write!(s, " {} |", ratio(va, vb));
        }
        s.push('\n');
    }
    s
}

/// Geometric mean of `a/b` of a metric over the matrix workloads at one
/// block size, with the number of workloads it covers.
fn geomean_ratio(
    res: &Results,
    bs: u64,
    a: &str,
    b: &str,
    f: fn(&CellStats) -> Option<f64>,
) -> Option<(f64, usize)> {
    let logs: Vec<f64> = res
        .workloads
        .iter()
        .enumerate()
        .filter(|(_, w)| w.job == "matrix" && w.bs == bs)
        .filter_map(|(i, _)| {
            let va = res.cell(i, a).and_then(|x| f(&x))?;
            let vb = res.cell(i, b).and_then(|x| f(&x))?;
            (va > 0.0 && vb > 0.0).then(|| (va / vb).ln())
        })
        .collect();
    (!logs.is_empty()).then(|| {
        (
            (logs.iter().sum::<f64>() / logs.len() as f64).exp(),
            logs.len(),
        )
    })
}

/// Where bpf stands against zc, copy and loop at each block size.
pub fn headline(res: &Results) -> String {
    let names = res.contender_names();
    let has = |c: &str| names.contains(&c) && res.na_reason(c).is_none();
    let mut bss: Vec<u64> = res
        .workloads
        .iter()
        .filter(|w| w.job == "matrix")
        .map(|w| w.bs)
        .collect();
    bss.sort_unstable();
    bss.dedup();
    if bss.is_empty() {
        return String::new();
    }
    type Col = (
        &'static str,
        &'static str,
        &'static str,
        fn(&CellStats) -> Option<f64>,
    );
    let cols: Vec<Col> = vec![
        ("MiB/s", "bpf", "zc", |x| Some(x.bw.med)),
        ("MiB/s", "bpf", "copy", |x| Some(x.bw.med)),
        ("MiB/s", "bpf", "loop", |x| Some(x.bw.med)),
        ("MiB/s", "zc", "copy", |x| Some(x.bw.med)),
        ("MiB/s", "bpf-kernel", "copy", |x| Some(x.bw.med)),
        ("MiB/s", "bpf-kernel", "loop", |x| Some(x.bw.med)),
        ("server CPU/GiB", "bpf", "zc", |x| med(x.srv)),
        ("server CPU/GiB", "bpf", "copy", |x| med(x.srv)),
        ("guest CPU/GiB", "bpf", "zc", |x| med(x.guest)),
        ("guest CPU/GiB", "bpf", "copy", |x| med(x.guest)),
        ("guest CPU/GiB", "bpf", "loop", |x| med(x.guest)),
    ];
    let cols: Vec<Col> = cols
        .into_iter()
        .filter(|(_, a, b, _)| has(a) && has(b))
        .collect();
    if cols.is_empty() {
        return String::new();
    }
    let mut s = String::from(
        "\n## Headline: ratios per block size\n\nGeometric mean, over the matrix workloads \
         of this run at that block size (up to randread, randwrite, read, write x iodepth 1 and 32), \
         of the ratio of medians. \
         Bandwidth: above 1× is better for the first; CPU per GiB: below 1× is better for the first.\n\n| bs |",
    );
    for (m, a, b, _) in &cols {
        let _ = write!(s, " {m} {a}/{b} |");
    }
    s.push_str("\n|---|");
    for _ in &cols {
        s.push_str("---:|");
    }
    s.push('\n');
    for bs in bss {
        let _ = write!(s, "| {} |", bs_name(bs));
        for (_, a, b, f) in &cols {
            let v = geomean_ratio(res, bs, a, b, *f)
                .map(|(r, _)| format!("{r:.2}×"))
                .unwrap_or_else(|| "-".into());
            let _ = write!(s, " {v} |");
        }
        s.push('\n');
    }
    s
}

fn workload_tables(res: &Results) -> String {
    let names = res.contender_names();
    let mut s = String::from("\n## Per workload\n\nRatios: MiB/s and CPU per GiB of each contender divided by copy's and by kernel loop's (same cell). \
         For bandwidth higher is better; for CPU per GiB lower is better.\n");
    let mut groups: Vec<String> = Vec::new();
    for w in &res.workloads {
        if !groups.contains(&w.group()) {
            groups.push(w.group());
        }
    }
    for g in groups {
        let _ = writeln!(s, "\n### {g}\n");
        if g == "rfc" {
            s.push_str(
                "The RFC's job: direct libaio, bs=2048K, iodepth=16, randwrite, 1 job pinned to CPU 0 \
                 (`cpus_allowed=0`). The RFC reported 371 MiB/s both ways and daemon CPU ~12.5% (copy) \
                 vs ~1% (BPF) of one CPU on real hardware (60 s runs); compare with *server CPU %*.\n\n",
            );
        }
        s.push_str(
            "| bs | contender | IOPS | MiB/s | p50 µs | p99 µs | server CPU s/GiB | server CPU % | guest CPU s/GiB | guest busy % | MiB/s ×copy | MiB/s ×loop | server CPU ×copy | guest CPU ×copy | guest CPU ×loop |\n\
             |---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|\n",
        );
        for (i, w) in res.workloads.iter().enumerate() {
            if w.group() != g {
                continue;
            }
            let copy = res.cell(i, "copy");
            let lp = res.cell(i, "loop");
            for &c in &names {
                let Some(x) = res.cell(i, c) else {
                    let m = missing(res, i, c);
                    let _ = writeln!(
                        s,
                        "| {} | {c} | {m} | {m} | | | | | | | | | | | |",
                        bs_name(w.bs)
                    );
                    continue;
                };
                let (srv, srv_util) = if SERVERS.contains(&c) {
                    (
                        opt(x.srv, spread),
                        opt(x.srv_util, |s| format!("{:.0}", s.med)),
                    )
                } else {
                    ("–".into(), "–".into())
                };
                let _ = writeln!(
                    s,
                    "| {} | {c} | {} | {} | {} | {} | {srv} | {srv_util} | {} | {} | {} | {} | {} | {} | {} |",
                    bs_name(w.bs),
                    iops(x.iops.med),
                    spread(&x.bw),
                    opt(x.p50, |s| num(s.med)),
                    opt(x.p99, |s| num(s.med)),
                    opt(x.guest, |s| num(s.med)),
                    opt(x.util, |s| format!("{:.0}", s.med)),
                    ratio(Some(x.bw.med), copy.map(|c| c.bw.med)),
                    ratio(Some(x.bw.med), lp.map(|c| c.bw.med)),
                    if SERVERS.contains(&c) {
                        ratio(med(x.srv), copy.and_then(|c| med(c.srv)))
                    } else {
                        "–".into()
                    },
                    ratio(med(x.guest), copy.and_then(|c| med(c.guest))),
                    ratio(med(x.guest), lp.and_then(|c| med(c.guest))),
                );
            }
        }
    }
    s
}

fn bpf_counters(res: &Results) -> String {
    let Some(list) = &res.list_end else {
        return String::new();
    };
    let mut s = String::new();
    for dev in list.as_array() {
        if dev.get("mode").and_then(Json::as_str) != Some("bpf") {
            continue;
        }
        let fields: Vec<String> = dev
            .members()
            .iter()
            .filter(|(k, _)| k.starts_with("bpf_") || k.starts_with("server_"))
            .filter_map(|(k, v)| v.as_f64().map(|n| format!("{k}={n}")))
            .collect();
        if !fields.is_empty() {
            let _ = writeln!(
                s,
                "\n## BPF path check\n\nCounters of the bpf device after the last run (`ublk-user list --json`): {}. \
                 `bpf_redirected` counts requests the program served (zero copy); `server_served` those the server \
                 handled itself (copy path).\n",
                fields.join(", ")
            );
        }
    }
    s
}

pub fn markdown(res: &Results, info: &RunInfo, svgs: &[(Metric, String)], csv: &str) -> String {
    let mut s = header(res, info);
    s.push_str(&contenders(res));
    s.push_str(&headline(res));
    if !svgs.is_empty() {
        s.push_str("\n## Plots\n\n");
        for (m, name) in svgs {
            let _ = writeln!(s, "![{}]({name})\n", m.title());
        }
    }
    let names = res.contender_names();
    let servers: Vec<&'static str> = names
        .iter()
        .copied()
        .filter(|c| SERVERS.contains(c))
        .collect();
    s.push_str(&summary(
        res,
        "Summary: bandwidth, MiB/s (median)",
        &names,
        |x| Some(x.bw.med),
    ));
    if !servers.is_empty() {
        s.push_str(&summary(
            res,
            "Summary: ublk server CPU, s per GiB moved (median; lower is better)",
            &servers,
            |x| med(x.srv),
        ));
    }
    s.push_str(&summary(
        res,
        "Summary: whole-guest CPU, s per GiB moved (median; lower is better)",
        &names,
        |x| med(x.guest),
    ));
    s.push_str(&workload_tables(res));
    s.push_str(&bpf_counters(res));
    if !res.failures.is_empty() {
        s.push_str("\n## Failed runs\n\n");
        for ((wi, c), msgs) in &res.failures {
            let _ = writeln!(
                s,
                "- {} {c}: {} failed ({})",
                res.workloads[*wi].id(),
                msgs.len(),
                msgs.first().cloned().unwrap_or_default()
            );
        }
    }
    let _ = writeln!(
        s,
        "\n## Raw data\n\nEvery run: [{csv}]({csv}) (one line a run: IOPS, MiB/s, p50/p99 µs, bytes, \
         server CPU s, guest busy/total CPU s). fio's JSON of each run stayed in `{}` on the machine \
         that ran it (not committed).",
        info.raw_dir
            .strip_prefix(crate::util::root())
            .unwrap_or(&info.raw_dir)
            .display()
    );
    s
}

/// A few lines for the terminal: bandwidth and server CPU of each cell.
pub fn console_summary(res: &Results) -> String {
    let names = res.contender_names();
    let mut s = headline(res);
    s.push('\n');
    let _ = write!(s, "{:<22} {:>5}", "workload", "bs");
    for c in &names {
        let _ = write!(s, " {:>16}", format!("{c} MiB/s|s/GiB"));
    }
    s.push('\n');
    for (i, w) in res.workloads.iter().enumerate() {
        let _ = write!(s, "{:<22} {:>5}", w.group(), bs_name(w.bs));
        for c in &names {
            let cell = match res.cell(i, c) {
                Some(x) => format!(
                    "{}|{}",
                    num(x.bw.med),
                    med(x.srv).map(num).unwrap_or_else(|| "-".into())
                ),
                None => missing(res, i, c),
            };
            let _ = write!(s, " {cell:>16}");
        }
        s.push('\n');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

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
}
