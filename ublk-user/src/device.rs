//! A ublk device and its server: ADD_DEV → SET_PARAMS → queue threads fetch
//! → (BPF hook) → START_DEV → serve → STOP_DEV → join → flush → DEL_DEV.
//!
//! Every failure after ADD_DEV deletes the device again (see `Drop`), so no
//! half-created device is left behind.
//!
//! # Who runs the queues
//!
//! [`Device::start`] spawns one thread per queue unless the backend took
//! the queues first with [`Device::take_queues`]: then it opens each
//! [`QueueSetup`] on a thread of its own (the same thread as `start` is
//! fine: open first) and drives it with [`Queue::run_once`]. The library
//! then starts no thread at all. To stop such a device from a thread that
//! also serves a queue, call [`Device::request_stop`], keep serving until
//! `run_once` returns `Ok(false)`, then [`Device::stop`].
//!
//! [`Queue::run_once`]: crate::io::Queue::run_once

use crate::ctrl::Control;
use crate::error::{Error, Result};
use crate::io::counters::Counters;
use crate::io::{queue_thread, QueueConfig, QueueEvent, QueueReady, QueueSetup, QueueStats};
use crate::mode::Mode;
use crate::sys::{self, DevInfo, Params};
use crate::target::{BpfLayout, Target};
use std::fs::{File, OpenOptions};
use std::os::fd::RawFd;
use std::os::unix::fs::FileTypeExt;
use std::path::Path;
use std::sync::{mpsc, Arc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

/// Default queue depth.
pub const DEFAULT_DEPTH: u16 = 128;
/// Default number of hardware queues.
pub const DEFAULT_QUEUES: u16 = 1;
/// Largest request (bytes): 2 MiB requests stay whole.
pub const DEFAULT_MAX_IO: u32 = 2 << 20;

/// How to create a device.
#[derive(Clone, Debug)]
pub struct DeviceOptions {
    /// Device id (`/dev/ublkbN`); `None` lets the kernel pick.
    pub id: Option<u32>,
    /// Hardware queues (one ring, and by default one thread, each).
    pub queues: u16,
    /// Tags per queue.
    pub depth: u16,
    /// Largest request in bytes.
    pub max_io_bytes: u32,
    /// The mode: the device flags it needs, the data path of the requests
    /// the server serves, and, for the BPF modes, a [`BpfHook`] to install
    /// with [`Device::set_bpf_hook`] before [`Device::start`]. Choose it
    /// with [`Mode::resolve`] to fall back when the kernel lacks it.
    pub mode: Mode,
    /// Request `UBLK_F_USER_RECOVERY`: when the server dies the device
    /// stays, I/O waits, and a new server can take over ([`Device::recover`]).
    pub recovery: bool,
    /// With `recovery`: `UBLK_F_USER_RECOVERY_REISSUE`: requests the dead
    /// server owned are re-issued to the new one instead of failing.
    pub reissue: bool,
    /// If set, per-queue counters are kept in `<dir>/<id>.stats` (shared
    /// mapping) for other processes; see [`crate::io::counters`].
    pub stats_dir: Option<std::path::PathBuf>,
}

impl Default for DeviceOptions {
    fn default() -> Self {
        Self {
            id: None,
            queues: DEFAULT_QUEUES,
            depth: DEFAULT_DEPTH,
            max_io_bytes: DEFAULT_MAX_IO,
            mode: Mode::Copy,
            recovery: false,
            reissue: false,
            stats_dir: None,
        }
    }
}

/// What the BPF loader learns about each queue before START_DEV.
#[derive(Clone, Debug)]
pub struct QueueHookInfo {
    /// The queue.
    pub q_id: u16,
    /// The queue's io_uring fd (server's file table).
    pub ring_fd: RawFd,
    /// The target's files and mapping ([`Target::bpf_layout`]), if it has
    /// them.
    pub layout: Option<BpfLayout>,
    /// The device's mode (a BPF mode: [`Mode::kernel_io`] says whether
    /// the files go into the device's file table or the queue's ring).
    pub mode: Mode,
}

/// Hook for the BPF loader (`crate::bpf`): called per queue once its ring
/// is set up, then to register the program (e.g. with
/// [`Control::reg_bpf_prog`]) before START_DEV, and to unregister it before
/// STOP_DEV.
pub trait BpfHook: Send {
    /// Queue `q` is set up.
    fn queue(&mut self, dev_id: u32, q: &QueueHookInfo) -> Result<()>;
    /// Every queue is set up: attach (before START_DEV).
    fn attach(&mut self, ctrl: &mut Control, dev_id: u32) -> Result<()>;
    /// The device is stopping: detach (before STOP_DEV).
    fn detach(&mut self, ctrl: &mut Control, dev_id: u32) -> Result<()>;
}

/// The `UBLK_F_*` flags to request for `opts`, given the kernel's features.
/// Fails with a message naming the missing feature.
pub fn negotiate_flags(opts: &DeviceOptions, features: u64) -> Result<u64> {
    let need = |bit: u64, feature: &'static str, needed_for: &'static str| -> Result<u64> {
        if features & bit == 0 {
            return Err(Error::MissingFeature {
                feature,
                needed_for,
            });
        }
        Ok(bit)
    };
    let mut flags = need(
        sys::UBLK_F_CMD_IOCTL_ENCODE,
        "CMD_IOCTL_ENCODE",
        "ioctl-encoded commands",
    )?;
    flags |= opts.mode.device_flags(features)?;
    if opts.recovery {
        flags |= need(
            sys::UBLK_F_USER_RECOVERY,
            "USER_RECOVERY",
            "DeviceOptions::recovery",
        )?;
        if opts.reissue {
            flags |= need(
                sys::UBLK_F_USER_RECOVERY_REISSUE,
                "USER_RECOVERY_REISSUE",
                "DeviceOptions::reissue",
            )?;
        }
    } else if opts.reissue {
        return Err(Error::InvalidOption(
            "DeviceOptions::reissue needs DeviceOptions::recovery".into(),
        ));
    }
    Ok(flags)
}

/// Validate user-facing options.
pub fn validate_options(opts: &DeviceOptions) -> Result<()> {
    let bad = |m: String| Err(Error::InvalidOption(m));
    if opts.depth == 0 || opts.depth > sys::UBLK_MAX_QUEUE_DEPTH {
        return bad(format!(
            "queue depth must be 1..={} (got {})",
            sys::UBLK_MAX_QUEUE_DEPTH,
            opts.depth
        ));
    }
    if opts.queues == 0 || opts.queues > sys::UBLK_MAX_NR_QUEUES {
        return bad(format!(
            "number of queues must be 1..={} (got {})",
            sys::UBLK_MAX_NR_QUEUES,
            opts.queues
        ));
    }
    if opts.max_io_bytes < 4096
        || !opts.max_io_bytes.is_multiple_of(4096)
        || opts.max_io_bytes > 32 << 20
    {
        return bad(format!(
            "max I/O size must be a multiple of 4096 in 4 KiB..32 MiB (got {})",
            opts.max_io_bytes
        ));
    }
    Ok(())
}

/// A created ublk device with its server threads.
pub struct Device {
    ctrl: Control,
    info: DevInfo,
    opts: DeviceOptions,
    target: Arc<dyn Target>,
    cdev: Option<Arc<File>>,
    counters: Option<Arc<Counters>>,
    threads: Vec<JoinHandle<Result<QueueStats>>>,
    /// Sender kept until the queues are handed out; then only queues hold it.
    events_tx: Option<mpsc::Sender<QueueEvent>>,
    events: Option<mpsc::Receiver<QueueEvent>>,
    /// Queues that reported Ready / Stopped.
    opened: u16,
    stopped: Vec<QueueStats>,
    /// The backend runs the queues ([`Device::take_queues`]).
    caller_driven: bool,
    started: bool,
    hook: Option<Box<dyn BpfHook>>,
    hook_attached: bool,
    deleted: bool,
    /// Taken over with START_USER_RECOVERY: start() ends the recovery
    /// instead of START_DEV, and a failure before that leaves the device.
    recovering: bool,
}

impl Device {
    /// ADD_DEV + SET_PARAMS + open `/dev/ublkcN`.
    pub fn create(mut ctrl: Control, target: Arc<dyn Target>, opts: DeviceOptions) -> Result<Self> {
        validate_options(&opts)?;
        if target.needs_server_buffer() && opts.mode.served() == Mode::UserCopy {
            return Err(Error::InvalidOption(format!(
                "the {} target serves some requests from the server's memory: \
                 it needs copy or zc (or a BPF mode), not {}",
                target.name(),
                opts.mode.name()
            )));
        }
        let size = target.size();
        if size == 0 || !size.is_multiple_of(512) {
            return Err(Error::InvalidOption(format!(
                "device size must be a non-zero multiple of 512 (got {size})"
            )));
        }
        let features = ctrl.get_features()?;
        let mut flags = negotiate_flags(&opts, features)?;
        // Zero copy gives the server no buffer; a target that serves some
        // requests from its own memory moves their data with user copy
        // (pread/pwrite on /dev/ublkcN) next to the automatic registration.
        if target.needs_server_buffer() && opts.mode == Mode::Zc {
            if features & sys::UBLK_F_USER_COPY == 0 {
                return Err(Error::MissingFeature {
                    feature: "USER_COPY",
                    needed_for: "Mode::Zc with a target that needs the server buffer",
                });
            }
            flags |= sys::UBLK_F_USER_COPY;
        }
        let mut info = DevInfo {
            nr_hw_queues: opts.queues,
            queue_depth: opts.depth,
            max_io_buf_bytes: opts.max_io_bytes,
            dev_id: opts.id.unwrap_or(u32::MAX),
            // SAFETY: getpid has no preconditions.
            ublksrv_pid: unsafe { libc::getpid() },
            flags,
            ..Default::default()
        };
        if let Err(e) = ctrl.add_dev(&mut info) {
            if e.errno() == Some(libc::EEXIST) {
                return Err(Error::Exists(info.dev_id));
            }
            return Err(e.into());
        }
        let mut dev = Self::handle(ctrl, info, opts, target, false);
        // From here on, an error drops `dev`, which deletes the device.
        if dev.info.flags & flags != flags {
            return Err(Error::NotGranted {
                asked: flags,
                got: dev.info.flags,
            });
        }
        let params = dev.build_params();
        dev.ctrl.set_params(dev.info.dev_id, &params)?;
        dev.open_cdev()?;
        Ok(dev)
    }

    /// Take over device `id` (created with `UBLK_F_USER_RECOVERY`) after
    /// its server died: START_USER_RECOVERY (retried while the old
    /// server's char device is still being released), open `/dev/ublkcN`.
    /// [`Device::start`] then fetches, re-attaches the BPF program and
    /// files, and ends the recovery. A failure before that is not fatal to
    /// the device: it is never deleted here (a failure after the queue
    /// threads started stops it, since STOP_DEV is what ends them).
    pub fn recover(
        mut ctrl: Control,
        target: Arc<dyn Target>,
        opts: DeviceOptions,
        id: u32,
    ) -> Result<Self> {
        validate_options(&opts)?;
        let info = ctrl.get_dev_info(id)?;
        if info.flags & sys::UBLK_F_USER_RECOVERY == 0 {
            return Err(Error::InvalidOption(format!(
                "device {id} was not created with user recovery (UBLK_F_USER_RECOVERY)"
            )));
        }
        let t0 = Instant::now();
        loop {
            match ctrl.start_user_recovery(id) {
                Ok(()) => break,
                Err(e)
                    if e.errno() == Some(libc::EBUSY) && t0.elapsed() < Duration::from_secs(10) =>
                {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Err(e) => return Err(e.into()),
            }
        }
        let mut dev = Self::handle(ctrl, info, opts, target, true);
        dev.open_cdev()?;
        Ok(dev)
    }

    /// The handle of an added (or, with `recovering`, taken-over) device
    /// before its char device is open. A device being taken over counts as
    /// not ours to delete until [`Device::start`] succeeds.
    fn handle(
        ctrl: Control,
        info: DevInfo,
        opts: DeviceOptions,
        target: Arc<dyn Target>,
        recovering: bool,
    ) -> Self {
        Self {
            ctrl,
            info,
            opts,
            target,
            cdev: None,
            counters: None,
            threads: Vec::new(),
            events_tx: None,
            events: None,
            opened: 0,
            stopped: Vec::new(),
            caller_driven: false,
            started: false,
            hook: None,
            hook_attached: false,
            deleted: recovering,
            recovering,
        }
    }

    fn open_cdev(&mut self) -> Result<()> {
        let dev = self;
        let cdev_path = format!("/dev/ublkc{}", dev.info.dev_id);
        dev.cdev = Some(Arc::new(open_retry(Path::new(&cdev_path))?));
        let counters = match &dev.opts.stats_dir {
            Some(dir) => {
                let p = dir.join(format!("{}.stats", dev.info.dev_id));
                Counters::file(&p, dev.info.nr_hw_queues)
                    .map_err(|e| Error::io(format!("cannot create {}", p.display()), e))?
            }
            None => Counters::anon(dev.info.nr_hw_queues)
                .map_err(|e| Error::io("cannot map the counters", e))?,
        };
        let (tx, rx) = mpsc::channel();
        dev.events_tx = Some(tx);
        dev.events = Some(rx);
        dev.counters = Some(Arc::new(counters));
        Ok(())
    }

    fn build_params(&self) -> Params {
        let mut p = Params {
            types: sys::UBLK_PARAM_TYPE_BASIC,
            basic: sys::ParamBasic {
                attrs: sys::UBLK_ATTR_VOLATILE_CACHE | sys::UBLK_ATTR_FUA,
                logical_bs_shift: 9,
                physical_bs_shift: 12,
                io_opt_shift: 12,
                io_min_shift: 9,
                max_sectors: self.info.max_io_buf_bytes >> 9,
                dev_sectors: self.target.size() >> 9,
                ..Default::default()
            },
            ..Default::default()
        };
        self.target.params(&mut p);
        p
    }

    /// The device id (N in `/dev/ublkbN`).
    pub fn id(&self) -> u32 {
        self.info.dev_id
    }
    /// The negotiated device info (effective queues, depth, flags).
    pub fn info(&self) -> &DevInfo {
        &self.info
    }
    /// The options the device was created with.
    pub fn options(&self) -> &DeviceOptions {
        &self.opts
    }
    /// The target.
    pub fn target(&self) -> &Arc<dyn Target> {
        &self.target
    }
    /// `/dev/ublkbN`.
    pub fn bdev_path(&self) -> String {
        format!("/dev/ublkb{}", self.info.dev_id)
    }
    /// Install the BPF loader's hook (before [`Device::start`]).
    pub fn set_bpf_hook(&mut self, hook: Box<dyn BpfHook>) {
        self.hook = Some(hook);
    }
    /// Live request counters of all queues.
    pub fn counters(&self) -> Option<&Arc<Counters>> {
        self.counters.as_ref()
    }
    /// The control device (for commands this type does not wrap).
    pub fn control(&mut self) -> &mut Control {
        &mut self.ctrl
    }

    fn setups(&mut self) -> Result<Vec<QueueSetup>> {
        let state = |m: &str| Error::State(m.into());
        let cdev = self.cdev.clone().ok_or_else(|| state("device not open"))?;
        let counters = self
            .counters
            .clone()
            .ok_or_else(|| state("device not open"))?;
        let events = self
            .events_tx
            .take()
            .ok_or_else(|| state("the queues were already handed out"))?;
        Ok((0..self.info.nr_hw_queues)
            .map(|q_id| QueueSetup {
                cfg: QueueConfig {
                    dev_id: self.info.dev_id,
                    q_id,
                    depth: self.info.queue_depth,
                    max_io: self.info.max_io_buf_bytes,
                    mode: self.opts.mode,
                    user_copy: self.info.flags & sys::UBLK_F_USER_COPY != 0,
                },
                cdev: cdev.clone(),
                target: self.target.clone(),
                counters: counters.clone(),
                events: events.clone(),
            })
            .collect())
    }

    /// Run the queues yourself: one [`QueueSetup`] per queue, to be opened
    /// on the thread that serves it, before or while [`Device::start`]
    /// waits for them. Call before `start`; the library then creates no
    /// thread.
    pub fn take_queues(&mut self) -> Result<Vec<QueueSetup>> {
        if self.started {
            return Err(Error::State("take_queues() after start()".into()));
        }
        let s = self.setups()?;
        self.caller_driven = true;
        Ok(s)
    }

    /// Wait for one event from the queues (with a limit, for queues the
    /// backend must open) and record it.
    fn next_event(&mut self, limit: Option<Duration>) -> Option<QueueEvent> {
        let rx = self.events.as_ref()?;
        let ev = match limit {
            Some(t) => rx.recv_timeout(t).ok()?,
            None => rx.recv().ok()?,
        };
        match &ev {
            QueueEvent::Ready(_) => self.opened += 1,
            QueueEvent::Stopped(s) => self.stopped.push(*s),
            QueueEvent::Failed(..) => {}
        }
        Some(ev)
    }

    /// Start the queues (spawn their threads, unless the backend took them
    /// with [`Device::take_queues`]: then wait until each is opened), run
    /// the BPF hook, START_DEV, and return once `/dev/ublkbN` is a block
    /// device.
    pub fn start(&mut self) -> Result<()> {
        if self.started {
            return Err(Error::State("start() called twice".into()));
        }
        let mode = self.opts.mode;
        if mode.bpf() != self.hook.is_some() {
            return Err(Error::State(format!(
                "mode {mode} {} a BPF hook (Device::set_bpf_hook)",
                if mode.bpf() { "needs" } else { "takes no" }
            )));
        }
        self.started = true;
        if !self.caller_driven {
            for setup in self.setups()? {
                let name = format!("ublk{}-q{}", self.info.dev_id, setup.q_id());
                let h = std::thread::Builder::new()
                    .name(name)
                    .spawn(move || queue_thread(setup))
                    .map_err(|e| Error::io("cannot spawn a queue thread", e))?;
                self.threads.push(h);
            }
        }
        // Queues the backend runs get a minute to be opened.
        let limit = self.caller_driven.then(|| Duration::from_secs(60));
        let mut ready: Vec<QueueReady> = Vec::new();
        let mut first_err = None;
        let mut answered = 0;
        while answered < self.info.nr_hw_queues {
            match self.next_event(limit) {
                Some(QueueEvent::Ready(r)) => {
                    ready.push(r);
                    answered += 1;
                }
                Some(QueueEvent::Failed(e)) => {
                    first_err.get_or_insert(e);
                    answered += 1;
                }
                Some(QueueEvent::Stopped(..)) => {}
                None => {
                    first_err.get_or_insert(Error::State(format!(
                        "only {answered} of {} queues were opened{}",
                        self.info.nr_hw_queues,
                        if self.caller_driven {
                            " within 60 s (open every QueueSetup from take_queues())"
                        } else {
                            ""
                        }
                    )));
                    break;
                }
            }
        }
        if let Some(e) = first_err {
            self.shutdown_queues();
            return Err(e);
        }
        ready.sort_by_key(|r| r.q_id);
        let mode = self.opts.mode;
        if let Some(hook) = self.hook.as_mut() {
            let layout = self.target.bpf_layout();
            let dev_id = self.info.dev_id;
            let res = check_layout(layout.as_ref(), &self.target.files())
                .and_then(|_| {
                    ready.iter().try_for_each(|r| {
                        hook.queue(
                            dev_id,
                            &QueueHookInfo {
                                q_id: r.q_id,
                                ring_fd: r.ring_fd,
                                layout: layout.clone(),
                                mode,
                            },
                        )
                    })
                })
                .and_then(|_| hook.attach(&mut self.ctrl, dev_id));
            if let Err(e) = res {
                self.shutdown_queues();
                return Err(e);
            }
            self.hook_attached = true;
        }
        // SAFETY: getpid has no preconditions.
        let pid = unsafe { libc::getpid() };
        let started = if self.recovering {
            self.ctrl.end_user_recovery(self.info.dev_id, pid)
        } else {
            self.ctrl.start_dev(self.info.dev_id, pid)
        };
        if let Err(e) = started {
            self.shutdown_queues();
            return Err(e.into());
        }
        // from now on this server owns the device: a stop deletes it
        self.deleted = false;
        self.recovering = false;
        if let Ok(i) = self.ctrl.get_dev_info(self.info.dev_id) {
            self.info = i;
        }
        wait_block_device(Path::new(&self.bdev_path()), Duration::from_secs(10))
    }

    /// Has any queue thread exited (device stopped from outside, or error)?
    pub fn any_queue_exited(&self) -> bool {
        self.threads.iter().any(|t| t.is_finished())
    }

    /// Begin stopping without waiting: STOP_DEV runs in an io_uring
    /// worker of the control ring. For a backend whose own thread serves a
    /// queue: call this, keep calling `run_once` until it returns
    /// `Ok(false)`, then [`Device::stop`].
    pub fn request_stop(&mut self) -> Result<()> {
        self.detach_hook();
        self.ctrl.stop_dev_begin(self.info.dev_id)?;
        Ok(())
    }

    fn detach_hook(&mut self) {
        if self.hook_attached {
            if let Some(h) = self.hook.as_mut() {
                if let Err(e) = h.detach(&mut self.ctrl, self.info.dev_id) {
                    log::warn!("BPF detach: {}", e.chain());
                }
            }
            self.hook_attached = false;
        }
    }

    /// STOP_DEV (cancels every queue's pending FETCH), then wait until every
    /// opened queue has stopped and join the library's threads.
    fn shutdown_queues(&mut self) -> Vec<QueueStats> {
        self.detach_hook();
        let stop = if self.ctrl.stop_dev_pending() {
            self.ctrl.stop_dev_wait()
        } else {
            self.ctrl.stop_dev(self.info.dev_id)
        };
        if let Err(e) = stop {
            log::warn!("{e}");
        }
        // Every queue that reported Ready reports Stopped (when it finishes,
        // or is dropped); queues never opened hold no tag.
        while (self.stopped.len() as u16) < self.opened {
            if self.next_event(None).is_none() {
                break;
            }
        }
        for t in self.threads.drain(..) {
            match t.join() {
                Ok(Ok(_)) => {}
                Ok(Err(e)) => log::error!("queue error: {}", e.chain()),
                Err(_) => log::error!("a queue thread panicked"),
            }
        }
        std::mem::take(&mut self.stopped)
    }

    /// Clean stop: STOP_DEV (or reap [`Device::request_stop`]'s), wait for
    /// the queues, flush the backing file, close `/dev/ublkcN`, DEL_DEV.
    /// Queues the backend runs must keep running until they finish.
    pub fn stop(mut self) -> Result<Vec<QueueStats>> {
        let stats = self.shutdown_queues();
        let flush = self.target.flush();
        self.cdev = None;
        let del = self.ctrl.del_dev(self.info.dev_id);
        self.deleted = true;
        flush.map_err(|e| Error::io("flushing the backing file", e))?;
        del?;
        Ok(stats)
    }
}

/// A layout over several files must name the target's first fixed files,
/// in order (the ring mode's program uses their indices).
fn check_layout(layout: Option<&BpfLayout>, files: &[RawFd]) -> Result<()> {
    match layout {
        Some(l) if l.files.is_empty() || l.files.len() > 16 => Err(Error::InvalidOption(format!(
            "a BPF layout has 1 to 16 files, not {}",
            l.files.len()
        ))),
        Some(l) if l.files.len() > 1 && !files.starts_with(&l.files) => Err(Error::InvalidOption(
            "a BPF layout over several files must list the target's files() first, in order".into(),
        )),
        _ => Ok(()),
    }
}

/// Wait until `path` is a block device (devtmpfs creates the node during
/// START_DEV; a slow udev may replace it). Something else at the path (a
/// regular file a tool created while the node was missing) is an error.
fn wait_block_device(path: &Path, limit: Duration) -> Result<()> {
    let t0 = Instant::now();
    loop {
        match std::fs::metadata(path) {
            Ok(m) if m.file_type().is_block_device() => return Ok(()),
            Ok(_) => {
                return Err(Error::State(format!(
                    "{} exists but is not a block device (something created it while the node was missing; remove it)",
                    path.display()
                )))
            }
            Err(_) if t0.elapsed() < limit => std::thread::sleep(Duration::from_millis(5)),
            Err(e) => {
                return Err(Error::io(
                    format!("{} did not appear within {limit:?} after START_DEV", path.display()),
                    e,
                ))
            }
        }
    }
}

impl std::fmt::Debug for Device {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Device")
            .field("id", &self.info.dev_id)
            .field("flags", &format_args!("{:#x}", self.info.flags))
            .field("mode", &self.opts.mode)
            .field("target", &self.target.name())
            .field("started", &self.started)
            .finish_non_exhaustive()
    }
}

impl Drop for Device {
    fn drop(&mut self) {
        if self.deleted {
            return;
        }
        let _ = self.shutdown_queues();
        let _ = self.target.flush();
        self.cdev = None;
        let _ = self.ctrl.del_dev(self.info.dev_id);
    }
}

fn open_retry(path: &Path) -> Result<File> {
    let t0 = Instant::now();
    loop {
        match OpenOptions::new().read(true).write(true).open(path) {
            Ok(f) => return Ok(f),
            Err(e)
                if e.kind() == std::io::ErrorKind::NotFound
                    && t0.elapsed() < Duration::from_secs(5) =>
            {
                std::thread::sleep(Duration::from_millis(5));
            }
            Err(e) => return Err(Error::io(format!("cannot open {}", path.display()), e)),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ctrl::fake::Fake;
    use crate::target::NullTarget as Null;

    /// A driver with these features (and the ioctl encoding every command
    /// needs).
    fn kernel(features: u64) -> Fake {
        let f = Fake::default();
        f.driver().features = Some(features | sys::UBLK_F_CMD_IOCTL_ENCODE);
        f
    }

    /// A device id no host has a `/dev/ublkcN` for.
    const NO_CDEV: u32 = 1_000_000;

    fn null() -> Arc<dyn Target> {
        Arc::new(Null::new(1 << 20).unwrap())
    }

    fn opts(mode: Mode) -> DeviceOptions {
        DeviceOptions {
            id: Some(NO_CDEV),
            mode,
            ..Default::default()
        }
    }

    /// A target like null that serves some requests from server memory.
    struct NeedsBuffer(Null);
    impl Target for NeedsBuffer {
        fn name(&self) -> &'static str {
            "needs-buffer"
        }
        fn size(&self) -> u64 {
            self.0.size()
        }
        fn needs_server_buffer(&self) -> bool {
            true
        }
        fn queue_io(
            &self,
            ctx: &mut crate::io::IoCtx<'_>,
            req: &crate::target::Request,
        ) -> crate::target::Submit {
            self.0.queue_io(ctx, req)
        }
    }

    /// Every failure after ADD_DEV deletes the device it added: a refused
    /// SET_PARAMS, and a char device that never appears.
    #[test]
    fn a_failure_after_add_dev_deletes_the_device() {
        let f = kernel(0);
        f.answer(sys::UBLK_U_CMD_SET_PARAMS, -libc::EINVAL);
        let e = Device::create(f.control(), null(), opts(Mode::Copy)).unwrap_err();
        assert!(
            matches!(e, Error::Ctrl(ref c) if c.cmd == "SET_PARAMS"),
            "{e}"
        );
        use sys::*;
        assert_eq!(
            f.ops(),
            [
                UBLK_U_CMD_GET_FEATURES,
                UBLK_U_CMD_ADD_DEV,
                UBLK_U_CMD_SET_PARAMS,
                UBLK_U_CMD_STOP_DEV,
                UBLK_U_CMD_DEL_DEV
            ]
        );
        assert_eq!(f.last().1.dev_id, NO_CDEV);

        let f = kernel(0);
        let e = Device::create(f.control(), null(), opts(Mode::Copy)).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "{e}");
        assert_eq!(f.ops().last(), Some(&UBLK_U_CMD_DEL_DEV));
        assert_eq!(f.last().1.dev_id, NO_CDEV);
    }

    /// An id in use is `Error::Exists`, and nothing is deleted: the device
    /// is someone else's.
    #[test]
    fn an_existing_id_is_reported_not_deleted() {
        let f = kernel(0);
        f.answer(sys::UBLK_U_CMD_ADD_DEV, -libc::EEXIST);
        let e = Device::create(f.control(), null(), opts(Mode::Copy)).unwrap_err();
        assert!(matches!(e, Error::Exists(NO_CDEV)), "{e}");
        assert_eq!(
            f.ops(),
            [sys::UBLK_U_CMD_GET_FEATURES, sys::UBLK_U_CMD_ADD_DEV]
        );
    }

    /// What ADD_DEV asks for comes from the mode and the kernel's features:
    /// zc asks for AUTO_BUF_REG, and for USER_COPY too when the target
    /// needs the server's buffer; without USER_COPY that is refused before
    /// ADD_DEV; a mode the kernel lacks never reaches ADD_DEV.
    #[test]
    fn add_dev_asks_for_what_the_mode_and_target_need() {
        let f = kernel(sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_USER_COPY);
        let _ = Device::create(f.control(), null(), opts(Mode::Zc));
        let asked = f.driver().added[0].flags;
        assert_ne!(asked & sys::UBLK_F_AUTO_BUF_REG, 0);
        assert_eq!(asked & sys::UBLK_F_USER_COPY, 0, "null needs no user copy");

        let f = kernel(sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_USER_COPY);
        let t: Arc<dyn Target> = Arc::new(NeedsBuffer(Null::new(1 << 20).unwrap()));
        let _ = Device::create(f.control(), t.clone(), opts(Mode::Zc));
        let asked = f.driver().added[0].flags;
        assert_ne!(asked & sys::UBLK_F_AUTO_BUF_REG, 0);
        assert_ne!(asked & sys::UBLK_F_USER_COPY, 0);

        let f = kernel(sys::UBLK_F_AUTO_BUF_REG);
        let e = Device::create(f.control(), t, opts(Mode::Zc)).unwrap_err();
        assert!(
            matches!(
                e,
                Error::MissingFeature {
                    feature: "USER_COPY",
                    ..
                }
            ),
            "{e}"
        );
        assert_eq!(f.ops(), [sys::UBLK_U_CMD_GET_FEATURES]);

        let f = kernel(0);
        let e = Device::create(f.control(), null(), opts(Mode::Zc)).unwrap_err();
        assert!(matches!(e, Error::MissingFeature { .. }), "{e}");
        assert_eq!(f.ops(), [sys::UBLK_U_CMD_GET_FEATURES]);
    }

    /// Flags the kernel drops at ADD_DEV are an error, and the device it
    /// made is deleted.
    #[test]
    fn flags_not_granted_delete_the_device() {
        let f = kernel(sys::UBLK_F_AUTO_BUF_REG);
        // the driver grants nothing: the answer's flags are cleared
        f.driver().clear_add_dev_flags = true;
        let e = Device::create(f.control(), null(), opts(Mode::Zc)).unwrap_err();
        assert!(matches!(e, Error::NotGranted { .. }), "{e}");
        assert_eq!(f.ops().last(), Some(&sys::UBLK_U_CMD_DEL_DEV));
    }

    /// Taking over a device: one created without user recovery is refused;
    /// START_USER_RECOVERY is retried while the old server's char device is
    /// busy; a failure before start leaves the device alone (no DEL_DEV).
    #[test]
    fn recover_retries_busy_and_never_deletes() {
        let f = Fake::default();
        f.driver().dev_info = Some(DevInfo {
            dev_id: NO_CDEV,
            ..Default::default()
        });
        let e = Device::recover(f.control(), null(), opts(Mode::Copy), NO_CDEV).unwrap_err();
        assert!(matches!(e, Error::InvalidOption(_)), "{e}");
        assert_eq!(f.ops(), [sys::UBLK_U_CMD_GET_DEV_INFO]);

        let f = Fake::default();
        f.driver().dev_info = Some(DevInfo {
            dev_id: NO_CDEV,
            flags: sys::UBLK_F_USER_RECOVERY,
            ..Default::default()
        });
        f.driver()
            .first
            .insert(sys::UBLK_U_CMD_START_USER_RECOVERY, (2, -libc::EBUSY));
        let e = Device::recover(f.control(), null(), opts(Mode::Copy), NO_CDEV).unwrap_err();
        assert!(matches!(e, Error::Io { .. }), "no /dev/ublkcN here: {e}");
        use sys::*;
        assert_eq!(
            f.ops(),
            [
                UBLK_U_CMD_GET_DEV_INFO,
                UBLK_U_CMD_START_USER_RECOVERY,
                UBLK_U_CMD_START_USER_RECOVERY,
                UBLK_U_CMD_START_USER_RECOVERY
            ]
        );
    }

    #[test]
    fn bpf_layouts_over_several_files_must_be_the_target_files() {
        let l = |files: Vec<RawFd>| BpfLayout {
            files,
            offset: 0,
            chunk_shift: 12,
            clusters: None,
        };
        assert!(check_layout(None, &[]).is_ok());
        // one file: the ring mode uses the descriptor itself
        assert!(check_layout(Some(&l(vec![7])), &[]).is_ok());
        assert!(check_layout(Some(&l(vec![7, 8])), &[7, 8, 9]).is_ok());
        assert!(check_layout(Some(&l(vec![8, 7])), &[7, 8]).is_err());
        assert!(check_layout(Some(&l(vec![7, 8])), &[7]).is_err());
        assert!(check_layout(Some(&l(vec![])), &[]).is_err());
        assert!(check_layout(Some(&l((0..17).collect())), &(0..17).collect::<Vec<_>>()).is_err());
    }

    #[test]
    fn zc_needs_auto_buf_reg() {
        let opts = DeviceOptions {
            mode: Mode::Zc,
            ..Default::default()
        };
        let err = negotiate_flags(&opts, sys::UBLK_F_CMD_IOCTL_ENCODE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("AUTO_BUF_REG"), "{err}");
        let f = negotiate_flags(
            &opts,
            sys::UBLK_F_CMD_IOCTL_ENCODE | sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_SUPPORT_ZERO_COPY,
        )
        .unwrap();
        assert_eq!(
            f,
            sys::UBLK_F_CMD_IOCTL_ENCODE | sys::UBLK_F_AUTO_BUF_REG | sys::UBLK_F_SUPPORT_ZERO_COPY
        );
    }

    #[test]
    fn bpf_needs_bit_20() {
        let opts = DeviceOptions {
            mode: Mode::Bpf,
            ..Default::default()
        };
        let err = negotiate_flags(&opts, sys::UBLK_F_CMD_IOCTL_ENCODE)
            .unwrap_err()
            .to_string();
        assert!(err.contains("UBLK_F_BPF"), "{err}");
        assert_eq!(
            negotiate_flags(&opts, sys::UBLK_F_CMD_IOCTL_ENCODE | sys::UBLK_F_BPF).unwrap(),
            sys::UBLK_F_CMD_IOCTL_ENCODE | sys::UBLK_F_BPF
        );
    }

    #[test]
    fn copy_requests_nothing_extra() {
        let all = u64::MAX;
        assert_eq!(
            negotiate_flags(&DeviceOptions::default(), all).unwrap(),
            sys::UBLK_F_CMD_IOCTL_ENCODE
        );
    }

    #[test]
    fn option_ranges() {
        assert!(validate_options(&DeviceOptions::default()).is_ok());
        assert!(validate_options(&DeviceOptions {
            depth: 0,
            ..Default::default()
        })
        .is_err());
        assert!(validate_options(&DeviceOptions {
            depth: 4097,
            ..Default::default()
        })
        .is_err());
        assert!(validate_options(&DeviceOptions {
            queues: 0,
            ..Default::default()
        })
        .is_err());
        assert!(validate_options(&DeviceOptions {
            max_io_bytes: 1000,
            ..Default::default()
        })
        .is_err());
    }
}
