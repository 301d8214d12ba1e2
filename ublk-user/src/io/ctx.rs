//! [`IoCtx`]: how a target queues its I/O for one request on the queue's
//! ring, or takes the request away to complete it later.
//!
//! The typed builders ([`IoCtx::read`], [`IoCtx::write`], [`IoCtx::fsync`],
//! [`IoCtx::fallocate`]) are safe: the only memory they hand the kernel is
//! the request's own buffer, which the library keeps alive until the CQE.
//! [`IoCtx::push_raw`] takes any SQE and is `unsafe`: the caller vouches for
//! every pointer in it.

use super::completion::{Completion, Inbox};
use super::ring::Ring;
use super::{EXTRA_REG_BUF, EXTRA_TARGET};
use crate::mode::{zc, IoBuf};
use crate::target::{IoFlags, Op, Request, MAX_SQES_PER_REQUEST};
use io_uring::{opcode, squeue, types};
use std::sync::Arc;
use ublk_ebpf_common::user_data::{self as ud, KIND_TARGET};

/// The context a target serves one request through.
pub struct IoCtx<'a> {
    pub(super) ring: &'a mut dyn Ring,
    pub(super) inbox: &'a Arc<Inbox>,
    pub(super) tag: u16,
    pub(super) op: u8,
    pub(super) q_id: u16,
    pub(super) gen: u32,
    pub(super) bytes: u32,
    pub(super) flags: IoFlags,
    pub(super) offset: u64,
    /// zc fallback: chain everything after a REGISTER_IO_BUF.
    pub(super) link: bool,
    pub(super) reg_pushed: bool,
    pub(super) pushed: u32,
    pub(super) deferred: bool,
}

impl IoCtx<'_> {
    /// Fixed file `i` of the target's [`Target::files`](crate::target::Target::files).
    #[inline]
    pub fn file(&self, i: u32) -> types::Fixed {
        types::Fixed(i + 1)
    }

    /// The queue this request arrived on.
    pub fn q_id(&self) -> u16 {
        self.q_id
    }

    /// Queue one SQE of any kind for the current request; its `user_data`
    /// is set here (any value in `sqe` is replaced). At most
    /// [`MAX_SQES_PER_REQUEST`] per request; the queue commits when all
    /// their CQEs are in (see [`Submit::Queued`](crate::target::Submit)).
    ///
    /// Returns a negative errno if the ring is unusable, the limit is
    /// reached, or the request was already [deferred](Self::defer).
    ///
    /// # Safety
    ///
    /// Every buffer, iovec or other pointer in `sqe` must stay valid (and,
    /// for reads, not be accessed) until the SQE's CQE has been reaped, i.e.
    /// until the request has been committed. File indices and buffer indices
    /// are checked by the kernel and need no care. Buffers from the
    /// request's own [`Request::buf`] satisfy this.
    #[inline]
    pub unsafe fn push_raw(&mut self, sqe: squeue::Entry) -> Result<(), i32> {
        if self.deferred {
            return Err(-libc::EINVAL);
        }
        if self.pushed as usize >= MAX_SQES_PER_REQUEST {
            return Err(-libc::E2BIG);
        }
        if self.link && !self.reg_pushed {
            let reg = zc::buf_cmd(true, self.q_id, self.tag)
                .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS)
                .user_data(ud::encode(KIND_TARGET, self.op, self.tag, EXTRA_REG_BUF));
            self.ring.push(&reg)?;
            self.reg_pushed = true;
        }
        let mut sqe = sqe.user_data(ud::encode(KIND_TARGET, self.op, self.tag, EXTRA_TARGET));
        if self.link {
            sqe = sqe.flags(squeue::Flags::IO_HARDLINK);
        }
        self.ring.push(&sqe)?;
        self.pushed += 1;
        Ok(())
    }

    fn own(&self, req: &Request) -> Result<IoBuf, i32> {
        if req.tag != self.tag || req.q_id != self.q_id {
            return Err(-libc::EINVAL);
        }
        Ok(req.buf())
    }

    /// Read the request's data from fixed file `file` at `offset` into the
    /// request's buffer (copy or zero-copy mode).
    pub fn read(&mut self, req: &Request, file: u32, offset: u64) -> Result<(), i32> {
        let f = self.file(file);
        let sqe = match self.own(req)? {
            IoBuf::Addr { ptr, len } => opcode::Read::new(f, ptr, len).offset(offset).build(),
            IoBuf::Fixed { index, len } => {
                opcode::ReadFixed::new(f, std::ptr::null_mut(), len, index)
                    .offset(offset)
                    .build()
            }
            IoBuf::None | IoBuf::UserCopy { .. } => return Err(-libc::EINVAL),
        };
        // SAFETY: the only memory is the request's own buffer (the library's
        // copy buffer, or a kernel-registered index), live until commit.
        unsafe { self.push_raw(sqe) }
    }

    /// Write the request's data to fixed file `file` at `offset`, with
    /// `rw_flags` (`RWF_DSYNC` for a FUA write).
    pub fn write(
        &mut self,
        req: &Request,
        file: u32,
        offset: u64,
        rw_flags: i32,
    ) -> Result<(), i32> {
        let f = self.file(file);
        let sqe = match self.own(req)? {
            IoBuf::Addr { ptr, len } => opcode::Write::new(f, ptr, len)
                .offset(offset)
                .rw_flags(rw_flags)
                .build(),
            IoBuf::Fixed { index, len } => opcode::WriteFixed::new(f, std::ptr::null(), len, index)
                .offset(offset)
                .rw_flags(rw_flags)
                .build(),
            IoBuf::None | IoBuf::UserCopy { .. } => return Err(-libc::EINVAL),
        };
        // SAFETY: as in `read`.
        unsafe { self.push_raw(sqe) }
    }

    /// `fsync` (or `fdatasync`) fixed file `file`.
    pub fn fsync(&mut self, file: u32, datasync: bool) -> Result<(), i32> {
        let mut s = opcode::Fsync::new(self.file(file));
        if datasync {
            s = s.flags(types::FsyncFlags::DATASYNC);
        }
        // SAFETY: no memory is referenced.
        unsafe { self.push_raw(s.build()) }
    }

    /// `fallocate(mode, offset, len)` on fixed file `file`.
    pub fn fallocate(&mut self, file: u32, offset: u64, len: u64, mode: i32) -> Result<(), i32> {
        let s = opcode::Fallocate::new(self.file(file), len)
            .offset(offset)
            .mode(mode)
            .build();
        // SAFETY: no memory is referenced.
        unsafe { self.push_raw(s) }
    }

    /// The request's data in the library's copy buffer
    /// ([`Mode::Copy`](crate::Mode::Copy)): a WRITE's data to
    /// store, or the place to put a READ's answer before returning
    /// `Submit::Done(bytes)`. For a target that serves from memory without
    /// `unsafe`.
    ///
    /// `None` in the other data modes (zero copy has no server-side
    /// buffer, user copy uses [`Completion::read_data`] and
    /// [`Completion::write_data`]), for requests without data, and once an
    /// SQE was pushed for the request or it was deferred (the kernel or
    /// another thread may be using the buffer then).
    pub fn data(&mut self, req: &Request) -> Option<&mut [u8]> {
        if self.pushed > 0 || self.reg_pushed || self.deferred {
            return None;
        }
        match self.own(req).ok()? {
            // SAFETY: the copy buffer of this tag is the library's, `len`
            // bytes long and live as long as the queue; while the request is
            // in `queue_io` with nothing pushed or deferred, nobody else
            // touches it (the driver filled a WRITE's data before delivering
            // the request and reads a READ's answer only at COMMIT). The
            // slice borrows `self`, so it ends before `queue_io` returns and
            // before any builder can push an SQE for the buffer.
            IoBuf::Addr { ptr, len } => {
                Some(unsafe { std::slice::from_raw_parts_mut(ptr, len as usize) })
            }
            _ => None,
        }
    }

    /// Take the request away: it is completed when the returned
    /// [`Completion`] is (from any thread), not when `queue_io` returns.
    /// Return [`Submit::Deferred`](crate::target::Submit::Deferred) then.
    ///
    /// A request is either deferred or served with SQEs: after a builder
    /// pushed one, or after a first `defer`, this fails with `-EBUSY`
    /// (complete the request with it: `Submit::Done(e)`).
    pub fn defer(&mut self) -> Result<Completion, i32> {
        if self.pushed > 0 || self.reg_pushed || self.deferred {
            return Err(-libc::EBUSY);
        }
        self.deferred = true;
        Ok(Completion::new(
            self.inbox.clone(),
            self.tag,
            self.gen,
            Op::from_raw(self.op),
            self.flags,
            self.offset,
            self.bytes,
        ))
    }
}
