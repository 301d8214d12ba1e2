//! The ublk BPF program (`BPF_PROG_TYPE_UBLK`, loaded by `ublk-user`'s
//! `bpf` module).
//!
//! For every request of a queue that has an entry in `UBLK_QUEUES`, it maps
//! the request onto the target's files and queues the backing I/O with
//! `bpf_ublk_queue_sqe` (helper 212): on the server's ring (`--mode bpf`)
//! or, with `UBLK_F_BPF_KERNEL_IO`, to the driver, which issues and
//! completes it (also FLUSH, DISCARD and WRITE_ZEROES there). The kernel
//! runs the backing I/O directly on the request's pages (zero copy).
//! A qcow2 image is mapped cluster by cluster through `UBLK_CLUSTERS`,
//! which the server fills. Anything it does not take (a request spanning
//! two stripe chunks or clusters, an unmapped cluster, an op
//! the mode leaves to the server, no map entry, a helper error) is passed
//! to the server.
//!
//! One entry point serves every target: the map entry carries the layout
//! (one file at an offset, as loop; or a stripe of 2-16 files with its
//! chunk), so loop and stripe are the same verified program and the loader
//! has one program to load, attach and fall back from. The decision itself
//! is `ublk_ebpf_common::plan` (and `stripe_map`), pure functions tested on
//! the host; this file only reads the context, touches maps and calls the
//! helper.
#![no_std]
#![no_main]

use core::ffi::c_void;

use aya_ebpf::{
    macros::map,
    maps::{Array, HashMap, PerCpuArray},
    Global,
};
use aya_log_ebpf::debug;
use ublk_ebpf_common::{
    plan_mapped, prio_stat, stat, BpfRequest, IoUringSqe, Plan, QueueTarget, UblkBpfCtx,
    BPF_FUNC_UBLK_QUEUE_SQE, MAX_QUEUES, UBLK_BPF_PASS, UBLK_BPF_REDIRECT,
};

/// Per-queue backing target, filled by the loader before the program is
/// registered with the device.
#[map]
static UBLK_QUEUES: Array<QueueTarget> = Array::with_max_entries(MAX_QUEUES, 0);

/// Virtual cluster index -> host byte offset of the cluster, for a target
/// mapped cluster by cluster (qcow2: `TARGET_CLUSTER_MAP`). The server
/// inserts a cluster once its metadata is durable and never removes one
/// while the device is served. Not preallocated (`BPF_F_NO_PREALLOC`): the
/// loader sets the bound to the device's cluster count, memory follows the
/// clusters actually mapped.
#[map]
static UBLK_CLUSTERS: HashMap<u64, u64> = HashMap::with_max_entries(1, BPF_F_NO_PREALLOC);

const BPF_F_NO_PREALLOC: u32 = 1;

/// Per-CPU counters, indexed by `ublk_ebpf_common::stat`.
#[map]
static UBLK_STATS: PerCpuArray<u64> = PerCpuArray::with_max_entries(stat::COUNT, 0);

/// Non-zero: emit aya-log debug records. In `.rodata`, set by the loader
/// before load; the kernel freezes the map, so with 0 the verifier knows the
/// log branches are dead and the program pays nothing for them.
#[no_mangle]
static UBLK_BPF_LOG: Global<u8> = Global::new(0);

/// `long bpf_ublk_queue_sqe(void *ctx, const struct io_uring_sqe *sqe,
/// u32 sqe_len, int ring_fd)`.
#[inline(always)]
fn ublk_queue_sqe(ctx: *mut UblkBpfCtx, sqe: &IoUringSqe, ring_fd: i32) -> i64 {
    // SAFETY: BPF helpers are called by their ID: the kernel resolves
    // `call <id>` instructions, so an `extern "C" fn` pointer whose address is
    // the ID is how helpers are invoked (as aya-ebpf-bindings does). The
    // argument types match the helper's prototype in the kernel patch.
    let f: unsafe extern "C" fn(*mut c_void, *const IoUringSqe, u32, i32) -> i64 =
        unsafe { core::mem::transmute(BPF_FUNC_UBLK_QUEUE_SQE as usize) };
    // Stage the SQE as eight volatile 64-bit stores: left to itself LLVM
    // turns the zero fields into a call to a byte-loop `memset` subprogram.
    // SAFETY: `IoUringSqe` is `repr(C)`, 64 bytes, without padding (checked
    // by the layout tests), so it has the same size as `[u64; 8]` and every
    // byte is initialised.
    let words: [u64; 8] = unsafe { core::mem::transmute(*sqe) };
    let mut slot = core::mem::MaybeUninit::<[u64; 8]>::uninit();
    let p = slot.as_mut_ptr().cast::<u64>();
    for (i, w) in words.iter().enumerate() {
        // SAFETY: `i < 8`, in bounds of the 8-word stack slot.
        unsafe { core::ptr::write_volatile(p.add(i), *w) };
    }
    // SAFETY: ctx is the program's unmodified context pointer and `slot` a
    // fully initialised 64-byte stack object, the size we pass.
    unsafe {
        f(
            ctx.cast(),
            p.cast(),
            core::mem::size_of::<IoUringSqe>() as u32,
            ring_fd,
        )
    }
}

/// Reads the fields the program uses, each with a load of exactly the
/// field's size (the kernel's `is_valid_access` rejects anything else).
#[inline(always)]
fn read_request(ctx: *const UblkBpfCtx) -> BpfRequest {
    // SAFETY: the kernel passes a valid, read-only `struct ublk_bpf_ctx`;
    // `addr_of!` forms field pointers without creating references, and
    // `read_volatile` keeps each load at its field's width.
    unsafe {
        BpfRequest {
            start_sector: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).start_sector)),
            nr_sectors: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).nr_sectors)),
            op_flags: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).op_flags)),
            q_id: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).q_id)),
            tag: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).tag)),
            op: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).op)),
            ioprio: core::ptr::read_volatile(core::ptr::addr_of!((*ctx).ioprio)),
        }
    }
}

#[inline(always)]
fn count(idx: u32, n: u64) {
    if let Some(p) = UBLK_STATS.get_ptr_mut(idx) {
        // SAFETY: per-CPU slot of a map value, only touched by this CPU while
        // the program runs (BPF programs do not migrate mid-run).
        unsafe { *p += n };
    }
}

#[inline(always)]
fn log_enabled() -> bool {
    UBLK_BPF_LOG.load() != 0
}

fn serve(ctx: *mut UblkBpfCtx) -> i32 {
    let req = read_request(ctx);
    let target = UBLK_QUEUES.get(req.q_id as u32);
    // SAFETY: the value is a plain u64 copied out before the map can change.
    let lookup = |vc: u64| unsafe { UBLK_CLUSTERS.get(&vc) }.copied();
    match plan_mapped(&req, target, lookup) {
        Plan::Redirect {
            sqe,
            ring_fd,
            bytes,
        } => {
            let ret = ublk_queue_sqe(ctx, &sqe, ring_fd);
            if ret == 0 {
                count(stat::REDIRECTED, 1);
                count(stat::REDIRECTED_BYTES, bytes);
                if let Some(class) = prio_stat(req.ioprio) {
                    count(class, 1);
                }
                if log_enabled() {
                    debug!(
                        &ctx,
                        "q{} tag {} op {} sector {} len {}: redirect",
                        req.q_id,
                        req.tag,
                        req.op,
                        req.start_sector,
                        sqe.len
                    );
                }
                UBLK_BPF_REDIRECT
            } else {
                count(stat::PASS_HELPER_ERR, 1);
                if log_enabled() {
                    debug!(
                        &ctx,
                        "q{} tag {} op {}: helper error {}, pass", req.q_id, req.tag, req.op, ret
                    );
                }
                UBLK_BPF_PASS
            }
        }
        Plan::Pass(why) => {
            count(why, 1);
            if log_enabled() {
                debug!(
                    &ctx,
                    "q{} tag {} op {}: pass ({})", req.q_id, req.tag, req.op, why
                );
            }
            UBLK_BPF_PASS
        }
    }
}

/// Entry point. The section name is one aya-obj parses (`socket/`); the
/// loader loads it as `BPF_PROG_TYPE_UBLK` regardless.
#[no_mangle]
#[link_section = "socket/ublk_serve"]
pub extern "C" fn ublk_serve(ctx: *mut UblkBpfCtx) -> i32 {
    serve(ctx)
}

#[no_mangle]
#[link_section = "license"]
pub static LICENSE: [u8; 4] = *b"GPL\0";

#[cfg(not(test))]
#[panic_handler]
fn panic(_info: &core::panic::PanicInfo) -> ! {
    loop {}
}
