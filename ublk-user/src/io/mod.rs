//! Data plane: one thread and one io_uring per hardware queue.
//!
//! The flow of a request through [`Queue::run`]:
//!
//! 1. a `FETCH_REQ` / `COMMIT_AND_FETCH_REQ` CQE (`KIND_UBLK_CMD`, tag) says
//!    the iod for that tag holds a new request;
//! 2. if the BPF program redirected it, `redirect` waits for the backing
//!    I/O's `KIND_BPF` CQE instead of serving it;
//! 3. otherwise the data path (copy / zc) says where the data is and the
//!    [`Target`] serves it, at once or with SQEs on this same ring
//!    (`KIND_TARGET`);
//! 4. when its CQEs are in, the tag is committed with `COMMIT_AND_FETCH_REQ`,
//!    which also fetches the tag's next request; a request the target
//!    [deferred](IoCtx::defer) is committed when its [`Completion`] comes
//!    back through the queue's inbox ([`completion`]).
//!
//! Who runs the loop: by default [`crate::Device::start`] spawns one thread
//! per queue. A backend that wants no library threads takes the queues with
//! [`crate::Device::take_queues`], opens each [`QueueSetup`] on a thread of
//! its own and drives it with [`Queue::run_once`].
//!
//! Every SQE's `user_data` is `kind:8|op:8|tag:16` (+ 32 bits of extra), see
//! [`ublk_ebpf_common::user_data`], so CQEs are routed without lookups.
//! Submissions are batched: one `io_uring_enter` per loop turn.

pub mod completion;
pub mod counters;
mod ctx;
pub(crate) mod redirect;
pub(crate) mod ring;
#[cfg(test)]
mod tests;

pub use completion::Completion;
pub use ctx::IoCtx;

use crate::mode::{zc, DataPath, Mode};
use crate::sys::{self, IoCmd};
use crate::target::{Request, Submit, Target, MAX_SQES_PER_REQUEST};
use completion::{Finished, Inbox};
use counters::{Counter, Counters};
use io_uring::{cqueue, opcode, types, IoUring};
use redirect::Redirect;
use ring::{Cqe, IodMap, IodSource, Ring};
use std::fs::File;
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::sync::mpsc::Sender;
use std::sync::Arc;
use ublk_ebpf_common::user_data::{
    self as ud, KIND_BPF, KIND_INTERNAL, KIND_TARGET, KIND_UBLK_CMD,
};

/// `extra` of a `KIND_TARGET` user_data: the target's own SQEs.
const EXTRA_TARGET: u32 = 0;
/// zc fallback: our `UBLK_U_IO_REGISTER_IO_BUF` (CQE only on failure).
const EXTRA_REG_BUF: u32 = 1;
/// zc fallback: our `UBLK_U_IO_UNREGISTER_IO_BUF`.
const EXTRA_UNREG_BUF: u32 = 2;
/// `KIND_INTERNAL`: the multishot poll on the inbox's eventfd.
const EXTRA_INBOX: u32 = 1;
/// `KIND_INTERNAL`: [`Queue::wake_on`]'s one-shot poll.
const EXTRA_WAKE: u32 = 2;

/// What a queue needs.
#[derive(Clone, Debug)]
pub(crate) struct QueueConfig {
    pub dev_id: u32,
    pub q_id: u16,
    pub depth: u16,
    pub max_io: u32,
    /// The device's mode: its data path, and for the BPF modes the
    /// handling of `UBLK_IO_F_BPF_REDIRECT` requests and a sparse buffer
    /// table for the kernel's redirect registrations.
    pub mode: Mode,
    /// The device also has `UBLK_F_USER_COPY`: deferred requests can move
    /// their data with [`Completion::read_data`] / `write_data` (a zc
    /// device whose target needs server-side access to some requests).
    pub user_copy: bool,
}

/// A queue, once it has fetched all its tags.
#[derive(Clone, Copy, Debug)]
pub struct QueueReady {
    /// The queue.
    pub q_id: u16,
    /// This queue's io_uring fd (for the BPF loader's map).
    pub ring_fd: RawFd,
}

/// Counters, returned when the queue stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    /// Requests that arrived.
    pub requests: u64,
    /// Of those, redirected by the BPF program.
    pub redirected: u64,
    /// Requests completed with an error.
    pub errors: u64,
}

/// What queues tell their device (on whatever thread they run).
#[derive(Debug)]
pub(crate) enum QueueEvent {
    Ready(QueueReady),
    Failed(crate::Error),
    Stopped(QueueStats),
}

/// A queue not yet set up: `Send`, so it can be moved to the thread that
/// will serve it. [`QueueSetup::open`] must run on that thread: the driver
/// accepts a tag's COMMIT only from the task that fetched it.
pub struct QueueSetup {
    pub(crate) cfg: QueueConfig,
    pub(crate) cdev: Arc<File>,
    pub(crate) target: Arc<dyn Target>,
    pub(crate) counters: Arc<Counters>,
    pub(crate) events: Sender<QueueEvent>,
}

impl std::fmt::Debug for QueueSetup {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("QueueSetup")
            .field("dev_id", &self.cfg.dev_id)
            .field("q_id", &self.cfg.q_id)
            .finish()
    }
}

impl QueueSetup {
    /// The queue's id.
    pub fn q_id(&self) -> u16 {
        self.cfg.q_id
    }

    /// Create the queue's ring, map its iods, fetch every tag, and tell the
    /// device it is ready (a [`crate::Device::start`] waiting on another
    /// thread, or called later on this one, goes on). Serve it from this
    /// thread with [`Queue::run_once`] or [`Queue::run`].
    pub fn open(self) -> crate::Result<Queue> {
        let q_id = self.cfg.q_id;
        let events = self.events.clone();
        let res = Queue::new(self).and_then(|mut q| q.fetch_all().map(|_| q));
        match res {
            Ok(q) => {
                let _ = events.send(QueueEvent::Ready(QueueReady {
                    q_id,
                    ring_fd: q.ring_fd(),
                }));
                Ok(q)
            }
            Err(e) => {
                let _ = events.send(QueueEvent::Failed(crate::Error::Queue {
                    q_id,
                    source: io::Error::new(e.kind(), e.to_string()),
                }));
                Err(crate::Error::Queue { q_id, source: e })
            }
        }
    }
}

#[derive(Clone, Copy, Default)]
struct TagState {
    /// CQEs still expected for the target I/O.
    pending: u32,
    /// Bytes the request needs (READ/WRITE) .
    bytes: u32,
    /// Sum of the target CQE results.
    done: u32,
    /// First error.
    err: i32,
    op: u8,
    dead: bool,
    /// Serial number of the request on this tag (matches its Completion).
    gen: u32,
    /// The target holds a [`Completion`] for the request.
    deferred: bool,
    redirect: Redirect,
}

/// One hardware queue: its ring, iods, data path and per-tag state.
///
/// Not `Send`: it must be served by the thread that opened it.
pub struct Queue {
    cfg: QueueConfig,
    ring: Box<dyn Ring>,
    iods: Box<dyn IodSource>,
    path: DataPath,
    target: Arc<dyn Target>,
    counters: Arc<Counters>,
    inbox: Arc<Inbox>,
    finished: Vec<Finished>,
    events: Sender<QueueEvent>,
    stopped_sent: bool,
    tags: Vec<TagState>,
    cqes: Vec<Cqe>,
    dead: u32,
    inflight: u32,
    stats: QueueStats,
    _not_send: std::marker::PhantomData<*const ()>,
}

impl Queue {
    /// Set up the ring (fixed files: cdev + target files; sparse buffer
    /// table for zc/bpf), the iod mapping and the data path.
    fn new(setup: QueueSetup) -> io::Result<Self> {
        let QueueSetup {
            cfg,
            cdev,
            target,
            counters,
            events,
        } = setup;
        let depth = cfg.depth as u32;
        let sq = (depth * 2).next_power_of_two().clamp(64, 8192);
        let ring = IoUring::builder()
            .setup_cqsize(sq * 2)
            .setup_coop_taskrun()
            // lets a non-waiting run_once see pending task work
            .setup_taskrun_flag()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq)?;
        let mut files = vec![cdev.as_raw_fd()];
        files.extend(target.files());
        ring.submitter().register_files(&files)?;
        if cfg.mode.sparse_buffers() {
            ring.submitter().register_buffers_sparse(depth)?;
        }
        let iods = IodMap::map(cdev.as_fd(), cfg.q_id, cfg.depth)?;
        let user_copy = (cfg.mode == Mode::UserCopy || cfg.user_copy).then(|| cdev.clone());
        let cq = ring.params().cq_entries() as usize;
        let ring = Box::new(ring);
        Self::with_edge(
            cfg,
            ring,
            Box::new(iods),
            cq,
            user_copy,
            target,
            counters,
            events,
        )
    }

    /// The queue on `ring` and `iods`: the kernel's, or a host test's.
    #[allow(clippy::too_many_arguments)]
    fn with_edge(
        cfg: QueueConfig,
        ring: Box<dyn Ring>,
        iods: Box<dyn IodSource>,
        cq_entries: usize,
        user_copy: Option<Arc<File>>,
        target: Arc<dyn Target>,
        counters: Arc<Counters>,
        events: Sender<QueueEvent>,
    ) -> io::Result<Self> {
        let path = DataPath::new(cfg.mode, cfg.depth, cfg.max_io)?;
        let inbox = Arc::new(Inbox::new(cfg.q_id, user_copy)?);
        let cq = cq_entries;
        let mut q = Self {
            tags: vec![TagState::default(); cfg.depth as usize],
            cqes: Vec::with_capacity(cq),
            cfg,
            ring,
            iods,
            path,
            target,
            counters,
            inbox,
            finished: Vec::new(),
            events,
            stopped_sent: false,
            dead: 0,
            inflight: 0,
            stats: QueueStats::default(),
            _not_send: std::marker::PhantomData,
        };
        q.arm_inbox().map_err(io::Error::from_raw_os_error)?;
        Ok(q)
    }

    /// (Re-)arm the multishot poll on the inbox's eventfd.
    fn arm_inbox(&mut self) -> Result<(), i32> {
        let e = opcode::PollAdd::new(types::Fd(self.inbox.eventfd()), libc::POLLIN as u32)
            .multi(true)
            .build()
            .user_data(ud::encode(KIND_INTERNAL, 0, 0, EXTRA_INBOX));
        self.ring.push(&e).map_err(|e| -e)
    }

    /// Make the next [`Queue::run_once`] that waits return (also) when `fd`
    /// is readable, once: for a thread that serves this queue and must see
    /// other events, e.g. [`StopSignals`](crate::StopSignals) (a
    /// `signalfd`) to stop the device. Arm it again after it fired if you
    /// still want it. The kernel takes its own reference to the file when
    /// the poll is submitted (at the next turn).
    pub fn wake_on(&mut self, fd: BorrowedFd<'_>) -> io::Result<()> {
        let e = opcode::PollAdd::new(types::Fd(fd.as_raw_fd()), libc::POLLIN as u32)
            .build()
            .user_data(ud::encode(KIND_INTERNAL, 0, 0, EXTRA_WAKE));
        self.ring
            .push(&e)
            .map_err(|e| io::Error::from_raw_os_error(-e))
    }

    /// This queue's io_uring fd.
    pub fn ring_fd(&self) -> RawFd {
        self.ring.fd()
    }

    /// FETCH_REQ or COMMIT_AND_FETCH_REQ of `tag`; its `user_data` says
    /// which (`op` = the command's `_IOC_NR`) and, for a COMMIT, the result
    /// (`extra`), so that a CQE (or a trace of the ring) names the command
    /// it answers.
    fn ublk_cmd(&self, op: u32, tag: u16, result: i32) -> io_uring::squeue::Entry {
        let cmd = IoCmd {
            q_id: self.cfg.q_id,
            tag,
            result,
            addr: self.path.cmd_addr(tag),
        };
        let mut c = opcode::UringCmd16::new(types::Fixed(0), op).cmd(cmd.to_bytes());
        if let Some(a) = self.path.sqe_addr(tag) {
            c = c.addr(Some(a));
        }
        c.build().user_data(ud::encode(
            KIND_UBLK_CMD,
            sys::ioc_nr(op),
            tag,
            result as u32,
        ))
    }

    /// Queue FETCH_REQ for every tag and submit them.
    fn fetch_all(&mut self) -> io::Result<()> {
        for tag in 0..self.cfg.depth {
            let e = self.ublk_cmd(sys::UBLK_U_IO_FETCH_REQ, tag, -1);
            self.ring
                .push(&e)
                .map_err(|e| io::Error::from_raw_os_error(-e))?;
        }
        self.ring.submit()?;
        Ok(())
    }

    #[inline]
    fn commit(&mut self, tag: u16, result: i32) {
        let e = self.ublk_cmd(sys::UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, result);
        if let Err(e) = self.ring.push(&e) {
            // Cannot even queue the commit: the ring is broken.
            log::error!(
                "queue {} tag {tag}: cannot queue COMMIT: errno {}",
                self.cfg.q_id,
                -e
            );
            self.mark_dead(tag);
        }
    }

    fn commit_redirected(&mut self, tag: u16, result: i32) {
        self.counters.add(self.cfg.q_id, Counter::Redirected, 1);
        self.commit_counted(tag, result);
    }

    /// Commit a request that was answered: an error counts.
    fn commit_counted(&mut self, tag: u16, result: i32) {
        if result < 0 {
            self.stats.errors += 1;
            self.counters.add(self.cfg.q_id, Counter::Errors, 1);
        }
        self.commit(tag, result);
    }

    fn mark_dead(&mut self, tag: u16) {
        let t = &mut self.tags[tag as usize];
        if !t.dead {
            t.dead = true;
            self.dead += 1;
        }
    }

    /// Serve a new request on `tag`.
    #[inline]
    fn serve(&mut self, tag: u16) {
        let iod = self.iods.get(tag);
        self.stats.requests += 1;
        let gen = {
            let t = &mut self.tags[tag as usize];
            t.gen = t.gen.wrapping_add(1);
            t.gen
        };
        let op = iod.op();
        let flags = iod.flags();
        if self.cfg.mode.bpf() && flags & sys::UBLK_IO_F_BPF_REDIRECT != 0 {
            self.stats.redirected += 1;
            if let Some(res) = self.tags[tag as usize]
                .redirect
                .on_request(iod.nr_sectors << 9)
            {
                self.commit_redirected(tag, res);
            }
            return;
        }
        self.counters.add(self.cfg.q_id, Counter::Served, 1);
        if flags & sys::UBLK_IO_F_FUA != 0 {
            self.counters.add(self.cfg.q_id, Counter::Fua, 1);
        }
        let req = Request::new(self.cfg.q_id, tag, &iod, self.path.request_buf(tag, &iod));
        // Keep a request's SQEs (and a zc fallback chain) in one submission.
        if self.ring.sq_free() < MAX_SQES_PER_REQUEST + 3 {
            let _ = self.ring.submit();
        }
        let link = matches!(self.path, DataPath::Zc)
            && flags & sys::UBLK_IO_F_NEED_REG_BUF != 0
            && matches!(req.buf(), crate::mode::IoBuf::Fixed { .. });
        let mut ctx = IoCtx {
            ring: &mut *self.ring,
            inbox: &self.inbox,
            tag,
            op,
            q_id: self.cfg.q_id,
            gen,
            bytes: req.bytes(),
            flags: req.flags,
            offset: req.offset(),
            link,
            reg_pushed: false,
            pushed: 0,
            deferred: false,
        };
        let sub = self.target.queue_io(&mut ctx, &req);
        let (pushed, reg_pushed, deferred) = (ctx.pushed, ctx.reg_pushed, ctx.deferred);
        if deferred {
            // The Completion decides; it may even have been posted already.
            if sub != Submit::Deferred {
                log::warn!(
                    "queue {} tag {tag}: target {} took a Completion but returned {sub:?}; \
                     the Completion's result is used",
                    self.cfg.q_id,
                    self.target.name()
                );
            }
            let t = &mut self.tags[tag as usize];
            t.deferred = true;
            t.op = op;
            t.bytes = req.bytes();
            self.inflight += 1;
            return;
        }
        let mut pending = pushed;
        if reg_pushed {
            let unreg = zc::buf_cmd(false, self.cfg.q_id, tag).user_data(ud::encode(
                KIND_TARGET,
                op,
                tag,
                EXTRA_UNREG_BUF,
            ));
            if self.ring.push(&unreg).is_ok() {
                pending += 1;
            }
        }
        match sub {
            Submit::Done(res) if pending == 0 => self.commit_counted(tag, res),
            Submit::Queued | Submit::Deferred if pending == 0 => {
                if sub == Submit::Deferred {
                    log::warn!(
                        "queue {} tag {tag}: Submit::Deferred without IoCtx::defer(): -EIO",
                        self.cfg.q_id
                    );
                }
                self.commit_counted(tag, -libc::EIO)
            }
            _ => {
                let t = &mut self.tags[tag as usize];
                t.pending = pending;
                t.bytes = req.bytes();
                t.done = 0;
                t.err = if let Submit::Done(r) = sub {
                    r.min(0)
                } else {
                    0
                };
                t.op = op;
                self.inflight += 1;
            }
        }
    }

    #[inline]
    fn on_target_cqe(&mut self, tag: u16, res: i32, extra: u32) {
        let t = &mut self.tags[tag as usize];
        if extra == EXTRA_REG_BUF {
            // Only failures post a CQE (SKIP_SUCCESS); not counted in pending.
            if t.err == 0 {
                t.err = res;
            }
            return;
        }
        if res < 0 {
            if t.err == 0 {
                t.err = res;
            }
        } else if extra == EXTRA_TARGET {
            t.done = t.done.wrapping_add(res as u32);
        }
        t.pending = t.pending.saturating_sub(1);
        if t.pending == 0 {
            let result = if t.err < 0 {
                t.err
            } else if t.op == sys::UBLK_IO_OP_READ || t.op == sys::UBLK_IO_OP_WRITE {
                if t.done == t.bytes {
                    t.bytes as i32
                } else {
                    -libc::EIO
                }
            } else {
                0
            };
            self.inflight -= 1;
            self.commit_counted(tag, result);
        }
    }

    /// Commit the deferred requests whose Completions came back.
    fn drain_inbox(&mut self) {
        let mut done = std::mem::take(&mut self.finished);
        self.inbox.drain(&mut done);
        for f in done.drain(..) {
            let Some(t) = self.tags.get_mut(f.tag as usize) else {
                continue;
            };
            if !t.deferred || t.gen != f.gen {
                continue; // stale: the tag has moved on
            }
            t.deferred = false;
            let rw = t.op == sys::UBLK_IO_OP_READ || t.op == sys::UBLK_IO_OP_WRITE;
            let result = if f.result >= 0 && rw && f.result as u32 != t.bytes {
                -libc::EIO
            } else {
                f.result
            };
            self.inflight -= 1;
            self.commit_counted(f.tag, result);
        }
        self.finished = done;
    }

    #[inline]
    fn on_cqe(&mut self, user_data: u64, res: i32, flags: u32) {
        let tag = ud::tag(user_data);
        if tag >= self.cfg.depth {
            return;
        }
        match ud::kind(user_data) {
            KIND_UBLK_CMD => {
                if res == sys::UBLK_IO_RES_OK {
                    self.serve(tag);
                } else {
                    if res != sys::UBLK_IO_RES_ABORT {
                        log::error!(
                            "queue {} tag {tag}: ublk command failed: {}",
                            self.cfg.q_id,
                            errno_str(res)
                        );
                    }
                    self.mark_dead(tag);
                }
            }
            KIND_TARGET => self.on_target_cqe(tag, res, ud::extra(user_data)),
            KIND_BPF => match self.tags[tag as usize].redirect.on_bpf_cqe(res) {
                Ok(Some(r)) => self.commit_redirected(tag, r),
                Ok(None) => {}
                Err(d) => log::error!(
                    "queue {} tag {tag}: duplicate BPF CQE ({d:?})",
                    self.cfg.q_id
                ),
            },
            KIND_INTERNAL if ud::extra(user_data) == EXTRA_INBOX => {
                if !cqueue::more(flags) {
                    if res < 0 && res != -libc::ECANCELED {
                        log::warn!("queue {}: inbox poll: {}", self.cfg.q_id, errno_str(res));
                    }
                    if let Err(e) = self.arm_inbox() {
                        log::error!(
                            "queue {}: cannot re-arm the inbox poll: errno {e}",
                            self.cfg.q_id
                        );
                    }
                }
                self.drain_inbox();
            }
            KIND_INTERNAL => {}
            k => log::error!(
                "queue {}: CQE of unknown kind {k} (user_data {user_data:#x})",
                self.cfg.q_id
            ),
        }
    }

    /// Has the device stopped and every request been answered?
    pub fn finished(&self) -> bool {
        self.dead >= self.cfg.depth as u32 && self.inflight == 0
    }

    /// One turn of the loop: submit what is queued, wait for at least one
    /// completion if `wait` (else only take what is there), and handle
    /// every CQE. Returns `Ok(false)` once the device has stopped and every
    /// request was answered (then the queue is done; drop it), `Ok(true)`
    /// otherwise. A signal interrupts the wait and returns `Ok(true)`.
    pub fn run_once(&mut self, wait: bool) -> io::Result<bool> {
        if self.finished() {
            self.send_stopped();
            return Ok(false);
        }
        let q = self.cfg.q_id;
        let entered = self.ring.submit_and_wait(wait as usize);
        self.counters.add(q, Counter::Enters, 1);
        match entered {
            Ok(n) => self.counters.add(q, Counter::Sqes, n as u64),
            Err(e)
                if matches!(
                    e.raw_os_error(),
                    Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                ) => {}
            Err(e) => return Err(e),
        }
        self.cqes.clear();
        self.ring.reap(&mut self.cqes);
        self.counters.add(q, Counter::Cqes, self.cqes.len() as u64);
        for i in 0..self.cqes.len() {
            let (u, r, f) = self.cqes[i];
            self.on_cqe(u, r, f);
        }
        if self.finished() {
            self.send_stopped();
            return Ok(false);
        }
        Ok(true)
    }

    /// Serve until the device stops and every request is answered.
    pub fn run(&mut self) -> io::Result<QueueStats> {
        while self.run_once(true)? {}
        Ok(self.stats)
    }

    /// Counters so far.
    pub fn stats(&self) -> QueueStats {
        self.stats
    }

    fn send_stopped(&mut self) {
        if !self.stopped_sent {
            self.stopped_sent = true;
            let _ = self.events.send(QueueEvent::Stopped(self.stats));
        }
    }
}

impl Drop for Queue {
    fn drop(&mut self) {
        // A queue dropped early still counts as stopped for its device.
        self.send_stopped();
    }
}

fn errno_str(res: i32) -> String {
    if res < 0 {
        io::Error::from_raw_os_error(-res).to_string()
    } else {
        format!("result {res}")
    }
}

/// Queue thread body (library-run queues): open, serve.
pub(crate) fn queue_thread(setup: QueueSetup) -> crate::Result<QueueStats> {
    let q_id = setup.q_id();
    // SIGINT/SIGTERM are for the thread that stops the device (crate::stop)
    if let Err(e) = crate::stop::block_in_this_thread() {
        log::warn!("queue {q_id}: cannot block the stop signals: {e}");
    }
    let mut q = setup.open()?;
    q.run()
        .map_err(|source| crate::Error::Queue { q_id, source })
}
