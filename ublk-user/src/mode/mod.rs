//! Data paths: how a request's data travels between the block layer and the
//! target's I/O.
//!
//! * `copy`: each tag owns a server buffer; the kernel copies write data
//!   into it before delivering the request and read data out of it at commit.
//! * [`zc`]: `UBLK_F_AUTO_BUF_REG`; the kernel registers the request's own
//!   pages in the queue ring's sparse buffer table at index = tag, and the
//!   target uses `READ_FIXED`/`WRITE_FIXED` with `buf_index = tag`.
//! * user copy (`UBLK_F_USER_COPY`): no buffer at all; whoever serves the
//!   request reads and writes its data with `pread`/`pwrite` on
//!   `/dev/ublkcN`, straight from and into its own memory
//!   ([`crate::io::Completion::read_data`] / `write_data`). For backends
//!   with their own buffer pools (an RPC client): no library bounce buffer.
//!
//! The BPF modes are not a data path of their own: the requests the
//! program passes are served in copy mode, the redirected ones are handled
//! in [`crate::io`] (and in `bpf-kernel` never reach the server). [`Mode`]
//! says, per mode, what the kernel must offer and what the mode configures.

pub(crate) mod copy;
pub mod zc;

use crate::sys::{self, IoDesc};
use std::io;

/// How a device's requests reach their data: one of the four modes a
/// server offers (`copy`, `zc`, `bpf`, `bpf-kernel`: [`Mode::SERVER`]) or
/// user copy, for a backend with its own buffers.
///
/// The one place that says, per mode, what the kernel must offer
/// ([`Mode::required_features`]), what to try instead when it does not
/// ([`Mode::fallback`], [`Mode::resolve`]) and what it configures: the
/// device flags ([`Mode::device_flags`]), the data path of the requests the
/// server serves itself ([`Mode::served`]), whether a BPF program redirects
/// requests ([`Mode::bpf`]) and whether the driver issues their backing
/// I/O from its file table ([`Mode::kernel_io`]).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Hash)]
pub enum Mode {
    /// Server buffers; the driver copies.
    #[default]
    Copy,
    /// `UBLK_F_AUTO_BUF_REG`: the request's pages as io_uring fixed buffers.
    Zc,
    /// `UBLK_F_USER_COPY`: the backend copies with `pread`/`pwrite` on
    /// `/dev/ublkcN`, into its own buffers ([`crate::Completion::read_data`]).
    /// Not for targets that serve with [`crate::IoCtx`]'s builders.
    UserCopy,
    /// `UBLK_F_BPF`: the BPF program queues the backing I/O on the
    /// request's pages in the queue's ring; the server reaps it and
    /// commits. Requests the program passes are served in copy mode.
    Bpf,
    /// `UBLK_F_BPF` + `UBLK_F_BPF_KERNEL_IO`: the program runs in the
    /// driver's `->queue_rq()`, which issues and completes the backing I/O
    /// on the device's file table; the server sees no redirected request.
    BpfKernel,
}

/// A mode the kernel (or this build) does not offer, and why.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Fallback {
    /// The mode asked for.
    pub from: Mode,
    /// The mode tried next.
    pub to: Mode,
    /// Why `from` is not available.
    pub why: String,
}

/// The outcome of [`Mode::resolve`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Resolved {
    /// The mode to use.
    pub mode: Mode,
    /// The steps down the fallback chain that led there, in order (empty
    /// when the requested mode is available).
    pub fallbacks: Vec<Fallback>,
}

impl Mode {
    /// Every mode.
    pub const ALL: [Mode; 5] = [
        Mode::Copy,
        Mode::Zc,
        Mode::UserCopy,
        Mode::Bpf,
        Mode::BpfKernel,
    ];

    /// The modes of a target that serves with [`crate::IoCtx`]'s builders
    /// (the `ublk-user` command's `--mode`): all but user copy.
    pub const SERVER: [Mode; 4] = [Mode::Copy, Mode::Zc, Mode::Bpf, Mode::BpfKernel];

    /// The name used in listings and options (`copy`, `zc`, `user-copy`,
    /// `bpf`, `bpf-kernel`).
    pub const fn name(self) -> &'static str {
        match self {
            Mode::Copy => "copy",
            Mode::Zc => "zc",
            Mode::UserCopy => "user-copy",
            Mode::Bpf => "bpf",
            Mode::BpfKernel => "bpf-kernel",
        }
    }

    /// The mode named `name` ([`Mode::name`]).
    pub fn from_name(name: &str) -> Option<Mode> {
        Mode::ALL.into_iter().find(|m| m.name() == name)
    }

    /// Who moves the data, in one line (for listings).
    pub const fn summary(self) -> &'static str {
        match self {
            Mode::Copy => "the driver copies between the request and a server buffer",
            Mode::Zc => {
                "the request's pages are registered in the server's ring (UBLK_F_AUTO_BUF_REG)"
            }
            Mode::UserCopy => "the backend copies through /dev/ublkcN (UBLK_F_USER_COPY)",
            Mode::Bpf => {
                "the BPF program queues the backing I/O in the server's ring; the server commits"
            }
            Mode::BpfKernel => {
                "the BPF program runs in the driver, which issues and completes the backing I/O"
            }
        }
    }

    /// The `UBLK_F_*` bits the kernel must offer for this mode, with their
    /// names (without the prefix), beyond `CMD_IOCTL_ENCODE`, which every
    /// mode needs.
    pub const fn required_features(self) -> &'static [(u64, &'static str)] {
        match self {
            Mode::Copy => &[],
            Mode::Zc => &[(sys::UBLK_F_AUTO_BUF_REG, "AUTO_BUF_REG")],
            Mode::UserCopy => &[(sys::UBLK_F_USER_COPY, "USER_COPY")],
            Mode::Bpf => &[(sys::UBLK_F_BPF, "BPF")],
            Mode::BpfKernel => &[
                (sys::UBLK_F_BPF, "BPF"),
                (sys::UBLK_F_BPF_KERNEL_IO, "BPF_KERNEL_IO"),
            ],
        }
    }

    /// The first feature this mode needs that `features` (GET_FEATURES)
    /// lacks, by name.
    pub fn missing_feature(self, features: u64) -> Option<&'static str> {
        self.required_features()
            .iter()
            .find(|(bit, _)| features & bit == 0)
            .map(|(_, name)| *name)
    }

    /// The `UBLK_F_*` flags the mode sets on a device, given the kernel's
    /// `features`: the required ones, plus `SUPPORT_ZERO_COPY` for zc where
    /// the kernel has it (the server registers a buffer itself when the
    /// automatic registration falls back). Fails naming the missing
    /// feature.
    pub fn device_flags(self, features: u64) -> crate::Result<u64> {
        if let Some(feature) = self.missing_feature(features) {
            return Err(crate::Error::MissingFeature {
                feature,
                needed_for: self.needed_for(),
            });
        }
        let mut flags = self
            .required_features()
            .iter()
            .fold(0, |acc, (bit, _)| acc | bit);
        if self == Mode::Zc {
            flags |= features & sys::UBLK_F_SUPPORT_ZERO_COPY;
        }
        Ok(flags)
    }

    const fn needed_for(self) -> &'static str {
        match self {
            Mode::Copy => "mode copy",
            Mode::Zc => "mode zc",
            Mode::UserCopy => "mode user-copy",
            Mode::Bpf => "mode bpf",
            Mode::BpfKernel => "mode bpf-kernel",
        }
    }

    /// The mode to try when this one is not available: bpf-kernel → bpf →
    /// copy. Zero copy and user copy have none (a server that asked for
    /// them wants exactly them).
    pub const fn fallback(self) -> Option<Mode> {
        match self {
            Mode::BpfKernel => Some(Mode::Bpf),
            Mode::Bpf => Some(Mode::Copy),
            Mode::Copy | Mode::Zc | Mode::UserCopy => None,
        }
    }

    /// A BPF program redirects requests (`UBLK_F_BPF`): the device needs a
    /// [`crate::BpfHook`] and the queue handles redirected requests.
    pub const fn bpf(self) -> bool {
        matches!(self, Mode::Bpf | Mode::BpfKernel)
    }

    /// The driver issues and completes the redirected requests' backing
    /// I/O itself, on the device's file table (`UBLK_F_BPF_KERNEL_IO`).
    pub const fn kernel_io(self) -> bool {
        matches!(self, Mode::BpfKernel)
    }

    /// The data path of the requests the server serves itself: the BPF
    /// modes serve the requests the program passes in copy mode.
    pub const fn served(self) -> Mode {
        match self {
            Mode::Bpf | Mode::BpfKernel => Mode::Copy,
            m => m,
        }
    }

    /// The queue ring has a sparse buffer table: zc registers the request
    /// pages at index = tag, and the BPF ring mode the redirected ones.
    pub(crate) const fn sparse_buffers(self) -> bool {
        matches!(self, Mode::Zc | Mode::Bpf | Mode::BpfKernel)
    }

    /// Can this build serve the mode? The BPF modes need the library's
    /// `bpf` cargo feature (the loader and the embedded program).
    pub const fn built(self) -> bool {
        !self.bpf() || cfg!(feature = "bpf")
    }

    /// The mode to use for a request of `self` on a kernel with `features`:
    /// `self` if the kernel offers what it needs and `usable` accepts it
    /// (the caller's own check, e.g. that the BPF program loads:
    /// `Err(why)` refuses), else down the [`Mode::fallback`] chain, each
    /// step recorded with its reason; with `no_fallback` the first refusal
    /// is the error. A mode this build lacks ([`Mode::built`]) is an error
    /// whatever `no_fallback` says: no kernel makes it available.
    pub fn resolve(
        self,
        features: u64,
        no_fallback: bool,
        mut usable: impl FnMut(Mode) -> std::result::Result<(), String>,
    ) -> crate::Result<Resolved> {
        if !self.built() {
            return Err(crate::Error::ModeUnavailable {
                mode: self.name(),
                why: "this build of ublk-user has no BPF support (its cargo feature `bpf` is off)"
                    .into(),
            });
        }
        let mut fallbacks = Vec::new();
        let mut mode = self;
        loop {
            let why = match mode.missing_feature(features) {
                Some(f) => Err(format!("kernel lacks UBLK_F_{f}")),
                None => usable(mode),
            };
            let why = match why {
                Ok(()) => return Ok(Resolved { mode, fallbacks }),
                Err(why) => why,
            };
            match mode.fallback() {
                Some(to) if !no_fallback => {
                    fallbacks.push(Fallback {
                        from: mode,
                        to,
                        why,
                    });
                    mode = to;
                }
                _ => {
                    return Err(crate::Error::ModeUnavailable {
                        mode: mode.name(),
                        why,
                    })
                }
            }
        }
    }
}

impl std::fmt::Display for Mode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.name())
    }
}

impl std::str::FromStr for Mode {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Mode, String> {
        Mode::from_name(s).ok_or_else(|| {
            let names: Vec<&str> = Mode::ALL.iter().map(|m| m.name()).collect();
            format!("unknown mode {s:?} (one of {})", names.join(", "))
        })
    }
}

/// Where a request's data is, as seen by the target.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum IoBuf {
    /// No data (flush, discard, write-zeroes).
    None,
    /// A server-owned buffer (copy mode): the target may read/write it.
    Addr {
        /// Start of the buffer.
        ptr: *mut u8,
        /// Bytes.
        len: u32,
    },
    /// The request's pages, registered in the ring's buffer table at
    /// `index` (zc mode): usable only by io_uring fixed-buffer ops, the
    /// server never sees the data.
    Fixed {
        /// Index in the ring's buffer table.
        index: u16,
        /// Bytes.
        len: u32,
    },
    /// User copy mode: the data is reachable only through `/dev/ublkcN`
    /// (see [`crate::io::Completion::read_data`]).
    UserCopy {
        /// Bytes.
        len: u32,
    },
}

/// Per-queue state of the data path.
pub(crate) enum DataPath {
    /// Per-tag buffers.
    Copy(copy::CopyBufs),
    /// Auto buffer registration.
    Zc,
    /// No buffers.
    UserCopy,
}

impl DataPath {
    /// The data path of the requests `mode` serves ([`Mode::served`]).
    pub fn new(mode: Mode, depth: u16, max_io: u32) -> io::Result<Self> {
        Ok(match mode.served() {
            Mode::Zc => DataPath::Zc,
            Mode::UserCopy => DataPath::UserCopy,
            Mode::Copy | Mode::Bpf | Mode::BpfKernel => {
                DataPath::Copy(copy::CopyBufs::new(depth, max_io)?)
            }
        })
    }

    /// `ublksrv_io_cmd.addr` for FETCH/COMMIT of `tag`.
    #[inline]
    pub fn cmd_addr(&self, tag: u16) -> u64 {
        match self {
            DataPath::Copy(b) => b.addr(tag) as u64,
            DataPath::Zc | DataPath::UserCopy => 0,
        }
    }

    /// The uring_cmd SQE's own `addr` for FETCH/COMMIT of `tag`.
    #[inline]
    pub fn sqe_addr(&self, tag: u16) -> Option<u64> {
        match self {
            DataPath::Copy(_) | DataPath::UserCopy => None,
            DataPath::Zc => Some(zc::auto_buf_reg(tag)),
        }
    }

    /// The buffer the target serves `iod` with.
    #[inline]
    pub fn request_buf(&self, tag: u16, iod: &IoDesc) -> IoBuf {
        use crate::sys::{UBLK_IO_OP_READ, UBLK_IO_OP_WRITE};
        let op = iod.op();
        if op != UBLK_IO_OP_READ && op != UBLK_IO_OP_WRITE {
            return IoBuf::None;
        }
        let len = iod.nr_sectors << 9;
        match self {
            DataPath::Copy(b) => IoBuf::Addr {
                ptr: b.addr(tag),
                len,
            },
            DataPath::Zc => IoBuf::Fixed { index: tag, len },
            DataPath::UserCopy => IoBuf::UserCopy { len },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const ALL_FEATURES: u64 = u64::MAX;

    #[test]
    fn names_round_trip_and_server_modes_are_four() {
        for m in Mode::ALL {
            assert_eq!(Mode::from_name(m.name()), Some(m));
            assert_eq!(m.name().parse::<Mode>(), Ok(m));
        }
        assert_eq!(
            Mode::SERVER.map(Mode::name),
            ["copy", "zc", "bpf", "bpf-kernel"]
        );
        assert!("fast".parse::<Mode>().unwrap_err().contains("bpf-kernel"));
    }

    #[test]
    fn what_each_mode_needs_and_configures() {
        let f = |m: Mode| m.required_features().iter().fold(0, |a, (b, _)| a | b);
        assert_eq!(f(Mode::Copy), 0);
        assert_eq!(f(Mode::Zc), sys::UBLK_F_AUTO_BUF_REG);
        assert_eq!(f(Mode::UserCopy), sys::UBLK_F_USER_COPY);
        assert_eq!(f(Mode::Bpf), sys::UBLK_F_BPF);
        assert_eq!(
            f(Mode::BpfKernel),
            sys::UBLK_F_BPF | sys::UBLK_F_BPF_KERNEL_IO
        );
        // zc also takes SUPPORT_ZERO_COPY where the kernel has it
        assert_eq!(
            Mode::Zc.device_flags(ALL_FEATURES).unwrap(),
            sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_SUPPORT_ZERO_COPY
        );
        assert_eq!(
            Mode::Zc.device_flags(sys::UBLK_F_AUTO_BUF_REG).unwrap(),
            sys::UBLK_F_AUTO_BUF_REG
        );
        let e = Mode::BpfKernel
            .device_flags(sys::UBLK_F_BPF)
            .unwrap_err()
            .to_string();
        assert_eq!(
            e,
            "kernel lacks UBLK_F_BPF_KERNEL_IO, needed for mode bpf-kernel"
        );
        let bpf: Vec<Mode> = Mode::ALL.into_iter().filter(|m| m.bpf()).collect();
        assert_eq!(bpf, [Mode::Bpf, Mode::BpfKernel]);
        let kio: Vec<Mode> = Mode::ALL.into_iter().filter(|m| m.kernel_io()).collect();
        assert_eq!(kio, [Mode::BpfKernel]);
        let served = Mode::ALL.map(Mode::served);
        assert_eq!(
            served,
            [Mode::Copy, Mode::Zc, Mode::UserCopy, Mode::Copy, Mode::Copy]
        );
        let sparse: Vec<Mode> = Mode::ALL
            .into_iter()
            .filter(|m| m.sparse_buffers())
            .collect();
        assert_eq!(sparse, [Mode::Zc, Mode::Bpf, Mode::BpfKernel]);
    }

    #[test]
    fn fallback_chain() {
        assert_eq!(Mode::BpfKernel.fallback(), Some(Mode::Bpf));
        assert_eq!(Mode::Bpf.fallback(), Some(Mode::Copy));
        for m in [Mode::Copy, Mode::Zc, Mode::UserCopy] {
            assert_eq!(m.fallback(), None);
        }
    }

    #[cfg(feature = "bpf")]
    #[test]
    fn resolve_walks_the_chain_with_reasons() {
        let ok = |_: Mode| Ok(());
        // everything there: no fallback
        let r = Mode::BpfKernel.resolve(ALL_FEATURES, false, ok).unwrap();
        assert_eq!((r.mode, r.fallbacks.len()), (Mode::BpfKernel, 0));
        // BPF but no kernel I/O: one step, naming the feature
        let r = Mode::BpfKernel.resolve(sys::UBLK_F_BPF, false, ok).unwrap();
        assert_eq!(r.mode, Mode::Bpf);
        assert_eq!(
            r.fallbacks,
            [Fallback {
                from: Mode::BpfKernel,
                to: Mode::Bpf,
                why: "kernel lacks UBLK_F_BPF_KERNEL_IO".into()
            }]
        );
        // no BPF at all: two steps
        let r = Mode::BpfKernel.resolve(0, false, ok).unwrap();
        assert_eq!(r.mode, Mode::Copy);
        assert_eq!(
            r.fallbacks
                .iter()
                .map(|f| (f.from, f.to))
                .collect::<Vec<_>>(),
            [(Mode::BpfKernel, Mode::Bpf), (Mode::Bpf, Mode::Copy)]
        );
        // the caller's check refuses (the program does not load)
        let r = Mode::Bpf
            .resolve(ALL_FEATURES, false, |m| {
                if m.bpf() {
                    Err("verifier says no".into())
                } else {
                    Ok(())
                }
            })
            .unwrap();
        assert_eq!(r.mode, Mode::Copy);
        assert_eq!(r.fallbacks[0].why, "verifier says no");
        // --no-fallback: the first refusal is the error
        let e = Mode::BpfKernel
            .resolve(sys::UBLK_F_BPF, true, ok)
            .unwrap_err();
        assert_eq!(
            e.to_string(),
            "mode bpf-kernel is not available: kernel lacks UBLK_F_BPF_KERNEL_IO"
        );
        // zc has no fallback
        let e = Mode::Zc.resolve(0, false, ok).unwrap_err();
        assert!(e.to_string().contains("AUTO_BUF_REG"), "{e}");
    }

    #[cfg(not(feature = "bpf"))]
    #[test]
    fn resolve_refuses_the_bpf_modes_without_the_feature() {
        for m in [Mode::Bpf, Mode::BpfKernel] {
            let e = m.resolve(ALL_FEATURES, false, |_| Ok(())).unwrap_err();
            assert!(e.to_string().contains("cargo feature `bpf` is off"), "{e}");
        }
        assert_eq!(
            Mode::Copy.resolve(0, false, |_| Ok(())).unwrap().mode,
            Mode::Copy
        );
    }
}
