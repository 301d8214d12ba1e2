//! The queue's syscall edge: [`Ring`] is everything the queue loop and
//! [`IoCtx`](super::IoCtx) do with the queue's io_uring, and [`IodSource`]
//! where a tag's request descriptor comes from. The kernel's
//! (`IoUring`, the iod area mapped from `/dev/ublkcN`) serve the device;
//! the host tests (`io/tests.rs`) put a scripted kernel in their place and
//! drive [`Queue`](super::Queue) through FETCH, requests and COMMIT.

use crate::mapping::Mapping;
use crate::sys::{self, IoDesc};
use io_uring::{squeue, IoUring};
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, RawFd};

/// One CQE as the queue handles it: `(user_data, result, flags)`.
pub(crate) type Cqe = (u64, i32, u32);

/// The queue's io_uring, as the queue uses it.
pub(crate) trait Ring {
    /// Queue `sqe`, submitting what is queued first if the SQ is full; a
    /// negative errno if even that fails.
    ///
    /// Callers (this crate only) keep every buffer an SQE points to alive
    /// until its CQE: the queue's copy buffers and iods live as long as the
    /// queue, which reaps every CQE before it is dropped, and a target's
    /// raw SQEs come through the `unsafe` [`IoCtx::push_raw`](super::IoCtx::push_raw).
    fn push(&mut self, sqe: &squeue::Entry) -> Result<(), i32>;
    /// Submit what is queued (`io_uring_enter`), waiting for nothing.
    fn submit(&mut self) -> io::Result<usize>;
    /// Submit what is queued and wait until `want` CQEs are there.
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize>;
    /// Free SQ entries.
    fn sq_free(&mut self) -> usize;
    /// Move every available CQE into `out` (after what is there).
    fn reap(&mut self, out: &mut Vec<Cqe>);
    /// The ring's fd (for the BPF program's map), -1 if none.
    fn fd(&self) -> RawFd;
}

impl Ring for IoUring {
    #[inline]
    fn push(&mut self, sqe: &squeue::Entry) -> Result<(), i32> {
        for _ in 0..2 {
            // SAFETY: every buffer an SQE points to lives until its CQE is
            // reaped (see the trait method's contract, which binds this
            // crate's callers).
            if unsafe { self.submission().push(sqe) }.is_ok() {
                return Ok(());
            }
            if let Err(e) = IoUring::submit(self) {
                return Err(-e.raw_os_error().unwrap_or(libc::EIO));
            }
        }
        Err(-libc::EBUSY)
    }

    fn submit(&mut self) -> io::Result<usize> {
        IoUring::submit(self)
    }

    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        IoUring::submit_and_wait(self, want)
    }

    fn sq_free(&mut self) -> usize {
        let sq = self.submission();
        sq.capacity() - sq.len()
    }

    fn reap(&mut self, out: &mut Vec<Cqe>) {
        let mut cq = self.completion();
        cq.sync();
        out.extend(cq.map(|c| (c.user_data(), c.result(), c.flags())));
    }

    fn fd(&self) -> RawFd {
        self.as_raw_fd()
    }
}

/// Where the queue reads a tag's request descriptor (iod).
pub(crate) trait IodSource {
    /// The iod of `tag` (< depth), as the kernel last wrote it.
    fn get(&self, tag: u16) -> IoDesc;
}

/// The per-queue iod array, mapped read-only from `/dev/ublkcN`.
pub(crate) struct IodMap {
    map: Mapping,
    depth: u16,
}

impl IodMap {
    pub fn map(cdev: BorrowedFd<'_>, q_id: u16, depth: u16) -> io::Result<Self> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = sys::iod_area_len(depth, page);
        let map = Mapping::shared(cdev, len, sys::iod_mmap_offset(q_id, page), false)?;
        Ok(Self { map, depth })
    }
}

impl IodSource for IodMap {
    #[inline]
    fn get(&self, tag: u16) -> IoDesc {
        assert!(tag < self.depth);
        // SAFETY: tag < depth, so the iod is inside the mapping (page
        // aligned, so aligned for IoDesc); the kernel writes it before
        // completing the command we just reaped, and a volatile read keeps
        // the compiler from caching it across requests.
        unsafe { std::ptr::read_volatile(self.map.as_ptr().cast::<IoDesc>().add(tag as usize)) }
    }
}
