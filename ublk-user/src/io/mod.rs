//! Data plane: one thread and one io_uring per hardware queue.
//!
//! The flow of a request through [`Queue::run`]:
//!
//! 1. a `FETCH_REQ` / `COMMIT_AND_FETCH_REQ` CQE (`KIND_UBLK_CMD`, tag) says
//!    the iod for that tag holds a new request;
//! 2. if the BPF program redirected it, [`redirect`] waits for the backing
//!    I/O's `KIND_BPF` CQE instead of serving it;
//! 3. otherwise the [`DataPath`] (copy / zc) says where the data is and the
//!    [`Target`] serves it, at once or with SQEs on this same ring
//!    (`KIND_TARGET`);
//! 4. when its CQEs are in, the tag is committed with `COMMIT_AND_FETCH_REQ`,
//!    which also fetches the tag's next request.
//!
//! Every SQE's `user_data` is `kind:8|op:8|tag:16` (+ 32 bits of extra), see
//! [`ublk_ebpf_common::user_data`], so CQEs are routed without lookups.
//! Submissions are batched: one `io_uring_enter` per loop turn.

pub mod counters;
pub mod redirect;

use crate::mode::{zc, DataMode, DataPath};
use crate::sys::{self, IoCmd, IoDesc};
use crate::target::{Request, Submit, Target, MAX_SQES_PER_REQUEST};
use counters::Counters;
use io_uring::{opcode, squeue, types, IoUring};
use redirect::Redirect;
use std::io;
use std::os::fd::{AsRawFd, RawFd};
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

/// What a queue thread needs.
#[derive(Clone, Debug)]
pub struct QueueConfig {
    pub dev_id: u32,
    pub q_id: u16,
    pub depth: u16,
    pub max_io: u32,
    pub mode: DataMode,
    /// Handle `UBLK_IO_F_BPF_REDIRECT` requests and keep a sparse buffer
    /// table for the kernel's redirect registrations.
    pub bpf: bool,
    /// `/dev/ublkcN`.
    pub cdev_fd: RawFd,
}

/// Sent to the device thread once the queue has fetched all its tags.
#[derive(Clone, Copy, Debug)]
pub struct QueueReady {
    pub q_id: u16,
    /// This queue's io_uring fd (for the BPF loader's map).
    pub ring_fd: RawFd,
}

/// Counters, returned when the queue stops.
#[derive(Clone, Copy, Debug, Default)]
pub struct QueueStats {
    pub requests: u64,
    pub redirected: u64,
    pub errors: u64,
}

/// The context a target queues its SQEs through.
pub struct IoCtx<'a> {
    ring: &'a mut IoUring,
    tag: u16,
    op: u8,
    q_id: u16,
    /// zc fallback: chain everything after a REGISTER_IO_BUF.
    link: bool,
    reg_pushed: bool,
    pushed: u32,
}

impl IoCtx<'_> {
    /// Fixed file `i` of the target's [`Target::files`].
    #[inline]
    pub fn file(&self, i: u32) -> types::Fixed {
        types::Fixed(i + 1)
    }

    /// Queue one SQE for the current request; its `user_data` is set here.
    /// Returns a negative errno if the ring is unusable.
    #[inline]
    pub fn push(&mut self, sqe: squeue::Entry) -> Result<(), i32> {
        if self.pushed as usize >= MAX_SQES_PER_REQUEST {
            return Err(-libc::E2BIG);
        }
        if self.link && !self.reg_pushed {
            let reg = zc::buf_cmd(true, self.q_id, self.tag)
                .flags(squeue::Flags::IO_HARDLINK | squeue::Flags::SKIP_SUCCESS)
                .user_data(ud::encode(KIND_TARGET, self.op, self.tag, EXTRA_REG_BUF));
            push_sqe(self.ring, &reg)?;
            self.reg_pushed = true;
        }
        let mut sqe = sqe.user_data(ud::encode(KIND_TARGET, self.op, self.tag, EXTRA_TARGET));
        if self.link {
            sqe = sqe.flags(squeue::Flags::IO_HARDLINK);
        }
        push_sqe(self.ring, &sqe)?;
        self.pushed += 1;
        Ok(())
    }
}

#[inline]
fn push_sqe(ring: &mut IoUring, sqe: &squeue::Entry) -> Result<(), i32> {
    for _ in 0..2 {
        // SAFETY: every buffer an SQE points to (per-tag copy buffers, iods,
        // registered buffers) lives as long as the queue, which waits for all
        // CQEs before dropping them.
        if unsafe { ring.submission().push(sqe) }.is_ok() {
            return Ok(());
        }
        if let Err(e) = ring.submit() {
            return Err(-e.raw_os_error().unwrap_or(libc::EIO));
        }
    }
    Err(-libc::EBUSY)
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
    redirect: Redirect,
}

/// The per-queue iod array, mmapped read-only from `/dev/ublkcN`.
struct Iods {
    ptr: *const IoDesc,
    len: usize,
    depth: u16,
}

impl Iods {
    fn map(cdev: RawFd, q_id: u16, depth: u16) -> io::Result<Self> {
        // SAFETY: sysconf has no memory effects.
        let page = unsafe { libc::sysconf(libc::_SC_PAGESIZE) } as usize;
        let len = sys::iod_area_len(depth, page);
        // SAFETY: a shared read-only mapping of the driver's iod area; the
        // result is checked for MAP_FAILED.
        let p = unsafe {
            libc::mmap(
                std::ptr::null_mut(),
                len,
                libc::PROT_READ,
                libc::MAP_SHARED | libc::MAP_POPULATE,
                cdev,
                sys::iod_mmap_offset(q_id, page),
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        Ok(Self {
            ptr: p as *const IoDesc,
            len,
            depth,
        })
    }

    #[inline]
    fn get(&self, tag: u16) -> IoDesc {
        debug_assert!(tag < self.depth);
        // SAFETY: tag < depth, so the iod is inside the mapping; the kernel
        // writes it before completing the command we just reaped, and a
        // volatile read keeps the compiler from caching it across requests.
        unsafe { std::ptr::read_volatile(self.ptr.add(tag as usize)) }
    }
}

impl Drop for Iods {
    fn drop(&mut self) {
        // SAFETY: unmaps exactly the mapping created in `map`.
        unsafe { libc::munmap(self.ptr as *mut libc::c_void, self.len) };
    }
}

/// One hardware queue: its ring, iods, data path and per-tag state.
pub struct Queue {
    cfg: QueueConfig,
    ring: IoUring,
    iods: Iods,
    path: DataPath,
    target: Arc<dyn Target>,
    counters: Arc<Counters>,
    tags: Vec<TagState>,
    cqes: Vec<(u64, i32)>,
    dead: u32,
    inflight: u32,
    stats: QueueStats,
}

impl Queue {
    /// Set up the ring (fixed files: cdev + target files; sparse buffer
    /// table for zc/bpf), the iod mapping and the data path.
    pub fn new(
        cfg: QueueConfig,
        target: Arc<dyn Target>,
        counters: Arc<Counters>,
    ) -> io::Result<Self> {
        let depth = cfg.depth as u32;
        let sq = (depth * 2).next_power_of_two().clamp(64, 8192);
        let ring = IoUring::builder()
            .setup_cqsize(sq * 2)
            .setup_coop_taskrun()
            .setup_single_issuer()
            .setup_defer_taskrun()
            .build(sq)?;
        let mut files = vec![cfg.cdev_fd];
        files.extend(target.files());
        ring.submitter().register_files(&files)?;
        if cfg.mode == DataMode::Zc || cfg.bpf {
            ring.submitter().register_buffers_sparse(depth)?;
        }
        let iods = Iods::map(cfg.cdev_fd, cfg.q_id, cfg.depth)?;
        let path = DataPath::new(cfg.mode, cfg.depth, cfg.max_io)?;
        let cq = ring.params().cq_entries() as usize;
        Ok(Self {
            tags: vec![TagState::default(); cfg.depth as usize],
            cqes: Vec::with_capacity(cq),
            cfg,
            ring,
            iods,
            path,
            target,
            counters,
            dead: 0,
            inflight: 0,
            stats: QueueStats::default(),
        })
    }

    pub fn ring_fd(&self) -> RawFd {
        self.ring.as_raw_fd()
    }

    fn ublk_cmd(&self, op: u32, tag: u16, result: i32) -> squeue::Entry {
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
        c.build().user_data(ud::encode(KIND_UBLK_CMD, 0, tag, 0))
    }

    /// Queue FETCH_REQ for every tag and submit them.
    pub fn fetch_all(&mut self) -> io::Result<()> {
        for tag in 0..self.cfg.depth {
            let e = self.ublk_cmd(sys::UBLK_U_IO_FETCH_REQ, tag, -1);
            push_sqe(&mut self.ring, &e).map_err(|e| io::Error::from_raw_os_error(-e))?;
        }
        self.ring.submit()?;
        Ok(())
    }

    #[inline]
    fn commit(&mut self, tag: u16, result: i32) {
        let e = self.ublk_cmd(sys::UBLK_U_IO_COMMIT_AND_FETCH_REQ, tag, result);
        if let Err(e) = push_sqe(&mut self.ring, &e) {
            // Cannot even queue the commit: the ring is broken.
            eprintln!(
                "ublk-user: queue {} tag {tag}: cannot queue COMMIT: errno {}",
                self.cfg.q_id, -e
            );
            self.mark_dead(tag);
        }
    }

    fn commit_redirected(&mut self, tag: u16, result: i32) {
        self.counters.add(self.cfg.q_id, counters::REDIRECTED, 1);
        if result < 0 {
            self.stats.errors += 1;
            self.counters.add(self.cfg.q_id, counters::ERRORS, 1);
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
        let op = iod.op();
        let flags = iod.flags();
        if self.cfg.bpf && flags & sys::UBLK_IO_F_BPF_REDIRECT != 0 {
            self.stats.redirected += 1;
            if let Some(res) = self.tags[tag as usize]
                .redirect
                .on_request(iod.nr_sectors << 9)
            {
                self.commit(tag, res);
            }
            return;
        }
        self.counters.add(self.cfg.q_id, counters::SERVED, 1);
        if flags & sys::UBLK_IO_F_FUA != 0 {
            self.counters.add(self.cfg.q_id, counters::FUA, 1);
        }
        let req = Request {
            q_id: self.cfg.q_id,
            tag,
            op,
            flags,
            start_sector: iod.start_sector,
            nr_sectors: iod.nr_sectors,
            buf: self.path.request_buf(tag, &iod),
        };
        // Keep a request's SQEs (and a zc fallback chain) in one submission.
        let free = {
            let sq = self.ring.submission();
            sq.capacity() - sq.len()
        };
        if free < MAX_SQES_PER_REQUEST + 3 {
            let _ = self.ring.submit();
        }
        let link = matches!(self.path, DataPath::Zc)
            && flags & sys::UBLK_IO_F_NEED_REG_BUF != 0
            && matches!(req.buf, crate::mode::IoBuf::Fixed { .. });
        let mut ctx = IoCtx {
            ring: &mut self.ring,
            tag,
            op,
            q_id: self.cfg.q_id,
            link,
            reg_pushed: false,
            pushed: 0,
        };
        let sub = self.target.queue_io(&mut ctx, &req);
        let (pushed, reg_pushed) = (ctx.pushed, ctx.reg_pushed);
        let mut pending = pushed;
        if reg_pushed {
            let unreg = zc::buf_cmd(false, self.cfg.q_id, tag).user_data(ud::encode(
                KIND_TARGET,
                op,
                tag,
                EXTRA_UNREG_BUF,
            ));
            if push_sqe(&mut self.ring, &unreg).is_ok() {
                pending += 1;
            }
        }
        match sub {
            Submit::Done(res) if pending == 0 => self.commit(tag, res),
            Submit::Queued if pending == 0 => self.commit(tag, -libc::EIO),
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
            if result < 0 {
                self.stats.errors += 1;
                self.counters.add(self.cfg.q_id, counters::ERRORS, 1);
            }
            self.inflight -= 1;
            self.commit(tag, result);
        }
    }

    #[inline]
    fn on_cqe(&mut self, user_data: u64, res: i32) {
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
                        eprintln!(
                            "ublk-user: queue {} tag {tag}: ublk command failed: {}",
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
                Err(d) => eprintln!(
                    "ublk-user: queue {} tag {tag}: duplicate BPF CQE ({d:?})",
                    self.cfg.q_id
                ),
            },
            KIND_INTERNAL => {}
            k => eprintln!(
                "ublk-user: queue {}: CQE of unknown kind {k} (user_data {user_data:#x})",
                self.cfg.q_id
            ),
        }
    }

    /// Serve until every tag has been aborted (the device stopped).
    pub fn run(&mut self) -> io::Result<QueueStats> {
        let depth = self.cfg.depth as u32;
        let q = self.cfg.q_id;
        while self.dead < depth || self.inflight > 0 {
            let entered = self.ring.submit_and_wait(1);
            self.counters.add(q, counters::ENTERS, 1);
            match entered {
                Ok(n) => self.counters.add(q, counters::SQES, n as u64),
                Err(e)
                    if matches!(
                        e.raw_os_error(),
                        Some(libc::EINTR) | Some(libc::EBUSY) | Some(libc::EAGAIN)
                    ) => {}
                Err(e) => return Err(e),
            }
            let mut cq = self.ring.completion();
            cq.sync();
            self.cqes.clear();
            for cqe in &mut cq {
                self.cqes.push((cqe.user_data(), cqe.result()));
            }
            drop(cq);
            self.counters.add(q, counters::CQES, self.cqes.len() as u64);
            for i in 0..self.cqes.len() {
                let (u, r) = self.cqes[i];
                self.on_cqe(u, r);
            }
        }
        Ok(self.stats)
    }
}

fn errno_str(res: i32) -> String {
    if res < 0 {
        io::Error::from_raw_os_error(-res).to_string()
    } else {
        format!("result {res}")
    }
}

/// Queue thread body: set up, report readiness (or the setup error), serve.
pub fn queue_thread(
    cfg: QueueConfig,
    target: Arc<dyn Target>,
    counters: Arc<Counters>,
    ready: Sender<Result<QueueReady, String>>,
) -> io::Result<QueueStats> {
    let q_id = cfg.q_id;
    let mut q = match Queue::new(cfg, target, counters).and_then(|mut q| q.fetch_all().map(|_| q)) {
        Ok(q) => q,
        Err(e) => {
            let _ = ready.send(Err(format!("queue {q_id}: setup failed: {e}")));
            return Err(e);
        }
    };
    let _ = ready.send(Ok(QueueReady {
        q_id,
        ring_fd: q.ring_fd(),
    }));
    drop(ready);
    q.run()
}
