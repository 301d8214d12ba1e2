//! A request as a target sees it: the operation, its flags, where and how
//! much, and where its data is.

use crate::mode::IoBuf;
use crate::sys;
use std::fmt;
use std::io;

/// What a request asks for (`UBLK_IO_OP_*`).
///
/// Which of these a target receives depends on the parameters the device
/// advertises; see [`Target`](crate::target::Target#which-requests-a-target-receives).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[non_exhaustive]
pub enum Op {
    /// Read [`Request::bytes`] bytes at [`Request::offset`] into the
    /// request's buffer.
    Read,
    /// Write the request's buffer at [`Request::offset`].
    Write,
    /// Make every completed write durable (sent only when the device
    /// advertises a volatile cache, which the default parameters do).
    Flush,
    /// The range's contents are no longer needed (only with discard
    /// parameters and `max_discard_sectors > 0`).
    Discard,
    /// Write the same block over the range (the kernel never sends it today).
    WriteSame,
    /// The range must read back as zeroes (only with
    /// `max_write_zeroes_sectors > 0`); [`IoFlags::no_unmap`] says whether
    /// the space must stay allocated.
    WriteZeroes,
    /// Any other operation (zoned devices' zone commands), by its number.
    Other(u8),
}

impl Op {
    /// The operation of a `UBLK_IO_OP_*` number.
    pub fn from_raw(op: u8) -> Self {
        match op {
            sys::UBLK_IO_OP_READ => Op::Read,
            sys::UBLK_IO_OP_WRITE => Op::Write,
            sys::UBLK_IO_OP_FLUSH => Op::Flush,
            sys::UBLK_IO_OP_DISCARD => Op::Discard,
            sys::UBLK_IO_OP_WRITE_SAME => Op::WriteSame,
            sys::UBLK_IO_OP_WRITE_ZEROES => Op::WriteZeroes,
            o => Op::Other(o),
        }
    }

    /// The `UBLK_IO_OP_*` number.
    pub fn raw(self) -> u8 {
        match self {
            Op::Read => sys::UBLK_IO_OP_READ,
            Op::Write => sys::UBLK_IO_OP_WRITE,
            Op::Flush => sys::UBLK_IO_OP_FLUSH,
            Op::Discard => sys::UBLK_IO_OP_DISCARD,
            Op::WriteSame => sys::UBLK_IO_OP_WRITE_SAME,
            Op::WriteZeroes => sys::UBLK_IO_OP_WRITE_ZEROES,
            Op::Other(o) => o,
        }
    }

    /// Does the request carry data (READ, WRITE)? Only those complete with
    /// a byte count; every other operation completes with 0.
    pub fn has_data(self) -> bool {
        matches!(self, Op::Read | Op::Write)
    }
}

/// A request's `UBLK_IO_F_*` flags.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct IoFlags(u32);

impl IoFlags {
    /// Flags from the raw `UBLK_IO_F_*` bits.
    pub const fn from_raw(bits: u32) -> Self {
        Self(bits)
    }
    /// The raw `UBLK_IO_F_*` bits.
    pub const fn raw(self) -> u32 {
        self.0
    }
    /// Forced unit access: a WRITE must be durable when it completes (only
    /// sent when the device advertises `UBLK_ATTR_FUA`, as the default
    /// parameters do).
    pub const fn fua(self) -> bool {
        self.0 & sys::UBLK_IO_F_FUA != 0
    }
    /// On WRITE_ZEROES: keep the range allocated (do not punch a hole).
    pub const fn no_unmap(self) -> bool {
        self.0 & sys::UBLK_IO_F_NOUNMAP != 0
    }
}

impl fmt::Debug for IoFlags {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut l = f.debug_set();
        if self.fua() {
            l.entry(&"FUA");
        }
        if self.no_unmap() {
            l.entry(&"NOUNMAP");
        }
        let rest = self.0 & !(sys::UBLK_IO_F_FUA | sys::UBLK_IO_F_NOUNMAP);
        if rest != 0 {
            l.entry(&format_args!("{rest:#x}"));
        }
        l.finish()
    }
}

/// One request, as the target sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The queue.
    pub q_id: u16,
    /// The tag (unique among the queue's requests in flight).
    pub tag: u16,
    /// The operation.
    pub op: Op,
    /// Its flags (FUA, NOUNMAP, ...).
    pub flags: IoFlags,
    /// First sector (512 bytes) on the device.
    pub start_sector: u64,
    /// Length in sectors.
    pub nr_sectors: u32,
    /// Private, so that a `Request` (and the buffer pointer in it) can only
    /// come from the library.
    buf: IoBuf,
}

impl Request {
    pub(crate) fn new(q_id: u16, tag: u16, iod: &sys::IoDesc, buf: IoBuf) -> Self {
        Self {
            q_id,
            tag,
            op: Op::from_raw(iod.op()),
            flags: IoFlags::from_raw(iod.flags()),
            start_sector: iod.start_sector,
            nr_sectors: iod.nr_sectors,
            buf,
        }
    }

    /// Where the request's data is.
    #[inline]
    pub fn buf(&self) -> IoBuf {
        self.buf
    }

    /// Byte offset on the device.
    #[inline]
    pub fn offset(&self) -> u64 {
        self.start_sector << 9
    }
    /// Length in bytes (of the data for READ/WRITE, of the range for
    /// DISCARD/WRITE_ZEROES; 0 for FLUSH).
    #[inline]
    pub fn bytes(&self) -> u32 {
        self.nr_sectors << 9
    }
}

/// The result a request completes with, from an I/O result: the byte count
/// (READ/WRITE; anything but the whole request is an error), 0 for other
/// operations, or the negative errno of the error (`EIO` if it has none).
pub fn result_of(r: io::Result<usize>) -> i32 {
    match r {
        Ok(n) => i32::try_from(n).unwrap_or(-libc::EOVERFLOW),
        Err(e) => -errno_of(&e),
    }
}

/// The (positive) errno of `e`: its OS error, or `EIO`.
pub fn errno_of(e: &io::Error) -> i32 {
    e.raw_os_error().filter(|&n| n > 0).unwrap_or(libc::EIO)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ops_round_trip_and_unknown_ones_stay_raw() {
        for raw in 0..=255u8 {
            let op = Op::from_raw(raw);
            assert_eq!(op.raw(), raw);
            assert_eq!(matches!(op, Op::Other(_)), raw > 5, "{raw}");
        }
        assert_eq!(Op::from_raw(sys::UBLK_IO_OP_WRITE_ZEROES), Op::WriteZeroes);
        assert!(Op::Read.has_data() && Op::Write.has_data());
        assert!(!Op::Flush.has_data() && !Op::Discard.has_data());
    }

    #[test]
    fn flags_decode() {
        let f = IoFlags::from_raw(sys::UBLK_IO_F_FUA | 1);
        assert!(f.fua() && !f.no_unmap());
        assert_eq!(format!("{f:?}"), "{\"FUA\", 0x1}");
        assert!(IoFlags::from_raw(sys::UBLK_IO_F_NOUNMAP).no_unmap());
        assert!(!IoFlags::default().fua());
    }

    #[test]
    fn io_results_become_completion_results() {
        assert_eq!(result_of(Ok(4096)), 4096);
        assert_eq!(result_of(Ok(0)), 0);
        assert_eq!(
            result_of(Err(io::Error::from_raw_os_error(libc::ENOSPC))),
            -libc::ENOSPC
        );
        // an error without an errno is EIO, never 0 (success)
        assert_eq!(
            result_of(Err(io::Error::other("remote said no"))),
            -libc::EIO
        );
        assert_eq!(result_of(Ok(usize::MAX)), -libc::EOVERFLOW);
    }
}
