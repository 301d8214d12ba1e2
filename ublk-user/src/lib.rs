//! `ublk-user`: a ublk server library and the `ublk-user` binary on top.
//!
//! Data flow, by module:
//!
//! * [`sys`]: the kernel's uapi (structs, constants, ioctl-encoded commands);
//! * [`ctrl`]: the control plane on `/dev/ublk-control` (ADD_DEV, SET_PARAMS,
//!   START_DEV, STOP_DEV, DEL_DEV, GET_DEV_INFO, GET_FEATURES, REG/UNREG_BPF_PROG);
//! * [`device`]: a device's life cycle and its queue threads;
//! * [`io`]: one thread + one io_uring per queue: a request arrives
//!   (FETCH/COMMIT CQE) → [`mode`] says where its data is (copy buffers or
//!   zero-copy fixed buffers) → [`target`] serves it on the same ring →
//!   COMMIT_AND_FETCH; BPF-redirected requests are committed from the
//!   backing CQE (`io::redirect`);
//! * the `ublk-user` command is the binary (`src/main.rs`, `src/cli/`), not
//!   part of this library.
//!
//! Backends that are not a file: a target can complete a request later,
//! from any thread ([`IoCtx::defer`] → [`Completion`]); with
//! [`DataMode::UserCopy`] it moves the data between `/dev/ublkcN` and its
//! own buffers; [`Device::take_queues`] lets it run the queue loops on its
//! own threads ([`Queue::run_once`]) so that the library starts none.
//! Errors are [`Error`]; diagnostics go to the [`log`] crate.
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
//! use ublk_user::{ctrl::Control, device::{Device, DeviceOptions}, io::IoCtx, mode::DataMode};
//! use ublk_user::target::{Request, Submit, Target};
//!
//! /// Answers every request at once: reads return the copy buffer as is.
//! struct Zero;
//! impl Target for Zero {
//!     fn name(&self) -> &'static str { "zero" }
//!     fn size(&self) -> u64 { 1 << 30 }
//!     fn queue_io(&self, _ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
//!         match req.op {
//!             ublk_user::sys::UBLK_IO_OP_READ | ublk_user::sys::UBLK_IO_OP_WRITE => Submit::Done(req.bytes() as i32),
//!             _ => Submit::Done(0),
//!         }
//!     }
//! }
//!
//! fn main() -> ublk_user::Result<()> {
//!     let opts = DeviceOptions { mode: DataMode::Copy, ..Default::default() };
//!     let mut dev = Device::create(Control::open()?, Arc::new(Zero), opts)?;
//!     dev.start()?; // /dev/ublkbN is live now
//!     println!("{}", dev.bdev_path());
//!     std::thread::sleep(std::time::Duration::from_secs(10));
//!     dev.stop()?; // STOP_DEV, join queues, flush, DEL_DEV
//!     Ok(())
//! }
//! ```

#![warn(missing_docs)]

#[cfg(feature = "bpf")]
pub mod bpf;
pub mod ctrl;
pub mod device;
pub mod error;
pub mod io;
pub mod logging;
pub mod mode;
#[allow(missing_docs)] // mirrors include/uapi/linux/ublk_cmd.h item by item
pub mod sys;
pub mod target;

pub use device::{BpfHook, Device, DeviceOptions, QueueHookInfo};
pub use error::{Error, Result};
pub use io::{Completion, IoCtx, Queue, QueueSetup};
pub use mode::DataMode;
