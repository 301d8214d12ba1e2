//! Serving a device: create (or take over) and start it, record it, report
//! it ready, wait for a stop signal or the device's end, stop it.
//!
//! In the background (`add` and `recover` without --foreground) the server
//! is this command again ([`spawn`]): the running binary with the same
//! arguments and [`SERVER_MODE_ENV`] set to the mode the caller chose (so
//! its fallback notes are the caller's, on the caller's stderr). It starts
//! a session of its own, its stdin is /dev/null, its stderr is appended to
//! `/run/ublk-user/server.log`, and its stdout is a pipe to the caller, on
//! which it reports one line, `OK <bdev>` or `ERR <message>`, before it
//! points stdout at /dev/null too.

use super::args::CommonArgs;
use super::meta::{self, Meta};
use super::mode::BpfFactory;
use super::{one_line, Record};
use anyhow::{bail, Context, Result};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;
use ublk_user::ctrl::Control;
use ublk_user::device::{Device, DeviceOptions};
use ublk_user::target::Target;
use ublk_user::{Mode, StopSignals};

/// Set in a background server's environment: the mode to serve in.
pub const SERVER_MODE_ENV: &str = "UBLK_USER_SERVER_MODE";

/// In a background server started by [`spawn`]: the mode it was given.
pub fn given_mode() -> Option<Result<Mode>> {
    let m = std::env::var(SERVER_MODE_ENV).ok()?;
    Some(
        m.parse::<Mode>()
            .map_err(|e| anyhow::anyhow!("{SERVER_MODE_ENV}: {e}")),
    )
}

/// Start the background server in `mode` and wait for its report: print
/// the device's path, or return its error.
pub fn spawn(mode: Mode) -> Result<()> {
    std::fs::create_dir_all(meta::RUN_DIR)
        .with_context(|| format!("cannot create {}", meta::RUN_DIR))?;
    let log_path = format!("{}/server.log", meta::RUN_DIR);
    let log = OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open {log_path}"))?;
    let exe = std::env::current_exe().context("the path of this program")?;
    let mut child = Command::new(exe)
        .args(std::env::args_os().skip(1))
        .env(SERVER_MODE_ENV, mode.name())
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .spawn()
        .context("starting the server")?;
    let out = child.stdout.take().context("the server's stdout")?;
    let mut line = String::new();
    // EOF (an empty line) if the server died before reporting
    let _ = BufReader::new(out).read_line(&mut line);
    let line = line.trim_end();
    if let Some(p) = line.strip_prefix("OK ") {
        println!("{p}");
        Ok(())
    } else if let Some(e) = line.strip_prefix("ERR ") {
        bail!("{e}")
    } else {
        bail!("the server exited before the device was ready (see {log_path})")
    }
}

/// How the server says it is ready (or why it is not).
pub enum Report {
    /// --foreground: print the device's path on stdout.
    Foreground,
    /// A background server: one line to the caller on stdout.
    Caller,
}

impl Report {
    /// In a background server, before anything else: leave the caller's
    /// session (its terminal's signals are not ours).
    pub fn caller() -> Result<Self> {
        rustix::process::setsid().context("setsid")?;
        Ok(Report::Caller)
    }

    fn ready(&self, bdev: &str) -> Result<()> {
        match self {
            Report::Foreground => println!("{bdev}"),
            Report::Caller => Self::tell(&format!("OK {bdev}"))?,
        }
        Ok(())
    }

    fn failed(&self, e: &anyhow::Error) {
        if let Report::Caller = self {
            let _ = Self::tell(&format!("ERR {}", one_line(e)));
        }
    }

    /// One line to the caller, then stdout is /dev/null: the caller reads
    /// to the end of its pipe's first line only, and nothing later may
    /// block on it.
    fn tell(line: &str) -> Result<()> {
        let mut out = std::io::stdout().lock();
        writeln!(out, "{}", line.replace('\n', " "))?;
        out.flush()?;
        let null = File::options().write(true).open("/dev/null")?;
        rustix::stdio::dup2_stdout(&null).context("stdout to /dev/null")?;
        Ok(())
    }
}

/// What the server needs beyond the target and the device options.
pub struct ServeInfo {
    /// The options as given (the requested mode, for the record).
    pub common: CommonArgs,
    pub bpf: Option<BpfFactory>,
    /// Take over this existing device (user recovery) instead of adding one.
    pub recover: Option<u32>,
    pub rec: Record,
}

/// Create, start, and serve the device until SIGINT/SIGTERM/SIGHUP or until
/// the device is stopped from outside; then stop it cleanly.
pub fn serve(
    target: Arc<dyn Target>,
    opts: DeviceOptions,
    mut info: ServeInfo,
    report: Report,
) -> Result<()> {
    let bpf = info.bpf.take();
    // before any thread starts: the queue threads inherit the mask
    let stop = StopSignals::block_with(&[libc::SIGHUP])?;
    let started = (|| -> Result<(Device, u32)> {
        let ctl = Control::open()?;
        let mut dev = match info.recover {
            Some(id) => Device::recover(ctl, target.clone(), opts, id)?,
            None => Device::create(ctl, target.clone(), opts)?,
        };
        let mut stats_map_id = 0;
        if let Some(f) = bpf {
            let (hook, id) = f()?;
            dev.set_bpf_hook(hook);
            stats_map_id = id;
        }
        dev.start()?;
        Ok((dev, stats_map_id))
    })();
    let (dev, bpf_stats_map_id) = started.inspect_err(|e| report.failed(e))?;
    let id = dev.id();
    let m = Meta {
        id,
        pid: rustix::process::getpid().as_raw_nonzero().get(),
        target: target.name().into(),
        backing: target.backing_path().unwrap_or_default(),
        size: target.size(),
        queues: dev.info().nr_hw_queues,
        depth: dev.info().queue_depth,
        mode: dev.options().mode.name().into(),
        bdev: dev.bdev_path(),
        bpf_stats_map_id,
        files: info.rec.files.clone(),
        chunk: info.rec.chunk,
        ..Meta::default()
    }
    .with_add_args(&info.common);
    if let Err(e) = m.write() {
        eprintln!("ublk-user: cannot write {}: {e}", meta::path(id).display());
    }
    if let Err(e) = report.ready(&dev.bdev_path()) {
        // the caller is gone: serve anyway, as a forked server did
        eprintln!("ublk-user: device {id}: cannot report it ready: {e:#}");
    }
    // Device::start returned once /dev/ublkbN is a block device
    while stop
        .wait_timeout(Some(Duration::from_millis(200)))?
        .is_none()
    {
        if dev.any_queue_exited() {
            break;
        }
    }
    let r = dev.stop().map_err(anyhow::Error::from);
    Meta::remove(id);
    if let Err(e) = &r {
        eprintln!("ublk-user: device {id}: stop: {}", one_line(e));
    }
    r.map(|_| ())
}
