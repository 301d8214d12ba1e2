//! The library's error type.
//!
//! Every fallible public function returns [`Result`]. The variants say what
//! kind of failure it was (a control command, a missing kernel feature, an
//! option out of range, a queue's I/O setup, the BPF loader), so a backend
//! can react to the kind rather than parse a message; [`Error::errno`]
//! gives the kernel's errno where there is one.

use crate::ctrl::CtrlError;
use std::io;

/// What went wrong.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// `/dev/ublk-control` does not exist.
    #[error(
        "{path} not found: the kernel has no ublk driver (CONFIG_BLK_DEV_UBLK) or it is not loaded"
    )]
    NoDriver {
        /// The path that was tried.
        path: &'static str,
    },
    /// A control command (`ADD_DEV`, `START_DEV`, ...) failed.
    #[error(transparent)]
    Ctrl(#[from] CtrlError),
    /// The kernel does not offer a feature the options need.
    #[error("kernel lacks UBLK_F_{feature}, needed for {needed_for}")]
    MissingFeature {
        /// The feature's name without the `UBLK_F_` prefix.
        feature: &'static str,
        /// What asked for it.
        needed_for: &'static str,
    },
    /// A [`Mode`](crate::Mode) is not available and no fallback was taken
    /// ([`Mode::resolve`](crate::Mode::resolve)).
    #[error("mode {mode} is not available: {why}")]
    ModeUnavailable {
        /// The mode's name.
        mode: &'static str,
        /// Why not.
        why: String,
    },
    /// ADD_DEV succeeded but without some of the flags asked for.
    #[error("kernel did not grant the requested features: asked {asked:#x}, got {got:#x}")]
    NotGranted {
        /// Flags asked for.
        asked: u64,
        /// Flags the device has.
        got: u64,
    },
    /// An option is out of range or contradicts another.
    #[error("invalid option: {0}")]
    InvalidOption(String),
    /// ADD_DEV with an id that is taken.
    #[error("ublk device id {0} already exists")]
    Exists(u32),
    /// A call that does not fit the device's state (e.g. [`Device::start`]
    /// twice, or queues taken and never opened).
    ///
    /// [`Device::start`]: crate::Device::start
    #[error("{0}")]
    State(String),
    /// A system call outside the control commands failed. Its message is
    /// `what`; the system error is the `source()` (`{:#}` in anyhow prints
    /// both), as the API guidelines ask: one of the two, not both.
    #[error("{what}")]
    Io {
        /// What was being done.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A system call failed ([`From<io::Error>`], for a backend's own
    /// code; the library's calls say what they were doing with
    /// [`Error::Io`]).
    #[error(transparent)]
    Os(#[from] io::Error),
    /// A queue could not set up its ring, mappings or buffers.
    #[error("queue {q_id}")]
    Queue {
        /// The queue.
        q_id: u16,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The BPF loader or the program's attachment failed.
    #[error("BPF: {what}")]
    Bpf {
        /// What was being done, with the details known.
        what: String,
        /// The underlying error, if any.
        #[source]
        source: Option<Box<dyn std::error::Error + Send + Sync + 'static>>,
    },
}

/// `Result` with [`Error`].
pub type Result<T, E = Error> = std::result::Result<T, E>;

impl Error {
    /// The kernel's errno, for control-command and I/O failures.
    pub fn errno(&self) -> Option<i32> {
        match self {
            Error::Ctrl(c) => c.errno(),
            Error::Io { source, .. } | Error::Queue { source, .. } | Error::Os(source) => {
                source.raw_os_error()
            }
            _ => None,
        }
    }

    /// The message followed by every cause, `what: cause: ...` (as
    /// anyhow's `{:#}` prints it): for a log line, where `Display` alone
    /// would drop the system error.
    pub fn chain(&self) -> String {
        let mut s = self.to_string();
        let mut cause = std::error::Error::source(self);
        while let Some(c) = cause {
            s.push_str(": ");
            s.push_str(&c.to_string());
            cause = c.source();
        }
        s
    }

    pub(crate) fn io(what: impl Into<String>, source: io::Error) -> Self {
        Error::Io {
            what: what.into(),
            source,
        }
    }

    #[cfg_attr(not(feature = "bpf"), allow(dead_code))] // the BPF loader's
    pub(crate) fn bpf(what: impl Into<String>) -> Self {
        Error::Bpf {
            what: what.into(),
            source: None,
        }
    }
}

/// Attaching context while converting foreign errors (the BPF loader's).
#[cfg_attr(not(feature = "bpf"), allow(dead_code))]
pub(crate) trait ResultExt<T> {
    /// As [`Error::Bpf`] with `what` and the error as its source.
    fn bpf_ctx(self, what: impl FnOnce() -> String) -> Result<T>;
    /// As [`ResultExt::bpf_ctx`] with a fixed text.
    fn bpf_context(self, what: &str) -> Result<T>
    where
        Self: Sized,
    {
        self.bpf_ctx(|| what.to_string())
    }
}

impl<T, E: std::error::Error + Send + Sync + 'static> ResultExt<T> for std::result::Result<T, E> {
    fn bpf_ctx(self, what: impl FnOnce() -> String) -> Result<T> {
        self.map_err(|e| {
            let what = what();
            Error::Bpf {
                what,
                source: Some(Box::new(e)),
            }
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn errno_of_each_kind() {
        let e = Error::io("x", io::Error::from_raw_os_error(libc::ENOSPC));
        assert_eq!(e.errno(), Some(libc::ENOSPC));
        // the cause once: in source(), not also in the message
        let cause = io::Error::from_raw_os_error(libc::ENOSPC).to_string();
        assert_eq!(e.to_string(), "x");
        assert_eq!(e.chain(), format!("x: {cause}"));
        let q = Error::Queue {
            q_id: 1,
            source: io::Error::from_raw_os_error(libc::ENOMEM),
        };
        assert!(!q.to_string().contains("(os error"), "{q}");
        assert_eq!(q.chain().matches("(os error").count(), 1, "{}", q.chain());
        let c = Error::from(CtrlError {
            cmd: "ADD_DEV",
            err: io::Error::from_raw_os_error(libc::EEXIST),
        });
        assert_eq!(c.errno(), Some(libc::EEXIST));
        assert!(c.to_string().starts_with("ADD_DEV failed"));
        assert_eq!(Error::Exists(3).errno(), None);
        // `?` on an io::Result in a backend's own code
        fn open_missing() -> Result<std::fs::File> {
            Ok(std::fs::File::open("/nonexistent/ublk-user-test")?)
        }
        let e = open_missing().unwrap_err();
        assert!(matches!(e, Error::Os(_)), "{e:?}");
        assert_eq!(e.errno(), Some(libc::ENOENT));
    }

    #[test]
    fn bpf_ctx_keeps_the_source() {
        let r: std::result::Result<(), io::Error> = Err(io::Error::from_raw_os_error(libc::EPERM));
        let e = r.bpf_ctx(|| "loading".into()).unwrap_err();
        assert_eq!(e.to_string(), "BPF: loading");
        assert!(std::error::Error::source(&e).is_some());
        assert_eq!(e.chain().matches("(os error").count(), 1, "{}", e.chain());
    }
}
