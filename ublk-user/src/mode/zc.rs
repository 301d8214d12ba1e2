//! Zero copy with `UBLK_F_AUTO_BUF_REG`.
//!
//! FETCH and COMMIT_AND_FETCH carry `struct ublk_auto_buf_reg { index = tag,
//! flags = UBLK_AUTO_BUF_REG_FALLBACK }` in the SQE's `addr`; the driver
//! registers the request's pages at that index of the ring's sparse buffer
//! table before delivering the request and unregisters them at commit.
//!
//! If the automatic registration fails the driver still delivers the request
//! (because of FALLBACK) with `UBLK_IO_F_NEED_REG_BUF` in the iod. Then the
//! server registers the buffer itself (`UBLK_U_IO_REGISTER_IO_BUF`, which
//! needs `UBLK_F_SUPPORT_ZERO_COPY` on the device), runs the target I/O, and
//! unregisters it, as one hard-linked chain, before committing.

use crate::sys::{self, AutoBufReg, IoCmd};
use io_uring::{opcode, squeue, types};

/// SQE `addr` for FETCH/COMMIT of `tag`.
#[inline]
pub const fn auto_buf_reg(tag: u16) -> u64 {
    AutoBufReg {
        index: tag,
        flags: sys::UBLK_AUTO_BUF_REG_FALLBACK,
        reserved0: 0,
        reserved1: 0,
    }
    .to_sqe_addr()
}

/// `UBLK_U_IO_REGISTER_IO_BUF` / `UNREGISTER` for (q_id, tag) at buffer index `tag`.
#[inline]
pub fn buf_cmd(register: bool, q_id: u16, tag: u16) -> squeue::Entry {
    let op = if register {
        sys::UBLK_U_IO_REGISTER_IO_BUF
    } else {
        sys::UBLK_U_IO_UNREGISTER_IO_BUF
    };
    let cmd = IoCmd {
        q_id,
        tag,
        result: 0,
        addr: tag as u64,
    };
    opcode::UringCmd16::new(types::Fixed(0), op)
        .cmd(cmd.to_bytes())
        .build()
}
