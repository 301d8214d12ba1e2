//! Completing a request later, from any thread.
//!
//! A target that cannot answer a request on the queue thread (it goes out
//! over RPC, or to a pool of worker threads) takes a [`Completion`] with
//! [`IoCtx::defer`](crate::io::IoCtx::defer) and returns
//! [`Submit::Deferred`](crate::target::Submit::Deferred). The `Completion`
//! is `Send`: move it anywhere and call [`Completion::complete`] when the
//! request is done.
//!
//! The driver only accepts a COMMIT from the task that fetched the tag, so
//! the result travels back to the queue thread: it is put in the queue's
//! inbox and the queue's `eventfd` is written. The queue ring keeps a
//! multishot poll on that eventfd, so the queue thread wakes from its
//! `io_uring_enter` without polling, drains the inbox and commits.
//!
//! With `UBLK_F_USER_COPY` ([`Mode::UserCopy`](crate::Mode::UserCopy)) the
//! request's data is not in any library buffer: the holder of the
//! `Completion` copies it between `/dev/ublkcN` and its own memory with
//! [`Completion::read_data`] (a WRITE's data) and [`Completion::write_data`]
//! (a READ's answer), from whatever thread holds it.

use crate::target::{result_of, IoFlags, Op};
use std::fs::File;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::fs::FileExt;
use std::sync::{Arc, Mutex};

/// One finished request, on its way to the queue thread.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Finished {
    pub tag: u16,
    /// The request's serial number on its tag (stale completions are dropped).
    pub gen: u32,
    pub result: i32,
}

/// A queue's inbox of finished requests and the eventfd that says it is
/// not empty.
pub(crate) struct Inbox {
    items: Mutex<Vec<Finished>>,
    efd: OwnedFd,
    /// `/dev/ublkcN` (user copy), shared with every `Completion`.
    cdev: Option<Arc<File>>,
    q_id: u16,
}

impl Inbox {
    pub fn new(q_id: u16, cdev: Option<Arc<File>>) -> io::Result<Self> {
        // SAFETY: eventfd has no memory effects; the result is checked.
        let fd = unsafe { libc::eventfd(0, libc::EFD_CLOEXEC | libc::EFD_NONBLOCK) };
        if fd < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            items: Mutex::new(Vec::new()),
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            efd: unsafe { OwnedFd::from_raw_fd(fd) },
            cdev,
            q_id,
        })
    }

    pub fn eventfd(&self) -> i32 {
        self.efd.as_raw_fd()
    }

    pub(crate) fn post(&self, f: Finished) {
        self.items.lock().unwrap_or_else(|p| p.into_inner()).push(f);
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a local to our own eventfd. It can
        // only fail with EAGAIN when the counter is saturated, which still
        // leaves the eventfd readable, so the queue wakes anyway.
        unsafe { libc::write(self.efd.as_raw_fd(), &one as *const u64 as *const _, 8) };
    }

    /// Reset the eventfd and take everything posted so far (queue thread).
    pub fn drain(&self, out: &mut Vec<Finished>) {
        let mut v: u64 = 0;
        // SAFETY: reads 8 bytes into a local; EAGAIN (nothing posted) is fine.
        unsafe { libc::read(self.efd.as_raw_fd(), &mut v as *mut u64 as *mut _, 8) };
        out.append(&mut self.items.lock().unwrap_or_else(|p| p.into_inner()));
    }
}

/// The right and the duty to complete one request, from any thread.
///
/// Dropping it without [`complete`](Self::complete) completes the request
/// with `-EIO`, so a lost request never leaves its tag hanging (and the
/// device unstoppable).
pub struct Completion {
    inbox: Arc<Inbox>,
    tag: u16,
    gen: u32,
    op: Op,
    flags: IoFlags,
    offset: u64,
    bytes: u32,
    done: bool,
}

impl std::fmt::Debug for Completion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Completion")
            .field("q_id", &self.inbox.q_id)
            .field("tag", &self.tag)
            .field("op", &self.op)
            .field("flags", &self.flags)
            .field("offset", &self.offset)
            .field("bytes", &self.bytes)
            .finish()
    }
}

impl Completion {
    pub(crate) fn new(
        inbox: Arc<Inbox>,
        tag: u16,
        gen: u32,
        op: Op,
        flags: IoFlags,
        offset: u64,
        bytes: u32,
    ) -> Self {
        Self {
            inbox,
            tag,
            gen,
            op,
            flags,
            offset,
            bytes,
            done: false,
        }
    }

    /// The queue.
    pub fn q_id(&self) -> u16 {
        self.inbox.q_id
    }
    /// The tag.
    pub fn tag(&self) -> u16 {
        self.tag
    }
    /// The request's operation.
    pub fn op(&self) -> Op {
        self.op
    }
    /// The request's flags: a WRITE with [`IoFlags::fua`] must be durable
    /// before it is completed.
    pub fn flags(&self) -> IoFlags {
        self.flags
    }
    /// Byte offset on the device.
    pub fn offset(&self) -> u64 {
        self.offset
    }
    /// Length in bytes (the data of a READ/WRITE, the range of a
    /// DISCARD/WRITE_ZEROES).
    pub fn bytes(&self) -> u32 {
        self.bytes
    }

    /// Complete the request with the outcome of serving it: `Ok(bytes
    /// done)` for READ/WRITE (the whole request; anything less is an
    /// error), `Ok(0)` for other operations, or the error (its errno, `EIO`
    /// if it has none, is what the submitter sees).
    pub fn complete_io(self, result: io::Result<usize>) {
        self.complete(result_of(result))
    }

    /// Complete the request with a raw result, as the driver takes it:
    /// bytes done for READ/WRITE, 0 for other operations, or a negative
    /// errno.
    pub fn complete(mut self, result: i32) {
        self.done = true;
        self.inbox.post(Finished {
            tag: self.tag,
            gen: self.gen,
            result,
        });
    }

    fn user_copy(&self, off: u32, len: usize, want_op: Op) -> io::Result<(&File, u64)> {
        let cdev = self.inbox.cdev.as_deref().ok_or_else(|| {
            io::Error::new(
                io::ErrorKind::Unsupported,
                "request data is only reachable this way with Mode::UserCopy",
            )
        })?;
        if self.op != want_op {
            return Err(io::Error::from_raw_os_error(libc::EINVAL));
        }
        if u64::from(off) + len as u64 > u64::from(self.bytes) {
            return Err(io::Error::from_raw_os_error(libc::ERANGE));
        }
        let pos = crate::sys::user_copy_pos(self.inbox.q_id, self.tag, off)
            .ok_or_else(|| io::Error::from_raw_os_error(libc::ERANGE))?;
        Ok((cdev, pos))
    }

    /// A WRITE request's data from byte `off`, into `buf` (user copy mode):
    /// reads all of `buf` or fails.
    pub fn read_data(&self, off: u32, buf: &mut [u8]) -> io::Result<()> {
        let (cdev, pos) = self.user_copy(off, buf.len(), Op::Write)?;
        cdev.read_exact_at(buf, pos)
    }

    /// A READ request's answer at byte `off`, from `buf` (user copy mode):
    /// writes all of `buf` or fails.
    pub fn write_data(&self, off: u32, buf: &[u8]) -> io::Result<()> {
        let (cdev, pos) = self.user_copy(off, buf.len(), Op::Read)?;
        cdev.write_all_at(buf, pos)
    }
}

impl Drop for Completion {
    fn drop(&mut self) {
        if !self.done {
            self.done = true;
            self.inbox.post(Finished {
                tag: self.tag,
                gen: self.gen,
                result: -libc::EIO,
            });
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rw(inbox: &Arc<Inbox>, tag: u16, gen: u32, op: Op, bytes: u32) -> Completion {
        Completion::new(
            inbox.clone(),
            tag,
            gen,
            op,
            IoFlags::default(),
            u64::from(tag) << 20,
            bytes,
        )
    }

    #[test]
    fn completions_arrive_from_other_threads_and_drops_fail() {
        let inbox = Arc::new(Inbox::new(3, None).unwrap());
        let a = rw(&inbox, 1, 7, Op::Read, 4096);
        let b = rw(&inbox, 2, 8, Op::Write, 512);
        assert_eq!(a.q_id(), 3);
        let t = std::thread::spawn(move || {
            a.complete(4096);
            drop(b); // lost: must still complete, with -EIO
        });
        t.join().unwrap();
        let mut v: u64 = 0;
        // the eventfd is readable (counter 2)
        // SAFETY: reads 8 bytes into a local from our eventfd.
        let n = unsafe { libc::read(inbox.eventfd(), &mut v as *mut u64 as *mut _, 8) };
        assert_eq!((n, v), (8, 2));
        let mut out = Vec::new();
        inbox.drain(&mut out);
        assert_eq!(
            out,
            vec![
                Finished {
                    tag: 1,
                    gen: 7,
                    result: 4096
                },
                Finished {
                    tag: 2,
                    gen: 8,
                    result: -libc::EIO
                },
            ]
        );
        out.clear();
        inbox.drain(&mut out);
        assert!(out.is_empty());
    }

    #[test]
    fn typed_completion_carries_the_request_and_maps_io_results() {
        let inbox = Arc::new(Inbox::new(0, None).unwrap());
        let fua = IoFlags::from_raw(crate::sys::UBLK_IO_F_FUA);
        let w = Completion::new(inbox.clone(), 4, 1, Op::Write, fua, 1 << 30, 8192);
        assert_eq!((w.op(), w.offset(), w.bytes()), (Op::Write, 1 << 30, 8192));
        assert!(w.flags().fua());
        w.complete_io(Ok(8192));
        rw(&inbox, 5, 2, Op::Read, 512)
            .complete_io(Err(io::Error::from_raw_os_error(libc::ENOSPC)));
        rw(&inbox, 6, 3, Op::Read, 512).complete_io(Err(io::Error::other("backend gone")));
        let mut out = Vec::new();
        inbox.drain(&mut out);
        let results: Vec<_> = out.iter().map(|f| (f.tag, f.result)).collect();
        assert_eq!(results, [(4, 8192), (5, -libc::ENOSPC), (6, -libc::EIO)]);
    }

    #[test]
    fn data_access_needs_user_copy_and_checks_bounds() {
        let inbox = Arc::new(Inbox::new(0, None).unwrap());
        let c = rw(&inbox, 0, 0, Op::Write, 4096);
        let mut b = [0u8; 16];
        assert_eq!(
            c.read_data(0, &mut b).unwrap_err().kind(),
            io::ErrorKind::Unsupported
        );
        // with a "cdev" (any file): direction and range are checked first
        let f = Arc::new(File::open("/dev/zero").unwrap());
        let inbox = Arc::new(Inbox::new(0, Some(f)).unwrap());
        let w = rw(&inbox, 0, 0, Op::Write, 4096);
        assert_eq!(
            w.write_data(0, &b).unwrap_err().raw_os_error(),
            Some(libc::EINVAL)
        );
        assert_eq!(
            w.read_data(4090, &mut b).unwrap_err().raw_os_error(),
            Some(libc::ERANGE)
        );
        w.complete(4096);
    }
}
