//! The "libubd" case: a storage backend with its own worker threads and
//! its own buffer pool, completing requests out of order from those
//! threads.
//!
//! ```text
//! pool FILE [WORKERS]    # prints /dev/ublkbN; SIGINT/SIGTERM stops it
//! ```
//!
//! The "remote store" is FILE, read and written by the workers with plain
//! `pread`/`pwrite` into buffers from the backend's pool (think: RPC
//! buffers). The device uses `UBLK_F_USER_COPY`
//! ([`Mode::UserCopy`]): a worker moves a request's data between
//! `/dev/ublkcN` and its pool buffer itself
//! ([`Completion::read_data`] / [`Completion::write_data`]), so there is
//! no library-owned bounce buffer and no second copy.
//!
//! The queue threads only hand requests over ([`IoCtx::defer`]); each
//! worker sleeps a pseudo-random few hundred microseconds before it
//! completes, so completions come back out of order. At exit the example
//! prints how many did.

use std::fs::{File, OpenOptions};
use std::os::unix::fs::FileExt;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, Sender};
use std::sync::{Arc, Mutex};
use std::time::Duration;
use ublk_user::logging::{self, LevelFilter};
use ublk_user::{ctrl::Control, Completion, Device, DeviceOptions, IoCtx, Mode};
use ublk_user::{Op, Request, StopSignals, Submit, Target};

/// Largest request, and so the size of a pool buffer.
const MAX_IO: u32 = 1 << 20;

/// What a worker gets: the request and the right to complete it.
struct Job {
    done: Completion,
    /// Arrival order, to count out-of-order completions.
    seq: u64,
}

/// The backend's own buffer pool: buffers are taken and given back.
struct Pool {
    free: Mutex<Vec<Vec<u8>>>,
}

impl Pool {
    fn take(&self) -> Vec<u8> {
        self.free
            .lock()
            .unwrap()
            .pop()
            .unwrap_or_else(|| vec![0u8; MAX_IO as usize])
    }
    fn give(&self, b: Vec<u8>) {
        self.free.lock().unwrap().push(b);
    }
}

struct Backend {
    size: u64,
    jobs: Mutex<Sender<Job>>,
    arrived: AtomicU64,
}

impl Target for Backend {
    fn name(&self) -> &'static str {
        "example-pool"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let done = match ctx.defer() {
            Ok(done) => done,
            Err(errno) => return Submit::Done(errno),
        };
        debug_assert_eq!(done.offset(), req.offset());
        let job = Job {
            done,
            seq: self.arrived.fetch_add(1, Ordering::Relaxed),
        };
        // A send error means the workers are gone: dropping the job's
        // Completion fails the request with -EIO.
        let _ = self.jobs.lock().unwrap().send(job);
        Submit::Deferred
    }
}

/// Counts completions that overtook an earlier-arrived request.
struct Order {
    highest_done: AtomicU64,
    out_of_order: AtomicU64,
    completed: AtomicU64,
}

fn serve(store: &File, pool: &Pool, job: Job) {
    let Job { done, .. } = job;
    let (offset, len) = (done.offset(), done.bytes() as usize);
    let res = match done.op() {
        Op::Read => {
            let mut buf = pool.take();
            let r = store
                .read_exact_at(&mut buf[..len], offset)
                .and_then(|_| done.write_data(0, &buf[..len]));
            pool.give(buf);
            r.map(|_| len)
        }
        Op::Write => {
            let mut buf = pool.take();
            let r = done
                .read_data(0, &mut buf[..len])
                .and_then(|_| store.write_all_at(&buf[..len], offset))
                // FUA: on stable storage before the write is acknowledged
                .and_then(|_| match done.flags().fua() {
                    true => store.sync_data(),
                    false => Ok(()),
                });
            pool.give(buf);
            r.map(|_| len)
        }
        Op::Flush => store.sync_data().map(|_| 0),
        _ => Err(std::io::Error::from_raw_os_error(libc::EOPNOTSUPP)),
    };
    done.complete_io(res);
}

fn worker(
    id: u64,
    jobs: Arc<Mutex<Receiver<Job>>>,
    store: Arc<File>,
    pool: Arc<Pool>,
    order: Arc<Order>,
) {
    let mut rng = 0x9e37_79b9_7f4a_7c15u64 ^ (id + 1);
    loop {
        let job = match jobs.lock().unwrap().recv() {
            Ok(j) => j,
            Err(_) => return, // the target is gone
        };
        // xorshift: 0..511 us of "network latency"
        rng ^= rng << 13;
        rng ^= rng >> 7;
        rng ^= rng << 17;
        std::thread::sleep(Duration::from_micros(rng % 512));
        let seq = job.seq;
        serve(&store, &pool, job);
        let prev = order.highest_done.fetch_max(seq, Ordering::Relaxed);
        if prev > seq {
            order.out_of_order.fetch_add(1, Ordering::Relaxed);
        }
        order.completed.fetch_add(1, Ordering::Relaxed);
    }
}

fn main() -> ublk_user::Result<()> {
    logging::init_stderr("pool-example", LevelFilter::Info);
    // first: the workers and queue threads started below inherit the mask
    let stop = StopSignals::block()?;
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        eprintln!("usage: pool FILE [WORKERS]");
        std::process::exit(2)
    });
    let workers: u64 = args.next().and_then(|s| s.parse().ok()).unwrap_or(4);
    let store = OpenOptions::new().read(true).write(true).open(&path)?;
    let size = store.metadata()?.len() & !511;
    let store = Arc::new(store);

    let (tx, rx) = mpsc::channel();
    let rx = Arc::new(Mutex::new(rx));
    let pool = Arc::new(Pool {
        free: Mutex::new(Vec::new()),
    });
    let order = Arc::new(Order {
        highest_done: AtomicU64::new(0),
        out_of_order: AtomicU64::new(0),
        completed: AtomicU64::new(0),
    });
    let handles: Vec<_> = (0..workers)
        .map(|i| {
            let (rx, store, pool, order) = (rx.clone(), store.clone(), pool.clone(), order.clone());
            std::thread::spawn(move || worker(i, rx, store, pool, order))
        })
        .collect();

    let backend = Arc::new(Backend {
        size,
        jobs: Mutex::new(tx),
        arrived: AtomicU64::new(0),
    });
    let opts = DeviceOptions {
        queues: 2,
        depth: 64,
        max_io_bytes: MAX_IO,
        mode: Mode::UserCopy,
        ..Default::default()
    };
    let mut dev = Device::create(Control::open()?, backend, opts)?;
    dev.start()?;
    println!("{}", dev.bdev_path());
    stop.wait()?;
    // The workers answer what is in flight meanwhile. stop() drops the
    // device's Arc of the target, the last one (we kept no clone), and with
    // it the job sender: the workers' recv() fails and they return.
    dev.stop()?;
    for h in handles {
        let _ = h.join();
    }
    store.sync_all()?;
    eprintln!(
        "pool-example: {} requests completed by {workers} workers, {} out of order, {} pool buffers",
        order.completed.load(Ordering::Relaxed),
        order.out_of_order.load(Ordering::Relaxed),
        pool.free.lock().unwrap().len()
    );
    Ok(())
}
