//! Host tests of the BPF ABI and the embedded object.
//!
//! * ABI: `ublk-ebpf-common` against the PATCHED kernel headers when they
//!   can be found (`$UBLK_KERNEL_TREE`, the xtask cache's patched tree, or
//!   the `+` lines of `kernel-patches/*.patch`), else against the values of
//!   the ABI document.
//! * Object: the embedded object (always there: build.rs fails without
//!   it) has the program and the maps the loader expects.
//! * `#[ignore]`, root: `host_load_reaches_verifier` loads the embedded
//!   object on the running kernel.

use super::*;
use std::mem::{offset_of, size_of};
use std::path::{Path, PathBuf};
use ublk_ebpf_common::{
    IoUringSqe, UblkBpfCtx, BPF_FUNC_UBLK_QUEUE_SQE, UBLK_BPF_PASS, UBLK_BPF_REDIRECT,
    UBLK_CMD_REG_BPF_PROG, UBLK_CMD_UNREG_BPF_PROG, UBLK_F_BPF, UBLK_IO_F_BPF_REDIRECT,
};

// ---------------------------------------------------------------- ABI ----

/// `(name, offset, size)` of each field of a C struct, laid out with the
/// natural alignment of the uapi `__uN`/`__sN` types.
type CFields = Vec<(String, usize, usize)>;

fn c_struct_layout(text: &str, name: &str) -> Option<(CFields, usize)> {
    let start = text.find(&format!("struct {name} {{"))?;
    let body = &text[start..];
    let body = &body[body.find('{')? + 1..body.find("};")?];
    let mut fields = Vec::new();
    let (mut off, mut max_align) = (0usize, 1usize);
    // Drop comments, then split declarations on ';'.
    let clean = strip_comments(body);
    for decl in clean.split(';') {
        let words: Vec<&str> = decl.split_whitespace().collect();
        if words.len() != 2 {
            continue;
        }
        let size = match words[0] {
            "__u8" | "__s8" => 1,
            "__u16" | "__s16" => 2,
            "__u32" | "__s32" => 4,
            "__u64" | "__s64" => 8,
            other => panic!("struct {name}: unsupported type {other}"),
        };
        let (field, count) = match words[1].split_once('[') {
            Some((f, n)) => (f, n.trim_end_matches(']').parse::<usize>().ok()?),
            None => (words[1], 1),
        };
        off = off.next_multiple_of(size);
        fields.push((field.to_string(), off, size * count));
        off += size * count;
        max_align = max_align.max(size);
    }
    Some((fields, off.next_multiple_of(max_align)))
}

fn strip_comments(text: &str) -> String {
    let mut clean = String::new();
    let mut rest = text;
    while let Some(i) = rest.find("/*") {
        clean.push_str(&rest[..i]);
        rest = &rest[rest[i..]
            .find("*/")
            .map(|j| i + j + 2)
            .unwrap_or(rest.len())..];
    }
    clean.push_str(rest);
    clean
}

/// The value of `#define NAME <expr>` for the few expression shapes the
/// uapi uses: a number, `(1ULL << n)`, `(1U << n)`, `_IOWR('u', 0xNN, ...)`
/// (returns the nr).
fn c_define(text: &str, name: &str) -> Option<u64> {
    let mut lines = text.lines();
    while let Some(line) = lines.next() {
        let mut it = line.split_whitespace();
        if it.next() != Some("#define") || it.next() != Some(name) {
            continue;
        }
        let mut expr: String = it.collect::<Vec<_>>().join(" ");
        if expr.ends_with('\\') || expr.is_empty() {
            expr = lines.next()?.trim().to_string();
        }
        let e = expr.replace(['(', ')'], " ");
        if let Some(i) = e.find("<<") {
            let sh: u64 = e[i + 2..].trim().parse().ok()?;
            return Some(1u64 << sh);
        }
        if let Some(i) = expr.find("_IOWR") {
            let nr = expr[i..].split(',').nth(1)?.trim();
            return u64::from_str_radix(nr.trim_start_matches("0x"), 16).ok();
        }
        let n = e.trim();
        return n
            .strip_prefix("0x")
            .map_or_else(|| n.parse().ok(), |h| u64::from_str_radix(h, 16).ok());
    }
    None
}

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf()
}

/// (description, ublk_cmd.h text, Some(bpf.h text) when a whole tree).
fn patched_headers() -> Option<(String, String, Option<String>)> {
    let from_tree = |tree: &Path| -> Option<(String, String, Option<String>)> {
        let ublk = std::fs::read_to_string(tree.join("include/uapi/linux/ublk_cmd.h")).ok()?;
        if !ublk.contains("struct ublk_bpf_ctx") {
            return None;
        }
        let bpf = std::fs::read_to_string(tree.join("include/uapi/linux/bpf.h")).ok();
        Some((tree.display().to_string(), ublk, bpf))
    };
    if let Some(t) = std::env::var_os("UBLK_KERNEL_TREE") {
        return from_tree(Path::new(&t));
    }
    let cache = std::env::var_os("UBLK_EBPF_CACHE")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".cache/ublk-ebpf")));
    if let Some(cache) = cache {
        if let Ok(rd) = std::fs::read_dir(cache.join("src")) {
            for e in rd.flatten() {
                if let Some(r) = from_tree(&e.path().join("ublk")) {
                    return Some(r);
                }
            }
        }
    }
    // The `+` lines of the patch series.
    let mut text = String::new();
    if let Ok(rd) = std::fs::read_dir(repo_root().join("kernel-patches")) {
        let mut files: Vec<_> = rd.flatten().map(|e| e.path()).collect();
        files.sort();
        for p in files
            .iter()
            .filter(|p| p.extension().is_some_and(|e| e == "patch"))
        {
            for l in std::fs::read_to_string(p).unwrap_or_default().lines() {
                if let Some(l) = l.strip_prefix('+') {
                    if !l.starts_with("++") {
                        text.push_str(l);
                        text.push('\n');
                    }
                }
            }
        }
    }
    text.contains("struct ublk_bpf_ctx")
        .then(|| ("kernel-patches/*.patch".into(), text, None))
}

#[test]
fn abi_matches_doc_values() {
    assert_eq!(BPF_PROG_TYPE_UBLK, 33);
    assert_eq!(BPF_FUNC_UBLK_QUEUE_SQE, 212);
    assert_eq!(UBLK_F_BPF, 1 << 20);
    assert_eq!(UBLK_IO_F_BPF_REDIRECT, 1 << 20);
    assert_eq!(
        (UBLK_CMD_REG_BPF_PROG, UBLK_CMD_UNREG_BPF_PROG),
        (0x1a, 0x1b)
    );
    assert_eq!((UBLK_BPF_PASS, UBLK_BPF_REDIRECT), (0, 1));
    assert_eq!(size_of::<UblkBpfCtx>(), 24);
    assert_eq!(size_of::<IoUringSqe>(), 64);
    assert_eq!(size_of::<QueueTarget>(), 32);
    assert_eq!(size_of::<QueueValue>(), 32);
}

#[test]
fn abi_matches_patched_kernel_headers() {
    let Some((src, ublk, bpf)) = patched_headers() else {
        eprintln!("NOTE: no patched kernel headers found (UBLK_KERNEL_TREE, xtask cache, kernel-patches/*.patch); checked the doc values only");
        return;
    };
    eprintln!("checking the ABI against {src}");
    let (fields, size) = c_struct_layout(&ublk, "ublk_bpf_ctx").expect("struct ublk_bpf_ctx");
    assert_eq!(size, size_of::<UblkBpfCtx>(), "sizeof(struct ublk_bpf_ctx)");
    let rust = [
        ("start_sector", offset_of!(UblkBpfCtx, start_sector), 8),
        ("nr_sectors", offset_of!(UblkBpfCtx, nr_sectors), 4),
        ("op_flags", offset_of!(UblkBpfCtx, op_flags), 4),
        ("q_id", offset_of!(UblkBpfCtx, q_id), 2),
        ("tag", offset_of!(UblkBpfCtx, tag), 2),
        ("op", offset_of!(UblkBpfCtx, op), 1),
    ];
    for (name, off, sz) in rust {
        let f = fields
            .iter()
            .find(|f| f.0 == name)
            .unwrap_or_else(|| panic!("field {name} missing in C"));
        assert_eq!((f.1, f.2), (off, sz), "ublk_bpf_ctx.{name} (offset, size)");
    }
    assert_eq!(
        c_define(&ublk, "UBLK_F_BPF"),
        Some(UBLK_F_BPF),
        "UBLK_F_BPF"
    );
    assert_eq!(
        c_define(&ublk, "UBLK_IO_F_BPF_REDIRECT"),
        Some(u64::from(UBLK_IO_F_BPF_REDIRECT)),
        "UBLK_IO_F_BPF_REDIRECT"
    );
    assert_eq!(
        c_define(&ublk, "UBLK_U_CMD_REG_BPF_PROG"),
        Some(u64::from(UBLK_CMD_REG_BPF_PROG))
    );
    assert_eq!(
        c_define(&ublk, "UBLK_U_CMD_UNREG_BPF_PROG"),
        Some(u64::from(UBLK_CMD_UNREG_BPF_PROG))
    );
    for (n, v) in [
        ("UBLK_BPF_PASS", UBLK_BPF_PASS),
        ("UBLK_BPF_REDIRECT", UBLK_BPF_REDIRECT),
    ] {
        if let Some(c) = c_define(&ublk, n) {
            assert_eq!(c, v as u64, "{n}");
        }
    }
    if let Some(bpf) = bpf {
        let e = &bpf[bpf
            .find("enum bpf_prog_type {")
            .expect("enum bpf_prog_type")..];
        let e = strip_comments(&e[e.find('{').unwrap() + 1..e.find('}').unwrap()]);
        let names: Vec<&str> = e
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .collect();
        assert!(
            names.iter().all(|n| !n.contains('=')),
            "explicit values in enum bpf_prog_type"
        );
        let pos = names
            .iter()
            .position(|n| *n == "BPF_PROG_TYPE_UBLK")
            .expect("BPF_PROG_TYPE_UBLK");
        assert_eq!(pos as u32, BPF_PROG_TYPE_UBLK, "BPF_PROG_TYPE_UBLK");
        assert!(
            bpf.contains(&format!("FN(ublk_queue_sqe, {BPF_FUNC_UBLK_QUEUE_SQE},")),
            "FN(ublk_queue_sqe, {BPF_FUNC_UBLK_QUEUE_SQE}, ...) in bpf.h"
        );
    }
}

#[test]
fn c_parsers() {
    let h = "struct x {\n\t/* c */\n\t__u64 a;\n\t__u16 b;\n\t__u8 r[3];\n};\n#define F (1ULL << 20)\n#define C \\\n\t_IOWR('u', 0x1a, struct s)\n#define N 7\n";
    let (f, size) = c_struct_layout(h, "x").unwrap();
    assert_eq!(
        f,
        vec![("a".into(), 0, 8), ("b".into(), 8, 2), ("r".into(), 10, 3)]
    );
    assert_eq!(size, 16);
    assert_eq!(c_define(h, "F"), Some(1 << 20));
    assert_eq!(c_define(h, "C"), Some(0x1a));
    assert_eq!(c_define(h, "N"), Some(7));
}

// ------------------------------------------------------------- object ----

#[test]
fn stats_accessors() {
    let mut s = Stats::default();
    s.0[stat::REDIRECTED as usize] = 5;
    s.0[stat::REDIRECTED_BYTES as usize] = 20480;
    s.0[stat::PASS_OP as usize] = 2;
    s.0[stat::PASS_HELPER_ERR as usize] = 1;
    s.0[stat::REDIRECTED_BE as usize] = 3;
    s.0[stat::REDIRECTED_IDLE as usize] = 1;
    assert_eq!(s.passed(), 3);
    assert_eq!(s.redirected(), 5);
    assert_eq!(s.redirected_by_class(), (0, 3, 1));
    // out of range: 0, as documented, not a panic
    assert_eq!(s.get(stat::COUNT), 0);
    assert_eq!(s.get(u32::MAX), 0);
}

#[test]
fn embedded_object_has_program_and_maps() {
    check_object(embedded_object());
}

/// Also checks a freshly built object when there is one (no rebuild of
/// ublk-user needed to test a new program).
#[test]
fn built_object_has_program_and_maps() {
    let p = repo_root().join("ublk-ebpf/target/bpfel-unknown-none/release/ublk-ebpf");
    match std::fs::read(&p) {
        Ok(bytes) => check_object(&bytes),
        Err(_) => eprintln!("NOTE: {} not built; skipped", p.display()),
    }
}

fn check_object(bytes: &[u8]) {
    use aya_obj::maps::Map as ObjMap;
    let mut obj = aya_obj::Object::parse(bytes).expect("parse");
    assert_eq!(obj.license.to_str().unwrap(), "GPL");
    let prog = obj
        .programs
        .get(names::PROGRAM)
        .expect("program ublk_serve");
    assert!(
        matches!(prog.section, aya_obj::ProgramSection::SocketFilter),
        "{:?}",
        prog.section
    );

    let def = |name: &str| -> (u32, u32, u32, u32) {
        let m: &ObjMap = obj.maps.get(name).unwrap_or_else(|| panic!("map {name}"));
        (m.map_type(), m.key_size(), m.value_size(), m.max_entries())
    };
    // BPF_MAP_TYPE_ARRAY = 2, PERCPU_ARRAY = 6, RINGBUF = 27.
    assert_eq!(def(names::QUEUES_MAP), (2, 4, 32, MAX_QUEUES));
    assert_eq!(def(names::STATS_MAP), (6, 4, 8, stat::COUNT));
    assert_eq!(def("AYA_LOGS").0, 27);
    assert!(
        obj.maps.contains_key(".rodata"),
        "maps: {:?}",
        obj.maps.keys().collect::<Vec<_>>()
    );

    // Relocate against fake fds: every map reference resolves, and the code
    // calls helper 212 and only helpers the program type offers.
    let maps = obj.maps.clone();
    let text: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
    obj.relocate_maps(
        maps.iter()
            .enumerate()
            .map(|(i, (n, m))| (n.as_str(), 100 + i as i32, m)),
        &text,
    )
    .expect("relocate_maps");
    obj.relocate_calls(&text).expect("relocate_calls");
    let prog = &obj.programs[names::PROGRAM];
    let insns = &obj.functions[&prog.function_key()].instructions;
    let helpers: HashSet<i32> = insns
        .iter()
        .filter(|i| i.code == 0x85 && i.src_reg() == 0) // BPF_JMP | BPF_CALL, helper
        .map(|i| i.imm)
        .collect();
    assert!(
        helpers.contains(&(BPF_FUNC_UBLK_QUEUE_SQE as i32)),
        "helpers {helpers:?}"
    );
    // map_lookup_elem, ringbuf_reserve/submit/discard, ublk_queue_sqe.
    let allowed: HashSet<i32> = [1, 131, 132, 133, BPF_FUNC_UBLK_QUEUE_SQE as i32].into();
    assert!(
        helpers.is_subset(&allowed),
        "unexpected helpers: {:?}",
        helpers.difference(&allowed)
    );
    let bpf_calls = insns
        .iter()
        .filter(|i| i.code == 0x85 && i.src_reg() == 1)
        .count();
    assert_eq!(
        bpf_calls, 0,
        "the program should have no BPF-to-BPF calls (e.g. memset)"
    );
    assert!(insns.len() < 4096, "{} insns", insns.len());
}

// ----------------------------------------------------- host load (root) ----

/// EINVAL before the verifier ran: the kernel has no kprobe program type
/// (e.g. the test VM's minimal config without CONFIG_BPF_EVENTS).
fn kprobe_unavailable(msg: &str) -> bool {
    msg.contains("type 2,") && msg.contains("os error 22") && msg.contains("(empty)")
}

/// Loads the embedded object on the running kernel.
///
/// * as `BPF_PROG_TYPE_KPROBE` (whose context accepts the same read-only
///   loads): the verifier walks the whole program and must stop exactly at
///   `call 212`, which only a patched kernel knows. That proves maps,
///   relocations, stack use and ctx accesses are fine.
/// * as `BPF_PROG_TYPE_UBLK`: loads on a patched kernel, `EINVAL` elsewhere.
///
/// Run: `sudo cargo test -p ublk-user --lib bpf::tests::host_load -- --ignored --nocapture`
#[test]
#[ignore = "needs root and bpf(2); loads the program on the running kernel"]
fn host_load_reaches_verifier() {
    let bytes = embedded_object();
    for log in [false, true] {
        const KPROBE: u32 = 2;
        let opts = LoadOptions {
            log,
            prog_type: KPROBE,
            ..Default::default()
        };
        match BpfProgram::load(bytes, opts) {
            Ok(p) => panic!("loaded as kprobe?! (prog id {})", p.prog_id()),
            Err(e) if kprobe_unavailable(&e.chain()) => {
                eprintln!("NOTE: this kernel cannot load kprobe programs; kprobe check skipped");
                break;
            }
            Err(e) => {
                let msg = e.chain();
                let tail: Vec<&str> = msg.lines().rev().take(6).collect();
                eprintln!(
                    "kprobe load (log={log}): ...\n{}",
                    tail.into_iter().rev().collect::<Vec<_>>().join("\n")
                );
                assert!(
                    msg.contains("unknown#212") || msg.contains("func#212") || msg.contains("212"),
                    "expected the verifier to stop at helper 212:\n{msg}"
                );
                assert!(
                    msg.lines()
                        .any(|l| l.contains("call ") && l.contains("212")),
                    "verifier did not reach call 212:\n{msg}"
                );
            }
        }
    }
    match BpfProgram::load(bytes, LoadOptions::default()) {
        Ok(p) => {
            eprintln!(
                "loaded as BPF_PROG_TYPE_UBLK: prog id {}, stats map id {}",
                p.prog_id(),
                p.stats_map_id()
            );
            eprintln!("verifier: {}", p.verifier_log().trim());
            let t = QueueTarget {
                ring_fd: 3,
                backing_fd: 4,
                backing_offset: 0,
                valid: 0,
                flags: 0,
                ..Default::default()
            };
            p.set_queue(1, t).unwrap();
            assert_eq!(p.queue(1).unwrap().valid, 1);
            assert_eq!(p.stats().unwrap(), Stats::default());
            assert_eq!(stats_by_map_id(p.stats_map_id()).unwrap(), Stats::default());
        }
        Err(e) => eprintln!(
            "type 33 load (expected to fail on an unpatched kernel): {}",
            e.chain()
        ),
    }
}

/// The whole program through the verifier on a stock kernel: loaded as a
/// kprobe with helper 212 swapped for `bpf_get_stack` (67: ctx, stack
/// buffer, constant size, anything: the same argument kinds), with and
/// without logging. Then the map API on the live maps.
///
/// Run: `sudo cargo test -p ublk-user --lib bpf::tests::host_load -- --ignored --nocapture`
#[test]
#[ignore = "needs root and bpf(2); loads the program on the running kernel"]
fn host_load_full_program_with_substitute_helper() {
    let bytes = embedded_object();
    for log in [false, true] {
        let opts = LoadOptions {
            log,
            prog_type: 2,
            ..Default::default()
        };
        let p = BpfProgram::load_patched(bytes, opts, |insns| {
            for i in insns
                .iter_mut()
                .filter(|i| i.code == 0x85 && i.src_reg() == 0 && i.imm == 212)
            {
                i.imm = 67;
            }
        });
        let p = match p {
            Err(e) if kprobe_unavailable(&e.chain()) => {
                eprintln!("NOTE: this kernel cannot load kprobe programs; skipped");
                return;
            }
            r => r.unwrap_or_else(|e| panic!("log={log}: {}", e.chain())),
        };
        eprintln!(
            "log={log}: prog id {}: {}",
            p.prog_id(),
            p.verifier_log().trim()
        );
        for q in [0u16, 5, 63] {
            let t = QueueTarget {
                ring_fd: 10 + q as i32,
                backing_fd: 20,
                backing_offset: 4096,
                valid: 0,
                flags: 0,
                ..Default::default()
            };
            p.set_queue(q, t).unwrap();
            let got = p.queue(q).unwrap();
            assert_eq!(
                (got.ring_fd, got.backing_fd, got.backing_offset, got.valid),
                (10 + q as i32, 20, 4096, 1)
            );
        }
        p.clear_queue(5).unwrap();
        assert_eq!(p.queue(5).unwrap().valid, 0);
        assert!(p.set_queue(64, QueueTarget::default()).is_err());
        assert_eq!(p.stats().unwrap(), Stats::default());
        assert_eq!(stats_by_map_id(p.stats_map_id()).unwrap(), Stats::default());
        drop(p); // stops the log thread
    }
}

// ------------------------------------------------- end to end (VM, root) ----

/// End to end on the patched kernel, through the library (no CLI): a loop
/// device with `UBLK_F_BPF` and this module's hook; O_DIRECT writes and reads
/// through `/dev/ublkbN` must land in / come from the backing file, and be
/// counted as redirected by the program and by the server.
///
/// Run in the VM: `cargo xtask run -- <test binary> --ignored --nocapture bpf::tests::vm_`
#[test]
#[ignore = "needs the patched kernel (UBLK_F_BPF) and root"]
fn vm_end_to_end_redirect() {
    use crate::ctrl::Control;
    use crate::device::{Device, DeviceOptions};
    use crate::target::LoopTarget;
    use std::io::{Read, Seek, SeekFrom, Write};
    use std::os::unix::fs::{FileExt, OpenOptionsExt};

    let Ok(mut ctl) = Control::open() else {
        eprintln!("NOTE: no /dev/ublk-control; skipped");
        return;
    };
    let features = ctl.get_features().expect("GET_FEATURES");
    if features & UBLK_F_BPF == 0 {
        eprintln!("NOTE: kernel lacks UBLK_F_BPF (features {features:#x}); skipped");
        return;
    }
    let dir = std::env::var_os("TEST_TMP")
        .map(PathBuf::from)
        .unwrap_or_else(std::env::temp_dir);
    let img = dir.join(format!("bpf-e2e-{}.img", std::process::id()));
    // 16 MiB backing file: a pattern in the first 8 MiB, zeroes after.
    let pattern: Vec<u8> = (0..8u32 << 20)
        .map(|i| (i.wrapping_mul(2654435761) >> 24) as u8)
        .collect();
    {
        let mut f = std::fs::File::create(&img).unwrap();
        f.write_all(&pattern).unwrap();
        f.set_len(16 << 20).unwrap();
    }
    let target = Arc::new(LoopTarget::open(&img, false).expect("loop target"));
    let opts = DeviceOptions {
        mode: crate::Mode::Bpf,
        queues: 2,
        ..Default::default()
    };
    let mut dev = Device::create(ctl, target, opts).expect("ADD_DEV with UBLK_F_BPF");
    let (prog, hook) = load_hook(std::env::var_os("UBLK_BPF_LOG").is_some(), 1).expect("load");
    eprintln!(
        "loaded prog id {}: {}",
        prog.prog_id(),
        prog.verifier_log().trim()
    );
    dev.set_bpf_hook(hook);
    dev.start().expect("start");
    let bdev = dev.bdev_path();
    let before = prog.stats().unwrap();

    #[repr(C, align(4096))]
    struct Page([u8; 4096]);
    let mut buf: Vec<Page> = (0..256).map(|_| Page([0; 4096])).collect(); // 1 MiB, aligned
                                                                          // SAFETY: `buf` is 256 contiguous, initialised 4 KiB pages.
    let bytes = unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u8>(), 1 << 20) };
    let mut f = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&bdev)
        .unwrap();
    // READ: 1 MiB at 1 MiB, then 4 KiB at 12 KiB.
    f.seek(SeekFrom::Start(1 << 20)).unwrap();
    f.read_exact(bytes).unwrap();
    assert!(
        bytes[..] == pattern[1 << 20..2 << 20],
        "1 MiB read through {bdev} differs"
    );
    f.read_exact_at(&mut bytes[..4096], 12 << 10).unwrap();
    assert!(
        bytes[..4096] == pattern[12 << 10..16 << 10],
        "4 KiB read differs"
    );
    // WRITE: 1 MiB at 10 MiB and 64 KiB at 9 MiB, read back through the device.
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = (i % 251) as u8;
    }
    f.write_all_at(bytes, 10 << 20).unwrap();
    f.write_all_at(&bytes[..64 << 10], 9 << 20).unwrap();
    let after = prog.stats().unwrap();
    eprintln!(
        "program stats before {:?}\n              after  {:?}",
        before.0, after.0
    );
    let server = dev.counters().map(|c| {
        (
            c.total(crate::io::counters::Counter::Served),
            c.total(crate::io::counters::Counter::Redirected),
        )
    });
    eprintln!("server counters (served, redirected): {server:?}");
    // Close the block device first: DEL_DEV waits for its last user.
    drop(f);
    dev.stop().expect("stop");

    let back = std::fs::read(&img).unwrap();
    let _ = std::fs::remove_file(&img);
    assert!(
        back[10 << 20..11 << 20] == bytes[..],
        "backing file differs after the 1 MiB write"
    );
    assert!(
        back[9 << 20..(9 << 20) + (64 << 10)] == bytes[..64 << 10],
        "backing file differs (64 KiB)"
    );
    assert!(back[..8 << 20] == pattern[..], "the pattern was damaged");
    // At least our 4 requests (more if the block layer split one, or the
    // partition scan was still reading).
    assert!(
        after.redirected() - before.redirected() >= 4,
        "requests redirected by the program"
    );
    assert!(
        after.redirected_bytes() - before.redirected_bytes()
            >= (1 << 20) + 4096 + (1 << 20) + (64 << 10),
        "bytes redirected by the program"
    );
    assert_eq!(after.get(stat::PASS_HELPER_ERR), 0, "helper errors");
}

#[test]
fn queue_targets_name_files_as_each_mode_needs() {
    use super::queue_target;
    use crate::target::BpfLayout;
    use ublk_ebpf_common::TARGET_FIXED_FILE;
    let one = BpfLayout {
        files: vec![9],
        offset: 4096,
        chunk_shift: 0,
        clusters: None,
    };
    // ring mode, one file: the server's descriptor
    let t = queue_target(5, false, &one);
    assert_eq!((t.ring_fd, t.backing_fd, t.flags, t.nr_files), (5, 9, 0, 1));
    assert_eq!((t.backing_offset, t.valid), (4096, 1));
    // kernel mode: the table from index 0, no ring
    let t = queue_target(5, true, &one);
    assert_eq!(
        (t.ring_fd, t.backing_fd, t.flags),
        (-1, 0, TARGET_FIXED_FILE)
    );
    let stripe = BpfLayout {
        files: vec![11, 12, 13],
        offset: 0,
        chunk_shift: 16,
        clusters: None,
    };
    // ring mode, a stripe: fixed files from 1 (after /dev/ublkcN)
    let t = queue_target(5, false, &stripe);
    assert_eq!(
        (t.ring_fd, t.backing_fd, t.flags, t.nr_files, t.chunk_shift),
        (5, 1, TARGET_FIXED_FILE, 3, 16)
    );
    let t = queue_target(5, true, &stripe);
    assert_eq!(
        (t.ring_fd, t.backing_fd, t.flags, t.nr_files),
        (-1, 0, TARGET_FIXED_FILE, 3)
    );
}
