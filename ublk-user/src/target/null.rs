//! The null target: reads return (unspecified) data, writes are dropped,
//! everything completes at once without any I/O.

use super::{Op, Request, Submit, Target};
use crate::io::IoCtx;
use crate::sys::{self, Params};

/// Completes everything at once; keeps no data.
pub struct NullTarget {
    size: u64,
}

impl NullTarget {
    /// A null device of `size` bytes (a non-zero multiple of 512).
    pub fn new(size: u64) -> crate::Result<Self> {
        if size == 0 || !size.is_multiple_of(512) {
            return Err(crate::Error::InvalidOption(format!(
                "null target size must be a non-zero multiple of 512 bytes (got {size})"
            )));
        }
        Ok(Self { size })
    }
}

impl Target for NullTarget {
    fn name(&self) -> &'static str {
        "null"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn params(&self, p: &mut Params) {
        p.types |= sys::UBLK_PARAM_TYPE_DISCARD;
        p.discard = sys::ParamDiscard::any_length(4096);
    }
    fn queue_io(&self, _ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        match req.op {
            Op::Read | Op::Write => Submit::Done(req.bytes() as i32),
            Op::Flush | Op::Discard | Op::WriteZeroes => Submit::Done(0),
            _ => Submit::unsupported(),
        }
    }
}
