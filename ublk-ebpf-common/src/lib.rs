//! The ABI shared by the ublk BPF program (`ublk-ebpf`), its loader
//! (`ublk-user`) and the kernel patches in `kernel-patches/`.
//!
//! Everything here mirrors a definition in the patched kernel's
//! `include/uapi/linux/ublk_cmd.h` or a layout both sides of the BPF
//! program must agree on. Host tests in `ublk-user` check the sizes and
//! offsets against the patched header.
#![no_std]

/// `enum bpf_prog_type`: appended after `BPF_PROG_TYPE_NETFILTER` (32).
pub const BPF_PROG_TYPE_UBLK: u32 = 33;
/// `enum bpf_func_id`: `BPF_FUNC_ublk_queue_sqe`.
pub const BPF_FUNC_UBLK_QUEUE_SQE: u32 = 212;

/// Feature flag negotiated at ADD_DEV and advertised by GET_FEATURES.
pub const UBLK_F_BPF: u64 = 1 << 20;
/// With `UBLK_F_BPF`: the program runs in the submitter's context and the
/// driver issues and completes the backing I/O itself (no server round trip).
pub const UBLK_F_BPF_KERNEL_IO: u64 = 1 << 21;
/// `ublksrv_io_desc.op_flags` bit: the program redirected this request; the
/// server must not serve its data, only wait for the backing CQE and commit.
pub const UBLK_IO_F_BPF_REDIRECT: u32 = 1 << 20;

/// Control command numbers (ioctl-encoded as `_IOWR('u', nr, struct ublksrv_ctrl_cmd)`);
/// the program fd travels in `ublksrv_ctrl_cmd.data[0]`.
pub const UBLK_CMD_REG_BPF_PROG: u32 = 0x1a;
pub const UBLK_CMD_UNREG_BPF_PROG: u32 = 0x1b;
/// `REG_BPF_PROG`'s `data[0]`: bits 32-47 are the first buffer table entry
/// the driver may use for redirected requests without `UBLK_F_AUTO_BUF_REG`
/// (entry `base + tag`) ...
pub const UBLK_BPF_BUF_BASE_SHIFT: u32 = 32;
/// ... and with this bit the range is laid out by queue
/// (`base + q_id * queue_depth + tag`), for rings that serve several queues.
pub const UBLK_BPF_BUF_PER_DEVICE: u64 = 1 << 48;
/// `UBLK_F_BPF_KERNEL_IO`: pin the backing files (`addr`/`len`: an array of fds).
pub const UBLK_CMD_REG_BPF_FILES: u32 = 0x1c;
pub const UBLK_CMD_UNREG_BPF_FILES: u32 = 0x1d;
/// Read `struct ublk_bpf_stats` into `addr`.
pub const UBLK_CMD_GET_BPF_STATS: u32 = 0x1e;
/// Entries of a device's file table.
pub const UBLK_BPF_MAX_FILES: usize = 16;
/// `ublksrv_io_desc.op_flags`: a FUA write.
pub const UBLK_IO_F_FUA: u32 = 1 << 13;
/// `RWF_DSYNC`: what a FUA write's SQE must carry.
pub const RWF_DSYNC: u32 = 0x2;
/// `IOSQE_FIXED_FILE`: `sqe.fd` is an index (the ring's fixed files, or
/// with `UBLK_F_BPF_KERNEL_IO` the device's file table).
pub const IOSQE_FIXED_FILE: u8 = 1 << 0;

/// Program return codes.
pub const UBLK_BPF_PASS: i32 = 0;
pub const UBLK_BPF_REDIRECT: i32 = 1;

/// Errors `bpf_ublk_queue_sqe` returns (negated errno values).
pub mod helper_err {
    /// `sqe_len != sizeof(struct io_uring_sqe)`.
    pub const BAD_SQE_LEN: i32 = -90; // -EMSGSIZE
    /// Opcode other than `IORING_OP_READ` / `IORING_OP_WRITE`.
    pub const BAD_OPCODE: i32 = -95; // -EOPNOTSUPP
    /// Forbidden `flags`, `buf_index`, `personality`, `addr3`, `rw_flags`...
    pub const BAD_FIELD: i32 = -22; // -EINVAL
    /// The SQE does not cover the request's bytes exactly (`addr != 0` or
    /// `len` other than the request's length).
    pub const OUT_OF_RANGE: i32 = -34; // -ERANGE
    /// `fd` is not an open file of the calling task; with
    /// `UBLK_F_BPF_KERNEL_IO`: no `IOSQE_FIXED_FILE`, or `sqe.fd` names no
    /// file of the device's table.
    pub const BAD_FD: i32 = -9; // -EBADF
    /// `fd` is open but not an io_uring.
    pub const NOT_IO_URING: i32 = -77; // -EBADFD
    /// `fd` is an io_uring, but not the ring this request's queue is served
    /// on; with `UBLK_F_BPF_KERNEL_IO`, `fd` is not -1.
    pub const WRONG_RING: i32 = -18; // -EXDEV
    /// An SQE was already queued for this request.
    pub const ALREADY_QUEUED: i32 = -16; // -EBUSY
}

/// `struct ublk_bpf_ctx`: what the program sees of a request. Read-only.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[cfg_attr(feature = "user", derive(Debug, PartialEq, Eq))]
pub struct UblkBpfCtx {
    /// First sector (512 B) of the request on the ublk device.
    pub start_sector: u64,
    /// Length in sectors.
    pub nr_sectors: u32,
    /// `UBLK_IO_F_*` bits, as in `ublksrv_io_desc.op_flags >> 8 << 8`.
    pub op_flags: u32,
    pub q_id: u16,
    pub tag: u16,
    /// `UBLK_IO_OP_*`.
    pub op: u8,
    pub reserved: u8,
    /// I/O priority of the request.
    pub ioprio: u16,
}

/// `UBLK_IO_OP_*` values (from the kernel's uapi).
pub mod op {
    pub const READ: u8 = 0;
    pub const WRITE: u8 = 1;
    pub const FLUSH: u8 = 2;
    pub const DISCARD: u8 = 3;
    pub const WRITE_SAME: u8 = 4;
    pub const WRITE_ZEROES: u8 = 5;
}

/// The 64-byte `struct io_uring_sqe`, flattened to the fields a BPF program
/// may set for `bpf_ublk_queue_sqe`.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct IoUringSqe {
    pub opcode: u8,
    pub flags: u8,
    pub ioprio: u16,
    pub fd: i32,
    /// Backing-file offset in bytes.
    pub off: u64,
    /// Offset into the request's data (not an address).
    pub addr: u64,
    pub len: u32,
    pub rw_flags: u32,
    pub user_data: u64,
    pub buf_index: u16,
    pub personality: u16,
    pub splice_fd_in: i32,
    pub addr3: u64,
    pub pad2: u64,
}

pub const IORING_OP_READ: u8 = 22;
pub const IORING_OP_WRITE: u8 = 23;
/// With `UBLK_F_BPF_KERNEL_IO`, for a FLUSH: the driver syncs every file of
/// the device's table.
pub const IORING_OP_FSYNC: u8 = 3;
/// With `UBLK_F_BPF_KERNEL_IO`, for a DISCARD or WRITE_ZEROES: `off` the
/// backing offset, `addr` the length (the request's), `len` the mode.
pub const IORING_OP_FALLOCATE: u8 = 17;
/// `ublksrv_io_desc.op_flags`: a WRITE_ZEROES that must not unmap (deallocate).
pub const UBLK_IO_F_NOUNMAP: u32 = 1 << 15;
/// `FALLOC_FL_KEEP_SIZE | FALLOC_FL_PUNCH_HOLE`: a DISCARD, or a
/// WRITE_ZEROES that may unmap.
pub const FALLOC_PUNCH: u32 = 0x01 | 0x02;
/// `FALLOC_FL_KEEP_SIZE | FALLOC_FL_ZERO_RANGE`: a WRITE_ZEROES with NOUNMAP.
pub const FALLOC_ZERO: u32 = 0x01 | 0x10;

/// Per-queue map value (`UBLK_QUEUES`, an array indexed by queue id) that the
/// loader fills before registering the program.
#[repr(C)]
#[derive(Clone, Copy, Default)]
#[cfg_attr(feature = "user", derive(Debug))]
pub struct QueueTarget {
    /// The server's io_uring fd for this queue.
    pub ring_fd: i32,
    /// Backing file fd, in the server's file table.
    pub backing_fd: i32,
    /// Byte offset of the device's data in the backing file.
    pub backing_offset: u64,
    /// Non-zero once the entry is filled.
    pub valid: u32,
    /// [`TARGET_FIXED_FILE`]: `backing_fd` is an index, not an fd.
    pub flags: u32,
    /// Files the device is striped over (0 or 1: one file, the identity
    /// mapping). With 2 or more, file `i` is fixed index `backing_fd + i`
    /// (so [`TARGET_FIXED_FILE`] is required).
    pub nr_files: u32,
    /// With `nr_files` >= 2: log2 of the stripe chunk in bytes.
    pub chunk_shift: u32,
}

/// The most files a stripe may have (the kernel's `UBLK_BPF_MAX_FILES`).
pub const MAX_STRIPE_FILES: u32 = 16;

/// Where byte `dev_off` of a device striped over `nr_files` files in chunks
/// of `1 << chunk_shift` bytes lives: (file index, byte offset in that
/// file). Chunk `c` of the device is chunk `c / nr_files` of file
/// `c % nr_files` (RAID-0, as dm-stripe lays it out). `nr_files` must be
/// non-zero.
#[inline(always)]
pub fn stripe_map(dev_off: u64, nr_files: u32, chunk_shift: u32) -> (u32, u64) {
    let shift = chunk_shift & 63;
    let chunk = dev_off >> shift;
    let n = nr_files as u64;
    let file = chunk % n;
    let row = chunk / n;
    let in_chunk = dev_off & ((1u64 << shift) - 1);
    (file as u32, (row << shift) | in_chunk)
}

/// Where `len` bytes at byte `dev_off` of a device mapped cluster by
/// cluster (clusters of `1 << cluster_shift` bytes, `lookup` giving the
/// host offset of a mapped one) live in the image: the host byte offset,
/// or the [`stat`] counter of why the server must serve them (they span
/// two clusters, or the cluster is not mapped).
#[inline(always)]
pub fn map_cluster(
    dev_off: u64,
    len: u32,
    cluster_shift: u32,
    lookup: impl Fn(u64) -> Option<u64>,
) -> Result<u64, u32> {
    let shift = cluster_shift & 63;
    let vc = dev_off >> shift;
    if len == 0 || (dev_off + len as u64 - 1) >> shift != vc {
        return Err(stat::PASS_SPAN);
    }
    match lookup(vc) {
        Some(host) => Ok(host + (dev_off & ((1u64 << shift) - 1))),
        None => Err(stat::PASS_UNMAPPED),
    }
}

/// [`QueueTarget::flags`]: `backing_fd` is a fixed-file index (with
/// `UBLK_F_BPF_KERNEL_IO`, into the device's file table); `ring_fd` is -1
/// when the kernel completes the I/O itself.
pub const TARGET_FIXED_FILE: u32 = 1 << 0;
/// [`QueueTarget::flags`]: the device maps onto one file (`backing_fd`)
/// cluster by cluster, through the program's cluster map
/// (`UBLK_CLUSTERS`: virtual cluster index -> host byte offset of the
/// cluster), as a qcow2 image does; `chunk_shift` is log2 of the cluster
/// size. Only READ and WRITE inside one mapped cluster are redirected;
/// everything else (an unmapped cluster, FLUSH, DISCARD, WRITE_ZEROES, in
/// both modes) goes to the server, which owns the metadata.
pub const TARGET_CLUSTER_MAP: u32 = 1 << 1;

/// Indices of the program's per-CPU counters (`UBLK_STATS`).
pub mod stat {
    /// Requests the helper accepted (served by BPF, zero copy).
    pub const REDIRECTED: u32 = 0;
    /// PASS because the op is not READ/WRITE.
    pub const PASS_OP: u32 = 1;
    /// PASS because the queue has no map entry.
    pub const PASS_NO_TARGET: u32 = 2;
    /// PASS because the helper returned an error.
    pub const PASS_HELPER_ERR: u32 = 3;
    /// Bytes redirected.
    pub const REDIRECTED_BYTES: u32 = 4;
    /// Redirected requests of I/O priority class RT, BE and IDLE (see
    /// [`prio_stat`](super::prio_stat)); requests without a class (NONE)
    /// are the rest of [`REDIRECTED`].
    pub const REDIRECTED_RT: u32 = 5;
    pub const REDIRECTED_BE: u32 = 6;
    pub const REDIRECTED_IDLE: u32 = 7;
    /// PASS because the request spans two stripe chunks (one backing I/O
    /// cannot serve it; the server splits it).
    pub const PASS_SPAN: u32 = 8;
    /// PASS because the request's cluster has no entry in the cluster map
    /// (unallocated, compressed, zero, or shared: the server serves it).
    pub const PASS_UNMAPPED: u32 = 9;
    pub const COUNT: u32 = 10;
}

/// `IOPRIO_CLASS_*` (include/uapi/linux/ioprio.h): the class is the top
/// three bits of a 16-bit I/O priority.
pub mod ioprio {
    pub const CLASS_SHIFT: u32 = 13;
    pub const CLASS_NONE: u16 = 0;
    pub const CLASS_RT: u16 = 1;
    pub const CLASS_BE: u16 = 2;
    pub const CLASS_IDLE: u16 = 3;
    /// `IOPRIO_PRIO_VALUE(class, level)`.
    pub const fn value(class: u16, level: u16) -> u16 {
        (class << CLASS_SHIFT) | level
    }
}

/// The [`stat`] counter a redirected request of priority `prio`
/// (`ctx->ioprio`) also bumps: one per class the kernel defines, `None`
/// for NONE and for the unused classes 4-7. What shows that the
/// submitter's priority reached the program, and through the backing I/O
/// the next device.
#[inline(always)]
pub fn prio_stat(prio: u16) -> Option<u32> {
    match prio >> ioprio::CLASS_SHIFT {
        ioprio::CLASS_RT => Some(stat::REDIRECTED_RT),
        ioprio::CLASS_BE => Some(stat::REDIRECTED_BE),
        ioprio::CLASS_IDLE => Some(stat::REDIRECTED_IDLE),
        _ => None,
    }
}

/// `user_data` layout for every SQE on a queue ring, so each CQE is routed
/// without a lookup: `kind:8 | op:8 | tag:16` in the low 32 bits, the high
/// 32 bits free for the kind's own use.
pub mod user_data {
    /// FETCH_REQ / COMMIT_AND_FETCH_REQ uring_cmd.
    pub const KIND_UBLK_CMD: u8 = 1;
    /// Backing I/O issued by the server (copy / zc paths).
    pub const KIND_TARGET: u8 = 2;
    /// Backing I/O issued by the BPF program through the helper.
    pub const KIND_BPF: u8 = 3;
    /// Internal bookkeeping (e.g. eventfd wakeups).
    pub const KIND_INTERNAL: u8 = 4;

    #[inline(always)]
    pub const fn encode(kind: u8, op: u8, tag: u16, extra: u32) -> u64 {
        ((extra as u64) << 32) | ((kind as u64) << 24) | ((op as u64) << 16) | tag as u64
    }
    #[inline(always)]
    pub const fn kind(ud: u64) -> u8 {
        (ud >> 24) as u8
    }
    #[inline(always)]
    pub const fn op(ud: u64) -> u8 {
        (ud >> 16) as u8
    }
    #[inline(always)]
    pub const fn tag(ud: u64) -> u16 {
        ud as u16
    }
    #[inline(always)]
    pub const fn extra(ud: u64) -> u32 {
        (ud >> 32) as u32
    }
}

/// Names of the objects in the BPF program that the loader looks up. The
/// program and the loader both use these, so a rename breaks the build, not
/// the load.
pub mod names {
    /// The program's function (symbol) name.
    pub const PROGRAM: &str = "ublk_serve";
    /// The ELF section the program lives in. aya-obj only parses known
    /// section prefixes, so the program sits in a `socket/` section; the
    /// loader ignores the implied type and loads it as `BPF_PROG_TYPE_UBLK`.
    pub const SECTION: &str = "socket/ublk_serve";
    /// `Array<QueueTarget>`, indexed by queue id.
    pub const QUEUES_MAP: &str = "UBLK_QUEUES";
    /// `PerCpuArray<u64>` with [`crate::stat::COUNT`] entries.
    pub const STATS_MAP: &str = "UBLK_STATS";
    /// `.rodata` `u8`: non-zero enables the program's aya-log records.
    pub const LOG_GLOBAL: &str = "UBLK_BPF_LOG";
    /// `HashMap<u64, u64>`: virtual cluster index -> host byte offset, for
    /// a target with [`crate::TARGET_CLUSTER_MAP`].
    pub const CLUSTERS_MAP: &str = "UBLK_CLUSTERS";
}

/// Entries in `UBLK_QUEUES` (the highest queue id the program serves + 1).
pub const MAX_QUEUES: u32 = 64;

/// A request as the program sees it: the fields of [`UblkBpfCtx`] it reads.
#[derive(Clone, Copy, Default)]
#[cfg_attr(feature = "user", derive(Debug, PartialEq, Eq))]
pub struct BpfRequest {
    pub start_sector: u64,
    pub nr_sectors: u32,
    /// `UBLK_IO_F_*` bits (FUA is the one the plan looks at).
    pub op_flags: u32,
    pub q_id: u16,
    pub tag: u16,
    pub op: u8,
    /// The request's I/O priority (`ctx->ioprio`); the plan does not use it
    /// (the kernel gives it to the backing I/O), the counters do.
    pub ioprio: u16,
}

/// What the program does with a request; pure, so it is unit-tested on the
/// host and reused verbatim by the BPF program.
#[derive(Clone, Copy)]
#[cfg_attr(feature = "user", derive(Debug))]
pub enum Plan {
    /// Queue this SQE with `bpf_ublk_queue_sqe` on `ring_fd`; on success
    /// return [`UBLK_BPF_REDIRECT`], counting `bytes`.
    Redirect {
        sqe: IoUringSqe,
        ring_fd: i32,
        bytes: u64,
    },
    /// Return [`UBLK_BPF_PASS`] and bump the given [`stat`] counter.
    Pass(u32),
}

/// Decides how to serve `req` given its queue's map entry (`None` when the
/// lookup failed).
///
/// READ and WRITE are redirected in both modes. In the kernel mode (the
/// target names a table index and no ring) FLUSH becomes an FSYNC and
/// DISCARD / WRITE_ZEROES a FALLOCATE over the request's range, which the
/// driver serves in its worker, as the loop driver does; in the ring mode
/// they go to the server.
#[inline(always)]
pub fn plan(req: &BpfRequest, target: Option<&QueueTarget>) -> Plan {
    plan_mapped(req, target, |_| None)
}

/// [`plan`], with `cluster` looking up a virtual cluster index in the
/// cluster map (for a target with [`TARGET_CLUSTER_MAP`]; never called
/// otherwise).
#[inline(always)]
pub fn plan_mapped(
    req: &BpfRequest,
    target: Option<&QueueTarget>,
    cluster: impl Fn(u64) -> Option<u64>,
) -> Plan {
    let t = match target {
        Some(t) if t.valid != 0 => t,
        _ => return Plan::Pass(stat::PASS_NO_TARGET),
    };
    let fixed = t.flags & TARGET_FIXED_FILE != 0;
    let kernel = fixed && t.ring_fd == -1;
    let len = req.nr_sectors.wrapping_shl(9);
    let dev_off = req.start_sector.wrapping_shl(9);
    // The file (an offset from `backing_fd`) and the byte offset in it.
    let (file, off) = if t.flags & TARGET_CLUSTER_MAP != 0 {
        if req.op != op::READ && req.op != op::WRITE {
            return Plan::Pass(stat::PASS_OP);
        }
        match map_cluster(dev_off, len, t.chunk_shift, cluster) {
            Ok(off) => (0, off),
            Err(why) => return Plan::Pass(why),
        }
    } else if t.nr_files > 1 {
        if !fixed || t.nr_files > MAX_STRIPE_FILES {
            return Plan::Pass(stat::PASS_NO_TARGET);
        }
        let (file, off) = stripe_map(dev_off, t.nr_files, t.chunk_shift);
        // One backing I/O serves one chunk: a request that ends in another
        // goes to the server (the device's chunk_sectors keeps READ and
        // WRITE from doing so; a DISCARD may). A FLUSH has no range.
        let shift = t.chunk_shift & 63;
        if len != 0 && (dev_off + len as u64 - 1) >> shift != dev_off >> shift {
            return Plan::Pass(stat::PASS_SPAN);
        }
        (file as i32, off)
    } else {
        (0, dev_off)
    };
    let off = t.backing_offset.wrapping_add(off);
    // (opcode, off, addr, len, bytes counted)
    let (opcode, off, addr, len, bytes) = match req.op {
        op::READ => (IORING_OP_READ, off, 0, len, len as u64),
        op::WRITE => (IORING_OP_WRITE, off, 0, len, len as u64),
        op::FLUSH if kernel => (IORING_OP_FSYNC, 0, 0, 0, 0),
        op::DISCARD if kernel => (IORING_OP_FALLOCATE, off, len as u64, FALLOC_PUNCH, 0),
        op::WRITE_ZEROES if kernel => {
            let mode = if req.op_flags & UBLK_IO_F_NOUNMAP != 0 {
                FALLOC_ZERO
            } else {
                FALLOC_PUNCH
            };
            (IORING_OP_FALLOCATE, off, len as u64, mode, 0)
        }
        _ => return Plan::Pass(stat::PASS_OP),
    };
    let fua = req.op == op::WRITE && req.op_flags & UBLK_IO_F_FUA != 0;
    let sqe = IoUringSqe {
        opcode,
        fd: t.backing_fd.wrapping_add(file),
        off,
        addr,
        len,
        user_data: user_data::encode(user_data::KIND_BPF, req.op, req.tag, req.q_id as u32),
        // Spelled out (not `..Default::default()`) so the BPF build stores
        // each field instead of calling a `memset` subprogram.
        flags: if fixed { IOSQE_FIXED_FILE } else { 0 },
        ioprio: 0,
        // A FUA write is durable before it completes: the helper refuses
        // one without RWF_DSYNC.
        rw_flags: if fua { RWF_DSYNC } else { 0 },
        buf_index: 0,
        personality: 0,
        splice_fd_in: 0,
        addr3: 0,
        pad2: 0,
    };
    Plan::Redirect {
        sqe,
        ring_fd: t.ring_fd,
        bytes,
    }
}

#[cfg(test)]
mod tests {
    extern crate std;
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn layouts() {
        assert_eq!(size_of::<UblkBpfCtx>(), 24);
        assert_eq!(offset_of!(UblkBpfCtx, nr_sectors), 8);
        assert_eq!(offset_of!(UblkBpfCtx, op_flags), 12);
        assert_eq!(offset_of!(UblkBpfCtx, q_id), 16);
        assert_eq!(offset_of!(UblkBpfCtx, tag), 18);
        assert_eq!(offset_of!(UblkBpfCtx, op), 20);
        assert_eq!(offset_of!(UblkBpfCtx, ioprio), 22);
        assert_eq!(size_of::<IoUringSqe>(), 64);
        assert_eq!(offset_of!(IoUringSqe, off), 8);
        assert_eq!(offset_of!(IoUringSqe, addr), 16);
        assert_eq!(offset_of!(IoUringSqe, len), 24);
        assert_eq!(offset_of!(IoUringSqe, user_data), 32);
        assert_eq!(offset_of!(IoUringSqe, buf_index), 40);
        assert_eq!(size_of::<QueueTarget>(), 32);
        assert_eq!(offset_of!(QueueTarget, nr_files), 24);
    }

    #[test]
    fn user_data_roundtrip() {
        let ud = user_data::encode(user_data::KIND_BPF, op::WRITE, 0xbeef, 0xdead_0001);
        assert_eq!(user_data::kind(ud), user_data::KIND_BPF);
        assert_eq!(user_data::op(ud), op::WRITE);
        assert_eq!(user_data::tag(ud), 0xbeef);
        assert_eq!(user_data::extra(ud), 0xdead_0001);
    }

    fn target() -> QueueTarget {
        QueueTarget {
            ring_fd: 7,
            backing_fd: 9,
            backing_offset: 4096,
            valid: 1,
            flags: 0,
            nr_files: 0,
            chunk_shift: 0,
        }
    }

    fn req(op: u8, start_sector: u64, nr_sectors: u32) -> BpfRequest {
        BpfRequest {
            start_sector,
            nr_sectors,
            op_flags: 0,
            q_id: 0,
            tag: 1,
            op,
            ioprio: 0,
        }
    }

    #[test]
    fn plan_read_write() {
        for (o, opc) in [(op::READ, IORING_OP_READ), (op::WRITE, IORING_OP_WRITE)] {
            let req = BpfRequest {
                start_sector: 8,
                nr_sectors: 16,
                op_flags: 0,
                q_id: 3,
                tag: 42,
                op: o,
                ioprio: 0,
            };
            match plan(&req, Some(&target())) {
                Plan::Redirect {
                    sqe,
                    ring_fd,
                    bytes,
                } => {
                    assert_eq!(ring_fd, 7);
                    assert_eq!(bytes, 8192);
                    assert_eq!(sqe.opcode, opc);
                    assert_eq!(sqe.fd, 9);
                    assert_eq!(sqe.off, 4096 + 8 * 512);
                    assert_eq!(sqe.addr, 0);
                    assert_eq!(sqe.len, 8192);
                    assert_eq!(sqe.flags, 0);
                    assert_eq!(sqe.rw_flags, 0);
                    assert_eq!(sqe.buf_index, 0);
                    assert_eq!(user_data::kind(sqe.user_data), user_data::KIND_BPF);
                    assert_eq!(user_data::op(sqe.user_data), o);
                    assert_eq!(user_data::tag(sqe.user_data), 42);
                    assert_eq!(user_data::extra(sqe.user_data), 3);
                }
                Plan::Pass(_) => panic!("op {o} should redirect"),
            }
        }
    }

    #[test]
    fn plan_fua_write_asks_for_dsync() {
        let mut req = BpfRequest {
            start_sector: 0,
            nr_sectors: 8,
            op_flags: UBLK_IO_F_FUA,
            q_id: 0,
            tag: 1,
            op: op::WRITE,
            ioprio: 0,
        };
        let Plan::Redirect { sqe, .. } = plan(&req, Some(&target())) else {
            panic!("a FUA write redirects");
        };
        assert_eq!(sqe.rw_flags, RWF_DSYNC);
        // FUA means nothing for a read
        req.op = op::READ;
        let Plan::Redirect { sqe, .. } = plan(&req, Some(&target())) else {
            panic!("a read redirects");
        };
        assert_eq!(sqe.rw_flags, 0);
    }

    #[test]
    fn plan_kernel_mode_names_a_table_index() {
        let req = BpfRequest {
            start_sector: 2,
            nr_sectors: 8,
            op_flags: 0,
            q_id: 0,
            tag: 1,
            op: op::READ,
            ioprio: 0,
        };
        let t = QueueTarget {
            ring_fd: -1,
            backing_fd: 0,
            flags: TARGET_FIXED_FILE,
            ..target()
        };
        let Plan::Redirect { sqe, ring_fd, .. } = plan(&req, Some(&t)) else {
            panic!("a read redirects");
        };
        assert_eq!(ring_fd, -1);
        assert_eq!(sqe.fd, 0);
        assert_eq!(sqe.flags, IOSQE_FIXED_FILE);
        assert_eq!(sqe.off, 4096 + 2 * 512);
    }

    #[test]
    fn plan_pass() {
        let mut req = BpfRequest {
            start_sector: 0,
            nr_sectors: 8,
            op_flags: 0,
            q_id: 0,
            tag: 0,
            op: op::READ,
            ioprio: 0,
        };
        assert!(matches!(plan(&req, None), Plan::Pass(stat::PASS_NO_TARGET)));
        let invalid = QueueTarget {
            valid: 0,
            ..target()
        };
        assert!(matches!(
            plan(&req, Some(&invalid)),
            Plan::Pass(stat::PASS_NO_TARGET)
        ));
        for o in [
            op::FLUSH,
            op::DISCARD,
            op::WRITE_SAME,
            op::WRITE_ZEROES,
            200,
        ] {
            req.op = o;
            assert!(matches!(
                plan(&req, Some(&target())),
                Plan::Pass(stat::PASS_OP)
            ));
        }
    }

    #[test]
    fn plan_kernel_mode_flush_discard_write_zeroes() {
        let t = QueueTarget {
            ring_fd: -1,
            backing_fd: 2,
            flags: TARGET_FIXED_FILE,
            ..target()
        };
        let req = |op, op_flags| BpfRequest {
            start_sector: 16,
            nr_sectors: 8,
            op_flags,
            q_id: 0,
            tag: 5,
            op,
            ioprio: 0,
        };
        let sqe_of = |r: BpfRequest| match plan(&r, Some(&t)) {
            Plan::Redirect {
                sqe,
                ring_fd,
                bytes,
            } => {
                assert_eq!(ring_fd, -1);
                assert_eq!(bytes, 0, "no data moves");
                assert_eq!(sqe.flags, IOSQE_FIXED_FILE);
                assert_eq!(sqe.fd, 2);
                assert_eq!(sqe.rw_flags, 0);
                sqe
            }
            Plan::Pass(why) => panic!("op {} passed ({why})", r.op),
        };
        let f = sqe_of(req(op::FLUSH, 0));
        assert_eq!(f.opcode, IORING_OP_FSYNC);
        assert_eq!((f.off, f.addr, f.len), (0, 0, 0));
        let d = sqe_of(req(op::DISCARD, 0));
        assert_eq!(d.opcode, IORING_OP_FALLOCATE);
        assert_eq!(
            (d.off, d.addr, d.len),
            (4096 + 16 * 512, 4096, FALLOC_PUNCH)
        );
        let z = sqe_of(req(op::WRITE_ZEROES, 0));
        assert_eq!((z.opcode, z.len), (IORING_OP_FALLOCATE, FALLOC_PUNCH));
        let z = sqe_of(req(op::WRITE_ZEROES, UBLK_IO_F_NOUNMAP));
        assert_eq!((z.off, z.addr, z.len), (4096 + 16 * 512, 4096, FALLOC_ZERO));
        // WRITE_SAME and unknown ops still go to the server
        for o in [op::WRITE_SAME, 200] {
            assert!(matches!(
                plan(&req(o, 0), Some(&t)),
                Plan::Pass(stat::PASS_OP)
            ));
        }
        // a ring-mode target with a fixed file is not the kernel mode
        let ring = QueueTarget { ring_fd: 7, ..t };
        assert!(matches!(
            plan(&req(op::FLUSH, 0), Some(&ring)),
            Plan::Pass(stat::PASS_OP)
        ));
    }

    /// The reference striping: walk the device chunk by chunk, dealing
    /// the chunks out to the files in turn (no division).
    fn reference_layout(dev_size: u64, nr_files: u32, chunk: u64) -> std::vec::Vec<(u32, u64)> {
        let mut next_row = std::vec![0u64; nr_files as usize];
        let mut out = std::vec::Vec::new();
        let mut file = 0u32;
        let mut pos = 0;
        while pos < dev_size {
            let base = next_row[file as usize];
            for b in 0..chunk {
                out.push((file, base + b));
            }
            next_row[file as usize] += chunk;
            file = (file + 1) % nr_files;
            pos += chunk;
        }
        out
    }

    #[test]
    fn stripe_map_matches_the_reference_for_every_byte() {
        for nr_files in [2u32, 3, 4, 7, 16] {
            for chunk_shift in [0u32, 3, 9, 12] {
                let chunk = 1u64 << chunk_shift;
                let dev_size = chunk * u64::from(nr_files) * 5;
                let reference = reference_layout(dev_size, nr_files, chunk);
                for (dev_off, want) in reference.iter().enumerate() {
                    assert_eq!(
                        stripe_map(dev_off as u64, nr_files, chunk_shift),
                        *want,
                        "{nr_files} files, chunk {chunk}, byte {dev_off}"
                    );
                }
            }
        }
        // a large device: the last byte of 16 x 1 GiB in 1 MiB chunks
        assert_eq!(stripe_map((16 << 30) - 1, 16, 20), (15, (1 << 30) - 1));
    }

    fn stripe(nr_files: u32, chunk_shift: u32, kernel: bool) -> QueueTarget {
        QueueTarget {
            ring_fd: if kernel { -1 } else { 7 },
            backing_fd: if kernel { 0 } else { 1 },
            backing_offset: 0,
            valid: 1,
            flags: TARGET_FIXED_FILE,
            nr_files,
            chunk_shift,
        }
    }

    #[test]
    fn plan_stripe_redirects_inside_a_chunk_and_passes_spans() {
        for kernel in [false, true] {
            let t = stripe(3, 12, kernel);
            let base = t.backing_fd;
            // 4 KiB chunks over 3 files: sector 8 = chunk 1 = file 1, row 0;
            // sector 24 + 1 = chunk 3 = file 0, row 1, 512 bytes in.
            for (sector, nr, file, off) in [
                (8u64, 8u32, 1, 0u64),
                (25, 2, 0, 4096 + 512),
                (47, 1, 2, 4096 + 512 * 7),
            ] {
                for op in [op::READ, op::WRITE] {
                    let Plan::Redirect { sqe, bytes, .. } = plan(&req(op, sector, nr), Some(&t))
                    else {
                        panic!("{op} at {sector} not redirected");
                    };
                    assert_eq!(
                        (sqe.fd, sqe.off, sqe.len, bytes),
                        (base + file, off, nr << 9, u64::from(nr) << 9)
                    );
                    assert_eq!(sqe.flags, IOSQE_FIXED_FILE);
                }
            }
            // ends in the next chunk: the server's
            assert!(matches!(
                plan(&req(op::READ, 7, 2), Some(&t)),
                Plan::Pass(stat::PASS_SPAN)
            ));
            assert!(matches!(
                plan(&req(op::WRITE, 0, 9), Some(&t)),
                Plan::Pass(stat::PASS_SPAN)
            ));
            // exactly one whole chunk is fine
            assert!(matches!(
                plan(&req(op::WRITE, 16, 8), Some(&t)),
                Plan::Redirect { .. }
            ));
            // a stripe without fixed files, or too wide, is refused
            let loose = QueueTarget { flags: 0, ..t };
            assert!(matches!(
                plan(&req(op::READ, 0, 1), Some(&loose)),
                Plan::Pass(stat::PASS_NO_TARGET)
            ));
            let wide = QueueTarget {
                nr_files: MAX_STRIPE_FILES + 1,
                ..t
            };
            assert!(matches!(
                plan(&req(op::READ, 0, 1), Some(&wide)),
                Plan::Pass(stat::PASS_NO_TARGET)
            ));
        }
        // kernel mode: a DISCARD inside a chunk goes to that file; one
        // that spans chunks to the server; a FLUSH syncs the table
        let t = stripe(2, 12, true);
        let Plan::Redirect { sqe, .. } = plan(&req(op::DISCARD, 8, 8), Some(&t)) else {
            panic!("discard in one chunk");
        };
        assert_eq!(
            (sqe.opcode, sqe.fd, sqe.off, sqe.addr),
            (IORING_OP_FALLOCATE, 1, 0, 4096)
        );
        assert!(matches!(
            plan(&req(op::DISCARD, 0, 16), Some(&t)),
            Plan::Pass(stat::PASS_SPAN)
        ));
        let Plan::Redirect { sqe, .. } = plan(&req(op::FLUSH, 0, 0), Some(&t)) else {
            panic!("flush");
        };
        assert_eq!((sqe.opcode, sqe.fd), (IORING_OP_FSYNC, 0));
    }

    #[test]
    fn prio_stat_counts_each_defined_class() {
        use ioprio::*;
        assert_eq!(prio_stat(0), None, "no priority set");
        assert_eq!(prio_stat(value(CLASS_NONE, 5)), None);
        assert_eq!(prio_stat(value(CLASS_RT, 0)), Some(stat::REDIRECTED_RT));
        assert_eq!(prio_stat(value(CLASS_RT, 7)), Some(stat::REDIRECTED_RT));
        assert_eq!(prio_stat(value(CLASS_BE, 4)), Some(stat::REDIRECTED_BE));
        assert_eq!(prio_stat(value(CLASS_IDLE, 0)), Some(stat::REDIRECTED_IDLE));
        for class in 4..8 {
            assert_eq!(prio_stat(value(class, 0)), None, "class {class}");
        }
        // the class counters fit in the map and do not alias the others
        let all = [
            stat::REDIRECTED,
            stat::PASS_OP,
            stat::PASS_NO_TARGET,
            stat::PASS_HELPER_ERR,
            stat::REDIRECTED_BYTES,
            stat::REDIRECTED_RT,
            stat::REDIRECTED_BE,
            stat::REDIRECTED_IDLE,
            stat::PASS_SPAN,
            stat::PASS_UNMAPPED,
        ];
        for (k, a) in all.iter().enumerate() {
            assert!(*a < stat::COUNT);
            assert!(!all[..k].contains(a), "counter {a} used twice");
        }
    }

    fn qcow_target(kernel: bool) -> QueueTarget {
        QueueTarget {
            ring_fd: if kernel { -1 } else { 7 },
            backing_fd: if kernel { 0 } else { 9 },
            backing_offset: 0,
            valid: 1,
            flags: TARGET_CLUSTER_MAP | if kernel { TARGET_FIXED_FILE } else { 0 },
            nr_files: 1,
            chunk_shift: 16,
        }
    }

    /// Virtual cluster 3 is at host 0x50000, cluster 4 at 0x20000.
    fn lookup(vc: u64) -> Option<u64> {
        match vc {
            3 => Some(0x5_0000),
            4 => Some(0x2_0000),
            _ => None,
        }
    }

    #[test]
    fn cluster_map_redirects_inside_one_mapped_cluster() {
        for kernel in [false, true] {
            let t = qcow_target(kernel);
            for (op, opcode) in [(op::READ, IORING_OP_READ), (op::WRITE, IORING_OP_WRITE)] {
                // 4K at 12K into virtual cluster 3
                let r = req(op, (3 << 16 | 0x3000) >> 9, 8);
                match plan_mapped(&r, Some(&t), lookup) {
                    Plan::Redirect { sqe, bytes, .. } => {
                        assert_eq!(sqe.opcode, opcode);
                        assert_eq!(sqe.off, 0x5_3000, "host offset + in-cluster offset");
                        assert_eq!(sqe.fd, t.backing_fd);
                        assert_eq!(sqe.len, 4096);
                        assert_eq!(bytes, 4096);
                    }
                    _ => panic!("not redirected"),
                }
            }
            // the last byte of cluster 4: its own host cluster, not 3's
            let r = req(op::READ, ((5 << 16) - 512) >> 9, 1);
            match plan_mapped(&r, Some(&t), lookup) {
                Plan::Redirect { sqe, .. } => assert_eq!(sqe.off, 0x2_0000 + 0xfe00),
                _ => panic!("not redirected"),
            }
        }
    }

    #[test]
    fn cluster_map_passes_unmapped_spanning_and_other_ops() {
        for kernel in [false, true] {
            let t = qcow_target(kernel);
            let pass = |r: BpfRequest| match plan_mapped(&r, Some(&t), lookup) {
                Plan::Pass(why) => why,
                _ => panic!("not redirected"),
            };
            assert_eq!(pass(req(op::READ, 0, 8)), stat::PASS_UNMAPPED);
            assert_eq!(pass(req(op::WRITE, (7 << 16) >> 9, 8)), stat::PASS_UNMAPPED);
            // 3 and 4 are both mapped, but not contiguously on the host
            assert_eq!(
                pass(req(op::WRITE, ((4 << 16) - 4096) >> 9, 16)),
                stat::PASS_SPAN
            );
            // the metadata ops are the server's in both modes
            for o in [op::FLUSH, op::DISCARD, op::WRITE_ZEROES] {
                assert_eq!(pass(req(o, (3 << 16) >> 9, 8)), stat::PASS_OP, "op {o}");
            }
        }
        // plan() never maps: a cluster target without a lookup passes all
        let t = qcow_target(true);
        assert!(matches!(
            plan(&req(op::READ, (3 << 16) >> 9, 8), Some(&t)),
            Plan::Pass(stat::PASS_UNMAPPED)
        ));
    }

    #[test]
    fn map_cluster_edges() {
        let l = |vc: u64| Some(vc << 20);
        assert_eq!(map_cluster(0, 4096, 12, l), Ok(0));
        assert_eq!(map_cluster(4096, 4096, 12, l), Ok(1 << 20));
        assert_eq!(map_cluster(4095, 2, 12, l), Err(stat::PASS_SPAN));
        assert_eq!(map_cluster(0, 0, 12, l), Err(stat::PASS_SPAN), "no length");
        // a 2 MiB cluster holds a 1 MiB request
        assert_eq!(
            map_cluster(3 << 20, 1 << 20, 21, l),
            Ok((1 << 20) + (1 << 20))
        );
    }
}
