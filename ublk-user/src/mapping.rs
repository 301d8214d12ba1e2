//! The library's one memory-mapping type: the copy buffers, the iod area
//! of `/dev/ublkcN` and the counters are each a [`Mapping`], unmapped when
//! it is dropped.

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::ptr::NonNull;

/// An `mmap`ed range, unmapped on drop. It hands out only a raw pointer:
/// what lives in the range and who may touch it is its owner's to say.
pub(crate) struct Mapping {
    ptr: NonNull<u8>,
    len: usize,
}

// SAFETY: a Mapping is an address range; it gives out nothing but a raw
// pointer, and every access through that is `unsafe` at its user, which
// says why the access is sound (per-queue ownership, atomics).
unsafe impl Send for Mapping {}
// SAFETY: as for Send: `&Mapping` allows no access by itself.
unsafe impl Sync for Mapping {}

impl Mapping {
    fn map(len: usize, prot: i32, flags: i32, fd: i32, offset: i64) -> io::Result<Self> {
        // SAFETY: a new mapping at an address the kernel picks, so no
        // existing memory is affected; the result is checked for MAP_FAILED.
        let p = unsafe { libc::mmap(std::ptr::null_mut(), len, prot, flags, fd, offset) };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or_else(|| io::Error::other("mmap at 0"))?;
        Ok(Self { ptr, len })
    }

    /// `len` bytes of private, zeroed, read/write memory, faulted in only
    /// when used.
    pub fn anon(len: usize) -> io::Result<Self> {
        Self::map(
            len,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
            -1,
            0,
        )
    }

    /// `len` bytes of `fd` from `offset`, shared with the file (and every
    /// other mapping of it), writable if `write`, read-only otherwise and
    /// then populated at once.
    pub fn shared(fd: BorrowedFd<'_>, len: usize, offset: i64, write: bool) -> io::Result<Self> {
        let (prot, flags) = if write {
            (libc::PROT_READ | libc::PROT_WRITE, libc::MAP_SHARED)
        } else {
            (libc::PROT_READ, libc::MAP_SHARED | libc::MAP_POPULATE)
        };
        Self::map(len, prot, flags, fd.as_raw_fd(), offset)
    }

    /// The first byte (page aligned).
    #[inline]
    pub fn as_ptr(&self) -> *mut u8 {
        self.ptr.as_ptr()
    }
}

impl Drop for Mapping {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the range `map` created; the owner drops
        // the Mapping only once nothing uses the range any more.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn anon_is_zeroed_page_aligned_and_writable() {
        let m = Mapping::anon(3 * 4096).unwrap();
        assert_eq!(m.as_ptr() as usize % 4096, 0);
        // SAFETY: inside the mapping, which this test owns.
        unsafe {
            assert_eq!(*m.as_ptr().add(5000), 0);
            *m.as_ptr().add(5000) = 7;
            assert_eq!(*m.as_ptr().add(5000), 7);
        }
    }
}
