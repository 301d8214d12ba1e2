//! Targets: what serves a request once it has arrived and the data path has
//! said where its data is. A target either completes a request at once
//! ([`Submit::Done`]) or queues SQEs on the queue's ring through
//! [`IoCtx`] ([`Submit::Queued`]); the queue then commits
//! when all their CQEs are back.

pub mod r#loop;
pub mod null;

pub use null::NullTarget;
pub use r#loop::LoopTarget;

use crate::io::IoCtx;
use crate::mode::IoBuf;
use crate::sys::Params;
use std::os::fd::RawFd;

/// One request, as the target sees it.
#[derive(Clone, Copy, Debug)]
pub struct Request {
    /// The queue.
    pub q_id: u16,
    /// The tag (unique among the queue's requests in flight).
    pub tag: u16,
    /// `UBLK_IO_OP_*`.
    pub op: u8,
    /// `UBLK_IO_F_*` bits.
    pub flags: u32,
    /// First sector (512 bytes) on the device.
    pub start_sector: u64,
    /// Length in sectors.
    pub nr_sectors: u32,
    /// Private, so that a `Request` (and the buffer pointer in it) can only
    /// come from the library.
    buf: IoBuf,
}

impl Request {
    pub(crate) fn new(q_id: u16, tag: u16, iod: &crate::sys::IoDesc, buf: IoBuf) -> Self {
        Self {
            q_id,
            tag,
            op: iod.op(),
            flags: iod.flags(),
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
    /// Length in bytes.
    #[inline]
    pub fn bytes(&self) -> u32 {
        self.nr_sectors << 9
    }
}

/// What [`Target::queue_io`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Complete now with this result (bytes for READ/WRITE, 0 for others,
    /// or a negative errno).
    Done(i32),
    /// SQEs were pushed with [`IoCtx`]'s builders (or
    /// [`IoCtx::push_raw`]); the queue commits when they have all
    /// completed: the sum of their results for READ/WRITE (a short total
    /// becomes -EIO), 0 for other ops, or the first negative result.
    Queued,
    /// The target took the request with [`IoCtx::defer`] and completes it
    /// through the [`Completion`](crate::io::Completion), from any thread.
    Deferred,
}

/// A backend. Shared by all queue threads.
pub trait Target: Send + Sync + 'static {
    /// Short name for listings ("loop", "null").
    fn name(&self) -> &'static str;
    /// Device size in bytes (a multiple of 512).
    fn size(&self) -> u64;
    /// Backing path, if any (for listings).
    fn backing_path(&self) -> Option<String> {
        None
    }
    /// Adjust the device parameters. `basic` (with `dev_sectors` and
    /// `max_sectors`) is filled in already.
    fn params(&self, _p: &mut Params) {}
    /// Files registered in every queue ring's fixed file table, at indices
    /// 1.. (index 0 is `/dev/ublkcN`); [`IoCtx::file`] maps them.
    fn files(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// For BPF redirect: (backing fd in the server's file table, byte offset
    /// of the device's data in it).
    fn bpf_backing(&self) -> Option<(RawFd, u64)> {
        None
    }
    /// Serve one request. At most [`MAX_SQES_PER_REQUEST`] SQEs.
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit;
    /// Make written data durable; called at clean stop after all I/O drained.
    /// (FLUSH requests reach [`Target::queue_io`] like any other.)
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The most SQEs a target may push for one request.
pub const MAX_SQES_PER_REQUEST: usize = 4;
