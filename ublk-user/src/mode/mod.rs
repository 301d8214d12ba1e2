//! Data paths: how a request's data travels between the block layer and the
//! target's I/O.
//!
//! * `copy`: each tag owns a server buffer; the kernel copies write data
//!   into it before delivering the request and read data out of it at commit.
//! * [`zc`]: `UBLK_F_AUTO_BUF_REG`; the kernel registers the request's own
//!   pages in the queue ring's sparse buffer table at index = tag, and the
//!   target uses `READ_FIXED`/`WRITE_FIXED` with `buf_index = tag`.
//! * user copy (`UBLK_F_USER_COPY`): no buffer at all; whoever serves the
//!   request reads and writes its data with `pread`/`pwrite` on
//!   `/dev/ublkcN`, straight from and into its own memory
//!   ([`crate::io::Completion::read_data`] / `write_data`). For backends
//!   with their own buffer pools (an RPC client): no library bounce buffer.
//!
//! BPF redirect is not a data path of its own: it runs on top of copy or zc
//! (for the requests the program passes) and is handled in [`crate::io`].

pub(crate) mod copy;
pub mod zc;

use crate::sys::IoDesc;
use std::io;

/// The data path requested for PASS requests.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DataMode {
    /// Server buffers; the driver copies.
    Copy,
    /// `UBLK_F_AUTO_BUF_REG`: the request's pages as io_uring fixed buffers.
    Zc,
    /// `UBLK_F_USER_COPY`: the backend copies with `pread`/`pwrite` on
    /// `/dev/ublkcN`, into its own buffers.
    UserCopy,
}

impl DataMode {
    /// The name used in listings and options.
    pub fn name(self) -> &'static str {
        match self {
            DataMode::Copy => "copy",
            DataMode::Zc => "zc",
            DataMode::UserCopy => "user-copy",
        }
    }
}

/// Where a request's data is, as seen by the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBuf {
    /// No data (flush, discard, write-zeroes).
    None,
    /// A server-owned buffer (copy mode): the target may read/write it.
    Addr {
        /// Start of the buffer.
        ptr: *mut u8,
        /// Bytes.
        len: u32,
    },
    /// The request's pages, registered in the ring's buffer table at
    /// `index` (zc mode): usable only by io_uring fixed-buffer ops, the
    /// server never sees the data.
    Fixed {
        /// Index in the ring's buffer table.
        index: u16,
        /// Bytes.
        len: u32,
    },
    /// User copy mode: the data is reachable only through `/dev/ublkcN`
    /// (see [`crate::io::Completion::read_data`]).
    UserCopy {
        /// Bytes.
        len: u32,
    },
}

/// Per-queue state of the data path.
pub(crate) enum DataPath {
    /// Per-tag buffers.
    Copy(copy::CopyBufs),
    /// Auto buffer registration.
    Zc,
    /// No buffers.
    UserCopy,
}

impl DataPath {
    pub fn new(mode: DataMode, depth: u16, max_io: u32) -> io::Result<Self> {
        Ok(match mode {
            DataMode::Copy => DataPath::Copy(copy::CopyBufs::new(depth, max_io)?),
            DataMode::Zc => DataPath::Zc,
            DataMode::UserCopy => DataPath::UserCopy,
        })
    }

    /// `ublksrv_io_cmd.addr` for FETCH/COMMIT of `tag`.
    #[inline]
    pub fn cmd_addr(&self, tag: u16) -> u64 {
        match self {
            DataPath::Copy(b) => b.addr(tag) as u64,
            DataPath::Zc | DataPath::UserCopy => 0,
        }
    }

    /// The uring_cmd SQE's own `addr` for FETCH/COMMIT of `tag`.
    #[inline]
    pub fn sqe_addr(&self, tag: u16) -> Option<u64> {
        match self {
            DataPath::Copy(_) | DataPath::UserCopy => None,
            DataPath::Zc => Some(zc::auto_buf_reg(tag)),
        }
    }

    /// The buffer the target serves `iod` with.
    #[inline]
    pub fn request_buf(&self, tag: u16, iod: &IoDesc) -> IoBuf {
        use crate::sys::{UBLK_IO_OP_READ, UBLK_IO_OP_WRITE};
        let op = iod.op();
        if op != UBLK_IO_OP_READ && op != UBLK_IO_OP_WRITE {
            return IoBuf::None;
        }
        let len = iod.nr_sectors << 9;
        match self {
            DataPath::Copy(b) => IoBuf::Addr {
                ptr: b.addr(tag),
                len,
            },
            DataPath::Zc => IoBuf::Fixed { index: tag, len },
            DataPath::UserCopy => IoBuf::UserCopy { len },
        }
    }
}
