//! Per-queue request counters other processes can read (`ublk-user list`):
//! a small file mmapped shared, one 64-byte slot per queue of `u64`s that
//! only that queue's thread updates (relaxed atomics, no false sharing).

use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};

/// Counters per queue slot.
pub const SLOT_WORDS: usize = 8;

/// One counter of a queue slot. The type is the bound check: only these
/// exist, and each is inside the slot.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
#[repr(usize)]
pub enum Counter {
    /// Requests served through the server's own data path (copy / zc / user copy).
    Served = 0,
    /// Redirected requests committed from the BPF CQE.
    Redirected = 1,
    /// Requests completed with an error.
    Errors = 2,
    /// CQEs the queue thread reaped.
    Cqes = 3,
    /// SQEs the kernel consumed from the queue's ring in the server loop's
    /// `io_uring_enter` calls.
    Sqes = 4,
    /// `io_uring_enter` calls of the server loop.
    Enters = 5,
    /// Requests with `UBLK_IO_F_FUA` served through the server's own data
    /// path (a subset of [`Counter::Served`]).
    Fua = 6,
}

impl Counter {
    /// Every counter, in slot order.
    pub const ALL: [Counter; 7] = [
        Counter::Served,
        Counter::Redirected,
        Counter::Errors,
        Counter::Cqes,
        Counter::Sqes,
        Counter::Enters,
        Counter::Fua,
    ];

    #[inline]
    const fn index(self) -> usize {
        self as usize
    }
}

const _: () = assert!(Counter::Fua.index() < SLOT_WORDS);

/// Old names of the counters (kept for callers written against them).
pub const SERVED: Counter = Counter::Served;
/// See [`Counter::Redirected`].
pub const REDIRECTED: Counter = Counter::Redirected;
/// See [`Counter::Errors`].
pub const ERRORS: Counter = Counter::Errors;
/// See [`Counter::Cqes`].
pub const CQES: Counter = Counter::Cqes;
/// See [`Counter::Sqes`].
pub const SQES: Counter = Counter::Sqes;
/// See [`Counter::Enters`].
pub const ENTERS: Counter = Counter::Enters;
/// See [`Counter::Fua`].
pub const FUA: Counter = Counter::Fua;

/// The counters of all queues of a device.
pub struct Counters {
    ptr: *mut AtomicU64,
    words: usize,
}

// SAFETY: the memory is only accessed through `AtomicU64`s.
unsafe impl Send for Counters {}
// SAFETY: as above; atomics are Sync.
unsafe impl Sync for Counters {}

impl Counters {
    fn map(fd: i32, flags: i32, words: usize) -> io::Result<Self> {
        let len = words * 8;
        // SAFETY: a fresh read/write mapping of `len` bytes (of an fd sized
        // to at least `len`, or anonymous); checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                flags,
                fd,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: p as *mut AtomicU64,
            words,
        })
    }

    /// Process-private counters.
    pub fn anon(queues: u16) -> io::Result<Self> {
        Self::map(
            -1,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS,
            queues as usize * SLOT_WORDS,
        )
    }

    /// Counters in `path` (created/truncated), readable with [`read_file`].
    pub fn file(path: &Path, queues: u16) -> io::Result<Self> {
        let words = queues as usize * SLOT_WORDS;
        let f = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)?;
        f.set_len((words * 8) as u64)?;
        Self::map(f.as_raw_fd(), libc::MAP_SHARED, words)
    }

    /// Add `n` to counter `which` of queue `q_id` (ignored for a queue
    /// outside the mapping).
    #[inline]
    pub fn add(&self, q_id: u16, which: Counter, n: u64) {
        let i = q_id as usize * SLOT_WORDS + which.index();
        if i < self.words {
            // SAFETY: i < words, inside the mapping; AtomicU64 is valid for
            // any bit pattern and the mapping is 8-byte aligned.
            unsafe { (*self.ptr.add(i)).fetch_add(n, Ordering::Relaxed) };
        }
    }

    /// Counter `which` of queue `q_id`, `None` for a queue outside the mapping.
    pub fn get(&self, q_id: u16, which: Counter) -> Option<u64> {
        let i = q_id as usize * SLOT_WORDS + which.index();
        // SAFETY: i < words, inside the mapping.
        (i < self.words).then(|| unsafe { (*self.ptr.add(i)).load(Ordering::Relaxed) })
    }

    /// Number of queue slots.
    pub fn queues(&self) -> usize {
        self.words / SLOT_WORDS
    }

    /// Sum of `which` over all queues.
    pub fn total(&self, which: Counter) -> u64 {
        (0..self.queues())
            .filter_map(|q| self.get(q as u16, which))
            .sum()
    }
}

impl Drop for Counters {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping made in `map`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.words * 8) };
    }
}

/// Totals of `which` in a counters file written by a server. A trailing
/// partial slot (a file being created) is ignored.
pub fn read_file(path: &Path, which: Counter) -> io::Result<u64> {
    let b = std::fs::read(path)?;
    let at = which.index() * 8;
    Ok(b.chunks_exact(SLOT_WORDS * 8)
        .filter_map(|slot| slot.get(at..at + 8))
        .filter_map(|w| w.try_into().ok().map(u64::from_ne_bytes))
        .sum())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_counters() {
        let c = Counters::anon(2).unwrap();
        c.add(0, SERVED, 3);
        c.add(1, SERVED, 4);
        c.add(1, REDIRECTED, 1);
        c.add(1, FUA, 2);
        c.add(9, SERVED, 100); // out of range: ignored
        assert_eq!(c.total(SERVED), 7);
        assert_eq!(c.total(REDIRECTED), 1);
        assert_eq!(c.total(FUA), 2);
        assert_eq!(c.get(1, Counter::Served), Some(4));
        assert_eq!(c.get(2, Counter::Served), None);
        assert_eq!(c.queues(), 2);
    }

    #[test]
    fn short_files_read_what_is_whole() {
        let p = std::env::temp_dir().join(format!("ublk-user-short-{}", std::process::id()));
        let mut b = vec![0u8; SLOT_WORDS * 8 + 12];
        b[Counter::Errors.index() * 8] = 9;
        b[SLOT_WORDS * 8] = 200; // partial second slot: ignored
        std::fs::write(&p, &b).unwrap();
        assert_eq!(read_file(&p, Counter::Errors).unwrap(), 9);
        assert_eq!(read_file(&p, Counter::Served).unwrap(), 0);
        std::fs::remove_file(p).unwrap();
    }

    #[test]
    fn file_counters_are_visible() {
        let p = std::env::temp_dir().join(format!("ublk-user-counters-{}", std::process::id()));
        let c = Counters::file(&p, 3).unwrap();
        c.add(2, REDIRECTED, 5);
        c.add(0, SERVED, 2);
        assert_eq!(read_file(&p, REDIRECTED).unwrap(), 5);
        assert_eq!(read_file(&p, SERVED).unwrap(), 2);
        drop(c);
        std::fs::remove_file(p).unwrap();
    }
}
