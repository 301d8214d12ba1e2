//! Copy mode: one `max_io`-byte, page-aligned buffer per tag, carved out of
//! one anonymous mapping per queue (pages are only faulted in when used).

use crate::mapping::Mapping;
use std::io;

pub struct CopyBufs {
    map: Mapping,
    max_io: usize,
}

impl CopyBufs {
    pub fn new(depth: u16, max_io: u32) -> io::Result<Self> {
        Ok(Self {
            map: Mapping::anon(depth as usize * max_io as usize)?,
            max_io: max_io as usize,
        })
    }

    /// Address of `tag`'s buffer.
    #[inline]
    pub fn addr(&self, tag: u16) -> *mut u8 {
        self.map.as_ptr().wrapping_add(tag as usize * self.max_io)
    }
}
