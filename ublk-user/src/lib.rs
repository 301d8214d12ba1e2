//! `ublk-user`: a ublk server library and the `ublk-user` binary on top.
//!
//! Data flow, by module:
//!
//! * [`sys`]: the kernel's uapi (structs, constants, ioctl-encoded commands);
//! * [`ctrl`]: the control plane on `/dev/ublk-control` (ADD_DEV, SET_PARAMS,
//!   START_DEV, STOP_DEV, DEL_DEV, GET_DEV_INFO, GET_FEATURES, REG/UNREG_BPF_PROG);
//! * [`device`]: a device's life cycle and its queue threads;
//! * [`io`]: one thread + one io_uring per queue: a request arrives
//!   (FETCH/COMMIT CQE) → the device's [`Mode`] says where its data is
//!   (copy buffers, zero-copy fixed buffers, or redirected by BPF) → [`target`] serves it on the same ring →
//!   COMMIT_AND_FETCH; BPF-redirected requests are committed from the
//!   backing CQE (`io::redirect`);
//! * the `ublk-user` command is another crate (`ublk-user-cli`), so a
//!   library user compiles none of its dependencies.
//!
//! Backends that are not a file: a target can complete a request later,
//! from any thread ([`IoCtx::defer`] → [`Completion`]); with
//! [`Mode::UserCopy`] it moves the data between `/dev/ublkcN` and its
//! own buffers, and with [`Mode::Copy`] a target that serves from memory
//! has the request's data as a slice ([`IoCtx::data`]); [`Device::take_queues`] lets it run the queue loops on its
//! own threads ([`Queue::run_once`]) so that the library starts none.
//! Errors are [`Error`]; diagnostics go to the [`log`] crate.
//! [`StopSignals`] stops a server on SIGINT/SIGTERM without `unsafe`.
//!
//! Which requests a target receives, and what keeps the queue threads and
//! a target's workers alive: see [`Target`].
//!
//! Runnable examples, each run under fio verify by the VM test
//! `15-examples`: `examples/null.rs` (one queue on the caller's thread),
//! `examples/loop.rs` (a file target on [`IoCtx`]'s builders),
//! `examples/pool.rs` (worker threads, the backend's own buffer pool, user
//! copy, completions out of order).
//!
//! # Example: a device with your own target
//!
//! ```no_run
//! use std::sync::Arc;
//! use ublk_user::{ctrl::Control, Device, DeviceOptions, IoCtx, Mode};
//! use ublk_user::{Op, Request, StopSignals, Submit, Target};
//!
//! /// Reads return zeroes, writes are dropped.
//! struct Zero;
//! impl Target for Zero {
//!     fn name(&self) -> &'static str { "zero" }
//!     fn size(&self) -> u64 { 1 << 30 }
//!     fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
//!         match req.op {
//!             Op::Read => match ctx.data(req) {
//!                 Some(buf) => {
//!                     buf.fill(0);
//!                     Submit::Done(req.bytes() as i32)
//!                 }
//!                 None => Submit::unsupported(), // not Mode::Copy
//!             },
//!             Op::Write => Submit::Done(req.bytes() as i32),
//!             Op::Flush => Submit::Done(0),
//!             _ => Submit::unsupported(),
//!         }
//!     }
//! }
//!
//! fn main() -> ublk_user::Result<()> {
//!     let stop = StopSignals::block()?; // before any thread starts
//!     let opts = DeviceOptions { mode: Mode::Copy, ..Default::default() };
//!     let mut dev = Device::create(Control::open()?, Arc::new(Zero), opts)?;
//!     dev.start()?; // /dev/ublkbN is live now
//!     println!("{}", dev.bdev_path());
//!     stop.wait()?; // SIGINT or SIGTERM
//!     dev.stop()?; // STOP_DEV, join queues, flush, DEL_DEV
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]

/// The crate README's example is compiled (not run) as a doc test, so that
/// what a new user copies from it builds.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
pub struct ReadmeDoctests;

#[cfg(feature = "bpf")]
pub mod bpf;
pub mod bpf_syscall;
pub mod ctrl;
pub mod device;
pub mod error;
pub mod io;
pub mod logging;
mod mapping;
pub mod mode;
pub mod stop;
#[allow(missing_docs)] // mirrors include/uapi/linux/ublk_cmd.h item by item
pub mod sys;
pub mod target;

pub use device::{BpfHook, Device, DeviceOptions, QueueHookInfo};
pub use error::{Error, Result};
pub use io::{Completion, IoCtx, Queue, QueueSetup};
pub use mode::{Mode, Resolved};
pub use stop::StopSignals;
pub use target::{IoFlags, Op, Request, Submit, Target};
