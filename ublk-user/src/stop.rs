//! Stopping a server cleanly on SIGINT / SIGTERM.
//!
//! A ublk server must not die on a signal with its device live: the device
//! would stay (with `UBLK_F_USER_RECOVERY`) or fail every request, and the
//! data the target buffers would be lost. The usual answer is to block the
//! stop signals in every thread and wait for them in one place, then call
//! [`Device::stop`](crate::Device::stop).
//!
//! [`StopSignals::block`] does the blocking, for the calling thread and
//! every thread it starts afterwards (threads inherit the mask): call it
//! first in `main`, before starting threads of your own. The library's
//! queue threads block the stop signals themselves, so the order against
//! [`Device::start`](crate::Device::start) does not matter for them.
//!
//! Then either wait on any thread ([`StopSignals::wait`]) and stop the
//! device, or, if that thread also serves a queue
//! ([`Device::take_queues`](crate::Device::take_queues)), let the queue
//! wake on the signal ([`Queue::wake_on`](crate::Queue::wake_on)) and ask
//! [`StopSignals::take`] after each turn:
//!
//! ```no_run
//! # fn main() -> ublk_user::Result<()> {
//! # let (ctrl, target, opts): (ublk_user::ctrl::Control, std::sync::Arc<dyn ublk_user::target::Target>, ublk_user::DeviceOptions) = todo!();
//! let stop = ublk_user::StopSignals::block()?;
//! let mut dev = ublk_user::Device::create(ctrl, target, opts)?;
//! dev.start()?;
//! stop.wait()?; // SIGINT or SIGTERM
//! dev.stop()?;
//! # Ok(()) }
//! ```

use crate::{Error, Result};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

/// The signals that stop a server.
pub const STOP_SIGNALS: [i32; 2] = [libc::SIGINT, libc::SIGTERM];

/// A set of the stop signals and `extra`; an error for a number that is
/// not a signal.
fn signal_set(extra: &[i32]) -> io::Result<libc::sigset_t> {
    // SAFETY: sigemptyset/sigaddset initialise and fill a local set;
    // sigaddset checks the signal number.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        for &s in STOP_SIGNALS.iter().chain(extra) {
            if libc::sigaddset(&mut set, s) != 0 {
                return Err(io::Error::last_os_error());
            }
        }
        Ok(set)
    }
}

/// Block the stop signals in the calling thread (the library's own threads
/// call this when they start).
pub(crate) fn block_in_this_thread() -> io::Result<()> {
    block_set(&signal_set(&[])?)
}

fn block_set(set: &libc::sigset_t) -> io::Result<()> {
    // SAFETY: changes this thread's mask from a valid set.
    let rc = unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, set, std::ptr::null_mut()) };
    if rc != 0 {
        return Err(io::Error::from_raw_os_error(rc));
    }
    Ok(())
}

/// SIGINT and SIGTERM (and any signals added with
/// [`StopSignals::block_with`]), blocked and readable from a `signalfd`.
#[derive(Debug)]
pub struct StopSignals {
    fd: OwnedFd,
}

impl StopSignals {
    /// Block SIGINT and SIGTERM in the calling thread (and so in every
    /// thread it starts from now on) and open a descriptor they can be
    /// read from. Call it before starting threads of your own: a thread
    /// started earlier still takes the signals, and their default action
    /// ends the process.
    pub fn block() -> Result<Self> {
        Self::block_with(&[])
    }

    /// As [`StopSignals::block`], for SIGINT, SIGTERM and the signals in
    /// `extra` (e.g. `libc::SIGHUP` for a daemon).
    pub fn block_with(extra: &[i32]) -> Result<Self> {
        let set = signal_set(extra).map_err(|e| Error::io("a stop signal set", e))?;
        block_set(&set).map_err(|e| Error::io("blocking the stop signals", e))?;
        // SAFETY: a new signalfd for a valid set; the result is checked.
        let fd = unsafe { libc::signalfd(-1, &set, libc::SFD_CLOEXEC | libc::SFD_NONBLOCK) };
        if fd < 0 {
            return Err(Error::io("signalfd", io::Error::last_os_error()));
        }
        Ok(Self {
            // SAFETY: `fd` is a fresh descriptor that nothing else owns.
            fd: unsafe { OwnedFd::from_raw_fd(fd) },
        })
    }

    /// The stop signal that arrived since the last call, if any (does not
    /// block).
    pub fn take(&self) -> Result<Option<i32>> {
        // SAFETY: an all-zero signalfd_siginfo is a valid value.
        let mut info: libc::signalfd_siginfo = unsafe { std::mem::zeroed() };
        let len = std::mem::size_of::<libc::signalfd_siginfo>();
        // SAFETY: reads at most `len` bytes into `info`, which is that big.
        let n = unsafe {
            libc::read(
                self.fd.as_raw_fd(),
                (&mut info as *mut libc::signalfd_siginfo).cast(),
                len,
            )
        };
        if n == len as isize {
            return Ok(Some(info.ssi_signo as i32));
        }
        let e = io::Error::last_os_error();
        match e.raw_os_error() {
            _ if n >= 0 => Err(Error::State(format!("signalfd: short read of {n} bytes"))),
            Some(libc::EAGAIN) | Some(libc::EINTR) => Ok(None),
            _ => Err(Error::io("reading the signalfd", e)),
        }
    }

    /// Wait until a stop signal arrives; returns its number.
    pub fn wait(&self) -> Result<i32> {
        loop {
            if let Some(sig) = self.wait_timeout(None)? {
                return Ok(sig);
            }
        }
    }

    /// Wait until a stop signal arrives or `limit` has passed (`None`: no
    /// limit); returns the signal, if one came.
    pub fn wait_timeout(&self, limit: Option<std::time::Duration>) -> Result<Option<i32>> {
        if let Some(sig) = self.take()? {
            return Ok(Some(sig));
        }
        let ms = limit.map_or(-1, |d| d.as_millis().min(i32::MAX as u128) as i32);
        let mut pfd = libc::pollfd {
            fd: self.fd.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd for the duration of the call.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            if e.raw_os_error() != Some(libc::EINTR) {
                return Err(Error::io("poll on the signalfd", e));
            }
        }
        self.take()
    }
}

/// The `signalfd`: readable when a stop signal is pending (for
/// [`Queue::wake_on`](crate::Queue::wake_on) or an event loop of your own).
impl AsFd for StopSignals {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stop_signal_is_taken_not_delivered() {
        // In a thread of its own: the mask is per thread, and a signal sent
        // to this thread alone (tgkill) cannot end the test process.
        std::thread::spawn(|| {
            let s = StopSignals::block().unwrap();
            assert_eq!(s.take().unwrap(), None);
            // SAFETY: sends SIGTERM to this thread, which has it blocked.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::gettid(),
                    libc::SIGTERM,
                );
            }
            assert_eq!(s.wait().unwrap(), libc::SIGTERM);
            assert_eq!(s.take().unwrap(), None);
            let t0 = std::time::Instant::now();
            let limit = std::time::Duration::from_millis(50);
            assert_eq!(s.wait_timeout(Some(limit)).unwrap(), None);
            assert!(t0.elapsed() >= limit);
            // a thread started now inherits the mask
            let inherited = std::thread::spawn(|| {
                // SAFETY: reads this thread's mask into a local set.
                unsafe {
                    let mut cur: libc::sigset_t = std::mem::zeroed();
                    libc::pthread_sigmask(libc::SIG_BLOCK, std::ptr::null(), &mut cur);
                    libc::sigismember(&cur, libc::SIGINT) == 1
                }
            });
            assert!(inherited.join().unwrap());
        })
        .join()
        .unwrap();
    }

    #[test]
    fn extra_signals_stop_too() {
        std::thread::spawn(|| {
            let s = StopSignals::block_with(&[libc::SIGHUP]).unwrap();
            // SAFETY: sends SIGHUP to this thread, which has it blocked.
            unsafe {
                libc::syscall(
                    libc::SYS_tgkill,
                    libc::getpid(),
                    libc::gettid(),
                    libc::SIGHUP,
                );
            }
            let limit = Some(std::time::Duration::from_secs(5));
            assert_eq!(s.wait_timeout(limit).unwrap(), Some(libc::SIGHUP));
        })
        .join()
        .unwrap();
        assert!(StopSignals::block_with(&[0]).is_err(), "0 is not a signal");
    }
}
