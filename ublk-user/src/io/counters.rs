//! Per-queue request counters other processes can read (`ublk-user list`):
//! a small file mmapped shared, one 64-byte slot per queue of `u64`s that
//! only that queue's thread updates (relaxed atomics, no false sharing).

use crate::mapping::Mapping;
use std::fs::OpenOptions;
use std::io;
use std::os::fd::AsFd;
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

/// The counters of all queues of a device, accessed only as `AtomicU64`s.
pub struct Counters {
    map: Mapping,
    words: usize,
}

impl Counters {
    /// Process-private counters.
    pub fn anon(queues: u16) -> io::Result<Self> {
        let words = queues as usize * SLOT_WORDS;
        Ok(Self {
            map: Mapping::anon(words * 8)?,
            words,
        })
    }

    #[inline]
    fn word(&self, i: usize) -> &AtomicU64 {
        debug_assert!(i < self.words);
        // SAFETY: i < words, so the word is inside the mapping, which is
        // page (so 8-byte) aligned and lives as long as `self`; AtomicU64
        // is valid for any bit pattern, and the memory is only ever
        // accessed atomically (here and by other processes' readers).
        unsafe { &*self.map.as_ptr().cast::<AtomicU64>().add(i) }
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
        Ok(Self {
            map: Mapping::shared(f.as_fd(), words * 8, 0, true)?,
            words,
        })
    }

    /// Add `n` to counter `which` of queue `q_id` (ignored for a queue
    /// outside the mapping).
    #[inline]
    pub fn add(&self, q_id: u16, which: Counter, n: u64) {
        let i = q_id as usize * SLOT_WORDS + which.index();
        if i < self.words {
            self.word(i).fetch_add(n, Ordering::Relaxed);
        }
    }

    /// Counter `which` of queue `q_id`, `None` for a queue outside the mapping.
    pub fn get(&self, q_id: u16, which: Counter) -> Option<u64> {
        let i = q_id as usize * SLOT_WORDS + which.index();
        (i < self.words).then(|| self.word(i).load(Ordering::Relaxed))
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
        c.add(0, Counter::Served, 3);
        c.add(1, Counter::Served, 4);
        c.add(1, Counter::Redirected, 1);
        c.add(1, Counter::Fua, 2);
        c.add(9, Counter::Served, 100); // out of range: ignored
        assert_eq!(c.total(Counter::Served), 7);
        assert_eq!(c.total(Counter::Redirected), 1);
        assert_eq!(c.total(Counter::Fua), 2);
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
        c.add(2, Counter::Redirected, 5);
        c.add(0, Counter::Served, 2);
        assert_eq!(read_file(&p, Counter::Redirected).unwrap(), 5);
        assert_eq!(read_file(&p, Counter::Served).unwrap(), 2);
        drop(c);
        std::fs::remove_file(p).unwrap();
    }
}
