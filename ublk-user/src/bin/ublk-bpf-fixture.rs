//! `ublk-bpf-fixture`: hostile BPF programs for the reliability tests
//! (tests/vm/6x). Programs are hand-assembled raw instructions loaded with a
//! raw `BPF_PROG_LOAD` of type 33 (`BPF_PROG_TYPE_UBLK`), so each case is
//! exactly the instruction sequence it names, whatever a compiler would do.
//!
//! Subcommands (one line of output per case, `key=value` words, exit 0 when
//! every case behaved as expected):
//!
//! * `verifier`: programs the verifier must reject (ctx writes, reads past
//!   or inside fields, non-ctx pointers, short SQE buffers, forbidden
//!   helpers, out-of-range return codes, ...), each checked against its
//!   expected verifier message; plus a valid control program that must load.
//! * `sqe --dev ID --case NAME [--expect ERRNO] -- CMD...`: replace the
//!   device's program (its server must run `--mode bpf --queues 1`) by one
//!   that passes a bad SQE to `bpf_ublk_queue_sqe`, run CMD (fio), and print
//!   what the helper returned (recorded by the program in an array map).
//! * `reg --dev ID --case NAME`: `UBLK_U_CMD_REG_BPF_PROG` variants (valid
//!   program, socket filter, closed fd, as another uid, ...); prints the errno.
//! * `unreg --dev ID`: `UBLK_U_CMD_UNREG_BPF_PROG`; prints the errno.
//! * `add-unpriv-bpf [--as-uid UID]`: ADD_DEV with UBLK_F_BPF |
//!   UBLK_F_UNPRIVILEGED_DEV (as root the kernel drops UNPRIVILEGED_DEV).
//! * `as-user UID -- CMD...`: run CMD with uid/gid UID and no capabilities.
//! * `cases`: list the `sqe` cases.

use std::ffi::CString;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::process::{Command, ExitCode};

use ublk_ebpf_common::{BPF_FUNC_UBLK_QUEUE_SQE, BPF_PROG_TYPE_UBLK};
use ublk_user::ctrl::Control;
use ublk_user::sys;

// ------------------------------------------------------------ instructions

/// One `struct bpf_insn`, little endian: code, dst:4|src:4, off, imm.
#[repr(C)]
#[derive(Clone, Copy)]
struct Insn {
    code: u8,
    regs: u8,
    off: i16,
    imm: i32,
}

const R0: u8 = 0;
const R1: u8 = 1;
const R2: u8 = 2;
const R3: u8 = 3;
const R4: u8 = 4;
const R6: u8 = 6;
const R7: u8 = 7;
const R8: u8 = 8;
const R9: u8 = 9;
const R10: u8 = 10;

// classes, sizes, modes, ops
const LD: u8 = 0x00;
const LDX: u8 = 0x01;
const ST: u8 = 0x02;
const STX: u8 = 0x03;
const ALU: u8 = 0x04;
const JMP: u8 = 0x05;
const ALU64: u8 = 0x07;
const W: u8 = 0x00;
const H: u8 = 0x08;
const B: u8 = 0x10;
const DW: u8 = 0x18;
const IMM: u8 = 0x00;
const MEM: u8 = 0x60;
const ATOMIC: u8 = 0xc0;
const K: u8 = 0x00;
const X: u8 = 0x08;
const ADD: u8 = 0x00;
const OR: u8 = 0x40;
const LSH: u8 = 0x60;
const MOV: u8 = 0xb0;
const JEQ: u8 = 0x10;
const JGT: u8 = 0x20;
const JNE: u8 = 0x50;
const CALL: u8 = 0x80;
const EXIT: u8 = 0x90;

fn i(code: u8, dst: u8, src: u8, off: i16, imm: i32) -> Insn {
    Insn {
        code,
        regs: (src << 4) | dst,
        off,
        imm,
    }
}
fn mov_imm(dst: u8, imm: i32) -> Insn {
    i(ALU64 | MOV | K, dst, 0, 0, imm)
}
fn mov32_imm(dst: u8, imm: i32) -> Insn {
    i(ALU | MOV | K, dst, 0, 0, imm)
}
fn mov_reg(dst: u8, src: u8) -> Insn {
    i(ALU64 | MOV | X, dst, src, 0, 0)
}
fn alu_imm(op: u8, dst: u8, imm: i32) -> Insn {
    i(ALU64 | op | K, dst, 0, 0, imm)
}
fn alu_reg(op: u8, dst: u8, src: u8) -> Insn {
    i(ALU64 | op | X, dst, src, 0, 0)
}
fn ldx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    i(LDX | MEM | size, dst, src, off, 0)
}
fn stx(size: u8, dst: u8, src: u8, off: i16) -> Insn {
    i(STX | MEM | size, dst, src, off, 0)
}
fn st(size: u8, dst: u8, off: i16, imm: i32) -> Insn {
    i(ST | MEM | size, dst, 0, off, imm)
}
fn xadd(dst: u8, src: u8, off: i16) -> Insn {
    i(STX | ATOMIC | DW, dst, src, off, 0 /* BPF_ADD */)
}
fn call(f: u32) -> Insn {
    i(JMP | CALL, 0, 0, 0, f as i32)
}
fn exit() -> Insn {
    i(JMP | EXIT, 0, 0, 0, 0)
}
fn jmp_imm(op: u8, dst: u8, imm: i32, off: i16) -> Insn {
    i(JMP | op | K, dst, 0, off, imm)
}
/// `r = map fd` (ld_imm64 with BPF_PSEUDO_MAP_FD), two slots.
fn ld_map(dst: u8, fd: RawFd) -> [Insn; 2] {
    [i(LD | DW | IMM, dst, 1, 0, fd), i(0, 0, 0, 0, 0)]
}

// ctx offsets (struct ublk_bpf_ctx)
const CTX_START: i16 = 0;
const CTX_NR_SECTORS: i16 = 8;
const CTX_OP_FLAGS: i16 = 12;
const CTX_Q_ID: i16 = 16;
const CTX_TAG: i16 = 18;
const CTX_OP: i16 = 20;

// ------------------------------------------------------------ bpf(2)

const BPF_MAP_CREATE: i32 = 0;
const BPF_MAP_LOOKUP_ELEM: i32 = 1;
const BPF_PROG_LOAD: i32 = 5;
const BPF_MAP_GET_NEXT_ID: i32 = 12;
const BPF_MAP_GET_FD_BY_ID: i32 = 14;
const BPF_OBJ_GET_INFO_BY_FD: i32 = 15;
const BPF_F_SLEEPABLE: u32 = 1 << 4;

fn bpf(cmd: i32, attr: &mut [u64; 16]) -> io::Result<i64> {
    // SAFETY: `attr` is a zeroed 128-byte bpf_attr whose pointers (if any)
    // the caller keeps alive for the call.
    let r = unsafe { libc::syscall(libc::SYS_bpf, cmd, attr.as_mut_ptr(), 128u32) };
    if r < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(r)
    }
}

fn lo_hi(a: u32, b: u32) -> u64 {
    a as u64 | ((b as u64) << 32)
}

struct Loaded {
    fd: Result<OwnedFd, io::Error>,
    log: String,
}

fn prog_load(prog_type: u32, insns: &[Insn], flags: u32) -> Loaded {
    let mut log = vec![0u8; 1 << 20];
    let lic = CString::new("GPL").unwrap();
    let mut a = [0u64; 16];
    a[0] = lo_hi(prog_type, insns.len() as u32);
    a[1] = insns.as_ptr() as u64;
    a[2] = lic.as_ptr() as u64;
    a[3] = lo_hi(2, log.len() as u32); // log_level 2: full trace, for the report
    a[4] = log.as_mut_ptr() as u64;
    a[5] = lo_hi(0, flags); // kern_version, prog_flags
    let name = b"hostile\0";
    // prog_name at byte 48
    let mut nm = [0u8; 16];
    nm[..name.len()].copy_from_slice(name);
    a[6] = u64::from_le_bytes(nm[..8].try_into().unwrap());
    // EAGAIN: the verifier saw a pending signal / io_uring task work; retry
    let mut r = bpf(BPF_PROG_LOAD, &mut a);
    for _ in 0..4 {
        match &r {
            Err(e) if e.raw_os_error() == Some(libc::EAGAIN) => r = bpf(BPF_PROG_LOAD, &mut a),
            _ => break,
        }
    }
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let log = String::from_utf8_lossy(&log[..end]).into_owned();
    Loaded {
        // SAFETY: a successful BPF_PROG_LOAD returns a new fd we own.
        fd: r.map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) }),
        log,
    }
}

/// An array map: 1 entry, u32 key, `value_size` bytes.
fn array_map(value_size: u32) -> io::Result<OwnedFd> {
    let mut a = [0u64; 16];
    a[0] = lo_hi(2 /* BPF_MAP_TYPE_ARRAY */, 4);
    a[1] = lo_hi(value_size, 1);
    // SAFETY: a successful BPF_MAP_CREATE returns a new fd we own.
    bpf(BPF_MAP_CREATE, &mut a).map(|fd| unsafe { OwnedFd::from_raw_fd(fd as i32) })
}

fn map_lookup(fd: RawFd, key: u32, value: &mut [u8]) -> io::Result<()> {
    let mut a = [0u64; 16];
    a[0] = fd as u32 as u64;
    a[1] = &key as *const u32 as u64;
    a[2] = value.as_mut_ptr() as u64;
    bpf(BPF_MAP_LOOKUP_ELEM, &mut a).map(|_| ())
}

/// Name and max entries of a map fd (`struct bpf_map_info`).
fn map_info(fd: RawFd) -> io::Result<(String, u32)> {
    let mut info = [0u8; 88];
    let mut a = [0u64; 16];
    a[0] = lo_hi(fd as u32, info.len() as u32);
    a[1] = info.as_mut_ptr() as u64;
    bpf(BPF_OBJ_GET_INFO_BY_FD, &mut a)?;
    let name = &info[24..40];
    let end = name.iter().position(|&b| b == 0).unwrap_or(16);
    let max = u32::from_le_bytes(info[16..20].try_into().unwrap());
    Ok((String::from_utf8_lossy(&name[..end]).into_owned(), max))
}

/// `QueueTarget` of queue 0 in the newest `UBLK_QUEUES` map whose ring fd
/// is an io_uring of `pid`: (ring_fd, backing_fd).
fn server_queue0(pid: i32) -> anyhow::Result<(i32, i32)> {
    let mut id = 0u32;
    let mut best = None;
    loop {
        let mut a = [0u64; 16];
        a[0] = id as u64;
        if bpf(BPF_MAP_GET_NEXT_ID, &mut a).is_err() {
            break;
        }
        id = (a[0] >> 32) as u32;
        let mut b = [0u64; 16];
        b[0] = id as u64;
        let Ok(fd) = bpf(BPF_MAP_GET_FD_BY_ID, &mut b) else {
            continue;
        };
        // SAFETY: new fd from BPF_MAP_GET_FD_BY_ID.
        let fd = unsafe { OwnedFd::from_raw_fd(fd as i32) };
        if map_info(fd.as_raw_fd()).map(|i| i.0).ok().as_deref() != Some("UBLK_QUEUES") {
            continue;
        }
        let mut v = [0u8; 24];
        if map_lookup(fd.as_raw_fd(), 0, &mut v).is_err() {
            continue;
        }
        let ring = i32::from_le_bytes(v[0..4].try_into().unwrap());
        let back = i32::from_le_bytes(v[4..8].try_into().unwrap());
        let valid = u32::from_le_bytes(v[16..20].try_into().unwrap());
        if valid != 0 && fd_is_uring(pid, ring) {
            best = Some((ring, back));
        }
    }
    best.ok_or_else(|| {
        anyhow::anyhow!(
            "no UBLK_QUEUES map with a valid queue 0 for server {pid} (is it --mode bpf?)"
        )
    })
}

fn fd_link(pid: i32, fd: i32) -> String {
    std::fs::read_link(format!("/proc/{pid}/fd/{fd}"))
        .map(|p| p.to_string_lossy().into_owned())
        .unwrap_or_default()
}
fn fd_is_uring(pid: i32, fd: i32) -> bool {
    fd_link(pid, fd).contains("io_uring")
}
/// An io_uring fd of `pid` other than `not`.
fn other_uring(pid: i32, not: i32) -> Option<i32> {
    let rd = std::fs::read_dir(format!("/proc/{pid}/fd")).ok()?;
    let mut v: Vec<i32> = rd
        .flatten()
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .filter(|&fd| fd != not && fd_is_uring(pid, fd))
        .collect();
    v.sort();
    v.first().copied()
}

// ------------------------------------------------------------ verifier cases

/// A minimal SQE on the stack at fp-64 (opcode READ, len = request bytes),
/// then `bpf_ublk_queue_sqe(ctx, fp-64, 64, -1)`; returns 0.
fn valid_prog() -> Vec<Insn> {
    let mut p = vec![mov_reg(R6, R1)];
    for k in 0..8 {
        p.push(st(DW, R10, -64 + 8 * k, 0));
    }
    p.push(st(B, R10, -64, 22));
    p.extend([
        ldx(W, R1, R6, CTX_NR_SECTORS),
        alu_imm(LSH, R1, 9),
        stx(W, R10, R1, -40),
        ldx(DW, R1, R6, CTX_START),
        ldx(W, R1, R6, CTX_OP_FLAGS),
        ldx(H, R1, R6, CTX_Q_ID),
        ldx(H, R1, R6, CTX_TAG),
        ldx(B, R1, R6, CTX_OP),
        mov_reg(R1, R6),
        mov_reg(R2, R10),
        alu_imm(ADD, R2, -64),
        mov_imm(R3, 64),
        mov_imm(R4, -1),
        call(BPF_FUNC_UBLK_QUEUE_SQE),
        mov_imm(R0, 0),
        exit(),
    ]);
    p
}

/// (name, what it does, program, prog_flags, expected log substrings (any)).
type VCase = (
    &'static str,
    &'static str,
    Vec<Insn>,
    u32,
    &'static [&'static str],
);

fn verifier_cases() -> Vec<VCase> {
    let ret0 = [mov_imm(R0, 0), exit()];
    let with = |body: &[Insn]| -> Vec<Insn> {
        let mut v = body.to_vec();
        v.extend(ret0);
        v
    };
    // the valid program with one instruction replaced
    let patched = |at: usize, new: Insn| -> Vec<Insn> {
        let mut v = valid_prog();
        v[at] = new;
        v
    };
    let call_at = valid_prog().len() - 3; // index of the helper call
                                          // ... r1 = r6; r2 = r10; r2 += -64; r3 = 64; r4 = -1; call; r0 = 0; exit
    let r1_at = call_at - 5; // r1 = r6
    let r2_at = call_at - 4; // r2 = r10
    let r3_at = call_at - 2; // r3 = 64
    vec![
        (
            "ctx_write_stx",
            "stores a register into ctx->start_sector",
            with(&[mov_imm(R2, 1), stx(DW, R1, R2, CTX_START)]),
            0,
            &["invalid bpf_context access off=0 size=8"],
        ),
        (
            "ctx_write_st",
            "stores an immediate into ctx->nr_sectors",
            with(&[st(W, R1, CTX_NR_SECTORS, 7)]),
            0,
            &["invalid bpf_context access off=8 size=4"],
        ),
        (
            "ctx_write_atomic",
            "atomic add into ctx->start_sector",
            with(&[mov_imm(R2, 1), xadd(R1, R2, CTX_START)]),
            0,
            &["BPF_ATOMIC stores into R1 ctx is not allowed"],
        ),
        (
            "ctx_read_past_end",
            "reads 8 bytes at offset 24 (ctx is 24 bytes)",
            with(&[ldx(DW, R2, R1, 24)]),
            0,
            &["invalid bpf_context access off=24 size=8"],
        ),
        (
            "ctx_read_far",
            "reads 4 bytes at offset 4096",
            with(&[ldx(W, R2, R1, 4096)]),
            0,
            &["invalid bpf_context access off=4096 size=4"],
        ),
        (
            "ctx_read_negative",
            "reads 8 bytes at offset -8",
            with(&[ldx(DW, R2, R1, -8)]),
            0,
            &["invalid bpf_context access off=-8", "invalid negative"],
        ),
        (
            "ctx_read_reserved",
            "reads the reserved byte at offset 21",
            with(&[ldx(B, R2, R1, 21)]),
            0,
            &["invalid bpf_context access off=21 size=1"],
        ),
        (
            "ctx_read_narrow_u64",
            "reads start_sector as u32",
            with(&[ldx(W, R2, R1, CTX_START)]),
            0,
            &["invalid bpf_context access off=0 size=4"],
        ),
        (
            "ctx_read_high_half",
            "reads the high half of start_sector (off 4, u32)",
            with(&[ldx(W, R2, R1, 4)]),
            0,
            &["invalid bpf_context access off=4 size=4"],
        ),
        (
            "ctx_read_wide_u32",
            "reads nr_sectors as u64 (covers op_flags too)",
            with(&[ldx(DW, R2, R1, CTX_NR_SECTORS)]),
            0,
            &["invalid bpf_context access off=8 size=8"],
        ),
        (
            "ctx_read_wide_u16",
            "reads q_id as u32 (covers tag)",
            with(&[ldx(W, R2, R1, CTX_Q_ID)]),
            0,
            &["invalid bpf_context access off=16 size=4"],
        ),
        (
            "ctx_read_wide_u8",
            "reads op as u16 (covers reserved)",
            with(&[ldx(H, R2, R1, CTX_OP)]),
            0,
            &["invalid bpf_context access off=20 size=2"],
        ),
        (
            "helper_arg1_fp",
            "passes fp-64 (the SQE) as the ctx argument",
            {
                let mut v = valid_prog();
                v[r1_at] = mov_reg(R1, R10);
                v.insert(r1_at + 1, alu_imm(ADD, R1, -64));
                v
            },
            0,
            &["R1 type=fp expected=ctx"],
        ),
        (
            "helper_arg1_modified_ctx",
            "passes ctx+8 as the ctx argument",
            {
                let mut v = valid_prog();
                v.insert(r1_at + 1, alu_imm(ADD, R1, 8));
                v
            },
            0,
            &[
                "dereference of modified ctx ptr R1 off=8 disallowed",
                "R1 type=ctx",
            ],
        ),
        (
            "helper_sqe_is_ctx",
            "passes the ctx as the SQE buffer",
            {
                let mut v = valid_prog();
                v[r2_at] = mov_reg(R2, R6);
                v[r2_at + 1] = mov_reg(R2, R6);
                v
            },
            0,
            &["R2 type=ctx expected="],
        ),
        (
            "helper_sqe_ctx_minus_64",
            "passes ctx - 64 as the SQE buffer",
            patched(r2_at, mov_reg(R2, R6)),
            0,
            &["negative offset ctx ptr R2 off=-64 disallowed"],
        ),
        (
            "helper_sqe_scalar",
            "passes a number as the SQE pointer",
            {
                let mut v = valid_prog();
                v[r2_at] = mov_imm(R2, 4096);
                v[r2_at + 1] = mov_imm(R2, 4096);
                v
            },
            0,
            &["R2 type=scalar expected=", "R2 invalid mem access 'scalar'"],
        ),
        (
            "helper_sqe_short_buffer",
            "passes a 16-byte stack buffer with sqe_len 64",
            {
                let mut v = valid_prog();
                v[r2_at + 1] = alu_imm(ADD, R2, -16);
                v
            },
            0,
            &["invalid read from stack R2 off=-16 size=64"],
        ),
        (
            "helper_sqe_len_zero",
            "passes sqe_len 0",
            patched(r3_at, mov_imm(R3, 0)),
            0,
            &["invalid zero-sized read", "R3 invalid zero-sized"],
        ),
        (
            "helper_sqe_len_unbounded",
            "passes sqe_len = ctx->nr_sectors (not a bounded constant)",
            patched(r3_at, ldx(W, R3, R6, CTX_NR_SECTORS)),
            0,
            &[
                "invalid zero-sized read",
                "unbounded memory access",
                "invalid read from stack R2",
            ],
        ),
        (
            "helper_sqe_len_too_big",
            "passes sqe_len 128 with a 64-byte buffer",
            patched(r3_at, mov_imm(R3, 128)),
            0,
            &["invalid read from stack R2 off=-64 size=128"],
        ),
        (
            "helper_forbidden",
            "calls bpf_skb_store_bytes (#9)",
            with(&[call(9)]),
            0,
            &["program of this type cannot use helper bpf_skb_store_bytes#9"],
        ),
        (
            "helper_forbidden_perf_out",
            "calls bpf_perf_event_output (#25)",
            with(&[call(25)]),
            0,
            &["program of this type cannot use helper bpf_perf_event_output#25"],
        ),
        (
            "helper_unknown",
            "calls helper #100000",
            with(&[call(100000)]),
            0,
            &["invalid func unknown#100000"],
        ),
        (
            "return_2",
            "returns 2",
            vec![mov_imm(R0, 2), exit()],
            0,
            &["should have been in [0, 1]"],
        ),
        (
            "return_minus_1",
            "returns -1",
            vec![mov_imm(R0, -1), exit()],
            0,
            &["should have been in [0, 1]"],
        ),
        (
            "return_unknown",
            "returns ctx->nr_sectors",
            vec![ldx(W, R0, R1, CTX_NR_SECTORS), exit()],
            0,
            &["should have been in [0, 1]"],
        ),
        (
            "return_helper_result",
            "returns bpf_ublk_queue_sqe's result unchecked",
            {
                let mut v = valid_prog();
                let n = v.len();
                v.remove(n - 2);
                v
            },
            0,
            &["should have been in [0, 1]"],
        ),
        (
            "return_pointer",
            "returns the ctx pointer",
            vec![mov_reg(R0, R1), exit()],
            0,
            &[
                "R0 leaks addr as return value",
                "is not a known value (ctx)",
            ],
        ),
        (
            "return_uninit",
            "exits without setting R0",
            vec![exit()],
            0,
            &["R0 !read_ok"],
        ),
        (
            "infinite_loop",
            "loops on `if r0 == 0 goto self` with r0 = 0",
            vec![mov_imm(R0, 0), jmp_imm(JEQ, R0, 0, -1), exit()],
            0,
            &["infinite loop detected", "back-edge"],
        ),
        (
            "fall_off_end",
            "has no exit",
            vec![mov_imm(R0, 0)],
            0,
            &["last insn is not an exit or jmp", "jump out of range"],
        ),
        (
            "sleepable",
            "valid program loaded with BPF_F_SLEEPABLE",
            valid_prog(),
            BPF_F_SLEEPABLE,
            &["sleepable", "Sleepable"],
        ),
    ]
}

fn cmd_verifier(verbose: bool) -> ExitCode {
    let mut bad = 0;
    let v = prog_load(BPF_PROG_TYPE_UBLK, &valid_prog(), 0);
    match &v.fd {
        Ok(_) => println!("case=valid_control result=loaded expected=loaded ok"),
        Err(e) => {
            println!("case=valid_control result=REJECTED({e}) expected=loaded FAIL");
            println!("{}", v.log);
            bad += 1;
        }
    }
    let cases = verifier_cases();
    let mut rejected = 0;
    for (name, what, insns, flags, want) in &cases {
        let l = prog_load(BPF_PROG_TYPE_UBLK, insns, *flags);
        let last = l
            .log
            .lines()
            .rev()
            .find(|s| {
                !s.is_empty()
                    && !s.starts_with("processed ")
                    && !s.starts_with("verification time")
                    && !s.starts_with("stack depth")
            })
            .unwrap_or("")
            .to_string();
        match l.fd {
            Ok(_) => {
                println!("case={name} result=LOADED expected=rejected FAIL # {what}");
                bad += 1;
            }
            Err(e) => {
                rejected += 1;
                let hit = want.iter().any(|w| l.log.contains(w));
                println!(
                    "case={name} result=rejected errno={} msg=\"{}\" {} # {what}",
                    e.raw_os_error().unwrap_or(0),
                    last,
                    if hit { "ok" } else { "WRONG_MESSAGE" }
                );
                if !hit {
                    println!("  expected one of {want:?}; log tail:");
                    for s in l
                        .log
                        .lines()
                        .rev()
                        .take(8)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        println!("  | {s}");
                    }
                    bad += 1;
                } else if verbose {
                    for s in l
                        .log
                        .lines()
                        .rev()
                        .take(4)
                        .collect::<Vec<_>>()
                        .into_iter()
                        .rev()
                    {
                        println!("  | {s}");
                    }
                }
            }
        }
    }
    // Not a rejection case: privileged loaders (CAP_PERFMON, implied by the
    // CAP_SYS_ADMIN the type needs) may pass uninitialized stack to helpers;
    // the helper copies the SQE and validates every field, so this is safe.
    let mut v = vec![mov_reg(R6, R1)];
    let vp = valid_prog();
    v.extend(&vp[vp.len() - 8..]);
    let l = prog_load(BPF_PROG_TYPE_UBLK, &v, 0);
    println!(
        "case=helper_sqe_uninit result={} expected=loaded-for-root info # 64 bytes of uninitialized stack as the SQE",
        match &l.fd {
            Ok(_) => "loaded".to_string(),
            Err(e) => format!("rejected({e})"),
        }
    );
    println!(
        "summary: {} hostile programs, {rejected} rejected, {bad} unexpected",
        cases.len()
    );
    if bad == 0 {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    }
}

// ------------------------------------------------------------ run-time SQE cases

/// One hostile SQE: fields of the SQE the program builds and the fd it
/// passes. `None` fields take the valid value.
#[derive(Clone, Default)]
struct SqeCase {
    name: &'static str,
    what: &'static str,
    /// opcode: None = READ/WRITE matching the request; Some(0xfe) = the
    /// opposite of the request's.
    opcode: Option<u8>,
    flags: u8,
    ioprio: u16,
    /// SQE fd: None = the server's backing fd; Some(v) = v.
    sqe_fd: Option<i32>,
    addr: i32,
    /// Backing offset: None = the request's own byte offset; Some(v) = v.
    off: Option<i64>,
    /// Kernel I/O mode only: the device's file table during the case:
    /// "keep" (the server's), "none" (unregistered), "hole" (one -1 entry).
    table: &'static str,
    /// len: None = request bytes + len_delta; Some(v) = v.
    len: Option<i32>,
    len_delta: i32,
    rw_flags: u32,
    buf_index: u16,
    personality: u16,
    splice_fd_in: i32,
    addr3: i32,
    pad2: i32,
    sqe_len: i32,
    /// ring fd argument: "ring" (the right one), "file" (backing file),
    /// "other_ring" (the server's control ring), "closed", "minus1".
    ring: &'static str,
    /// Call the helper twice (second result recorded separately).
    twice: bool,
    /// Expected first helper result.
    expect: i64,
    /// Expected second result when `twice`.
    expect2: i64,
}

/// Cases for a `UBLK_F_BPF_KERNEL_IO` device: no ring (-1), the backing
/// file is entry 0 of the device's file table (`IOSQE_FIXED_FILE`).
fn kernel_sqe_cases() -> Vec<SqeCase> {
    let base = SqeCase {
        sqe_len: 64,
        ring: "minus1",
        sqe_fd: Some(0),
        flags: 1,
        table: "keep",
        ..Default::default()
    };
    let c = |name, what, expect: i64, f: &dyn Fn(&mut SqeCase)| {
        let mut s = SqeCase {
            name,
            what,
            expect,
            ..base.clone()
        };
        f(&mut s);
        s
    };
    vec![
        c(
            "k_valid",
            "table entry 0, no ring (control: served by the kernel)",
            0,
            &|_| {},
        ),
        c(
            "k_twice",
            "a correct SQE queued twice for one request",
            0,
            &|s| {
                s.twice = true;
                s.expect2 = -16;
            },
        ),
        c("k_ring_given", "a ring fd instead of -1", -18, &|s| {
            s.ring = "ring"
        }),
        c(
            "k_no_fixed",
            "sqe.fd 0 without IOSQE_FIXED_FILE",
            -9,
            &|s| s.flags = 0,
        ),
        c("k_index_1", "table index 1 (out of range)", -9, &|s| {
            s.sqe_fd = Some(1)
        }),
        c("k_index_neg", "table index -1 (out of range)", -9, &|s| {
            s.sqe_fd = Some(-1)
        }),
        c(
            "k_unregistered",
            "no file table (UNREG_BPF_FILES)",
            -9,
            &|s| s.table = "none",
        ),
        c(
            "k_hole",
            "table entry 0 is a hole (-1 registered)",
            -9,
            &|s| s.table = "hole",
        ),
        c("k_partial", "len = request bytes - 512", -34, &|s| {
            s.len_delta = -512
        }),
        c("k_off_minus_1", "off = -1", -22, &|s| s.off = Some(-1)),
        c("k_hipri", "RWF_HIPRI", -22, &|s| s.rw_flags = 0x1),
    ]
}

fn sqe_cases() -> Vec<SqeCase> {
    let base = SqeCase {
        sqe_len: 64,
        ring: "ring",
        ..Default::default()
    };
    let c = |name, what, expect: i64, f: &dyn Fn(&mut SqeCase)| {
        let mut s = SqeCase {
            name,
            what,
            expect,
            ..base.clone()
        };
        f(&mut s);
        s
    };
    vec![
        c("valid", "a correct SQE (control: redirected)", 0, &|_| {}),
        c(
            "twice",
            "a correct SQE queued twice for one request",
            0,
            &|s| {
                s.twice = true;
                s.expect2 = -16;
            },
        ),
        c("sqe_len_32", "sqe_len 32", -90, &|s| s.sqe_len = 32),
        c("sqe_len_63", "sqe_len 63", -90, &|s| s.sqe_len = 63),
        c("opcode_nop", "IORING_OP_NOP", -95, &|s| s.opcode = Some(0)),
        c("opcode_fsync", "IORING_OP_FSYNC", -95, &|s| {
            s.opcode = Some(3)
        }),
        c("opcode_read_fixed", "IORING_OP_READ_FIXED", -95, &|s| {
            s.opcode = Some(4)
        }),
        c("opcode_uring_cmd", "IORING_OP_URING_CMD", -95, &|s| {
            s.opcode = Some(46)
        }),
        c(
            "opcode_mismatch",
            "WRITE for a READ request and vice versa",
            -95,
            &|s| s.opcode = Some(0xfe),
        ),
        c("flags_link", "IOSQE_IO_LINK", -22, &|s| s.flags = 1 << 2),
        c("flags_buffer_select", "IOSQE_BUFFER_SELECT", -22, &|s| {
            s.flags = 1 << 5
        }),
        c("flags_async", "IOSQE_ASYNC", -22, &|s| s.flags = 1 << 4),
        c("ioprio", "ioprio 1", -22, &|s| s.ioprio = 1),
        c("buf_index", "buf_index 1", -22, &|s| s.buf_index = 1),
        c("personality", "personality 1", -22, &|s| s.personality = 1),
        c("splice_fd_in", "file_index 1", -22, &|s| s.splice_fd_in = 1),
        c("addr3", "addr3 4096", -22, &|s| s.addr3 = 4096),
        c("pad2", "__pad2[0] 1", -22, &|s| s.pad2 = 1),
        c("rw_flags_append", "RWF_APPEND", -22, &|s| s.rw_flags = 0x10),
        c("rw_flags_unknown", "rw_flags bit 30", -22, &|s| {
            s.rw_flags = 1 << 30
        }),
        c("len_zero", "len 0", -34, &|s| s.len = Some(0)),
        c("len_past_request", "len = request bytes + 512", -34, &|s| {
            s.len_delta = 512
        }),
        c(
            "addr_plus_len_past",
            "addr 512, len = request bytes",
            -34,
            &|s| s.addr = 512,
        ),
        c(
            "addr_overflow",
            "addr = 2^64-1, len = request bytes",
            -34,
            &|s| s.addr = -1,
        ),
        c("len_huge", "len = 0xffffffff", -34, &|s| s.len = Some(-1)),
        c(
            "len_short",
            "len = request bytes - 512 (partial coverage)",
            -34,
            &|s| s.len_delta = -512,
        ),
        c("off_minus_1", "off = -1 (the file position)", -22, &|s| {
            s.off = Some(-1)
        }),
        c(
            "off_overflow",
            "off = 2^63 - 512: off + len overflows loff_t",
            -22,
            &|s| s.off = Some(i64::MAX - 511),
        ),
        c("rw_flags_hipri", "RWF_HIPRI", -22, &|s| s.rw_flags = 0x1),
        c("rw_flags_nowait", "RWF_NOWAIT", -22, &|s| s.rw_flags = 0x8),
        c(
            "ring_closed_fd",
            "fd 1000 (not open in the server)",
            -9,
            &|s| s.ring = "closed",
        ),
        c("ring_minus_1", "fd -1", -9, &|s| s.ring = "minus1"),
        c("ring_plain_file", "fd = the backing file", -77, &|s| {
            s.ring = "file"
        }),
        c(
            "ring_other_uring",
            "fd = the server's control io_uring",
            -18,
            &|s| s.ring = "other_ring",
        ),
    ]
}

fn sqe_prog(s: &SqeCase, ring_fd: i32, backing_fd: i32, res_map: RawFd) -> Vec<Insn> {
    let mut p = vec![
        mov_reg(R6, R1),
        ldx(B, R7, R6, CTX_OP),
        // only READ (0) / WRITE (1); others pass (patched below)
        jmp_imm(JGT, R7, 1, 0),
    ];
    let skip_at = p.len() - 1;
    for k in 0..8 {
        p.push(st(DW, R10, -64 + 8 * k, 0));
    }
    match s.opcode {
        None => p.extend([mov_reg(R1, R7), alu_imm(ADD, R1, 22), stx(B, R10, R1, -64)]),
        Some(0xfe) => p.extend([
            mov_imm(R1, 23),
            alu_reg(0x10 /* SUB */, R1, R7),
            stx(B, R10, R1, -64),
        ]),
        Some(op) => p.push(st(B, R10, -64, op as i32)),
    }
    p.push(st(B, R10, -63, s.flags as i32));
    p.push(st(H, R10, -62, s.ioprio as i32));
    p.push(st(W, R10, -60, s.sqe_fd.unwrap_or(backing_fd)));
    match s.off {
        // a 64-bit immediate does not fit a store: build it in a register
        Some(v) => p.extend([
            mov_imm(R1, (v >> 32) as i32),
            alu_imm(LSH, R1, 32),
            mov32_imm(R2, v as i32),
            alu_reg(OR, R1, R2),
            stx(DW, R10, R1, -56),
        ]),
        None => p.extend([
            ldx(DW, R1, R6, CTX_START),
            alu_imm(LSH, R1, 9),
            stx(DW, R10, R1, -56),
        ]),
    }
    p.push(st(DW, R10, -48, s.addr));
    match s.len {
        Some(v) => p.push(st(W, R10, -40, v)),
        None => p.extend([
            ldx(W, R1, R6, CTX_NR_SECTORS),
            alu_imm(LSH, R1, 9),
            alu_imm(ADD, R1, s.len_delta),
            stx(W, R10, R1, -40),
        ]),
    }
    p.push(st(W, R10, -36, s.rw_flags as i32));
    // user_data = q_id << 32 | KIND_BPF << 24 | op << 16 | tag
    p.extend([
        ldx(H, R1, R6, CTX_Q_ID),
        alu_imm(LSH, R1, 32),
        mov_reg(R2, R7),
        alu_imm(LSH, R2, 16),
        alu_reg(OR, R1, R2),
        alu_imm(OR, R1, 3 << 24),
        ldx(H, R2, R6, CTX_TAG),
        alu_reg(OR, R1, R2),
        stx(DW, R10, R1, -32),
    ]);
    p.push(st(H, R10, -24, s.buf_index as i32));
    p.push(st(H, R10, -22, s.personality as i32));
    p.push(st(W, R10, -20, s.splice_fd_in));
    p.push(st(DW, R10, -16, s.addr3));
    p.push(st(DW, R10, -8, s.pad2));
    let helper = |p: &mut Vec<Insn>| {
        p.extend([
            mov_reg(R1, R6),
            mov_reg(R2, R10),
            alu_imm(ADD, R2, -64),
            mov_imm(R3, s.sqe_len),
            mov32_imm(R4, ring_fd),
            call(BPF_FUNC_UBLK_QUEUE_SQE),
        ]);
    };
    helper(&mut p);
    p.push(mov_reg(R8, R0));
    if s.twice {
        helper(&mut p);
        p.push(mov_reg(R9, R0));
    } else {
        p.push(mov_imm(R9, 0x7fff));
    }
    // results: [calls, last ret, last ret2, accepted, bad ret seen, first ret]
    p.push(st(W, R10, -68, 0));
    p.extend(ld_map(R1, res_map));
    p.extend([
        mov_reg(R2, R10),
        alu_imm(ADD, R2, -68),
        call(1), // map_lookup_elem
        jmp_imm(JEQ, R0, 0, 0),
    ]);
    let null_at = p.len() - 1;
    p.extend([
        mov_imm(R1, 1),
        xadd(R0, R1, 0),
        stx(DW, R0, R8, 8),
        stx(DW, R0, R9, 16),
        jmp_imm(JNE, R8, 0, 2),
        mov_imm(R1, 1),
        xadd(R0, R1, 24),
        // first result, once: slot 40 holds 1 after the first store
        ldx(DW, R1, R0, 40),
        jmp_imm(JNE, R1, 0, 3),
        stx(DW, R0, R8, 32),
        mov_imm(R1, 1),
        stx(DW, R0, R1, 40),
    ]);
    let pass = p.len();
    // REDIRECT always: with no SQE queued it must mean PASS
    p.extend([mov_imm(R0, 1), exit()]);
    p[skip_at].off = (pass - skip_at - 1) as i16;
    p[null_at].off = (pass - null_at - 1) as i16;
    p
}

fn dev_pid(dev: u32) -> anyhow::Result<i32> {
    let mut ctl = Control::open()?;
    Ok(ctl.get_dev_info(dev)?.ublksrv_pid)
}

fn cmd_sqe(
    dev: u32,
    case: &str,
    cmd: &[String],
    kernel_backing: Option<&str>,
) -> anyhow::Result<ExitCode> {
    let cases = if kernel_backing.is_some() {
        kernel_sqe_cases()
    } else {
        sqe_cases()
    };
    let s = cases
        .iter()
        .find(|c| c.name == case)
        .ok_or_else(|| anyhow::anyhow!("unknown case {case} (see `cases`)"))?;
    let pid = dev_pid(dev)?;
    let (ring, backing) = match kernel_backing {
        // no ring in the program's queue entries: any io_uring of the server
        Some(_) => (
            other_uring(pid, -1).ok_or_else(|| anyhow::anyhow!("server {pid} has no io_uring"))?,
            0,
        ),
        None => server_queue0(pid)?,
    };
    let mut table_ctl = Control::open()?;
    match (kernel_backing, s.table) {
        (Some(_), "none") => table_ctl.unreg_bpf_files(dev)?,
        (Some(_), "hole") => table_ctl.reg_bpf_files(dev, &[-1])?,
        _ => {}
    }
    let ring_arg = match s.ring {
        "ring" => ring,
        "file" => backing,
        "closed" => 1000,
        "minus1" => -1,
        "other_ring" => other_uring(pid, ring)
            .ok_or_else(|| anyhow::anyhow!("server {pid} has no second io_uring"))?,
        r => anyhow::bail!("bad ring kind {r}"),
    };
    if s.ring == "closed" && !fd_link(pid, 1000).is_empty() {
        anyhow::bail!("fd 1000 is open in the server");
    }
    let res = array_map(48)?;
    let insns = sqe_prog(s, ring_arg, backing, res.as_raw_fd());
    let l = prog_load(BPF_PROG_TYPE_UBLK, &insns, 0);
    let prog = l.fd.map_err(|e| {
        anyhow::anyhow!(
            "case {case}: load failed: {e}\n{}",
            l.log.lines().rev().take(10).collect::<Vec<_>>().join("\n")
        )
    })?;
    let mut ctl = Control::open()?;
    let un = ctl
        .unreg_bpf_prog(dev, -1)
        .err()
        .and_then(|e| e.errno())
        .unwrap_or(0);
    ctl.reg_bpf_prog(dev, prog.as_raw_fd())
        .map_err(|e| anyhow::anyhow!("REG_BPF_PROG: {e}"))?;
    let st = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
    let mut v = [0u8; 48];
    map_lookup(res.as_raw_fd(), 0, &mut v)?;
    let g = |k: usize| i64::from_le_bytes(v[k * 8..k * 8 + 8].try_into().unwrap());
    let (calls, last, last2, ok, first) = (g(0), g(1), g(2), g(3), g(4));
    // leave no hostile program behind: the next case or the server's stop
    // finds none (UNREG then says ENOENT)
    let _ = ctl.unreg_bpf_prog(dev, -1);
    if let (Some(path), "none" | "hole") = (kernel_backing, s.table) {
        // give the server its table back: the same file, opened again
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .custom_flags(libc::O_DIRECT)
            .open(path)?;
        table_ctl.reg_bpf_files(dev, &[f.as_raw_fd()])?;
    }
    let good = calls > 0
        && first == s.expect
        && last == s.expect
        && (!s.twice || last2 == s.expect2)
        && (s.expect != 0 || ok > 0)
        && (s.expect == 0 || ok == 0);
    println!(
        "case={} calls={calls} ret={first} last_ret={last}{} accepted={ok} expect={}{} cmd_rc={} prev_unreg_errno={un} {} # {}",
        s.name,
        if s.twice { format!(" ret2={last2}") } else { String::new() },
        s.expect,
        if s.twice { format!(" expect2={}", s.expect2) } else { String::new() },
        st.code().unwrap_or(-1),
        if good { "ok" } else { "FAIL" },
        s.what
    );
    Ok(if good && st.success() {
        ExitCode::SUCCESS
    } else {
        ExitCode::FAILURE
    })
}

// ------------------------------------------------------------ REG/UNREG cases

fn errno_name(e: i32) -> &'static str {
    match e {
        0 => "OK",
        libc::EPERM => "EPERM",
        libc::ENOENT => "ENOENT",
        libc::EBADF => "EBADF",
        libc::EACCES => "EACCES",
        libc::EBUSY => "EBUSY",
        libc::ENODEV => "ENODEV",
        libc::EINVAL => "EINVAL",
        libc::EOPNOTSUPP => "EOPNOTSUPP",
        libc::EEXIST => "EEXIST",
        libc::ESRCH => "ESRCH",
        _ => "?",
    }
}

fn drop_to(uid: u32) -> io::Result<()> {
    // SAFETY: plain credential syscalls on the current process.
    unsafe {
        if libc::setgroups(0, std::ptr::null()) != 0
            || libc::setresgid(uid, uid, uid) != 0
            || libc::setresuid(uid, uid, uid) != 0
        {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}

fn cmd_reg(dev: u32, case: &str) -> anyhow::Result<ExitCode> {
    let ok_prog = || -> anyhow::Result<OwnedFd> {
        let l = prog_load(BPF_PROG_TYPE_UBLK, &[mov_imm(R0, 0), exit()], 0);
        l.fd.map_err(|e| anyhow::anyhow!("cannot load a trivial ublk program: {e}\n{}", l.log))
    };
    let res: Result<(), i32> = match case {
        "valid" | "twice" => {
            let p = ok_prog()?;
            let mut ctl = Control::open()?;
            let r = ctl.reg_bpf_prog(dev, p.as_raw_fd());
            if case == "twice" && r.is_ok() {
                ctl.reg_bpf_prog(dev, p.as_raw_fd())
                    .map_err(|e| e.errno().unwrap_or(0))
            } else {
                r.map_err(|e| e.errno().unwrap_or(0))
            }
        }
        "socket_filter" => {
            let l = prog_load(1, &[mov_imm(R0, 0), exit()], 0);
            let p = l.fd?;
            Control::open()?
                .reg_bpf_prog(dev, p.as_raw_fd())
                .map_err(|e| e.errno().unwrap_or(0))
        }
        "map_fd" => {
            let m = array_map(8)?;
            Control::open()?
                .reg_bpf_prog(dev, m.as_raw_fd())
                .map_err(|e| e.errno().unwrap_or(0))
        }
        "closed_fd" => Control::open()?
            .reg_bpf_prog(dev, 999)
            .map_err(|e| e.errno().unwrap_or(0)),
        "negative_fd" => Control::open()?
            .reg_bpf_prog(dev, -1)
            .map_err(|e| e.errno().unwrap_or(0)),
        "other_uid" => {
            // program loaded and control opened as root, command sent as nobody
            let p = ok_prog()?;
            let mut ctl = Control::open()?;
            drop_to(65534)?;
            ctl.reg_bpf_prog(dev, p.as_raw_fd())
                .map_err(|e| e.errno().unwrap_or(0))
        }
        "other_uid_open" => {
            drop_to(65534)?;
            match OpenOptions::new()
                .read(true)
                .write(true)
                .open("/dev/ublk-control")
            {
                Ok(_) => Ok(()),
                Err(e) => Err(e.raw_os_error().unwrap_or(0)),
            }
        }
        "other_uid_load" => {
            drop_to(65534)?;
            let l = prog_load(BPF_PROG_TYPE_UBLK, &[mov_imm(R0, 0), exit()], 0);
            l.fd.map(|_| ()).map_err(|e| e.raw_os_error().unwrap_or(0))
        }
        c => anyhow::bail!("unknown reg case {c}"),
    };
    let e = res.err().unwrap_or(0);
    println!("case={case} dev={dev} errno={e} ({})", errno_name(e));
    Ok(ExitCode::SUCCESS)
}

fn cmd_unreg(dev: u32) -> anyhow::Result<ExitCode> {
    let e = Control::open()?
        .unreg_bpf_prog(dev, -1)
        .err()
        .and_then(|e| e.errno())
        .unwrap_or(0);
    println!("case=unreg dev={dev} errno={e} ({})", errno_name(e));
    Ok(ExitCode::SUCCESS)
}

fn cmd_add_unpriv_bpf(uid: Option<u32>) -> anyhow::Result<ExitCode> {
    if let Some(u) = uid {
        drop_to(u)?;
    }
    let mut ctl = Control::open()?;
    let mut info = sys::DevInfo {
        nr_hw_queues: 1,
        queue_depth: 4,
        max_io_buf_bytes: 512 << 10,
        dev_id: u32::MAX,
        flags: sys::UBLK_F_BPF | sys::UBLK_F_UNPRIVILEGED_DEV | sys::UBLK_F_CMD_IOCTL_ENCODE,
        ..Default::default()
    };
    // SAFETY: getpid has no preconditions.
    info.ublksrv_pid = unsafe { libc::getpid() };
    match ctl.add_dev(&mut info) {
        Ok(()) => {
            let both = sys::UBLK_F_BPF | sys::UBLK_F_UNPRIVILEGED_DEV;
            println!(
                "case=add_unpriv_bpf uid={} errno=0 (OK) dev={} flags={:#x} both={}",
                uid.unwrap_or(0),
                info.dev_id,
                info.flags,
                (info.flags & both == both) as u8
            );
            if uid.is_none() {
                let _ = ctl.del_dev(info.dev_id);
            }
        }
        Err(e) => {
            let n = e.errno().unwrap_or(0);
            println!(
                "case=add_unpriv_bpf uid={} errno={n} ({})",
                uid.unwrap_or(0),
                errno_name(n)
            );
        }
    }
    Ok(ExitCode::SUCCESS)
}

fn cmd_as_user(uid: u32, cmd: &[String]) -> anyhow::Result<ExitCode> {
    drop_to(uid)?;
    let st = Command::new(&cmd[0]).args(&cmd[1..]).status()?;
    Ok(ExitCode::from(st.code().unwrap_or(128) as u8))
}

fn usage() -> ExitCode {
    eprintln!(
        "usage: ublk-bpf-fixture verifier [-v] | cases [--kernel] |\n\
         sqe --dev ID --case NAME [--kernel-backing FILE] -- CMD... |\n\
         \x20      reg --dev ID --case NAME | unreg --dev ID | add-unpriv-bpf [--as-uid UID] |\n\
         \x20      as-user UID -- CMD..."
    );
    ExitCode::from(2)
}

fn main() -> ExitCode {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let opt = |name: &str| -> Option<String> {
        args.iter()
            .position(|a| a == name)
            .and_then(|p| args.get(p + 1).cloned())
    };
    let rest = || -> Vec<String> {
        args.iter()
            .position(|a| a == "--")
            .map(|p| args[p + 1..].to_vec())
            .unwrap_or_default()
    };
    let dev = || opt("--dev").and_then(|d| d.parse::<u32>().ok());
    let r = match args.first().map(String::as_str) {
        Some("verifier") => return cmd_verifier(args.iter().any(|a| a == "-v")),
        Some("cases") => {
            let kernel = args.iter().any(|a| a == "--kernel");
            for c in if kernel {
                kernel_sqe_cases()
            } else {
                sqe_cases()
            } {
                println!("{}", c.name);
            }
            return ExitCode::SUCCESS;
        }
        Some("sqe") => match (dev(), opt("--case")) {
            (Some(d), Some(c)) if !rest().is_empty() => {
                cmd_sqe(d, &c, &rest(), opt("--kernel-backing").as_deref())
            }
            _ => return usage(),
        },
        Some("reg") => match (dev(), opt("--case")) {
            (Some(d), Some(c)) => cmd_reg(d, &c),
            _ => return usage(),
        },
        Some("unreg") => match dev() {
            Some(d) => cmd_unreg(d),
            None => return usage(),
        },
        Some("add-unpriv-bpf") => cmd_add_unpriv_bpf(opt("--as-uid").and_then(|u| u.parse().ok())),
        Some("as-user") => match args.get(1).and_then(|u| u.parse().ok()) {
            Some(uid) if !rest().is_empty() => cmd_as_user(uid, &rest()),
            _ => return usage(),
        },
        _ => return usage(),
    };
    match r {
        Ok(c) => c,
        Err(e) => {
            eprintln!(
                "ublk-bpf-fixture: {}",
                format!("{e:#}").replace('\n', " | ")
            );
            ExitCode::FAILURE
        }
    }
}
