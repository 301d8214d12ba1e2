//! Hand-written SVG line plots: one file per metric, one panel per workload
//! (rw x iodepth), block size on a log2 x axis, the metric on a log10 y
//! axis, one line per contender with min-max bars over the repetitions.

use crate::{bs_name, CellStats, Results, Stat};
use std::fmt::Write;

#[derive(Clone, Copy, Debug, PartialEq)]
pub enum Metric {
    Bandwidth,
    ServerCpu,
    GuestCpu,
}

impl Metric {
    pub fn title(self) -> &'static str {
        match self {
            Metric::Bandwidth => "Bandwidth vs block size",
            Metric::ServerCpu => "ublk server CPU time per GiB moved vs block size",
            Metric::GuestCpu => "Whole-guest CPU time per GiB moved vs block size",
        }
    }

    pub fn unit(self) -> &'static str {
        match self {
            Metric::Bandwidth => "MiB/s (higher is better)",
            Metric::ServerCpu => "server CPU s/GiB (lower is better)",
            Metric::GuestCpu => "guest CPU s/GiB (lower is better)",
        }
    }

    fn value(self, c: &CellStats) -> Option<Stat> {
        match self {
            Metric::Bandwidth => Some(c.bw),
            Metric::ServerCpu => c.srv.filter(|s| s.med > 0.0),
            Metric::GuestCpu => c.guest,
        }
    }
}

/// Line colour and dash pattern of a contender.
fn style(c: &str) -> (&'static str, &'static str) {
    match c {
        "loop" | "dm" => ("#444444", "6,3"),
        "copy" => ("#d62728", ""),
        "zc" => ("#1f77b4", ""),
        "bpf" => ("#2ca02c", ""),
        "bpf-kernel" => ("#17becf", ""),
        "kublk" => ("#ff7f0e", "4,2"),
        "kublk-zc" => ("#8c564b", "4,2"),
        "kublk-batch" => ("#e377c2", "4,2"),
        _ => ("#9467bd", "2,3"),
    }
}

fn esc(s: &str) -> String {
    s.replace('&', "&amp;")
        .replace('<', "&lt;")
        .replace('>', "&gt;")
}

/// Tick label: 2000, 150, 1.5, 0.05.
pub fn fmt_tick(v: f64) -> String {
    if v >= 10_000.0 {
        format!("{}k", (v / 1000.0).round())
    } else if v >= 1.0 {
        let s = format!("{v:.1}");
        s.trim_end_matches(".0").to_string()
    } else {
        let s = format!("{v:.4}");
        s.trim_end_matches('0').trim_end_matches('.').to_string()
    }
}

/// Ticks for a log10 axis over [lo, hi]: (value, labelled).
pub fn log_ticks(lo: f64, hi: f64) -> Vec<(f64, bool)> {
    let (a, b) = (lo.log10().floor() as i32, hi.log10().ceil() as i32);
    let few = hi / lo <= 300.0;
    let mut t = Vec::new();
    for e in a..=b {
        for m in [1.0, 2.0, 5.0] {
            let v = m * 10f64.powi(e);
            if v >= lo * 0.999 && v <= hi * 1.001 {
                t.push((v, m == 1.0 || few));
            }
        }
    }
    t
}

struct Panel {
    title: String,
    /// contender -> (bs, stat) points.
    series: Vec<(&'static str, Vec<(u64, Stat)>)>,
}

/// The SVG for one metric, or None when no cell has a value for it.
pub fn plot(res: &Results, store: &str, metric: Metric) -> Option<String> {
    let (wls, mut names) = res.store_cells(store);
    if metric == Metric::ServerCpu {
        // Only the ublk contenders have a server process.
        names.retain(|c| super::is_server(c));
    }
    // Panels: matrix workloads grouped by (rw, qd), in the order they appear.
    let mut groups: Vec<(&str, u32)> = Vec::new();
    for w in wls.iter().map(|&i| &res.workloads[i]) {
        if !groups.contains(&(w.rw, w.qd)) {
            groups.push((w.rw, w.qd));
        }
    }
    let mut rws: Vec<&str> = Vec::new();
    let mut qds: Vec<u32> = Vec::new();
    for (rw, qd) in &groups {
        if !rws.contains(rw) {
            rws.push(rw);
        }
        if !qds.contains(qd) {
            qds.push(*qd);
        }
    }
    let mut panels: Vec<(usize, usize, Panel)> = Vec::new();
    for (rw, qd) in &groups {
        let mut series = Vec::new();
        for &c in &names {
            let pts: Vec<(u64, Stat)> = res
                .workloads
                .iter()
                .enumerate()
                .filter(|(i, w)| wls.contains(i) && w.rw == *rw && w.qd == *qd)
                .filter_map(|(i, w)| Some((w.bs, metric.value(&res.cell(store, i, c)?)?)))
                .collect();
            if !pts.is_empty() {
                series.push((c, pts));
            }
        }
        let col = rws.iter().position(|r| r == rw).unwrap_or(0);
        let row = qds.iter().position(|q| q == qd).unwrap_or(0);
        panels.push((
            row,
            col,
            Panel {
                title: format!("{rw}, iodepth {qd}"),
                series,
            },
        ));
    }
    if panels.iter().all(|(_, _, p)| p.series.is_empty()) {
        return None;
    }

    const PW: f64 = 300.0;
    const PH: f64 = 230.0;
    const ML: f64 = 62.0;
    const MR: f64 = 14.0;
    const MT: f64 = 28.0;
    const MB: f64 = 42.0;
    const HEAD: f64 = 78.0;
    let width = (rws.len() as f64 * PW + 20.0).max(940.0);
    let height = HEAD + qds.len() as f64 * PH + 34.0;
    let mut s = String::new();
    let _ = writeln!(
        s,
        r##"<svg xmlns="http://www.w3.org/2000/svg" width="{width}" height="{height}" viewBox="0 0 {width} {height}" font-family="sans-serif" font-size="11">"##
    );
    let _ = writeln!(s, r##"<rect width="100%" height="100%" fill="white"/>"##);
    let env = |k: &str| res.env.get(k).cloned().unwrap_or_else(|| "?".into());
    let _ = writeln!(
        s,
        r##"<text x="10" y="20" font-size="15" font-weight="bold">{}</text>"##,
        esc(metric.title())
    );
    let _ = writeln!(
        s,
        r##"<text x="10" y="38" fill="#555">{}; kernel {}, {} ({} vCPUs), backing store {store}, fio libaio direct, median of repetitions, bars = interval</text>"##,
        esc(metric.unit()),
        esc(&env("kernel")),
        esc(&env("timing")),
        esc(&env("vcpus"))
    );
    // Legend.
    let mut lx = 10.0;
    let ly = 60.0;
    for &c in &names {
        let (color, dash) = style(c);
        let has = panels
            .iter()
            .any(|(_, _, p)| p.series.iter().any(|(n, _)| *n == c));
        let label = match (has, res.na_reason(store, c)) {
            (true, _) => c.to_string(),
            (false, Some(_)) => format!("{c} (n/a)"),
            (false, None) => format!("{c} (no data for this metric)"),
        };
        let _ = writeln!(
            s,
            r##"<line x1="{lx}" y1="{}" x2="{}" y2="{}" stroke="{color}" stroke-width="2.5" stroke-dasharray="{dash}"/><circle cx="{}" cy="{}" r="3" fill="{color}"/><text x="{}" y="{}">{}</text>"##,
            ly - 4.0,
            lx + 26.0,
            ly - 4.0,
            lx + 13.0,
            ly - 4.0,
            lx + 31.0,
            ly,
            esc(&label)
        );
        lx += 40.0 + 7.0 * label.len() as f64;
    }
    let _ = writeln!(
        s,
        r##"<text x="10" y="{}" fill="#555">loop = kernel loop driver (--direct-io=on); copy / zc / bpf / bpf-kernel = ublk-user loop data paths; kublk* = the driver's selftest server; raw = the store itself</text>"##,
        height - 12.0
    );

    for (row, col, p) in &panels {
        let ox = 10.0 + *col as f64 * PW;
        let oy = HEAD + *row as f64 * PH;
        let (x0, x1) = (ox + ML, ox + PW - MR);
        let (y0, y1) = (oy + MT, oy + PH - MB);
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle" font-weight="bold" font-size="12">{}</text>"##,
            (x0 + x1) / 2.0,
            oy + 18.0,
            esc(&p.title)
        );
        let _ = writeln!(
            s,
            r##"<rect x="{x0}" y="{y0}" width="{}" height="{}" fill="none" stroke="#888"/>"##,
            x1 - x0,
            y1 - y0
        );
        if p.series.is_empty() {
            let _ = writeln!(
                s,
                r##"<text x="{}" y="{}" text-anchor="middle" fill="#888">no data</text>"##,
                (x0 + x1) / 2.0,
                (y0 + y1) / 2.0
            );
            continue;
        }
        let all: Vec<&(u64, Stat)> = p.series.iter().flat_map(|(_, v)| v).collect();
        let bmin = all.iter().map(|(b, _)| *b).min().unwrap_or(4096) as f64;
        let bmax = all.iter().map(|(b, _)| *b).max().unwrap_or(4096) as f64;
        let (lx0, lx1) = (bmin.log2() - 0.4, bmax.log2() + 0.4);
        let vmin = all
            .iter()
            .map(|(_, st)| st.lo)
            .filter(|v| *v > 0.0)
            .fold(f64::INFINITY, f64::min);
        let vmax = all.iter().map(|(_, st)| st.hi).fold(0.0, f64::max);
        let (vmin, vmax) = if vmin.is_finite() && vmax > 0.0 {
            (vmin, vmax)
        } else {
            (0.1, 1.0)
        };
        let (mut ly0, mut ly1) = (vmin.log10(), vmax.log10());
        if ly1 - ly0 < 1.0 {
            let c = (ly0 + ly1) / 2.0;
            ly0 = c - 0.5;
            ly1 = c + 0.5;
        }
        let pad = (ly1 - ly0) * 0.06;
        ly0 -= pad;
        ly1 += pad;
        let px = |b: f64| x0 + (b.log2() - lx0) / (lx1 - lx0) * (x1 - x0);
        let py = |v: f64| y1 - (v.max(1e-12).log10() - ly0) / (ly1 - ly0) * (y1 - y0);
        // Grid and axes.
        for (v, labelled) in log_ticks(10f64.powf(ly0), 10f64.powf(ly1)) {
            let y = py(v);
            let _ = writeln!(
                s,
                r##"<line x1="{x0}" y1="{y:.1}" x2="{x1}" y2="{y:.1}" stroke="{}" stroke-width="0.7"/>"##,
                if labelled { "#ddd" } else { "#f0f0f0" }
            );
            if labelled {
                let _ = writeln!(
                    s,
                    r##"<text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
                    x0 - 4.0,
                    y + 4.0,
                    fmt_tick(v)
                );
            }
        }
        let mut xs: Vec<u64> = all.iter().map(|(b, _)| *b).collect();
        xs.sort_unstable();
        xs.dedup();
        for b in xs {
            let x = px(b as f64);
            let _ = writeln!(
                s,
                r##"<line x1="{x:.1}" y1="{y0}" x2="{x:.1}" y2="{y1}" stroke="#eee"/><text x="{x:.1}" y="{}" text-anchor="middle">{}</text>"##,
                y1 + 14.0,
                bs_name(b)
            );
        }
        let _ = writeln!(
            s,
            r##"<text x="{}" y="{}" text-anchor="middle">block size (log scale)</text>"##,
            (x0 + x1) / 2.0,
            y1 + 30.0
        );
        let _ = writeln!(
            s,
            r##"<text transform="translate({},{}) rotate(-90)" text-anchor="middle">{}</text>"##,
            ox + 14.0,
            (y0 + y1) / 2.0,
            esc(metric.unit().split(" (").next().unwrap_or(""))
        );
        // Series.
        for (c, pts) in &p.series {
            let (color, dash) = style(c);
            let mut pts = pts.clone();
            pts.sort_by_key(|(b, _)| *b);
            let line: Vec<String> = pts
                .iter()
                .map(|(b, st)| format!("{:.1},{:.1}", px(*b as f64), py(st.med)))
                .collect();
            let _ = writeln!(
                s,
                r##"<polyline points="{}" fill="none" stroke="{color}" stroke-width="2" stroke-dasharray="{dash}"/>"##,
                line.join(" ")
            );
            for (b, st) in &pts {
                let x = px(*b as f64);
                if st.hi > st.lo {
                    let _ = writeln!(
                        s,
                        r##"<line x1="{x:.1}" y1="{:.1}" x2="{x:.1}" y2="{:.1}" stroke="{color}" stroke-width="1.2"/>"##,
                        py(st.lo.max(1e-12)),
                        py(st.hi)
                    );
                }
                let _ = writeln!(
                    s,
                    r##"<circle cx="{x:.1}" cy="{:.1}" r="3" fill="{color}"><title>{c} {}: {} (interval {}-{}, n={})</title></circle>"##,
                    py(st.med),
                    bs_name(*b),
                    fmt_tick(st.med),
                    fmt_tick(st.lo),
                    fmt_tick(st.hi),
                    st.n
                );
            }
        }
    }
    s.push_str("</svg>\n");
    Some(s)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ticks_and_labels() {
        let t = log_ticks(3.0, 400.0);
        let vals: Vec<f64> = t.iter().map(|x| x.0).collect();
        assert_eq!(vals, [5.0, 10.0, 20.0, 50.0, 100.0, 200.0]);
        assert!(t.iter().all(|x| x.1));
        let wide = log_ticks(0.01, 1000.0);
        assert!(wide
            .iter()
            .filter(|x| x.1)
            .all(|x| [0.01, 0.1, 1.0, 10.0, 100.0, 1000.0]
                .iter()
                .any(|d| (d - x.0).abs() < 1e-9)));
        assert_eq!(fmt_tick(2000.0), "2000");
        assert_eq!(fmt_tick(20000.0), "20k");
        assert_eq!(fmt_tick(1.5), "1.5");
        assert_eq!(fmt_tick(0.05), "0.05");
    }
}
