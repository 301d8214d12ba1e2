//! Host tests of [`Queue`]: the queue loop against a scripted kernel in
//! place of its io_uring and iod area ([`ring`](super::ring)). The kernel
//! here keeps the driver's rule for each tag (a FETCH or COMMIT is
//! outstanding until its CQE hands the tag to the server, and only a tag
//! the server holds may be committed) and logs every SQE it is given.

use super::completion::Completion;
use super::counters::{Counter, Counters};
use super::ring::{Cqe, IodSource, Ring};
use super::*;
use crate::target::{Op, Submit};
use std::cell::RefCell;
use std::collections::VecDeque;
use std::rc::Rc;
use std::sync::mpsc;
use std::sync::Mutex;

const URING_CMD: u32 = io_uring::opcode::UringCmd16::CODE as u32;
const DEPTH: u16 = 4;
const FETCH: u8 = sys::ioc_nr(sys::UBLK_U_IO_FETCH_REQ);
const COMMIT: u8 = sys::ioc_nr(sys::UBLK_U_IO_COMMIT_AND_FETCH_REQ);
const REG: u8 = sys::ioc_nr(sys::UBLK_U_IO_REGISTER_IO_BUF);

/// An SQE the queue gave the kernel: its opcode and `user_data`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Sqe {
    opcode: u32,
    ud: u64,
}

impl Sqe {
    fn kind(&self) -> u8 {
        ud::kind(self.ud)
    }
    fn tag(&self) -> u16 {
        ud::tag(self.ud)
    }
    fn extra(&self) -> u32 {
        ud::extra(self.ud)
    }
}

/// Who holds a tag, as the driver sees it.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum TagOwner {
    /// No command yet.
    Nobody,
    /// FETCH or COMMIT_AND_FETCH outstanding: the driver's.
    Kernel,
    /// Its CQE delivered a request: the server's, until it commits.
    Server,
}

#[derive(Default)]
struct Kernel {
    /// SQEs pushed and not yet submitted (they are logged and checked at
    /// once: the order the queue pushes in is the order the kernel sees).
    unsubmitted: usize,
    /// Every SQE, in order.
    log: Vec<Sqe>,
    cq: VecDeque<Cqe>,
    owner: Vec<Option<TagOwner>>,
    /// Broken rules, with the SQE that broke them.
    violations: Vec<String>,
    /// Make `push` fail with this errno.
    fail_push: Option<i32>,
    iods: Vec<sys::IoDesc>,
}

impl Kernel {
    fn owner(&mut self, tag: u16) -> &mut TagOwner {
        self.owner[tag as usize].get_or_insert(TagOwner::Nobody)
    }

    fn take(&mut self, sqe: Sqe) {
        if sqe.kind() == KIND_UBLK_CMD {
            assert_eq!(sqe.opcode, URING_CMD);
            let op = ud::op(sqe.ud);
            let tag = sqe.tag();
            let want = if op == FETCH {
                TagOwner::Nobody
            } else {
                TagOwner::Server
            };
            let o = self.owner(tag);
            if *o != want {
                let o = *o;
                self.violations
                    .push(format!("{sqe:?} (op {op:#x}) while tag {tag} is {o:?}"));
            }
            *self.owner(tag) = TagOwner::Kernel;
        }
        self.log.push(sqe);
    }
}

/// The scripted kernel's ring: shares [`Kernel`] with the test.
struct FakeRing(Rc<RefCell<Kernel>>);

impl Ring for FakeRing {
    fn push(&mut self, sqe: &io_uring::squeue::Entry) -> Result<(), i32> {
        let mut k = self.0.borrow_mut();
        if let Some(e) = k.fail_push {
            return Err(-e);
        }
        k.take(Sqe {
            opcode: sqe.get_opcode(),
            ud: sqe.get_user_data(),
        });
        k.unsubmitted += 1;
        Ok(())
    }
    fn submit(&mut self) -> io::Result<usize> {
        Ok(std::mem::take(&mut self.0.borrow_mut().unsubmitted))
    }
    fn submit_and_wait(&mut self, _want: usize) -> io::Result<usize> {
        self.submit()
    }
    fn sq_free(&mut self) -> usize {
        64 - self.0.borrow().unsubmitted
    }
    fn reap(&mut self, out: &mut Vec<Cqe>) {
        out.extend(self.0.borrow_mut().cq.drain(..));
    }
    fn fd(&self) -> RawFd {
        -1
    }
}

struct FakeIods(Rc<RefCell<Kernel>>);

impl IodSource for FakeIods {
    fn get(&self, tag: u16) -> sys::IoDesc {
        self.0.borrow().iods[tag as usize]
    }
}

/// What the test target does with each request.
#[derive(Clone, Copy, Debug)]
enum Plan {
    /// `Submit::Done(res)` at once.
    Done(i32),
    /// Read the request's data from file 0 (one SQE), `Submit::Queued`.
    Read,
    /// Take a Completion, `Submit::Deferred`.
    Defer,
}

#[derive(Default)]
struct Script {
    plan: Option<Plan>,
    served: Vec<(u16, Op)>,
    completions: Vec<Completion>,
}

/// A target that does what its script says and records what it saw.
struct Scripted(Mutex<Script>);

impl Target for Scripted {
    fn name(&self) -> &'static str {
        "scripted"
    }
    fn size(&self) -> u64 {
        1 << 20
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let mut s = self.0.lock().unwrap();
        s.served.push((req.tag, req.op));
        match s.plan.expect("a plan") {
            Plan::Done(r) => Submit::Done(r),
            Plan::Read => match ctx.read(req, 0, req.offset()) {
                Ok(()) => Submit::Queued,
                Err(e) => Submit::Done(e),
            },
            Plan::Defer => {
                let c = ctx.defer().expect("defer");
                s.completions.push(c);
                Submit::Deferred
            }
        }
    }
}

struct Harness {
    k: Rc<RefCell<Kernel>>,
    q: Queue,
    target: Arc<Scripted>,
    events: mpsc::Receiver<QueueEvent>,
    counters: Arc<Counters>,
}

impl Harness {
    /// A queue of `DEPTH` tags in `mode`, opened: every tag fetched.
    fn new(mode: Mode) -> Self {
        let k = Rc::new(RefCell::new(Kernel {
            owner: vec![None; DEPTH as usize],
            iods: vec![sys::IoDesc::default(); DEPTH as usize],
            ..Default::default()
        }));
        let target = Arc::new(Scripted(Mutex::new(Script::default())));
        let counters = Arc::new(Counters::anon(1).unwrap());
        let (tx, events) = mpsc::channel();
        let cfg = QueueConfig {
            dev_id: 0,
            q_id: 0,
            depth: DEPTH,
            max_io: 1 << 16,
            mode,
            user_copy: false,
        };
        let mut q = Queue::with_edge(
            cfg,
            Box::new(FakeRing(k.clone())),
            Box::new(FakeIods(k.clone())),
            64,
            None,
            target.clone(),
            counters.clone(),
            tx,
        )
        .unwrap();
        q.fetch_all().unwrap();
        let h = Self {
            k,
            q,
            target,
            events,
            counters,
        };
        let fetched: Vec<u16> = h.ublk_cmds(FETCH).iter().map(Sqe::tag).collect();
        assert_eq!(fetched, (0..DEPTH).collect::<Vec<_>>());
        h
    }

    fn plan(&self, p: Plan) {
        self.target.0.lock().unwrap().plan = Some(p);
    }

    /// The driver hands `tag` a request: its iod, then the command's CQE.
    fn request(&self, tag: u16, op: u8, flags: u32, sectors: u32) {
        let mut k = self.k.borrow_mut();
        assert_eq!(
            *k.owner(tag),
            TagOwner::Kernel,
            "tag {tag} has no command out"
        );
        k.iods[tag as usize] = sys::IoDesc {
            op_flags: op as u32 | flags,
            nr_sectors: sectors,
            start_sector: 8 * tag as u64,
            addr: 0,
        };
        *k.owner(tag) = TagOwner::Server;
        k.cq.push_back((ud::encode(KIND_UBLK_CMD, 0, tag, 0), 0, 0));
    }

    /// A CQE for `sqe` with `res`.
    fn answer(&self, sqe: Sqe, res: i32) {
        self.k.borrow_mut().cq.push_back((sqe.ud, res, 0));
    }

    /// The driver aborts `tag`'s outstanding command (the device stops).
    fn abort(&self, tag: u16) {
        let mut k = self.k.borrow_mut();
        assert_eq!(*k.owner(tag), TagOwner::Kernel);
        *k.owner(tag) = TagOwner::Nobody;
        let ud = ud::encode(KIND_UBLK_CMD, 0, tag, 0);
        k.cq.push_back((ud, sys::UBLK_IO_RES_ABORT, 0));
    }

    /// The inbox's eventfd poll fired (a Completion was posted).
    fn inbox_ready(&self) {
        let ud = ud::encode(KIND_INTERNAL, 0, 0, EXTRA_INBOX);
        let more = 1 << 1; // IORING_CQE_F_MORE: the multishot poll stays armed
        self.k.borrow_mut().cq.push_back((ud, 1, more));
    }

    /// One turn of the queue loop.
    fn turn(&mut self) -> bool {
        self.q.run_once(false).unwrap()
    }

    /// The SQEs from `from` on.
    fn log_from(&self, from: usize) -> Vec<Sqe> {
        self.k.borrow().log[from..].to_vec()
    }

    fn log_len(&self) -> usize {
        self.k.borrow().log.len()
    }

    fn ublk_cmds(&self, op: u8) -> Vec<Sqe> {
        self.k
            .borrow()
            .log
            .iter()
            .filter(|s| s.kind() == KIND_UBLK_CMD && ud::op(s.ud) == op)
            .copied()
            .collect()
    }

    fn commits(&self) -> Vec<(u16, i32)> {
        self.ublk_cmds(COMMIT)
            .iter()
            .map(|s| (s.tag(), s.extra() as i32))
            .collect()
    }

    fn target_sqes(&self, from: usize) -> Vec<Sqe> {
        self.log_from(from)
            .into_iter()
            .filter(|s| s.kind() == KIND_TARGET)
            .collect()
    }

    fn served(&self) -> Vec<(u16, Op)> {
        self.target.0.lock().unwrap().served.clone()
    }

    fn violations(&self) -> Vec<String> {
        self.k.borrow().violations.clone()
    }
}

const READ: u8 = sys::UBLK_IO_OP_READ;
const FLUSH: u8 = sys::UBLK_IO_OP_FLUSH;

/// FETCH for every tag at open; a request is committed once, on its own
/// tag, with the target's result, and only after it arrived; the COMMIT
/// fetches the next request, which is committed again.
#[test]
fn fetch_then_one_commit_per_request() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Done(0));
    assert!(h.turn());
    assert!(h.commits().is_empty(), "nothing arrived, nothing committed");
    h.request(2, FLUSH, 0, 0);
    assert!(h.turn());
    assert_eq!(h.commits(), [(2, 0)]);
    h.plan(Plan::Done(-libc::ENOSPC));
    h.request(2, FLUSH, 0, 0);
    h.request(0, FLUSH, 0, 0);
    assert!(h.turn());
    assert_eq!(
        h.commits(),
        [(2, 0), (2, -libc::ENOSPC), (0, -libc::ENOSPC)]
    );
    assert_eq!(h.served(), [(2, Op::Flush), (2, Op::Flush), (0, Op::Flush)]);
    assert_eq!(h.violations(), Vec::<String>::new());
    assert_eq!(h.counters.get(0, Counter::Served), Some(3));
    assert_eq!(h.counters.get(0, Counter::Errors), Some(2));
}

/// A request served with SQEs is committed when their CQEs are in, with
/// the byte count if the whole request was done, else -EIO or the error.
#[test]
fn target_sqes_are_committed_from_their_cqes() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Read);
    for (tag, res, want) in [
        (1, 4096, 4096),
        (1, 512, -libc::EIO),
        (3, -libc::EBADF, -libc::EBADF),
    ] {
        let mark = h.log_len();
        h.request(tag, READ, 0, 8);
        assert!(h.turn());
        let sqes = h.target_sqes(mark);
        assert_eq!(sqes.len(), 1, "{sqes:?}");
        assert_eq!(sqes[0].opcode, io_uring::opcode::Read::CODE as u32);
        assert_eq!(sqes[0].tag(), tag);
        let before = h.commits().len();
        assert!(h.turn());
        assert_eq!(h.commits().len(), before, "committed before the CQE");
        h.answer(sqes[0], res);
        assert!(h.turn());
        assert_eq!(h.commits().last(), Some(&(tag, want)));
    }
    assert_eq!(h.violations(), Vec::<String>::new());
}

/// zc with UBLK_IO_F_NEED_REG_BUF (the automatic registration fell back):
/// the queue registers the request's buffer before the target's SQE and
/// unregisters it after, one of each, and commits once both the target's
/// and the unregister's CQEs are in. Without the flag: neither.
#[test]
fn zc_fallback_registers_and_unregisters_once_around_the_io() {
    let mut h = Harness::new(Mode::Zc);
    h.plan(Plan::Read);
    let mark = h.log_len();
    h.request(1, READ, sys::UBLK_IO_F_NEED_REG_BUF, 8);
    assert!(h.turn());
    let sqes = h.target_sqes(mark);
    let extras: Vec<u32> = sqes.iter().map(Sqe::extra).collect();
    assert_eq!(extras, [EXTRA_REG_BUF, EXTRA_TARGET, EXTRA_UNREG_BUF]);
    assert!(sqes.iter().all(|s| s.tag() == 1));
    assert_eq!(
        sqes[1].opcode,
        io_uring::opcode::ReadFixed::CODE as u32,
        "zc reads into the registered buffer"
    );
    // REGISTER posts no CQE on success (SKIP_SUCCESS)
    h.answer(sqes[1], 4096);
    assert!(h.turn());
    assert!(h.commits().is_empty(), "committed before the unregister");
    h.answer(sqes[2], 0);
    assert!(h.turn());
    assert_eq!(h.commits(), [(1, 4096)]);

    // a failed registration fails the request
    let mark = h.log_len();
    h.request(1, READ, sys::UBLK_IO_F_NEED_REG_BUF, 8);
    assert!(h.turn());
    let sqes = h.target_sqes(mark);
    h.answer(sqes[0], -libc::ENOMEM);
    h.answer(sqes[1], -libc::ECANCELED);
    h.answer(sqes[2], -libc::EINVAL);
    assert!(h.turn());
    assert_eq!(h.commits().last(), Some(&(1, -libc::ENOMEM)));

    // registered automatically: no register/unregister of our own
    let mark = h.log_len();
    h.request(2, READ, 0, 8);
    assert!(h.turn());
    let sqes = h.target_sqes(mark);
    assert_eq!(
        sqes.iter().map(Sqe::extra).collect::<Vec<_>>(),
        [EXTRA_TARGET]
    );
    assert!(h.ublk_cmds(REG).is_empty());
    assert_eq!(h.violations(), Vec::<String>::new());
}

/// A redirected request is committed once both its CQEs are in (the
/// command's and the BPF backing I/O's, in either order), with the
/// backing result; the target never sees it.
#[test]
fn redirected_requests_commit_on_the_pair_of_cqes() {
    let mut h = Harness::new(Mode::Bpf);
    h.plan(Plan::Done(0));
    let bpf = |tag: u16| Sqe {
        opcode: URING_CMD,
        ud: ud::encode(KIND_BPF, READ, tag, 0),
    };
    // the command first
    h.request(0, READ, sys::UBLK_IO_F_BPF_REDIRECT, 8);
    assert!(h.turn());
    assert!(h.commits().is_empty(), "committed without the backing I/O");
    h.answer(bpf(0), 4096);
    assert!(h.turn());
    assert_eq!(h.commits(), [(0, 4096)]);
    // the backing I/O first
    h.answer(bpf(3), -libc::EIO);
    assert!(h.turn());
    assert_eq!(h.commits().len(), 1, "committed without the command");
    h.request(3, READ, sys::UBLK_IO_F_BPF_REDIRECT, 8);
    assert!(h.turn());
    assert_eq!(h.commits(), [(0, 4096), (3, -libc::EIO)]);
    // a duplicate BPF CQE commits nothing
    h.answer(bpf(1), 4096);
    h.answer(bpf(1), 4096);
    assert!(h.turn());
    assert_eq!(h.commits().len(), 2);
    assert!(h.served().is_empty(), "the target saw a redirected request");
    assert_eq!(h.counters.get(0, Counter::Redirected), Some(2));
    assert_eq!(h.counters.get(0, Counter::Errors), Some(1));
    assert_eq!(h.violations(), Vec::<String>::new());
}

/// Outside a BPF mode the redirect flag means nothing: the target serves
/// the request.
#[test]
fn the_redirect_flag_is_ignored_outside_the_bpf_modes() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Done(0));
    h.request(0, FLUSH, sys::UBLK_IO_F_BPF_REDIRECT, 0);
    assert!(h.turn());
    assert_eq!(h.served(), [(0, Op::Flush)]);
    assert_eq!(h.commits(), [(0, 0)]);
}

/// A deferred request is committed when its Completion comes back through
/// the inbox, with its result (a short READ/WRITE as -EIO; a dropped
/// Completion as -EIO), and not before.
#[test]
fn deferred_requests_commit_when_completed() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Defer);
    h.request(0, READ, 0, 8);
    h.request(1, READ, 0, 8);
    h.request(2, FLUSH, 0, 0);
    assert!(h.turn());
    assert!(h.commits().is_empty());
    let mut cs = std::mem::take(&mut h.target.0.lock().unwrap().completions);
    assert_eq!(cs.iter().map(|c| c.tag()).collect::<Vec<_>>(), [0, 1, 2]);
    let c2 = cs.pop().unwrap();
    let c1 = cs.pop().unwrap();
    let c0 = cs.pop().unwrap();
    // completed from another thread
    std::thread::spawn(move || c1.complete(4096))
        .join()
        .unwrap();
    h.inbox_ready();
    assert!(h.turn());
    assert_eq!(h.commits(), [(1, 4096)]);
    c0.complete(100); // short
    drop(c2); // never completed
    h.inbox_ready();
    assert!(h.turn());
    assert_eq!(h.commits(), [(1, 4096), (0, -libc::EIO), (2, -libc::EIO)]);
    assert_eq!(h.violations(), Vec::<String>::new());
}

/// A Completion of an earlier request on a tag does not commit the tag's
/// current request.
#[test]
fn stale_completions_are_ignored() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Defer);
    h.request(0, FLUSH, 0, 0);
    assert!(h.turn());
    let old = h.target.0.lock().unwrap().completions.pop().unwrap();
    // the Completion is cloned into a stale one by completing, re-serving
    old.complete(0);
    h.inbox_ready();
    assert!(h.turn());
    assert_eq!(h.commits(), [(0, 0)]);
    h.request(0, FLUSH, 0, 0);
    assert!(h.turn());
    // a second post with the first request's serial number
    let inbox = h.q.inbox.clone();
    inbox.post(completion::Finished {
        tag: 0,
        gen: 1,
        result: -libc::EIO,
    });
    h.inbox_ready();
    assert!(h.turn());
    assert_eq!(h.commits(), [(0, 0)], "a stale completion committed");
    let cur = h.target.0.lock().unwrap().completions.pop().unwrap();
    cur.complete(0);
    h.inbox_ready();
    assert!(h.turn());
    assert_eq!(h.commits(), [(0, 0), (0, 0)]);
}

/// A failed ublk command retires its tag (no commit, not re-fetched); a
/// COMMIT that cannot even be queued retires the tag too, and the queue
/// finishes once every tag is retired.
#[test]
fn errors_retire_tags() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Done(0));
    for tag in 0..2 {
        let ud = ud::encode(KIND_UBLK_CMD, 0, tag, 0);
        h.k.borrow_mut().cq.push_back((ud, -libc::EINVAL, 0));
    }
    assert!(h.turn());
    assert!(h.served().is_empty());
    assert!(h.commits().is_empty());
    h.k.borrow_mut().fail_push = Some(libc::EBUSY);
    h.request(2, FLUSH, 0, 0);
    h.request(3, FLUSH, 0, 0);
    assert!(!h.turn(), "every tag retired: the queue is finished");
    assert!(h.commits().is_empty());
    assert!(matches!(h.events.try_recv(), Ok(QueueEvent::Stopped(_))));
}

/// Stop: the driver aborts every outstanding command; the queue keeps
/// running until the requests it holds are answered (their COMMITs are
/// aborted too), then reports Stopped once and is finished.
#[test]
fn stop_waits_for_the_requests_in_flight() {
    let mut h = Harness::new(Mode::Copy);
    h.plan(Plan::Read);
    let mark = h.log_len();
    h.request(1, READ, 0, 8);
    assert!(h.turn());
    let io = h.target_sqes(mark)[0];
    for tag in [0, 2, 3] {
        h.abort(tag);
    }
    assert!(h.turn(), "finished with a request in flight");
    assert!(h.turn());
    assert!(h.events.try_recv().is_err(), "Stopped before the end");
    h.answer(io, 4096);
    assert!(h.turn(), "the commit is still out");
    assert_eq!(h.commits(), [(1, 4096)]);
    h.abort(1);
    assert!(!h.turn());
    assert!(!h.turn(), "finished stays finished");
    assert!(matches!(h.events.try_recv(), Ok(QueueEvent::Stopped(s)) if s.requests == 1));
    assert!(h.events.try_recv().is_err(), "Stopped twice");
    assert_eq!(h.violations(), Vec::<String>::new());
    let Harness { q, events, .. } = h;
    drop(q);
    assert!(events.try_recv().is_err(), "Stopped again on drop");
}
