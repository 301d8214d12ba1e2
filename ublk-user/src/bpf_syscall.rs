//! Raw `bpf(2)` program loading, which aya has no API for:
//! `BPF_PROG_LOAD` of any program type (aya does not know
//! `BPF_PROG_TYPE_UBLK`), with the retry the verifier's transient `EAGAIN`
//! needs, and `BPF_OBJ_GET_INFO_BY_FD` for the program's id. The `bpf`
//! feature's loader (`ublk_user::bpf`) uses it, and so does the VM tests'
//! fixture, which assembles its own (hostile) programs; it needs no aya and
//! no feature.

use std::ffi::CStr;
use std::io;
use std::os::fd::{FromRawFd, OwnedFd};

const BPF_PROG_LOAD: libc::c_int = 5;
const BPF_OBJ_GET_INFO_BY_FD: libc::c_int = 15;

/// The `BPF_PROG_LOAD` part of `union bpf_attr`, up to
/// `expected_attach_type`. The kernel accepts a shorter attr than its own
/// (it zero-fills the rest).
#[repr(C)]
#[derive(Default)]
struct ProgLoadAttr {
    prog_type: u32,
    insn_cnt: u32,
    insns: u64,
    license: u64,
    log_level: u32,
    log_size: u32,
    log_buf: u64,
    kern_version: u32,
    prog_flags: u32,
    prog_name: [u8; 16],
    prog_ifindex: u32,
    expected_attach_type: u32,
}

/// The start of `struct bpf_prog_info` (we only need `id`).
#[repr(C)]
#[derive(Default)]
struct ProgInfo {
    type_: u32,
    id: u32,
    tag: [u8; 8],
    jited_prog_len: u32,
    xlated_prog_len: u32,
}

#[repr(C)]
#[derive(Default)]
struct InfoAttr {
    bpf_fd: u32,
    info_len: u32,
    info: u64,
}

/// The loader's verifier log buffer size. The log rolls over (keeps the
/// tail) when it overflows on kernels >= 6.4, so this bounds memory, not
/// correctness.
pub const LOG_SIZE: usize = 16 << 20;

/// A failed `BPF_PROG_LOAD`: the errno and the verifier's log.
#[derive(Debug)]
pub struct LoadError {
    /// The load's error.
    pub errno: io::Error,
    /// The verifier's log.
    pub log: String,
}

/// `BPF_PROG_LOAD` of `insns` (each one `struct bpf_insn`, 8 bytes; the
/// kernel's verifier checks what they say) as a program of `prog_type`
/// named `name` (cut to the kernel's 15 characters of `[A-Za-z0-9_.]`),
/// with `prog_flags` `flags` and a verifier log of `log_level` in a buffer
/// of `log_size` bytes. Returns the program fd and the verifier log (on
/// success at level 1 it holds the verifier's statistics).
pub fn prog_load<I: Copy>(
    prog_type: u32,
    name: &str,
    insns: &[I],
    license: &CStr,
    flags: u32,
    log_level: u32,
    log_size: usize,
) -> Result<(OwnedFd, String), LoadError> {
    const { assert!(std::mem::size_of::<I>() == 8, "a bpf_insn is 8 bytes") };
    let mut log = vec![0u8; log_size];
    let mut attr = ProgLoadAttr {
        prog_type,
        insn_cnt: insns.len() as u32,
        insns: insns.as_ptr() as u64,
        license: license.as_ptr() as u64,
        log_level,
        log_size: log.len() as u32,
        log_buf: log.as_mut_ptr() as u64,
        prog_flags: flags,
        ..Default::default()
    };
    // Object names: [A-Za-z0-9_.], at most 15 bytes + NUL.
    for (d, s) in attr.prog_name.iter_mut().zip(
        name.bytes()
            .filter(|c| c.is_ascii_alphanumeric() || *c == b'_' || *c == b'.')
            .take(15),
    ) {
        *d = s;
    }
    // The verifier gives up with EAGAIN when the task has a signal or
    // TIF_NOTIFY_SIGNAL (io_uring task work, e.g. of the control ring)
    // pending; like libbpf, try again a few times.
    let mut tries = 0;
    let (ret, errno) = loop {
        // SAFETY: `attr` is a valid BPF_PROG_LOAD attribute whose pointers
        // (instructions: `insn_cnt` * 8 bytes, as `I` is 8 bytes; license;
        // log buffer) outlive the call; the kernel writes at most
        // `log_size` bytes into `log`.
        let ret = unsafe {
            libc::syscall(
                libc::SYS_bpf,
                BPF_PROG_LOAD,
                &mut attr as *mut ProgLoadAttr,
                std::mem::size_of::<ProgLoadAttr>() as u32,
            )
        };
        let errno = io::Error::last_os_error();
        tries += 1;
        if ret >= 0 || errno.raw_os_error() != Some(libc::EAGAIN) || tries >= 5 {
            break (ret, errno);
        }
    };
    let end = log.iter().position(|&b| b == 0).unwrap_or(log.len());
    let text = String::from_utf8_lossy(&log[..end]).into_owned();
    if ret < 0 {
        return Err(LoadError { errno, log: text });
    }
    // SAFETY: on success the syscall returns a new fd that we now own.
    Ok((unsafe { OwnedFd::from_raw_fd(ret as i32) }, text))
}

/// The kernel's id of the program behind `fd`.
pub fn prog_id(fd: i32) -> io::Result<u32> {
    let mut info = ProgInfo::default();
    let mut attr = InfoAttr {
        bpf_fd: fd as u32,
        info_len: std::mem::size_of::<ProgInfo>() as u32,
        info: &mut info as *mut ProgInfo as u64,
    };
    // SAFETY: the kernel writes at most `info_len` bytes into `info`, which
    // lives until the call returns.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_bpf,
            BPF_OBJ_GET_INFO_BY_FD,
            &mut attr as *mut InfoAttr,
            std::mem::size_of::<InfoAttr>() as u32,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(info.id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{offset_of, size_of};

    #[test]
    fn attr_layout_matches_uapi() {
        // include/uapi/linux/bpf.h, the BPF_PROG_LOAD struct of union bpf_attr.
        assert_eq!(offset_of!(ProgLoadAttr, insns), 8);
        assert_eq!(offset_of!(ProgLoadAttr, license), 16);
        assert_eq!(offset_of!(ProgLoadAttr, log_level), 24);
        assert_eq!(offset_of!(ProgLoadAttr, log_buf), 32);
        assert_eq!(offset_of!(ProgLoadAttr, kern_version), 40);
        assert_eq!(offset_of!(ProgLoadAttr, prog_flags), 44);
        assert_eq!(offset_of!(ProgLoadAttr, prog_name), 48);
        assert_eq!(offset_of!(ProgLoadAttr, prog_ifindex), 64);
        assert_eq!(offset_of!(ProgLoadAttr, expected_attach_type), 68);
        assert_eq!(size_of::<ProgLoadAttr>(), 72);
        assert_eq!(offset_of!(ProgInfo, id), 4);
        assert_eq!(size_of::<InfoAttr>(), 16);
    }
}
