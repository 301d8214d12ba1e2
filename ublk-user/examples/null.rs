//! A null device whose one queue is served by the program's own main
//! thread: the library starts no thread at all.
//!
//! ```text
//! null [SIZE_MIB]        # prints /dev/ublkbN; SIGINT/SIGTERM stops it
//! ```
//!
//! Shows [`Device::take_queues`], [`QueueSetup::open`] on the serving
//! thread, [`Queue::run_once`] and the non-blocking
//! [`Device::request_stop`] a single-threaded backend needs; a stop
//! signal ([`StopSignals`]) wakes the queue's wait through
//! [`Queue::wake_on`]. Writes are dropped; reads return whatever the copy buffer holds (nothing fills it).

use std::os::fd::AsFd;
use std::sync::Arc;
use ublk_user::logging::{self, LevelFilter};
use ublk_user::{ctrl::Control, Device, DeviceOptions, IoCtx};
use ublk_user::{Op, Request, StopSignals, Submit, Target};

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
            Op::Read | Op::Write => Submit::Done(req.bytes() as i32),
            Op::Flush => Submit::Done(0),
            _ => Submit::unsupported(),
        }
    }
}

fn main() -> ublk_user::Result<()> {
    logging::init_stderr("null-example", LevelFilter::Info);
    let mib: u64 = std::env::args()
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or(256);
    let stop = StopSignals::block()?;
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
    // The queue's wait also ends when a stop signal is pending.
    queue.wake_on(stop.as_fd())?;
    let mut stopping = false;
    loop {
        if !stopping && stop.take()?.is_some() {
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
