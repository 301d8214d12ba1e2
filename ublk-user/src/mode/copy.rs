//! Copy mode: one `max_io`-byte, page-aligned buffer per tag, carved out of
//! one anonymous mapping per queue (pages are only faulted in when used).

use std::io;

pub struct CopyBufs {
    base: *mut u8,
    len: usize,
    max_io: usize,
}

// SAFETY: the mapping is owned by one queue; the raw pointer is only a base
// address handed to the kernel and to the queue's own target calls.
unsafe impl Send for CopyBufs {}

impl CopyBufs {
    pub fn new(depth: u16, max_io: u32) -> io::Result<Self> {
        let len = depth as usize * max_io as usize;
        // SAFETY: anonymous private mapping, no file, checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_NORESERVE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            base: p as *mut u8,
            len,
            max_io: max_io as usize,
        })
    }

    /// Address of `tag`'s buffer.
    #[inline]
    pub fn addr(&self, tag: u16) -> *mut u8 {
        self.base.wrapping_add(tag as usize * self.max_io)
    }
}

impl Drop for CopyBufs {
    fn drop(&mut self) {
        // SAFETY: `base`/`len` are exactly what mmap returned; nothing uses
        // the buffers after the queue (their only user) is gone.
        unsafe { libc::munmap(self.base as *mut libc::c_void, self.len) };
    }
}
