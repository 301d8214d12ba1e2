use crate::collect::parse_fio;
use crate::collect::GIB;
use crate::plan::{full_matrix, plan, plan_text, Filter, StorePlan, Workload, PROFILE_CONTENDERS};
use crate::run::{boot_dirs, info_of, qemu_extra, render, stamp_of};
use crate::*;
use std::fs;
use std::path::{Path, PathBuf};

/// A harness for runs that must not build or boot anything.
struct NoVm;

impl Harness for NoVm {
    fn build(&self) -> anyhow::Result<()> {
        panic!("built")
    }
    fn kublk(&self) -> Result<PathBuf, String> {
        panic!("asked for kublk")
    }
    fn perf(&self) -> Result<PathBuf, String> {
        panic!("asked for perf")
    }
    fn run_guest(&self, _: &GuestRun) -> anyhow::Result<GuestExit> {
        panic!("booted")
    }
}

/// Every committed run (`bench/results/*.raw.tar.xz`, the raw run
/// directory as `cargo xtask bench` left it) renders byte for byte into
/// the report, CSV and plots committed beside it.
#[test]
fn committed_raw_runs_regenerate_their_reports() {
    let results = crate::root().join("bench/results");
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
    let fixed = runs.iter().filter(|r| !r.conditional && !r.profile).count();
    // tmpfs, nullb, virtio, nullb-2q, the stripes, qcow2-tmpfs, qcow2-alloc
    assert_eq!(
        fixed,
        2 * (6 * 9 + 6 * 9 + 2 * 5 + 6 + 2 * 2 * 7 + 3 * 6 + 4)
    );
    // + one profile run of loop, zc and bpf-kernel on null_blk.
    let profiles: Vec<&str> = runs
        .iter()
        .filter(|r| r.profile)
        .map(|r| r.contender)
        .collect();
    assert_eq!(profiles, PROFILE_CONTENDERS);
    assert_eq!(runs.len(), fixed * 3 / 2 + 3);
    let est = estimate_secs(&runs, Timing::Icount, 1.0, 0.5);
    assert!(
        (45.0 * 60.0..95.0 * 60.0).contains(&est),
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
    assert!(plan_text(&p).starts_with("1 tmpfs 1 loop matrix randread 4k 32 randread-4k-qd32 -\n"));
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
    // The profile run of loop on null_blk closes that store's runs.
    assert_eq!(
        stores,
        ["tmpfs"; 6]
            .iter()
            .chain(&["nullb"; 4])
            .copied()
            .collect::<Vec<_>>()
    );
    assert!(p[9].profile && !p[8].profile && p[9].contender == "loop");
    assert!(plan_text(&p).ends_with(" loop matrix randread 4k 32 randread-4k-qd32 profile\n"));
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
                format!(
                    r#"[{{"bdev":"{dev}","server_cqes":{},"server_sqes":{},"server_enters":{}}}]"#,
                    n * 2.0,
                    n * 2.0,
                    n * 0.1
                ),
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
/// `--from RAW --out OUT`, every other option at its default.
fn render_opts(raw: &Path, out: &Path) -> BenchOpts {
    BenchOpts {
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
        summary: None,
        from: Some(raw.to_path_buf()),
        out: Some(out.to_path_buf()),
    }
}

#[test]
fn from_renders_a_synthetic_run_offline() {
    let t = tempfile::tempdir().unwrap();
    let raw = t.path().join("raw");
    let out = t.path().join("out");
    write_synthetic(&raw);
    let o = render_opts(&raw, &out);
    assert_eq!(bench(&o, &NoVm).unwrap(), 0);
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
    let t = tempfile::tempdir().unwrap();
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
    let t = tempfile::tempdir().unwrap();
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

#[test]
fn the_bench_refuses_a_binary_whose_modes_it_does_not_report() {
    let all = r#"[{"name":"copy"},{"name":"zc"},{"name":"bpf"},{"name":"bpf-kernel"}]"#;
    crate::run::check_modes(all.as_bytes()).unwrap();
    let more =
        r#"[{"name":"copy"},{"name":"zc"},{"name":"bpf"},{"name":"bpf-kernel"},{"name":"x"}]"#;
    assert!(crate::run::check_modes(more.as_bytes()).is_err());
    assert!(crate::run::check_modes(br#"[{"name":"copy"}]"#).is_err());
    assert!(crate::run::check_modes(b"not json").is_err());
}

/// ublk-user stand-in for the host-side run of the guest script: `add`
/// makes a file "device" and a sleeping "server", `list --json` reports
/// them with counters that grow by 2 CQEs/SQEs per call, `del --all`
/// ends the sleepers (only the ones it started).
const STUB_UBLK_USER: &str = r#"#!/bin/sh
D=$STUB_DIR
case $1 in
modes)
  cat "$D/modes.json" ;;
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
    if std::process::Command::new("fio")
        .arg("--version")
        .output()
        .is_err()
    {
        eprintln!("skipped: no fio on this host");
        return;
    }
    use std::os::unix::fs::PermissionsExt;
    let t = tempfile::tempdir().unwrap();
    let (bin, stub, out) = (
        t.path().join("bin"),
        t.path().join("stub"),
        t.path().join("out"),
    );
    fs::create_dir_all(&bin).unwrap();
    fs::create_dir_all(&stub).unwrap();
    fs::create_dir_all(&out).unwrap();
    // The modes come from the binary: this one offers no zc, so the plan's
    // zc is no contender of ours (n/a), while copy is.
    fs::write(
        stub.join("modes.json"),
        r#"[{"name":"copy","fallback":null},{"name":"bpf","fallback":"copy"}]"#,
    )
    .unwrap();
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
        sp(
            "tmpfs",
            w.clone(),
            &["loop", "copy", "zc", "kublk-zc", "raw"],
        ),
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
    let cont = fs::read_to_string(out.join("contenders.txt")).unwrap();
    assert!(cont.contains("tmpfs|zc|na|"), "{cont}");
    assert!(cont.contains("tmpfs|copy|ok|"), "{cont}");
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
    assert_eq!(third.len(), 5 * 2 + 1, "{runs}");
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
fn run_directory_stamps() {
    let t = time::macros::datetime!(2000-02-29 01:02:03 UTC);
    assert_eq!(stamp_of(t), "20000229-010203");
}

/// A run made for report v3 (`report=3`): device settings, total latency,
/// CPU attribution, no ratio where the repetitions disagree, the dirty
/// tree named.
#[test]
fn v3_report_sections() {
    let t = tempfile::tempdir().unwrap();
    let raw = t.path().join("20261202-101500");
    let out = t.path().join("out");
    write_synthetic(&raw);
    let d = raw.join("icount");
    let add = |name: &str, text: &str| {
        let p = d.join(name);
        let old = fs::read_to_string(&p).unwrap_or_default();
        fs::write(p, old + text).unwrap();
    };
    add("host.txt", "report=3\ncommit=abc-dirty\nforce=true\n");
    add("env.txt", "max_sectors_kb=512\n");
    add(
        "limits.txt",
        "tmpfs|loop|1|128|512|512\ntmpfs|copy|1|128|512|2048\ntmpfs|kublk-zc|1|128|512|1024\n",
    );
    fs::create_dir_all(d.join("cpu")).unwrap();
    for e in fs::read_dir(d.join("fio")).unwrap() {
        let p = e.unwrap().path();
        let idx = p.file_stem().unwrap().to_string_lossy().into_owned();
        let mut j = fs::read_to_string(&p).unwrap();
        j = j.replace(
            r#""clat_ns":"#,
            r#""lat_ns":{"percentile":{"50.000000":9000,"99.000000":25000,"99.900000":40000}},"clat_ns":"#,
        );
        fs::write(&p, j).unwrap();
        let w = |n: &str, s: &str| fs::write(d.join(format!("cpu/{idx}-{n}")), s).unwrap();
        w("pre.cpus", "cpu0 100 200\ncpu1 0 200\n");
        w("post.cpus", "cpu0 250 400\ncpu1 100 400\n");
        w("pre.threads", "7 7 0 kworker/0:1H-kblockd\n");
        w("post.threads", "7 7 30 kworker/0:1H-kblockd\n9 9 4 fio\n");
    }
    // kublk-zc's repetitions of the 4k cell disagree (+10 %).
    let runs = fs::read_to_string(d.join("runs.csv")).unwrap();
    let plan = fs::read_to_string(d.join("plan.txt")).unwrap();
    let idx = plan
        .lines()
        .find(|l| l.contains(" tmpfs 2 kublk-zc matrix "))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let p = d.join(format!("fio/{idx}.json"));
    let j = fs::read_to_string(&p).unwrap();
    let at = j.find(r#""iops":"#).unwrap() + 7;
    let end = at + j[at..].find(',').unwrap();
    let j = format!("{}121000{}", &j[..at], &j[end..]);
    fs::write(&p, j).unwrap();
    fs::write(d.join("runs.csv"), runs).unwrap();
    let o = render_opts(&raw, &out);
    assert_eq!(bench(&o, &NoVm).unwrap(), 0);
    // v3 names carry the time of the run directory's name.
    let md = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount-101500.md")).unwrap();
    assert!(md.contains("**the tree had uncommitted changes**"), "{md}");
    assert!(md.contains("| kublk-zc | 1 | 128 | 512 | 1024 |"), "{md}");
    assert!(md.contains("9.0 / 25.0 / 40.0"), "{md}");
    assert!(md.contains("kworker/0:*H-kblockd 0.30, fio 0.04"), "{md}");
    assert!(md.contains("| 1.50 | 1.00 |"), "{md}");
    assert!(md.contains("≠ (reps disagree)"), "{md}");
    assert!(md.contains("guest CPU/GiB ×kublk"), "{md}");
    let csv = fs::read_to_string(out.join("2026-12-02-7.2.12+-icount-101500.csv")).unwrap();
    assert!(
        csv.lines().next().unwrap().ends_with(",cpu1_busy_s"),
        "{csv}"
    );
}

/// Every generated results block of README.md and the cover letter is what
/// its committed report gives (`cargo xtask bench --summary FILE` rewrites
/// them), and each document has at least one.
#[test]
fn generated_results_match_their_reports() {
    for doc in crate::summary::DOCUMENTS {
        let text = fs::read_to_string(root().join(doc)).unwrap();
        assert!(
            text.contains("bench-summary bench/results/"),
            "{doc} quotes no generated results block"
        );
        let new = crate::summary::regenerate(&text, &root()).unwrap();
        assert!(
            new == text,
            "{doc}: a generated results block differs from its report; run `cargo xtask bench --summary {doc}`"
        );
    }
}

#[test]
fn a_summary_block_is_rewritten_from_its_report() {
    let t = tempfile::tempdir().unwrap();
    let rep = fs::read_to_string(
        root().join("bench/results/2026-12-04-7.2.12+-icount-filtered-164145.md"),
    )
    .unwrap();
    fs::create_dir_all(t.path().join("r")).unwrap();
    fs::write(t.path().join("r/x.md"), &rep).unwrap();
    let doc = "intro\n<!-- bench-summary r/x.md -->\nstale 9.99×\n<!-- /bench-summary -->\n\
               text\n[bench-summary r/x.md]\nstale\n[/bench-summary]\nend\n";
    let new = crate::summary::regenerate(doc, t.path()).unwrap();
    assert!(!new.contains("stale"), "{new}");
    assert!(
        new.starts_with("intro\n") && new.ends_with("[/bench-summary]\nend\n"),
        "{new}"
    );
    // the headline's figures, as the report prints them
    assert!(
        new.contains(
            "| randread-4k-qd1 | n/a | 1.10× [1.07–1.12] | - | 1.23× [1.20–1.25] | - | - |"
        ),
        "{new}"
    );
    assert!(new.contains("`a676a98260f3` (clean tree)"), "{new}");
    assert!(
        new.contains(
            "| randread-4k-qd1 | 24.7 / 28.3 / 37.1 | 22.4 / 23.9 / 35.1 | 19.8 / 21.1 / 32.3 |"
        ),
        "{new}"
    );
    // the cover letter's text keeps the ratio, not the interval
    assert!(new.contains("1.23x") && !new.contains("1.23x ["), "{new}");
    // a report that is no report is refused
    fs::write(t.path().join("r/x.md"), "# nothing\n").unwrap();
    assert!(crate::summary::regenerate(doc, t.path()).is_err());
    // an unclosed block is refused
    fs::write(t.path().join("r/x.md"), &rep).unwrap();
    assert!(crate::summary::regenerate("<!-- bench-summary r/x.md -->\nx\n", t.path()).is_err());
}

#[test]
fn a_compare_block_quotes_the_cells_two_reports_share() {
    let doc = "x\n<!-- bench-compare bench/results/2026-12-04-7.2.12+-icount-filtered-164145.md bench/results/2026-12-04-7.2.12+-icount-195017.md -->\n<!-- /bench-compare -->\n\
               [bench-compare bench/results/2026-12-04-7.2.12+-icount-filtered-164145.md bench/results/2026-12-04-7.2.12+-icount-195017.md]\n[/bench-compare]\n";
    let new = crate::summary::regenerate(doc, &root()).unwrap();
    // nullb loop 4K qd1: 37.8k [37.4k-38.2k] then 37.7k [37.3k-38.0k]: overlap
    assert!(
        new.contains("| nullb | randread-4k-qd1 | loop | 37.8k | 37.7k | ~ |"),
        "{new}"
    );
    // stores only one report has are not compared
    assert!(!new.contains("| tmpfs |"), "{new}");
    assert!(new.contains("inside the noise"), "{new}");
    // a block naming one report is refused
    assert!(crate::summary::regenerate(
        "<!-- bench-compare bench/results/2026-12-04-7.2.12+-icount-195017.md -->\n<!-- /bench-compare -->\n",
        &root()
    )
    .is_err());
}

/// The recorded command names a kernel other than the patched one.
#[test]
fn the_recorded_command_names_the_kernel_flavor() {
    let t = tempfile::tempdir().unwrap();
    let mut o = render_opts(t.path(), t.path());
    o.filter = Some("tmpfs,loop".into());
    let c = crate::run::command_line(&o, Some("--vanilla"));
    assert_eq!(
        c,
        "cargo xtask bench --timing icount --vanilla --filter 'tmpfs,loop'"
    );
    assert_eq!(
        crate::run::command_line(&o, None),
        "cargo xtask bench --timing icount --filter 'tmpfs,loop'"
    );
}
