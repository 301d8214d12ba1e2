//! A scripted driver in place of the control ring ([`CtrlRing`]), for the
//! host tests of [`Control`] and of [`crate::device::Device`]: it logs every
//! command, answers each with a result set per opcode, and, as the driver
//! does, writes the output buffers of GET_FEATURES and GET_DEV_INFO.

use super::*;
use std::collections::{HashMap, VecDeque};
use std::sync::{Arc, Mutex};

#[derive(Default)]
pub(crate) struct Driver {
    /// Every command given, `(op, payload, user_data)`.
    pub(crate) log: Vec<(u32, CtrlCmd, u64)>,
    /// Pushed, answered at the next submit.
    pub(crate) queued: Vec<(u32, u64)>,
    /// The result of each command (0 if not listed).
    pub(crate) results: HashMap<u32, i32>,
    /// Commands whose CQE waits for [`Fake::release`].
    pub(crate) held: Vec<u32>,
    /// Released CQEs, posted at the next submit before the new ones.
    pub(crate) released: Vec<(u64, i32)>,
    pub(crate) cq: VecDeque<(u64, i32)>,
    /// GET_FEATURES's answer (written to the command's buffer).
    pub(crate) features: Option<u64>,
    /// GET_DEV_INFO's answer (written to the command's buffer).
    pub(crate) dev_info: Option<DevInfo>,
    /// The info each ADD_DEV carried.
    pub(crate) added: Vec<DevInfo>,
    /// ADD_DEV grants no flag: the answer's flags are cleared.
    pub(crate) clear_add_dev_flags: bool,
    /// Answer `op` with this result its first N times: `op -> (N, res)`.
    pub(crate) first: HashMap<u32, (u32, i32)>,
    /// Fail this many submits with EINTR first.
    pub(crate) eintr: u32,
    pub(crate) submits: u32,
}

#[derive(Clone, Default)]
pub(crate) struct Fake(Arc<Mutex<Driver>>);

impl Fake {
    pub(crate) fn control(&self) -> Control {
        Control::with_ring(Box::new(self.clone()))
    }
    pub(crate) fn driver(&self) -> std::sync::MutexGuard<'_, Driver> {
        self.0.lock().unwrap()
    }
    pub(crate) fn answer(&self, op: u32, res: i32) {
        self.driver().results.insert(op, res);
    }
    pub(crate) fn hold(&self, op: u32) {
        self.driver().held.push(op);
    }
    /// Post the held CQE of `op` (tagged `user_data`) at the next submit.
    pub(crate) fn release(&self, op: u32, user_data: u64) {
        let mut d = self.driver();
        d.held.retain(|o| *o != op);
        let res = d.results.get(&op).copied().unwrap_or(0);
        d.released.push((user_data, res));
    }
    pub(crate) fn ops(&self) -> Vec<u32> {
        self.driver().log.iter().map(|(op, ..)| *op).collect()
    }
    pub(crate) fn last(&self) -> (u32, CtrlCmd, u64) {
        *self.driver().log.last().expect("a command")
    }
}

impl CtrlRing for Fake {
    fn push(&mut self, op: u32, cmd: &CtrlCmd, user_data: u64) -> io::Result<()> {
        let mut d = self.driver();
        d.log.push((op, *cmd, user_data));
        d.queued.push((op, user_data));
        match op {
            sys::UBLK_U_CMD_GET_FEATURES => {
                if let Some(f) = d.features {
                    // SAFETY: as the driver does: GET_FEATURES's `addr` is
                    // the caller's u64, alive until the command completes
                    // (Control waits for it before returning).
                    unsafe { (cmd.addr as *mut u64).write_unaligned(f) };
                }
            }
            sys::UBLK_U_CMD_GET_DEV_INFO => {
                if let Some(info) = d.dev_info {
                    // SAFETY: GET_DEV_INFO's `addr` is the caller's DevInfo,
                    // alive until the command completes.
                    unsafe { (cmd.addr as *mut DevInfo).write_unaligned(info) };
                }
            }
            sys::UBLK_U_CMD_ADD_DEV => {
                // SAFETY: ADD_DEV's `addr` is the caller's DevInfo, alive
                // until the command completes.
                let info = unsafe { (cmd.addr as *const DevInfo).read_unaligned() };
                d.added.push(info);
                if d.clear_add_dev_flags {
                    // SAFETY: as above; the driver writes the negotiated
                    // info back to the same buffer.
                    unsafe {
                        (cmd.addr as *mut DevInfo).write_unaligned(DevInfo { flags: 0, ..info })
                    };
                }
            }
            _ => {}
        }
        Ok(())
    }
    fn submit_and_wait(&mut self, want: usize) -> io::Result<usize> {
        let mut d = self.driver();
        d.submits += 1;
        if d.eintr > 0 {
            d.eintr -= 1;
            return Err(io::Error::from_raw_os_error(libc::EINTR));
        }
        let released = std::mem::take(&mut d.released);
        d.cq.extend(released);
        let queued = std::mem::take(&mut d.queued);
        let n = queued.len();
        for (op, ud) in queued {
            if d.held.contains(&op) {
                continue;
            }
            let mut res = d.results.get(&op).copied().unwrap_or(0);
            if let Some((n, r)) = d.first.get_mut(&op).filter(|(n, _)| *n > 0) {
                *n -= 1;
                res = *r;
            }
            d.cq.push_back((ud, res));
        }
        if d.cq.len() < want {
            // the real wait would block for ever: fail the test instead
            return Err(io::Error::other("waiting for a CQE the driver never posts"));
        }
        Ok(n)
    }
    fn next_cqe(&mut self) -> Option<(u64, i32)> {
        self.driver().cq.pop_front()
    }
}
