//! Control plane: `/dev/ublk-control` driven by io_uring `URING_CMD` with
//! 128-byte SQEs and ioctl-encoded commands (`UBLK_U_CMD_*`).

use crate::sys::{self, CtrlCmd, DevInfo, Params};
use io_uring::{cqueue, opcode, squeue, types, IoUring};
use std::fs::{File, OpenOptions};
use std::io;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The control device.
pub const CONTROL_PATH: &str = "/dev/ublk-control";

/// An error from a control command, naming the command.
#[derive(Debug)]
pub struct CtrlError {
    /// The command.
    pub cmd: &'static str,
    /// The error.
    pub err: io::Error,
}

impl std::fmt::Display for CtrlError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{} failed: {}", self.cmd, self.err)
    }
}
impl std::error::Error for CtrlError {}

impl CtrlError {
    /// The errno the command failed with.
    pub fn errno(&self) -> Option<i32> {
        self.err.raw_os_error()
    }
}

/// `Result` of a control command.
pub type CtrlResult<T> = Result<T, CtrlError>;

/// The control device's io_uring (SQE128) as [`Control`] uses it: the
/// control plane's syscall edge. Host tests (`ctrl/tests.rs`) put a
/// scripted driver in its place.
pub(crate) trait CtrlRing: Send {
    /// Queue control command `op` with payload `cmd`, tagged `user_data`.
    ///
    /// The callers (this module only) keep the buffer `cmd.addr` points to
    /// (if any) valid until the command's CQE has been reaped.
    fn push(&mut self, op: u32, cmd: &CtrlCmd, user_data: u64) -> io::Result<()>;
    /// Submit what is queued and wait for `want` CQEs.
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize>;
    /// The next CQE, `(user_data, result)`.
    fn next_cqe(&mut self) -> Option<(u64, i32)>;
}

/// `/dev/ublk-control` and its ring.
struct ControlUring {
    file: File,
    ring: IoUring<squeue::Entry128, cqueue::Entry>,
}

impl CtrlRing for ControlUring {
    fn push(&mut self, op: u32, cmd: &CtrlCmd, user_data: u64) -> io::Result<()> {
        let mut payload = [0u8; 80];
        payload[..32].copy_from_slice(&cmd.to_bytes());
        let sqe = opcode::UringCmd80::new(types::Fd(self.file.as_raw_fd()), op)
            .cmd(payload)
            .build()
            .user_data(user_data);
        // SAFETY: the SQE's only pointer is `cmd.addr`, whose buffer the
        // caller keeps alive until the CQE is reaped (the trait's contract).
        unsafe { self.ring.submission().push(&sqe) }
            .map_err(|_| io::Error::other("control SQ full"))
    }

    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        self.ring.submit_and_wait(want)
    }

    fn next_cqe(&mut self) -> Option<(u64, i32)> {
        self.ring
            .completion()
            .next()
            .map(|c| (c.user_data(), c.result()))
    }
}

/// The control device: the ublk control commands, each a method that
/// checks its own arguments.
pub struct Control {
    ring: Box<dyn CtrlRing>,
    /// A STOP_DEV issued with [`Control::stop_dev_begin`]: `None` while it
    /// runs, `Some(result)` once its CQE was reaped.
    stop: Option<Option<i32>>,
}

/// `user_data` of the asynchronous STOP_DEV (synchronous commands use
/// their opcode, which never has the top bit set).
const ASYNC_STOP_UD: u64 = 1 << 63;

impl Control {
    /// Open `/dev/ublk-control`, with a clear message when it is missing.
    pub fn open() -> crate::Result<Self> {
        if !Path::new(CONTROL_PATH).exists() {
            return Err(crate::Error::NoDriver { path: CONTROL_PATH });
        }
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .open(CONTROL_PATH)
            .map_err(|e| crate::Error::io(format!("cannot open {CONTROL_PATH}"), e))?;
        let ring = IoUring::<squeue::Entry128, cqueue::Entry>::builder()
            .build(4)
            .map_err(|e| crate::Error::io("cannot create the control io_uring", e))?;
        Ok(Self::with_ring(Box::new(ControlUring { file, ring })))
    }

    pub(crate) fn with_ring(ring: Box<dyn CtrlRing>) -> Self {
        Self { ring, stop: None }
    }

    /// Submit and wait for one CQE, retrying an interrupted wait.
    fn wait_one(&mut self) -> io::Result<()> {
        loop {
            match self.ring.submit_and_wait(1) {
                Ok(_) => return Ok(()),
                Err(e) if e.raw_os_error() == Some(libc::EINTR) => continue,
                Err(e) => return Err(e),
            }
        }
    }

    /// Issue one control command and wait for its result. Private: `c.addr`
    /// is a pointer the kernel writes through, so only this module's typed
    /// methods, which point it at a live buffer of the right size, build
    /// one.
    fn cmd(&mut self, name: &'static str, op: u32, c: CtrlCmd) -> CtrlResult<i32> {
        let wrap = |err| CtrlError { cmd: name, err };
        // The buffer `c.addr` points to belongs to our caller, which waits
        // for this function, and this function for the CQE.
        self.ring.push(op, &c, op as u64).map_err(wrap)?;
        loop {
            self.wait_one().map_err(wrap)?;
            while let Some((user_data, res)) = self.ring.next_cqe() {
                if user_data == ASYNC_STOP_UD {
                    self.stop = Some(Some(res));
                    continue;
                }
                return if res < 0 {
                    Err(wrap(io::Error::from_raw_os_error(-res)))
                } else {
                    Ok(res)
                };
            }
        }
    }

    /// Issue STOP_DEV without waiting for it. The driver runs it in an
    /// io_uring worker, where it waits for the requests in flight: the
    /// caller can keep serving its queues (a backend that runs its queues
    /// on the thread that stops the device needs this). Reap the result
    /// with [`Control::stop_dev_wait`].
    pub fn stop_dev_begin(&mut self, dev_id: u32) -> CtrlResult<()> {
        let wrap = |err| CtrlError {
            cmd: "STOP_DEV",
            err,
        };
        if self.stop.is_some() {
            return Err(wrap(io::Error::from_raw_os_error(libc::EALREADY)));
        }
        // no buffer (`addr` 0)
        let c = Self::dev_cmd(dev_id);
        self.ring
            .push(sys::UBLK_U_CMD_STOP_DEV, &c, ASYNC_STOP_UD)
            .map_err(wrap)?;
        self.ring.submit_and_wait(0).map_err(wrap)?;
        self.stop = Some(None);
        Ok(())
    }

    /// Wait for the STOP_DEV of [`Control::stop_dev_begin`]; `Ok` if none
    /// was issued.
    pub fn stop_dev_wait(&mut self) -> CtrlResult<()> {
        let wrap = |err| CtrlError {
            cmd: "STOP_DEV",
            err,
        };
        loop {
            match self.stop {
                None => return Ok(()),
                Some(Some(res)) => {
                    self.stop = None;
                    return if res < 0 {
                        Err(wrap(io::Error::from_raw_os_error(-res)))
                    } else {
                        Ok(())
                    };
                }
                Some(None) => {}
            }
            self.wait_one().map_err(wrap)?;
            while let Some((user_data, res)) = self.ring.next_cqe() {
                if user_data == ASYNC_STOP_UD {
                    self.stop = Some(Some(res));
                }
            }
        }
    }

    /// Is a STOP_DEV from [`Control::stop_dev_begin`] issued or unreaped?
    pub fn stop_dev_pending(&self) -> bool {
        self.stop.is_some()
    }

    fn dev_cmd(dev_id: u32) -> CtrlCmd {
        CtrlCmd {
            dev_id,
            queue_id: u16::MAX,
            ..Default::default()
        }
    }

    /// `UBLK_U_CMD_GET_FEATURES`: the driver's `UBLK_F_*` bits.
    pub fn get_features(&mut self) -> CtrlResult<u64> {
        let mut features = 0u64;
        let c = CtrlCmd {
            addr: &mut features as *mut u64 as u64,
            len: sys::UBLK_FEATURES_LEN,
            ..Self::dev_cmd(u32::MAX)
        };
        self.cmd("GET_FEATURES", sys::UBLK_U_CMD_GET_FEATURES, c)?;
        Ok(features)
    }

    /// `UBLK_U_CMD_ADD_DEV`: `info` in, the negotiated info out.
    pub fn add_dev(&mut self, info: &mut DevInfo) -> CtrlResult<()> {
        let c = CtrlCmd {
            addr: info as *mut DevInfo as u64,
            len: std::mem::size_of::<DevInfo>() as u16,
            ..Self::dev_cmd(info.dev_id)
        };
        self.cmd("ADD_DEV", sys::UBLK_U_CMD_ADD_DEV, c).map(|_| ())
    }

    /// `UBLK_U_CMD_GET_DEV_INFO`.
    pub fn get_dev_info(&mut self, dev_id: u32) -> CtrlResult<DevInfo> {
        let mut info = DevInfo::default();
        let c = CtrlCmd {
            addr: &mut info as *mut DevInfo as u64,
            len: std::mem::size_of::<DevInfo>() as u16,
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("GET_DEV_INFO", sys::UBLK_U_CMD_GET_DEV_INFO, c)?;
        Ok(info)
    }

    /// `UBLK_U_CMD_SET_PARAMS`.
    pub fn set_params(&mut self, dev_id: u32, params: &Params) -> CtrlResult<()> {
        let mut p = *params;
        p.len = std::mem::size_of::<Params>() as u32;
        let c = CtrlCmd {
            addr: &p as *const Params as u64,
            len: p.len as u16,
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("SET_PARAMS", sys::UBLK_U_CMD_SET_PARAMS, c)
            .map(|_| ())
    }

    /// `UBLK_U_CMD_START_DEV`; `pid` is the server's pid (`data[0]`).
    pub fn start_dev(&mut self, dev_id: u32, pid: i32) -> CtrlResult<()> {
        let c = CtrlCmd {
            data: [pid as u64],
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("START_DEV", sys::UBLK_U_CMD_START_DEV, c)
            .map(|_| ())
    }

    /// `UBLK_U_CMD_START_USER_RECOVERY`: a new server takes over a device
    /// (`UBLK_F_USER_RECOVERY`) whose old server died.
    pub fn start_user_recovery(&mut self, dev_id: u32) -> CtrlResult<()> {
        self.cmd(
            "START_USER_RECOVERY",
            sys::UBLK_U_CMD_START_USER_RECOVERY,
            Self::dev_cmd(dev_id),
        )
        .map(|_| ())
    }

    /// `UBLK_U_CMD_END_USER_RECOVERY`: the new server (`pid`) has fetched
    /// every tag; queued I/O resumes.
    pub fn end_user_recovery(&mut self, dev_id: u32, pid: i32) -> CtrlResult<()> {
        let c = CtrlCmd {
            data: [pid as u64],
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("END_USER_RECOVERY", sys::UBLK_U_CMD_END_USER_RECOVERY, c)
            .map(|_| ())
    }

    /// `UBLK_U_CMD_STOP_DEV`, waiting for it (see [`Control::stop_dev_begin`]).
    pub fn stop_dev(&mut self, dev_id: u32) -> CtrlResult<()> {
        self.cmd("STOP_DEV", sys::UBLK_U_CMD_STOP_DEV, Self::dev_cmd(dev_id))
            .map(|_| ())
    }

    /// `UBLK_U_CMD_DEL_DEV`: waits until the device number is freed, so every
    /// opener of `/dev/ublkcN` (the server) must have closed it.
    pub fn del_dev(&mut self, dev_id: u32) -> CtrlResult<()> {
        self.cmd("DEL_DEV", sys::UBLK_U_CMD_DEL_DEV, Self::dev_cmd(dev_id))
            .map(|_| ())
    }

    /// `UBLK_U_CMD_REG_BPF_PROG` (patched kernels): `data[0]` = program fd;
    /// redirected requests of a device without `UBLK_F_AUTO_BUF_REG` take
    /// entry `tag` of their queue ring's buffer table (one ring per queue).
    pub fn reg_bpf_prog(&mut self, dev_id: u32, prog_fd: i32) -> CtrlResult<()> {
        self.reg_bpf_prog_at(dev_id, prog_fd, 0, false)
    }

    /// `UBLK_U_CMD_REG_BPF_PROG` with the buffer range the driver may use:
    /// entries from `base` on (the ones below stay the server's), by tag,
    /// or by queue and tag (`per_device`) for a ring that serves several
    /// queues. The kernel refuses a range past entry 65534 (`ERANGE`) and
    /// any range with `UBLK_F_AUTO_BUF_REG` (`EINVAL`).
    pub fn reg_bpf_prog_at(
        &mut self,
        dev_id: u32,
        prog_fd: i32,
        base: u16,
        per_device: bool,
    ) -> CtrlResult<()> {
        // the fd in bits 0-31 as the kernel reads it: a negative fd stays
        // a bad fd (EBADF) instead of setting the range bits
        let mut data =
            u64::from(prog_fd as u32) | (u64::from(base) << sys::UBLK_BPF_BUF_BASE_SHIFT);
        if per_device {
            data |= sys::UBLK_BPF_BUF_PER_DEVICE;
        }
        let c = CtrlCmd {
            data: [data],
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("REG_BPF_PROG", sys::UBLK_U_CMD_REG_BPF_PROG, c)
            .map(|_| ())
    }

    /// `UBLK_U_CMD_REG_BPF_FILES` (patched kernels): SQE fd `i` of a
    /// `UBLK_F_BPF_KERNEL_IO` program names `fds[i]` (-1: a hole).
    pub fn reg_bpf_files(&mut self, dev_id: u32, fds: &[i32]) -> CtrlResult<()> {
        let c = CtrlCmd {
            addr: fds.as_ptr() as u64,
            len: std::mem::size_of_val(fds) as u16,
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("REG_BPF_FILES", sys::UBLK_U_CMD_REG_BPF_FILES, c)
            .map(|_| ())
    }

    /// `UBLK_U_CMD_UNREG_BPF_FILES` (patched kernels).
    pub fn unreg_bpf_files(&mut self, dev_id: u32) -> CtrlResult<()> {
        self.cmd(
            "UNREG_BPF_FILES",
            sys::UBLK_U_CMD_UNREG_BPF_FILES,
            Self::dev_cmd(dev_id),
        )
        .map(|_| ())
    }

    /// `UBLK_U_CMD_GET_BPF_STATS` (patched kernels).
    pub fn get_bpf_stats(&mut self, dev_id: u32) -> CtrlResult<sys::BpfKernStats> {
        let mut st = sys::BpfKernStats::default();
        let c = CtrlCmd {
            addr: &mut st as *mut sys::BpfKernStats as u64,
            len: std::mem::size_of::<sys::BpfKernStats>() as u16,
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("GET_BPF_STATS", sys::UBLK_U_CMD_GET_BPF_STATS, c)?;
        Ok(st)
    }

    /// `UBLK_U_CMD_UNREG_BPF_PROG` (patched kernels).
    pub fn unreg_bpf_prog(&mut self, dev_id: u32, prog_fd: i32) -> CtrlResult<()> {
        let c = CtrlCmd {
            data: [prog_fd as u64],
            ..Self::dev_cmd(dev_id)
        };
        self.cmd("UNREG_BPF_PROG", sys::UBLK_U_CMD_UNREG_BPF_PROG, c)
            .map(|_| ())
    }
}

/// Ids of the ublk devices that exist (from sysfs, falling back to /dev).
pub fn list_dev_ids() -> Vec<u32> {
    let mut ids = Vec::new();
    for dir in ["/sys/class/ublk-char", "/dev"] {
        if let Ok(rd) = std::fs::read_dir(dir) {
            for e in rd.flatten() {
                if let Some(n) = e.file_name().to_str().and_then(|s| s.strip_prefix("ublkc")) {
                    if let Ok(id) = n.parse::<u32>() {
                        if !ids.contains(&id) {
                            ids.push(id);
                        }
                    }
                }
            }
        }
        if !ids.is_empty() {
            break;
        }
    }
    ids.sort_unstable();
    ids
}

#[cfg(test)]
pub(crate) mod fake;
#[cfg(test)]
mod tests;
