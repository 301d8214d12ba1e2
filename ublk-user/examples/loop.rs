//! A file-backed device written against the [`Target`] trait, with the
//! library's queue threads and the safe SQE builders of [`IoCtx`].
//!
//! ```text
//! loop FILE [copy|zc]    # prints /dev/ublkbN; SIGINT/SIGTERM stops it
//! ```
//!
//! The file is opened with O_DIRECT. FUA writes go out with `RWF_DSYNC`,
//! FLUSH becomes `fdatasync`, DISCARD punches a hole. The library's own
//! [`ublk_user::target::LoopTarget`] does the same with more care
//! (block devices, logical block size probing, write-zeroes).

use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::OpenOptionsExt;
use std::sync::Arc;
use ublk_user::logging::{self, LevelFilter};
use ublk_user::{ctrl::Control, sys, Device, DeviceOptions, IoCtx, Mode};
use ublk_user::{Op, Request, StopSignals, Submit, Target};

struct FileTarget {
    file: File,
    size: u64,
}

impl Target for FileTarget {
    fn name(&self) -> &'static str {
        "example-loop"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn files(&self) -> Vec<RawFd> {
        // fixed file 0 in every queue ring
        vec![self.file.as_raw_fd()]
    }
    fn params(&self, p: &mut sys::Params) {
        // O_DIRECT on the backing file: 4 KiB logical blocks are safe
        // everywhere (tmpfs, 4Kn disks).
        p.basic.logical_bs_shift = 12;
        p.basic.physical_bs_shift = 12;
        p.basic.io_min_shift = 12;
        p.types |= sys::UBLK_PARAM_TYPE_DISCARD;
        p.discard = sys::ParamDiscard {
            discard_granularity: 4096,
            max_discard_sectors: u32::MAX >> 9,
            max_discard_segments: 1,
            ..Default::default()
        };
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let off = req.offset();
        let r = match req.op {
            Op::Read => ctx.read(req, 0, off),
            Op::Write => {
                let fua = req.flags.fua();
                ctx.write(req, 0, off, if fua { libc::RWF_DSYNC } else { 0 })
            }
            Op::Flush => ctx.fsync(0, true),
            Op::Discard => ctx.fallocate(
                0,
                off,
                req.bytes() as u64,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
            ),
            _ => return Submit::unsupported(),
        };
        match r {
            Ok(()) => Submit::Queued,
            Err(errno) => Submit::Done(errno),
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}

fn main() -> ublk_user::Result<()> {
    logging::init_stderr("loop-example", LevelFilter::Info);
    // first: every thread started from here on has SIGINT/SIGTERM blocked
    let stop = StopSignals::block()?;
    let mut args = std::env::args().skip(1);
    let path = args.next().unwrap_or_else(|| {
        eprintln!("usage: loop FILE [copy|zc]");
        std::process::exit(2)
    });
    let mode = match args.next().as_deref() {
        None | Some("copy") => Mode::Copy,
        Some("zc") => Mode::Zc,
        Some(m) => {
            eprintln!("unknown mode {m} (copy or zc)");
            std::process::exit(2)
        }
    };
    let file = OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(&path)?;
    let size = file.metadata()?.len() & !4095;
    let opts = DeviceOptions {
        queues: 2,
        mode,
        ..Default::default()
    };
    let mut dev = Device::create(Control::open()?, Arc::new(FileTarget { file, size }), opts)?;
    dev.start()?; // two queue threads, /dev/ublkbN is a block device now
    println!("{}", dev.bdev_path());
    stop.wait()?;
    let stats = dev.stop()?; // STOP_DEV, drain, flush the file, DEL_DEV
    let n: u64 = stats.iter().map(|s| s.requests).sum();
    eprintln!("loop-example: {n} requests over {} queues", stats.len());
    Ok(())
}
