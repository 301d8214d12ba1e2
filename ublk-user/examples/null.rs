//! A null device whose one queue is served by the program's own main
//! thread: the library starts no thread at all.
//!
//! ```text
//! null [SIZE_MIB]        # prints /dev/ublkbN; SIGINT/SIGTERM stops it
//! ```
//!
//! Shows [`Device::take_queues`], [`QueueSetup::open`] on the serving
//! thread, [`Queue::run_once`] and the non-blocking
//! [`Device::request_stop`] a single-threaded backend needs. Writes are
//! dropped; reads return whatever the copy buffer holds (nothing fills it).

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use ublk_user::target::{Request, Submit, Target};
use ublk_user::{ctrl::Control, sys, Device, DeviceOptions, IoCtx};

struct Null {
    size: u64,
}

impl Target for Null {
    fn name(&self) -> &'static str {
        "example-null"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn queue_io(&self, _ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        match req.op {
            sys::UBLK_IO_OP_READ | sys::UBLK_IO_OP_WRITE => Submit::Done(req.bytes() as i32),
            sys::UBLK_IO_OP_FLUSH => Submit::Done(0),
            _ => Submit::Done(-libc::EOPNOTSUPP),
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

/// SIGINT/SIGTERM set STOP and interrupt the queue's wait (no SA_RESTART).
fn install_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: a zeroed sigaction with a handler that only stores to an
        // atomic is async-signal-safe; the struct outlives the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn main() -> ublk_user::Result<()> {
    ublk_user::logging::init_stderr("null-example", log::LevelFilter::Info);
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    install_handlers();
    let opts = DeviceOptions {
        queues: 1,
        depth: 64,
        ..Default::default()
    };
    let mut dev = Device::create(Control::open()?, Arc::new(Null { size: mib << 20 }), opts)?;
    let mut setups = dev.take_queues()?;
    // Open on this thread (it fetches every tag), then start: start() finds
    // the queue ready and returns once /dev/ublkbN exists.
    let mut queue = setups.remove(0).open()?;
    dev.start()?;
    println!("{}", dev.bdev_path());
    let mut stopping = false;
    loop {
        if STOP.load(Ordering::Relaxed) && !stopping {
            // STOP_DEV runs in the background; keep serving until the queue
            // has answered everything and the driver aborted every tag.
            dev.request_stop()?;
            stopping = true;
        }
        let running = queue
            .run_once(true)
            .map_err(|source| ublk_user::Error::Queue { q_id: 0, source })?;
        if !running {
            break;
        }
    }
    let stats = queue.stats();
    drop(queue);
    dev.stop()?;
    eprintln!(
        "null-example: {} requests, {} errors",
        stats.requests, stats.errors
    );
    Ok(())
}
