//! The kernel's ublk uapi (`include/uapi/linux/ublk_cmd.h`, Linux 7.2),
//! mirrored as `#[repr(C)]` structs and constants, plus the ioctl encoding
//! of the control and I/O commands.
//!
//! Nothing here does I/O; the unit tests pin every size and offset to the
//! kernel header and every command number to a hand-computed `_IOR`/`_IOWR`.

pub use ublk_ebpf_common::{
    UBLK_BPF_BUF_BASE_SHIFT, UBLK_BPF_BUF_PER_DEVICE, UBLK_BPF_MAX_FILES, UBLK_CMD_GET_BPF_STATS,
    UBLK_CMD_REG_BPF_FILES, UBLK_CMD_REG_BPF_PROG, UBLK_CMD_UNREG_BPF_FILES,
    UBLK_CMD_UNREG_BPF_PROG, UBLK_F_BPF, UBLK_F_BPF_KERNEL_IO, UBLK_IO_F_BPF_REDIRECT,
};

// ---------------------------------------------------------------- ioctl encoding

const IOC_NRBITS: u32 = 8;
const IOC_TYPEBITS: u32 = 8;
const IOC_SIZEBITS: u32 = 14;
const IOC_NRSHIFT: u32 = 0;
const IOC_TYPESHIFT: u32 = IOC_NRSHIFT + IOC_NRBITS;
const IOC_SIZESHIFT: u32 = IOC_TYPESHIFT + IOC_TYPEBITS;
const IOC_DIRSHIFT: u32 = IOC_SIZESHIFT + IOC_SIZEBITS;
const IOC_WRITE: u32 = 1;
const IOC_READ: u32 = 2;

/// `_IOC(dir, type, nr, size)`.
pub const fn ioc(dir: u32, ty: u8, nr: u8, size: usize) -> u32 {
    (dir << IOC_DIRSHIFT)
        | ((ty as u32) << IOC_TYPESHIFT)
        | ((nr as u32) << IOC_NRSHIFT)
        | ((size as u32) << IOC_SIZESHIFT)
}
/// `_IOR(type, nr, size)`.
pub const fn ior(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ, ty, nr, size)
}
/// `_IOWR(type, nr, size)`.
pub const fn iowr(ty: u8, nr: u8, size: usize) -> u32 {
    ioc(IOC_READ | IOC_WRITE, ty, nr, size)
}
/// `_IOC_NR(cmd)`.
pub const fn ioc_nr(cmd: u32) -> u8 {
    (cmd >> IOC_NRSHIFT) as u8
}

const CTRL: usize = core::mem::size_of::<CtrlCmd>();
const IOCMD: usize = core::mem::size_of::<IoCmd>();

// ---------------------------------------------------------------- control commands

pub const UBLK_U_CMD_GET_QUEUE_AFFINITY: u32 = ior(b'u', 0x01, CTRL);
pub const UBLK_U_CMD_GET_DEV_INFO: u32 = ior(b'u', 0x02, CTRL);
pub const UBLK_U_CMD_ADD_DEV: u32 = iowr(b'u', 0x04, CTRL);
pub const UBLK_U_CMD_DEL_DEV: u32 = iowr(b'u', 0x05, CTRL);
pub const UBLK_U_CMD_START_DEV: u32 = iowr(b'u', 0x06, CTRL);
pub const UBLK_U_CMD_STOP_DEV: u32 = iowr(b'u', 0x07, CTRL);
pub const UBLK_U_CMD_START_USER_RECOVERY: u32 = iowr(b'u', 0x10, CTRL);
pub const UBLK_U_CMD_END_USER_RECOVERY: u32 = iowr(b'u', 0x11, CTRL);
pub const UBLK_U_CMD_SET_PARAMS: u32 = iowr(b'u', 0x08, CTRL);
pub const UBLK_U_CMD_GET_PARAMS: u32 = ior(b'u', 0x09, CTRL);
pub const UBLK_U_CMD_GET_DEV_INFO2: u32 = ior(b'u', 0x12, CTRL);
pub const UBLK_U_CMD_GET_FEATURES: u32 = ior(b'u', 0x13, CTRL);
pub const UBLK_U_CMD_DEL_DEV_ASYNC: u32 = ior(b'u', 0x14, CTRL);
pub const UBLK_U_CMD_TRY_STOP_DEV: u32 = iowr(b'u', 0x17, CTRL);
/// Register a BPF program (fd in `data[0]`) for the device (patched kernels).
pub const UBLK_U_CMD_REG_BPF_PROG: u32 = iowr(b'u', UBLK_CMD_REG_BPF_PROG as u8, CTRL);
/// Unregister the device's BPF program (patched kernels).
pub const UBLK_U_CMD_UNREG_BPF_PROG: u32 = iowr(b'u', UBLK_CMD_UNREG_BPF_PROG as u8, CTRL);
/// Pin the device's BPF file table (`UBLK_F_BPF_KERNEL_IO`; patched kernels).
pub const UBLK_U_CMD_REG_BPF_FILES: u32 = iowr(b'u', UBLK_CMD_REG_BPF_FILES as u8, CTRL);
/// Drop the device's BPF file table (patched kernels).
pub const UBLK_U_CMD_UNREG_BPF_FILES: u32 = iowr(b'u', UBLK_CMD_UNREG_BPF_FILES as u8, CTRL);
/// Read the device's `struct ublk_bpf_stats` (patched kernels).
pub const UBLK_U_CMD_GET_BPF_STATS: u32 = iowr(b'u', UBLK_CMD_GET_BPF_STATS as u8, CTRL);

/// `struct ublk_bpf_stats` (patched kernels): the driver's BPF counters.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct BpfKernStats {
    /// Requests the program redirected (both BPF modes).
    pub redirected: u64,
    /// `--mode bpf`: redirects the driver could not set up (served by the server).
    pub redirect_fallback: u64,
    /// `--mode bpf-kernel`: requests the driver completed itself...
    pub kernel_completed: u64,
    /// ... of which at least one submission ran in the driver's worker...
    pub kernel_punted: u64,
    /// ... of which ended with an error.
    pub kernel_errors: u64,
    /// Reads that met the end of the backing file (rest zero-filled).
    pub kernel_zero_filled: u64,
}

// ---------------------------------------------------------------- I/O commands

pub const UBLK_U_IO_FETCH_REQ: u32 = iowr(b'u', 0x20, IOCMD);
pub const UBLK_U_IO_COMMIT_AND_FETCH_REQ: u32 = iowr(b'u', 0x21, IOCMD);
pub const UBLK_U_IO_NEED_GET_DATA: u32 = iowr(b'u', 0x22, IOCMD);
pub const UBLK_U_IO_REGISTER_IO_BUF: u32 = iowr(b'u', 0x23, IOCMD);
pub const UBLK_U_IO_UNREGISTER_IO_BUF: u32 = iowr(b'u', 0x24, IOCMD);

/// Result of a FETCH/COMMIT CQE: a request is ready in the iod.
pub const UBLK_IO_RES_OK: i32 = 0;
/// The command was aborted: the device is stopping, do not re-fetch.
pub const UBLK_IO_RES_ABORT: i32 = -libc::ENODEV;

pub const UBLK_FEATURES_LEN: u16 = 8;
pub const UBLK_MAX_QUEUE_DEPTH: u16 = 4096;
pub const UBLK_MAX_NR_QUEUES: u16 = 4096;
pub const UBLKSRV_CMD_BUF_OFFSET: i64 = 0;

// ---------------------------------------------------------------- feature flags

pub const UBLK_F_SUPPORT_ZERO_COPY: u64 = 1 << 0;
pub const UBLK_F_URING_CMD_COMP_IN_TASK: u64 = 1 << 1;
pub const UBLK_F_NEED_GET_DATA: u64 = 1 << 2;
pub const UBLK_F_USER_RECOVERY: u64 = 1 << 3;
pub const UBLK_F_USER_RECOVERY_REISSUE: u64 = 1 << 4;
pub const UBLK_F_UNPRIVILEGED_DEV: u64 = 1 << 5;
pub const UBLK_F_CMD_IOCTL_ENCODE: u64 = 1 << 6;
pub const UBLK_F_USER_COPY: u64 = 1 << 7;
pub const UBLK_F_ZONED: u64 = 1 << 8;
pub const UBLK_F_USER_RECOVERY_FAIL_IO: u64 = 1 << 9;
pub const UBLK_F_UPDATE_SIZE: u64 = 1 << 10;
pub const UBLK_F_AUTO_BUF_REG: u64 = 1 << 11;
pub const UBLK_F_QUIESCE: u64 = 1 << 12;
pub const UBLK_F_PER_IO_DAEMON: u64 = 1 << 13;
pub const UBLK_F_BUF_REG_OFF_DAEMON: u64 = 1 << 14;
pub const UBLK_F_BATCH_IO: u64 = 1 << 15;
pub const UBLK_F_INTEGRITY: u64 = 1 << 16;
pub const UBLK_F_SAFE_STOP_DEV: u64 = 1 << 17;
pub const UBLK_F_NO_AUTO_PART_SCAN: u64 = 1 << 18;
pub const UBLK_F_SHMEM_ZC: u64 = 1 << 19;

/// Feature bit names, as printed by `ublk-user features`.
pub const FEATURE_NAMES: &[(u64, &str)] = &[
    (UBLK_F_SUPPORT_ZERO_COPY, "zero_copy"),
    (UBLK_F_URING_CMD_COMP_IN_TASK, "comp_in_task"),
    (UBLK_F_NEED_GET_DATA, "need_get_data"),
    (UBLK_F_USER_RECOVERY, "user_recovery"),
    (UBLK_F_USER_RECOVERY_REISSUE, "user_recovery_reissue"),
    (UBLK_F_UNPRIVILEGED_DEV, "unprivileged_dev"),
    (UBLK_F_CMD_IOCTL_ENCODE, "cmd_ioctl_encode"),
    (UBLK_F_USER_COPY, "user_copy"),
    (UBLK_F_ZONED, "zoned"),
    (UBLK_F_USER_RECOVERY_FAIL_IO, "user_recovery_fail_io"),
    (UBLK_F_UPDATE_SIZE, "update_size"),
    (UBLK_F_AUTO_BUF_REG, "auto_buf_reg"),
    (UBLK_F_QUIESCE, "quiesce"),
    (UBLK_F_PER_IO_DAEMON, "per_io_daemon"),
    (UBLK_F_BUF_REG_OFF_DAEMON, "buf_reg_off_daemon"),
    (UBLK_F_BATCH_IO, "batch_io"),
    (UBLK_F_INTEGRITY, "integrity"),
    (UBLK_F_SAFE_STOP_DEV, "safe_stop_dev"),
    (UBLK_F_NO_AUTO_PART_SCAN, "no_auto_part_scan"),
    (UBLK_F_SHMEM_ZC, "shmem_zc"),
    (UBLK_F_BPF, "bpf"),
    (UBLK_F_BPF_KERNEL_IO, "bpf_kernel_io"),
];

/// Names of the bits set in `flags` (unknown bits as `bitN`).
pub fn feature_names(flags: u64) -> Vec<String> {
    (0..64)
        .filter(|b| flags & (1u64 << b) != 0)
        .map(|b| {
            FEATURE_NAMES
                .iter()
                .find(|(f, _)| *f == 1u64 << b)
                .map(|(_, n)| (*n).to_string())
                .unwrap_or_else(|| format!("bit{b}"))
        })
        .collect()
}

// ---------------------------------------------------------------- device states

pub const UBLK_S_DEV_DEAD: u16 = 0;
pub const UBLK_S_DEV_LIVE: u16 = 1;
pub const UBLK_S_DEV_QUIESCED: u16 = 2;
pub const UBLK_S_DEV_FAIL_IO: u16 = 3;

pub fn state_name(state: u16) -> &'static str {
    match state {
        UBLK_S_DEV_DEAD => "dead",
        UBLK_S_DEV_LIVE => "live",
        UBLK_S_DEV_QUIESCED => "quiesced",
        UBLK_S_DEV_FAIL_IO => "fail_io",
        _ => "unknown",
    }
}

// ---------------------------------------------------------------- I/O ops and flags

pub const UBLK_IO_OP_READ: u8 = 0;
pub const UBLK_IO_OP_WRITE: u8 = 1;
pub const UBLK_IO_OP_FLUSH: u8 = 2;
pub const UBLK_IO_OP_DISCARD: u8 = 3;
pub const UBLK_IO_OP_WRITE_SAME: u8 = 4;
pub const UBLK_IO_OP_WRITE_ZEROES: u8 = 5;

pub const UBLK_IO_F_FUA: u32 = 1 << 13;
pub const UBLK_IO_F_NOUNMAP: u32 = 1 << 15;
pub const UBLK_IO_F_NEED_REG_BUF: u32 = 1 << 17;

pub const UBLK_AUTO_BUF_REG_FALLBACK: u8 = 1 << 0;

pub const UBLK_ATTR_READ_ONLY: u32 = 1 << 0;
pub const UBLK_ATTR_ROTATIONAL: u32 = 1 << 1;
pub const UBLK_ATTR_VOLATILE_CACHE: u32 = 1 << 2;
pub const UBLK_ATTR_FUA: u32 = 1 << 3;

pub const UBLK_PARAM_TYPE_BASIC: u32 = 1 << 0;
pub const UBLK_PARAM_TYPE_DISCARD: u32 = 1 << 1;
pub const UBLK_PARAM_TYPE_DEVT: u32 = 1 << 2;
pub const UBLK_PARAM_TYPE_ZONED: u32 = 1 << 3;
pub const UBLK_PARAM_TYPE_DMA_ALIGN: u32 = 1 << 4;
pub const UBLK_PARAM_TYPE_SEGMENT: u32 = 1 << 5;

// ---------------------------------------------------------------- structs

/// `struct ublksrv_ctrl_cmd`: the payload of a control uring_cmd (SQE128).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct CtrlCmd {
    pub dev_id: u32,
    pub queue_id: u16,
    pub len: u16,
    pub addr: u64,
    pub data: [u64; 1],
    pub dev_path_len: u16,
    pub pad: u16,
    pub reserved: u32,
}

/// `struct ublksrv_ctrl_dev_info`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct DevInfo {
    pub nr_hw_queues: u16,
    pub queue_depth: u16,
    pub state: u16,
    pub pad0: u16,
    pub max_io_buf_bytes: u32,
    pub dev_id: u32,
    pub ublksrv_pid: i32,
    pub pad1: u32,
    pub flags: u64,
    pub ublksrv_flags: u64,
    pub owner_uid: u32,
    pub owner_gid: u32,
    pub reserved1: u64,
    pub reserved2: u64,
}

/// `struct ublksrv_io_desc`: one per tag in the queue's mmapped area.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoDesc {
    /// op: bits 0-7, flags: bits 8-31.
    pub op_flags: u32,
    pub nr_sectors: u32,
    pub start_sector: u64,
    pub addr: u64,
}

impl IoDesc {
    pub const fn op(&self) -> u8 {
        self.op_flags as u8
    }
    /// The `UBLK_IO_F_*` bits (unshifted, i.e. as in the header's defines).
    pub const fn flags(&self) -> u32 {
        self.op_flags & !0xff
    }
}

/// `struct ublksrv_io_cmd`: the payload of a queue uring_cmd (16 bytes).
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct IoCmd {
    pub q_id: u16,
    pub tag: u16,
    pub result: i32,
    pub addr: u64,
}

impl IoCmd {
    pub fn to_bytes(self) -> [u8; 16] {
        let mut b = [0u8; 16];
        b[0..2].copy_from_slice(&self.q_id.to_ne_bytes());
        b[2..4].copy_from_slice(&self.tag.to_ne_bytes());
        b[4..8].copy_from_slice(&self.result.to_ne_bytes());
        b[8..16].copy_from_slice(&self.addr.to_ne_bytes());
        b
    }
}

impl CtrlCmd {
    pub fn to_bytes(self) -> [u8; 32] {
        let mut b = [0u8; 32];
        b[0..4].copy_from_slice(&self.dev_id.to_ne_bytes());
        b[4..6].copy_from_slice(&self.queue_id.to_ne_bytes());
        b[6..8].copy_from_slice(&self.len.to_ne_bytes());
        b[8..16].copy_from_slice(&self.addr.to_ne_bytes());
        b[16..24].copy_from_slice(&self.data[0].to_ne_bytes());
        b[24..26].copy_from_slice(&self.dev_path_len.to_ne_bytes());
        b[26..28].copy_from_slice(&self.pad.to_ne_bytes());
        b[28..32].copy_from_slice(&self.reserved.to_ne_bytes());
        b
    }
}

/// `struct ublk_auto_buf_reg`, carried in the uring_cmd SQE's `addr`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct AutoBufReg {
    pub index: u16,
    pub flags: u8,
    pub reserved0: u8,
    pub reserved1: u32,
}

impl AutoBufReg {
    /// `ublk_auto_buf_reg_to_sqe_addr()`.
    pub const fn to_sqe_addr(self) -> u64 {
        self.index as u64
            | (self.flags as u64) << 16
            | (self.reserved0 as u64) << 24
            | (self.reserved1 as u64) << 32
    }
    /// `ublk_sqe_addr_to_auto_buf_reg()`.
    pub const fn from_sqe_addr(a: u64) -> Self {
        Self {
            index: a as u16,
            flags: (a >> 16) as u8,
            reserved0: (a >> 24) as u8,
            reserved1: (a >> 32) as u32,
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamBasic {
    pub attrs: u32,
    pub logical_bs_shift: u8,
    pub physical_bs_shift: u8,
    pub io_opt_shift: u8,
    pub io_min_shift: u8,
    pub max_sectors: u32,
    pub chunk_sectors: u32,
    pub dev_sectors: u64,
    pub virt_boundary_mask: u64,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamDiscard {
    pub discard_alignment: u32,
    pub discard_granularity: u32,
    pub max_discard_sectors: u32,
    pub max_write_zeroes_sectors: u32,
    pub max_discard_segments: u16,
    pub reserved0: u16,
}

impl ParamDiscard {
    /// DISCARD and WRITE_ZEROES of any length (one segment), in units of
    /// `granularity` bytes: what a target that punches or zeroes a range of
    /// a file (or of memory) in one call can take.
    pub fn any_length(granularity: u32) -> Self {
        Self {
            discard_granularity: granularity,
            max_discard_sectors: u32::MAX >> 9,
            max_write_zeroes_sectors: u32::MAX >> 9,
            max_discard_segments: 1,
            ..Default::default()
        }
    }
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamDevt {
    pub char_major: u32,
    pub char_minor: u32,
    pub disk_major: u32,
    pub disk_minor: u32,
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamZoned {
    pub max_open_zones: u32,
    pub max_active_zones: u32,
    pub max_zone_append_sectors: u32,
    pub reserved: [u8; 20],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamDmaAlign {
    pub alignment: u32,
    pub pad: [u8; 4],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamSegment {
    pub seg_boundary_mask: u64,
    pub max_segment_size: u32,
    pub max_segments: u16,
    pub pad: [u8; 2],
}

#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ParamIntegrity {
    pub flags: u32,
    pub max_integrity_segments: u16,
    pub interval_exp: u8,
    pub metadata_size: u8,
    pub pi_offset: u8,
    pub csum_type: u8,
    pub tag_size: u8,
    pub pad: [u8; 5],
}

/// `struct ublk_params`.
#[repr(C)]
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Params {
    pub len: u32,
    pub types: u32,
    pub basic: ParamBasic,
    pub discard: ParamDiscard,
    pub devt: ParamDevt,
    pub zoned: ParamZoned,
    pub dma: ParamDmaAlign,
    pub seg: ParamSegment,
    pub integrity: ParamIntegrity,
}

/// Byte offset of queue `q_id`'s iod array in the mmap of `/dev/ublkcN`.
pub fn iod_mmap_offset(q_id: u16, page_size: usize) -> i64 {
    UBLKSRV_CMD_BUF_OFFSET + q_id as i64 * iod_area_len(UBLK_MAX_QUEUE_DEPTH, page_size) as i64
}

/// Length of a queue's iod area for `depth` tags (page-rounded).
pub fn iod_area_len(depth: u16, page_size: usize) -> usize {
    (depth as usize * core::mem::size_of::<IoDesc>()).div_ceil(page_size) * page_size
}

/// `UBLKSRV_IO_BUF_OFFSET`: where `UBLK_F_USER_COPY` positions on
/// `/dev/ublkcN` start.
pub const UBLKSRV_IO_BUF_OFFSET: u64 = 0x8000_0000;
/// Bits of the byte offset inside one request's data.
pub const UBLK_IO_BUF_BITS: u32 = 25;
/// Bits of the tag.
pub const UBLK_TAG_BITS: u32 = 16;

/// The `/dev/ublkcN` file position of byte `off` of request (`q_id`, `tag`)
/// for `pread`/`pwrite` with `UBLK_F_USER_COPY`, or `None` if `off` does not
/// fit the position's 25 offset bits.
pub fn user_copy_pos(q_id: u16, tag: u16, off: u32) -> Option<u64> {
    if u64::from(off) >= 1 << UBLK_IO_BUF_BITS || q_id >= UBLK_MAX_NR_QUEUES {
        return None;
    }
    Some(
        UBLKSRV_IO_BUF_OFFSET
            + ((q_id as u64) << (UBLK_IO_BUF_BITS + UBLK_TAG_BITS))
            + ((tag as u64) << UBLK_IO_BUF_BITS)
            + off as u64,
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use core::mem::{offset_of, size_of};

    #[test]
    fn struct_sizes_match_kernel_header() {
        assert_eq!(size_of::<CtrlCmd>(), 32);
        assert_eq!(offset_of!(CtrlCmd, queue_id), 4);
        assert_eq!(offset_of!(CtrlCmd, len), 6);
        assert_eq!(offset_of!(CtrlCmd, addr), 8);
        assert_eq!(offset_of!(CtrlCmd, data), 16);
        assert_eq!(offset_of!(CtrlCmd, dev_path_len), 24);
        assert_eq!(offset_of!(CtrlCmd, reserved), 28);

        assert_eq!(size_of::<DevInfo>(), 64);
        assert_eq!(offset_of!(DevInfo, state), 4);
        assert_eq!(offset_of!(DevInfo, max_io_buf_bytes), 8);
        assert_eq!(offset_of!(DevInfo, dev_id), 12);
        assert_eq!(offset_of!(DevInfo, ublksrv_pid), 16);
        assert_eq!(offset_of!(DevInfo, flags), 24);
        assert_eq!(offset_of!(DevInfo, ublksrv_flags), 32);
        assert_eq!(offset_of!(DevInfo, owner_uid), 40);
        assert_eq!(offset_of!(DevInfo, reserved1), 48);
        assert_eq!(offset_of!(DevInfo, reserved2), 56);

        assert_eq!(size_of::<IoDesc>(), 24);
        assert_eq!(offset_of!(IoDesc, nr_sectors), 4);
        assert_eq!(offset_of!(IoDesc, start_sector), 8);
        assert_eq!(offset_of!(IoDesc, addr), 16);

        assert_eq!(size_of::<IoCmd>(), 16);
        assert_eq!(offset_of!(IoCmd, tag), 2);
        assert_eq!(offset_of!(IoCmd, result), 4);
        assert_eq!(offset_of!(IoCmd, addr), 8);

        assert_eq!(size_of::<AutoBufReg>(), 8);
        assert_eq!(offset_of!(AutoBufReg, flags), 2);
        assert_eq!(offset_of!(AutoBufReg, reserved1), 4);

        assert_eq!(size_of::<ParamBasic>(), 32);
        assert_eq!(offset_of!(ParamBasic, max_sectors), 8);
        assert_eq!(offset_of!(ParamBasic, dev_sectors), 16);
        assert_eq!(size_of::<ParamDiscard>(), 20);
        assert_eq!(size_of::<ParamDevt>(), 16);
        assert_eq!(size_of::<ParamZoned>(), 32);
        assert_eq!(size_of::<ParamDmaAlign>(), 8);
        assert_eq!(size_of::<ParamSegment>(), 16);
        assert_eq!(size_of::<ParamIntegrity>(), 16);

        // Values printed by gcc from the 7.2.12 header (offsetof/sizeof).
        assert_eq!(size_of::<Params>(), 152);
        assert_eq!(offset_of!(Params, basic), 8);
        assert_eq!(offset_of!(Params, discard), 40);
        assert_eq!(offset_of!(Params, devt), 60);
        assert_eq!(offset_of!(Params, zoned), 76);
        assert_eq!(offset_of!(Params, dma), 108);
        assert_eq!(offset_of!(Params, seg), 120);
        assert_eq!(offset_of!(Params, integrity), 136);
    }

    #[test]
    fn command_encoding_matches_hand_computed_ioctls() {
        // _IOR  = 2<<30 | size<<16 | 'u'<<8 | nr ; _IOWR = 3<<30 | ...
        // ctrl cmd size 32 = 0x20, io cmd size 16 = 0x10, 'u' = 0x75.
        assert_eq!(UBLK_U_CMD_GET_DEV_INFO, 0x8020_7502);
        assert_eq!(UBLK_U_CMD_ADD_DEV, 0xc020_7504);
        assert_eq!(UBLK_U_CMD_DEL_DEV, 0xc020_7505);
        assert_eq!(UBLK_U_CMD_START_DEV, 0xc020_7506);
        assert_eq!(UBLK_U_CMD_STOP_DEV, 0xc020_7507);
        assert_eq!(UBLK_U_CMD_START_USER_RECOVERY, 0xc020_7510);
        assert_eq!(UBLK_U_CMD_END_USER_RECOVERY, 0xc020_7511);
        assert_eq!(UBLK_U_CMD_SET_PARAMS, 0xc020_7508);
        assert_eq!(UBLK_U_CMD_GET_PARAMS, 0x8020_7509);
        assert_eq!(UBLK_U_CMD_GET_FEATURES, 0x8020_7513);
        assert_eq!(UBLK_U_CMD_DEL_DEV_ASYNC, 0x8020_7514);
        assert_eq!(UBLK_U_CMD_REG_BPF_PROG, 0xc020_751a);
        assert_eq!(UBLK_U_CMD_UNREG_BPF_PROG, 0xc020_751b);
        assert_eq!(UBLK_U_CMD_REG_BPF_FILES, 0xc020_751c);
        assert_eq!(UBLK_U_CMD_UNREG_BPF_FILES, 0xc020_751d);
        assert_eq!(UBLK_U_CMD_GET_BPF_STATS, 0xc020_751e);
        assert_eq!(std::mem::size_of::<BpfKernStats>(), 48);
        assert_eq!(UBLK_U_IO_FETCH_REQ, 0xc010_7520);
        assert_eq!(UBLK_U_IO_COMMIT_AND_FETCH_REQ, 0xc010_7521);
        assert_eq!(UBLK_U_IO_NEED_GET_DATA, 0xc010_7522);
        assert_eq!(UBLK_U_IO_REGISTER_IO_BUF, 0xc010_7523);
        assert_eq!(UBLK_U_IO_UNREGISTER_IO_BUF, 0xc010_7524);
        assert_eq!(ioc_nr(UBLK_U_CMD_ADD_DEV), 0x04);
    }

    #[test]
    fn auto_buf_reg_roundtrip() {
        let r = AutoBufReg {
            index: 77,
            flags: UBLK_AUTO_BUF_REG_FALLBACK,
            ..Default::default()
        };
        assert_eq!(r.to_sqe_addr(), 77 | 1 << 16);
        assert_eq!(AutoBufReg::from_sqe_addr(r.to_sqe_addr()), r);
    }

    #[test]
    fn cmd_bytes_layout() {
        let c = IoCmd {
            q_id: 1,
            tag: 2,
            result: -5,
            addr: 0x1122_3344_5566_7788,
        };
        let b = c.to_bytes();
        // SAFETY: IoCmd is repr(C), 16 bytes, all fields plain integers.
        let raw: [u8; 16] = unsafe { core::mem::transmute(c) };
        assert_eq!(b, raw);
        let cc = CtrlCmd {
            dev_id: 3,
            queue_id: 0xffff,
            len: 64,
            addr: 9,
            data: [7],
            dev_path_len: 1,
            pad: 0,
            reserved: 0,
        };
        // SAFETY: CtrlCmd is repr(C), 32 bytes, no padding.
        let raw: [u8; 32] = unsafe { core::mem::transmute(cc) };
        assert_eq!(cc.to_bytes(), raw);
    }

    #[test]
    fn feature_names_include_bpf() {
        let n = feature_names(UBLK_F_AUTO_BUF_REG | UBLK_F_BPF | (1 << 40));
        assert_eq!(n, vec!["auto_buf_reg", "bpf", "bit40"]);
    }

    #[test]
    fn iod_offsets() {
        assert_eq!(iod_area_len(128, 4096), 4096);
        assert_eq!(iod_area_len(4096, 4096), 24 * 4096);
        assert_eq!(iod_mmap_offset(1, 4096), 24 * 4096);
    }

    #[test]
    fn user_copy_positions() {
        // as the uapi header computes them: 0x80000000 + qid<<41 + tag<<25 + off
        assert_eq!(user_copy_pos(0, 0, 0), Some(0x8000_0000));
        assert_eq!(
            user_copy_pos(1, 2, 512),
            Some(0x8000_0000 + (1 << 41) + (2 << 25) + 512)
        );
        assert_eq!(user_copy_pos(0, 0, 1 << 25), None);
        assert_eq!(user_copy_pos(4096, 0, 0), None);
    }
}
