//! The `ublk-user` command: a thin user of the library (part of the
//! binary, not of the library's API).
//!
//! The daemonized server (every `add` and `recover` without --foreground)
//! appends its stderr (errors, the BPF log with --bpf-log) to
//! `/run/ublk-user/server.log` ([`meta::RUN_DIR`]); its stdin and stdout
//! are /dev/null. The fallback note of [`choose_mode`] is printed before
//! the fork, on the caller's stderr; a start-up error goes to both.

pub mod args;
pub mod json;
pub mod meta;

use anyhow::{bail, Context, Result};
use args::{AddTarget, Cli, Command, CommonArgs};
#[cfg(feature = "bpf")]
use json::BpfCounters;
use json::{DeviceJson, KernelCounters, ServerCounters};
use meta::Meta;
use std::io::{Read, Write};
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::sync::Arc;
use std::time::{Duration, Instant};
use ublk_user::ctrl::{self, Control};
use ublk_user::device::{BpfHook, Device, DeviceOptions};
use ublk_user::io::counters::{self, Counter};
use ublk_user::sys;
use ublk_user::target::{LoopTarget, NullTarget, Qcow2Target, StripeTarget, Target};
use ublk_user::Mode;

/// Run the CLI; returns the process exit code. Errors are printed as one line.
pub fn main_with(cli: Cli) -> i32 {
    let r = match cli.cmd {
        // A combination clap cannot check is a usage error (exit 2) too.
        Command::Add(a) => add(a.resolve().unwrap_or_else(|e| e.exit())),
        Command::List { id, json } => list(id, json),
        Command::Del(d) => del(d.id, d.all),
        Command::Recover { id, foreground } => recover(id, foreground),
        Command::Modes { available, json } => modes(available, json),
        Command::Features { json } => features(json),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ublk-user: {}", one_line(&e));
            1
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn require_root() -> Result<()> {
    // SAFETY: geteuid has no preconditions.
    if unsafe { libc::geteuid() } != 0 {
        bail!("must be run as root (ublk device management needs CAP_SYS_ADMIN)");
    }
    Ok(())
}

/// Builds the BPF loader's hook in the server process (after fork); also
/// returns the id of the program's stats map (for `list`).
pub type BpfFactory = Box<dyn FnOnce() -> Result<(Box<dyn BpfHook>, u32)>>;

/// Beyond the kernel's features ([`Mode::resolve`] checks those): can the
/// BPF program be loaded here (refused by the verifier, no
/// `BPF_PROG_TYPE_UBLK`)? `Err` says why not.
#[cfg(feature = "bpf")]
fn program_usable(mode: Mode, log: bool) -> std::result::Result<(), String> {
    if mode.bpf() {
        ublk_user::bpf::probe(log)?;
    }
    Ok(())
}

/// The BPF loader of a BPF mode, run in the server process.
#[cfg(feature = "bpf")]
fn bpf_factory(log: bool, max_clusters: u32) -> BpfFactory {
    Box::new(move || {
        let (prog, hook) = ublk_user::bpf::load_hook(log, max_clusters)?;
        Ok((hook, prog.stats_map_id()))
    })
}

/// The effective mode for `--mode` ([`Mode::resolve`]: the requested one if
/// the kernel and this build offer it, else down the fallback chain, each
/// step noted on stderr, or an error with `--no-fallback`) and, for a BPF
/// mode, its loader.
///
/// `max_clusters`: the bound of the program's cluster map (a qcow2 image's
/// clusters; 1 for the other targets).
fn choose_mode(
    common: &CommonArgs,
    features: u64,
    max_clusters: u32,
) -> Result<(Mode, Option<BpfFactory>)> {
    #[cfg(feature = "bpf")]
    let usable = |m: Mode| program_usable(m, common.bpf_log);
    #[cfg(not(feature = "bpf"))]
    let usable = |_: Mode| Ok(());
    let res = common
        .mode
        .resolve(features, common.no_fallback, usable)
        .with_context(|| format!("--mode {}", common.mode))?;
    for f in &res.fallbacks {
        eprintln!(
            "ublk-user: --mode {} is not available ({}); falling back to --mode {}",
            f.from, f.why, f.to
        );
    }
    #[cfg(feature = "bpf")]
    let bpf = res
        .mode
        .bpf()
        .then(|| bpf_factory(common.bpf_log, max_clusters));
    #[cfg(not(feature = "bpf"))]
    let bpf = {
        let _ = max_clusters;
        None // resolve refuses the BPF modes in this build
    };
    Ok((res.mode, bpf))
}

fn add(t: AddTarget) -> Result<()> {
    // Before any io_uring exists in this process: see the function's doc.
    #[cfg(feature = "bpf")]
    ublk_user::bpf::prime_feature_probe();
    let mut rec = Record::default();
    let (target, common): (Arc<dyn Target>, CommonArgs) = match t {
        AddTarget::Loop { file, common } => {
            require_root()?;
            (Arc::new(LoopTarget::open(&file, common.buffered)?), common)
        }
        AddTarget::Null { size, common } => {
            require_root()?;
            (Arc::new(NullTarget::new(size)?), common)
        }
        AddTarget::Stripe {
            files,
            chunk,
            common,
        } => {
            require_root()?;
            let t = StripeTarget::open(&files, chunk, common.buffered)?;
            rec.files = files.iter().map(|f| f.display().to_string()).collect();
            rec.chunk = chunk;
            (Arc::new(t), common)
        }
        AddTarget::Qcow2 { file, common } => {
            require_root()?;
            (Arc::new(Qcow2Target::open(&file, common.buffered)?), common)
        }
    };
    start_server(target, common, None, rec)
}

/// A new server for device `id` (added with --recovery), from what `add`
/// recorded: the target and its files and options, the requested mode and
/// its options (--no-fallback, --bpf-log), --reissue; queues and depth are
/// the device's.
fn recover(id: u32, foreground: bool) -> Result<()> {
    #[cfg(feature = "bpf")]
    ublk_user::bpf::prime_feature_probe();
    require_root()?;
    let m = Meta::read(id).ok_or_else(|| {
        anyhow::anyhow!(
            "no record of device {id} in {} (was it added by ublk-user?)",
            meta::RUN_DIR
        )
    })?;
    let info = Control::open()?.get_dev_info(id)?;
    let target: Arc<dyn Target> = match m.target.as_str() {
        "loop" => Arc::new(LoopTarget::open(
            std::path::Path::new(&m.backing),
            m.buffered,
        )?),
        "stripe" => {
            let files: Vec<std::path::PathBuf> = m.files.iter().map(Into::into).collect();
            Arc::new(StripeTarget::open(&files, m.chunk, m.buffered)?)
        }
        "qcow2" => Arc::new(Qcow2Target::open(
            std::path::Path::new(&m.backing),
            m.buffered,
        )?),
        "null" => Arc::new(NullTarget::new(m.size)?),
        t => bail!("device {id}: unknown target {t:?}"),
    };
    let common = CommonArgs {
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
        foreground,
        ..m.add_args()
            .map_err(|e| anyhow::anyhow!("device {id}: {e}"))?
    };
    let rec = Record {
        files: m.files,
        chunk: m.chunk,
    };
    start_server(target, common, Some(id), rec)
}

/// What `recover` needs beyond the target's own listing and the
/// [`CommonArgs`]: the stripe's files and chunk.
#[derive(Clone, Debug, Default)]
struct Record {
    files: Vec<String>,
    chunk: u64,
}

/// Choose the data mode, then serve (in the background unless
/// `--foreground`): a new device, or with `recover` device `recover`.
fn start_server(
    target: Arc<dyn Target>,
    common: CommonArgs,
    recover: Option<u32>,
    rec: Record,
) -> Result<()> {
    let mut ctl = Control::open()?;
    let features = ctl.get_features()?;
    drop(ctl);
    let max_clusters = target
        .bpf_layout()
        .and_then(|l| l.clusters)
        .map(|c| u32::try_from(target.size().div_ceil(1 << c.shift())).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let (mode, bpf) = choose_mode(&common, features, max_clusters)?;
    let opts = DeviceOptions {
        id: common.id,
        queues: common.queues,
        depth: common.depth,
        mode,
        recovery: common.recovery,
        reissue: common.reissue,
        stats_dir: Some(meta::RUN_DIR.into()),
        ..Default::default()
    };
    ublk_user::device::validate_options(&opts)?;
    ublk_user::device::negotiate_flags(&opts, features)?;
    let foreground = common.foreground;
    let info = ServeInfo {
        common,
        bpf,
        recover,
        rec,
    };
    if foreground {
        return serve(target, opts, info, None);
    }
    daemonize(target, opts, info)
}

struct ServeInfo {
    /// The options as given (the requested mode, for the record).
    common: CommonArgs,
    bpf: Option<BpfFactory>,
    /// Take over this existing device (user recovery) instead of adding one.
    recover: Option<u32>,
    rec: Record,
}

/// Fork; the child serves and reports "OK <bdev>" or "ERR <message>" through
/// a pipe; the parent prints the device path or the error.
fn daemonize(target: Arc<dyn Target>, opts: DeviceOptions, info: ServeInfo) -> Result<()> {
    let mut fds = [0; 2];
    // SAFETY: pipe2 writes two fds into our array.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } < 0 {
        bail!("pipe: {}", std::io::Error::last_os_error());
    }
    // SAFETY: both fds were just created and are owned by nobody else.
    let (rd, wr) = unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    let _ = std::io::stdout().flush();
    let _ = std::io::stderr().flush();
    // SAFETY: the process is single-threaded here (no queue threads yet), so
    // the child may keep running Rust code after fork.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        bail!("fork: {}", std::io::Error::last_os_error());
    }
    if pid == 0 {
        drop(rd);
        detach_stdio();
        let code = match serve(target, opts, info, Some(wr)) {
            Ok(()) => 0,
            Err(_) => 1,
        };
        std::process::exit(code);
    }
    drop(wr);
    drop(target);
    let mut f = std::fs::File::from(rd);
    let mut msg = String::new();
    let _ = f.read_to_string(&mut msg);
    let line = msg.lines().next().unwrap_or("");
    if let Some(p) = line.strip_prefix("OK ") {
        println!("{p}");
        Ok(())
    } else if let Some(e) = line.strip_prefix("ERR ") {
        bail!("{e}")
    } else {
        bail!("the server exited before the device was ready")
    }
}

/// In the daemon: new session, stdin from /dev/null, stdout/stderr to the log.
fn detach_stdio() {
    let _ = std::fs::create_dir_all(meta::RUN_DIR);
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(format!("{}/server.log", meta::RUN_DIR));
    let null = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/null");
    // SAFETY: setsid/dup2 on fds we own; the sources stay open until after dup2.
    unsafe {
        libc::setsid();
        if let Ok(n) = &null {
            libc::dup2(n.as_raw_fd(), 0);
            libc::dup2(n.as_raw_fd(), 1);
            libc::dup2(n.as_raw_fd(), 2);
        }
        if let Ok(l) = &log {
            libc::dup2(l.as_raw_fd(), 2);
        }
    }
}

fn notify(fd: &Option<OwnedFd>, msg: &str) {
    if let Some(fd) = fd {
        let s = format!("{}\n", msg.replace('\n', " "));
        // SAFETY: writes our own bytes to an fd we own.
        unsafe { libc::write(fd.as_raw_fd(), s.as_ptr() as *const libc::c_void, s.len()) };
    }
}

fn signal_set() -> libc::sigset_t {
    // SAFETY: sigset manipulation on a local, initialised by sigemptyset.
    unsafe {
        let mut set: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut set);
        libc::sigaddset(&mut set, libc::SIGINT);
        libc::sigaddset(&mut set, libc::SIGTERM);
        libc::sigaddset(&mut set, libc::SIGHUP);
        set
    }
}

/// Create, start, and serve the device until SIGINT/SIGTERM/SIGHUP or until
/// the device is stopped from outside; then stop it cleanly.
fn serve(
    target: Arc<dyn Target>,
    opts: DeviceOptions,
    mut info: ServeInfo,
    ready: Option<OwnedFd>,
) -> Result<()> {
    let bpf = info.bpf.take();
    let set = signal_set();
    // SAFETY: blocks the stop signals in this thread (and so in the queue
    // threads it spawns); they are taken synchronously with sigtimedwait.
    unsafe { libc::pthread_sigmask(libc::SIG_BLOCK, &set, std::ptr::null_mut()) };
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
    let (dev, bpf_stats_map_id) = match started {
        Ok(d) => d,
        Err(e) => {
            notify(&ready, &format!("ERR {}", one_line(&e)));
            if ready.is_none() {
                return Err(e);
            }
            eprintln!("ublk-user: {}", one_line(&e));
            return Err(e);
        }
    };
    let id = dev.id();
    wait_bdev_node(&dev.bdev_path());
    let m = Meta {
        id,
        // SAFETY: getpid has no preconditions.
        pid: unsafe { libc::getpid() },
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
    if ready.is_some() {
        notify(&ready, &format!("OK {}", dev.bdev_path()));
        drop(ready);
    } else {
        println!("{}", dev.bdev_path());
        let _ = std::io::stdout().flush();
    }
    let ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 200_000_000,
    };
    loop {
        // SAFETY: waits for one of the blocked signals in `set`, with a timeout.
        let sig = unsafe { libc::sigtimedwait(&set, std::ptr::null_mut(), &ts) };
        if sig > 0 || dev.any_queue_exited() {
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

/// devtmpfs/udev create `/dev/ublkbN` asynchronously after START_DEV: wait
/// (up to 10 s) until it is a block device before printing the path, so a
/// caller that opens it at once neither fails nor, with O_CREAT (fio),
/// creates a regular file in its place.
fn wait_bdev_node(path: &str) {
    use std::os::unix::fs::FileTypeExt;
    let t0 = Instant::now();
    while t0.elapsed() < Duration::from_secs(10) {
        if std::fs::metadata(path).is_ok_and(|m| m.file_type().is_block_device()) {
            return;
        }
        std::thread::sleep(Duration::from_millis(5));
    }
    eprintln!("ublk-user: {path} did not appear as a block device within 10 s");
}

fn proc_alive(pid: i32) -> bool {
    // SAFETY: kill with signal 0 only checks for existence.
    if pid <= 0 || unsafe { libc::kill(pid, 0) } != 0 {
        return false;
    }
    // A zombie (exited, not yet reaped by its new parent) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => st
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

fn is_our_server(pid: i32) -> bool {
    proc_alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split('\0').next().unwrap_or("").ends_with("ublk-user"))
            .unwrap_or(false)
}

fn del(id: Option<u32>, all: bool) -> Result<()> {
    require_root()?;
    let mut ctl = Control::open()?;
    let ids = if all {
        ctrl::list_dev_ids()
    } else {
        id.into_iter().collect()
    };
    let mut failed = 0;
    for id in ids {
        if let Err(e) = del_one(&mut ctl, id, all) {
            eprintln!("ublk-user: device {id}: {}", one_line(&e));
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} device(s) could not be deleted");
    }
    Ok(())
}

fn gone(ctl: &mut Control, id: u32) -> bool {
    matches!(ctl.get_dev_info(id), Err(e) if e.errno() == Some(libc::ENODEV))
}

fn del_one(ctl: &mut Control, id: u32, all: bool) -> Result<()> {
    let info = match ctl.get_dev_info(id) {
        Ok(i) => i,
        Err(e) if e.errno() == Some(libc::ENODEV) => {
            Meta::remove(id);
            if all {
                return Ok(());
            }
            bail!("no ublk device with id {id}");
        }
        Err(e) => return Err(e.into()),
    };
    let pid = Some(info.ublksrv_pid)
        .filter(|p| is_our_server(*p))
        .or_else(|| Meta::read(id).map(|m| m.pid).filter(|p| is_our_server(*p)));
    if let Some(pid) = pid {
        // SAFETY: sends SIGTERM to the device's server process.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if !proc_alive(pid) && gone(ctl, id) {
                Meta::remove(id);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // A server that does not react (stopped, stuck) keeps /dev/ublkcN
        // open, and DEL_DEV below would wait for it forever: kill it.
        eprintln!("ublk-user: device {id}: server {pid} did not stop in 30 s, killing it and deleting the device directly");
        // SAFETY: sends SIGKILL to the device's server process (ours, checked above).
        unsafe { libc::kill(pid, libc::SIGKILL) };
        let t0 = Instant::now();
        while proc_alive(pid) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // No (live) server: stop and delete from here.
    ctl.stop_dev(id).context("stop")?;
    ctl.del_dev(id).context("delete")?;
    Meta::remove(id);
    Ok(())
}

/// The server's counters file of device `id`, if a server keeps one.
fn server_counters(id: u32) -> Option<ServerCounters> {
    let sp = meta::stats_path(id);
    let c = |which| counters::read_file(&sp, which).ok();
    Some(ServerCounters {
        server_served: c(Counter::Served)?,
        server_redirected: c(Counter::Redirected)?,
        server_errors: c(Counter::Errors)?,
        server_cqes: c(Counter::Cqes)?,
        server_sqes: c(Counter::Sqes)?,
        server_enters: c(Counter::Enters)?,
        server_fua: c(Counter::Fua)?,
    })
}

/// `list [-n ID] [--json]`: every device, or device `only` (an error if it
/// does not exist).
fn list(only: Option<u32>, json: bool) -> Result<()> {
    let ids: Vec<u32> = match only {
        None => ctrl::list_dev_ids(),
        Some(id) => vec![id],
    };
    let mut rows = Vec::new();
    let mut ctl = None;
    if !ids.is_empty() {
        require_root()?;
        let ctl = ctl.insert(Control::open()?);
        for id in ids {
            match ctl.get_dev_info(id) {
                Ok(info) => rows.push((info, Meta::read(id))),
                Err(e) if only.is_some() && e.errno() == Some(libc::ENODEV) => {
                    bail!("no ublk device with id {id}")
                }
                Err(e) if only.is_some() => return Err(e.into()),
                Err(_) => continue,
            }
        }
    }
    if json {
        let devices: Vec<DeviceJson> = rows
            .iter()
            .map(|(i, m)| {
                let mut d = DeviceJson::new(i, m.as_ref());
                d.server = server_counters(i.dev_id);
                if i.flags & sys::UBLK_F_BPF != 0 {
                    if let Some(Ok(k)) = ctl.as_mut().map(|c| c.get_bpf_stats(i.dev_id)) {
                        d.kernel = Some(KernelCounters::from(&k));
                    }
                }
                #[cfg(feature = "bpf")]
                {
                    let map_id = m.as_ref().map_or(0, |m| m.bpf_stats_map_id);
                    if map_id != 0 {
                        if let Ok(st) = ublk_user::bpf::stats_by_map_id(map_id) {
                            d.bpf = Some(BpfCounters::from(&st));
                        }
                    }
                }
                d
            })
            .collect();
        println!("{}", json::to_string(&devices));
        return Ok(());
    }
    println!(
        "{:<4} {:<6} {:<6} {:<28} {:>6} {:>5} {:<14} {:>7}",
        "ID", "STATE", "TARGET", "BACKING", "QUEUES", "DEPTH", "MODE(req/eff)", "PID"
    );
    for (i, m) in rows {
        let m = m.unwrap_or_default();
        let backing = if m.backing.is_empty() {
            "-".to_string()
        } else {
            m.backing.clone()
        };
        let mode = if m.mode.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", m.mode_requested, m.mode)
        };
        println!(
            "{:<4} {:<6} {:<6} {:<28} {:>6} {:>5} {:<14} {:>7}",
            i.dev_id,
            sys::state_name(i.state),
            if m.target.is_empty() { "-" } else { &m.target },
            backing,
            i.nr_hw_queues,
            i.queue_depth,
            mode,
            i.ublksrv_pid
        );
    }
    Ok(())
}

/// `modes`: every mode of `--mode` with what it needs and its fallback, and
/// whether this kernel offers it (when there is a ublk driver to ask).
fn modes(available_only: bool, json: bool) -> Result<()> {
    let features = Control::open().and_then(|mut c| Ok(c.get_features()?));
    if available_only {
        let f = features?;
        for m in Mode::SERVER
            .iter()
            .filter(|m| m.missing_feature(f).is_none())
        {
            println!("{m}");
        }
        return Ok(());
    }
    let features = features.ok();
    let offered = |m: Mode| features.map(|f| m.missing_feature(f).is_none() && m.built());
    if json {
        let doc: Vec<_> = Mode::SERVER
            .iter()
            .map(|&m| {
                serde_json::json!({
                    "name": m.name(),
                    "summary": m.summary(),
                    "features": m.required_features().iter().map(|(_, n)| *n).collect::<Vec<_>>(),
                    "fallback": m.fallback().map(Mode::name),
                    "bpf": m.bpf(),
                    "kernel_io": m.kernel_io(),
                    "built": m.built(),
                    "available": offered(m),
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(doc));
        return Ok(());
    }
    for m in Mode::SERVER {
        let needs: Vec<&str> = m.required_features().iter().map(|(_, n)| *n).collect();
        let avail = match offered(m) {
            Some(true) => "available",
            Some(false) => "not available",
            None => "(no ublk driver to ask)",
        };
        println!(
            "{:<11} {avail}; needs {}; falls back to {}",
            m.name(),
            if needs.is_empty() {
                "nothing".into()
            } else {
                needs.join(" + ")
            },
            m.fallback().map_or("nothing", Mode::name),
        );
        println!("            {}", m.summary());
    }
    Ok(())
}

fn features(json: bool) -> Result<()> {
    let mut ctl = Control::open()?;
    let f = ctl.get_features()?;
    let names = sys::feature_names(f);
    if json {
        let doc = serde_json::json!({ "features": f, "names": names });
        println!("{doc}");
    } else {
        println!("features: {f:#x}");
        for n in names {
            println!("  {n}");
        }
    }
    Ok(())
}

#[cfg(all(test, not(feature = "bpf")))]
mod no_bpf_tests {
    use super::*;
    use clap::Parser;

    fn common(mode: &str) -> CommonArgs {
        let argv = ["ublk-user", "add", "null", "--size", "16M", "--mode", mode];
        match Cli::try_parse_from(argv).unwrap().cmd {
            Command::Add(a) => match a.resolve().unwrap() {
                AddTarget::Null { common, .. } => common,
                _ => unreachable!("parsed as add null"),
            },
            _ => unreachable!("parsed as add"),
        }
    }

    /// Without the `bpf` feature the BPF modes are an error naming the
    /// build, even on a kernel that offers every feature and without
    /// --no-fallback; copy and zc are unaffected.
    #[test]
    fn bpf_modes_are_refused_not_fallen_back() {
        for mode in ["bpf", "bpf-kernel"] {
            let e = choose_mode(&common(mode), u64::MAX, 1)
                .err()
                .expect("refused");
            let e = format!("{e:#}");
            assert!(
                e.starts_with(&format!("--mode {mode}: mode {mode} is not available: ")),
                "{e}"
            );
            assert!(e.contains("cargo feature `bpf` is off"), "{e}");
        }
        let (m, bpf) = choose_mode(&common("zc"), u64::MAX, 1).unwrap();
        assert_eq!((m, bpf.is_none()), (Mode::Zc, true));
    }
}
