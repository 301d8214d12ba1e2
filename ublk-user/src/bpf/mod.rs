//! Loader for the ublk BPF program (`ublk-ebpf/`, `BPF_PROG_TYPE_UBLK`).
//!
//! aya 0.14 has no program type for ublk and rejects unknown section names,
//! so loading is a hybrid:
//!
//! 1. the program sits in a `socket/` section, which aya parses;
//! 2. [`aya::EbpfLoader`] creates the maps (`UBLK_QUEUES`, `UBLK_STATS`,
//!    `AYA_LOGS`, `.rodata` with `UBLK_BPF_LOG` patched in) without loading
//!    any program;
//! 3. [`aya_obj::Object::parse`] parses the same bytes again, and
//!    `relocate_maps` / `relocate_calls` patch in the fds of the maps aya
//!    created;
//! 4. a raw `BPF_PROG_LOAD` ([`crate::bpf_syscall::prog_load`]) loads the instructions with
//!    program type [`BPF_PROG_TYPE_UBLK`] (33), license "GPL" (from the
//!    object), verifier log level 1. A failure carries the full verifier log.
//!
//! # Use from the server (`--mode bpf`)
//!
//! ```no_run
//! # fn f(dev: &mut ublk_user::Device) -> ublk_user::Result<()> {
//! use std::sync::Arc;
//! use ublk_user::bpf::{BpfProgram, LoadOptions};
//! let prog = Arc::new(BpfProgram::load_embedded(LoadOptions { log: false, ..Default::default() })?);
//! dev.set_bpf_hook(prog.clone().hook()); // fills UBLK_QUEUES, REG/UNREG_BPF_PROG
//! // ... dev.start() ...; later:
//! let s = prog.stats()?;
//! println!("redirected {} requests, {} bytes", s.redirected(), s.redirected_bytes());
//! # Ok(()) }
//! ```
//!
//! Another process (`ublk-user list`) reads the counters with
//! [`stats_by_map_id`] and the id the server recorded from
//! [`BpfProgram::stats_map_id`].

use std::collections::HashSet;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;

use crate::bpf_syscall as sys;
use crate::error::{Error, Result, ResultExt};

/// `Error::Bpf` from a format string.
macro_rules! bpf_err {
    ($($t:tt)*) => { Error::bpf(format!($($t)*)) };
}
/// Return `Error::Bpf` from a format string.
macro_rules! bpf_bail {
    ($($t:tt)*) => { return Err(bpf_err!($($t)*)) };
}
use aya::maps::{Array, HashMap, Map, MapData, PerCpuArray};
use aya::EbpfLoader;
use ublk_ebpf_common::{names, stat, QueueTarget, BPF_PROG_TYPE_UBLK, MAX_QUEUES};

use crate::ctrl::Control;
use crate::device::{BpfHook, QueueHookInfo};
use crate::target::BpfLayout;

/// `BPF_F_SLEEPABLE` (`prog_flags`).
const BPF_F_SLEEPABLE: u32 = 1 << 4;

/// How to load the program.
#[derive(Clone, Copy, Debug)]
pub struct LoadOptions {
    /// Enable the program's aya-log records and print them to stderr from a
    /// background thread (`--bpf-log`).
    pub log: bool,
    /// Program type; [`BPF_PROG_TYPE_UBLK`] except in host tests, which load
    /// as a known type to exercise the verifier on a stock kernel.
    pub prog_type: u32,
    /// Load with `BPF_F_SLEEPABLE`.
    pub sleepable: bool,
    /// Entries the cluster map (`UBLK_CLUSTERS`) may hold: the device's
    /// clusters, for a cluster-mapped target (qcow2); 1 otherwise.
    pub max_clusters: u32,
}

impl Default for LoadOptions {
    fn default() -> Self {
        Self {
            log: false,
            prog_type: BPF_PROG_TYPE_UBLK,
            sleepable: false,
            max_clusters: 1,
        }
    }
}

/// The program's per-CPU counters, summed over CPUs; indexed by
/// [`ublk_ebpf_common::stat`].
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Stats(pub [u64; stat::COUNT as usize]);

impl Stats {
    /// Counter `idx` (`ublk_ebpf_common::stat::*`), 0 if out of range.
    pub fn get(&self, idx: u32) -> u64 {
        self.0.get(idx as usize).copied().unwrap_or(0)
    }
    /// Requests the program redirected (served zero-copy by the kernel).
    pub fn redirected(&self) -> u64 {
        self.get(stat::REDIRECTED)
    }
    /// Bytes of the redirected requests.
    pub fn redirected_bytes(&self) -> u64 {
        self.get(stat::REDIRECTED_BYTES)
    }
    /// Requests the program passed to the server, for any reason.
    pub fn passed(&self) -> u64 {
        self.get(stat::PASS_OP)
            + self.get(stat::PASS_NO_TARGET)
            + self.get(stat::PASS_HELPER_ERR)
            + self.get(stat::PASS_SPAN)
            + self.get(stat::PASS_UNMAPPED)
    }
    /// Redirected requests by I/O priority class: (RT, BE, IDLE); those
    /// without a class are `redirected()` minus the three.
    pub fn redirected_by_class(&self) -> (u64, u64, u64) {
        (
            self.get(stat::REDIRECTED_RT),
            self.get(stat::REDIRECTED_BE),
            self.get(stat::REDIRECTED_IDLE),
        )
    }
}

/// `QueueTarget` as an aya map value.
#[repr(transparent)]
#[derive(Clone, Copy)]
struct QueueValue(QueueTarget);
// SAFETY: `QueueTarget` is `repr(C)`, `Copy`, has no padding (4+4+8+4+4+4+4
// bytes) and every bit pattern is valid.
unsafe impl aya::Pod for QueueValue {}

/// A loaded ublk BPF program and its maps. `Send + Sync`: share it with
/// `Arc` between the device (its [`BpfHook`]) and whoever reads stats.
pub struct BpfProgram {
    prog: OwnedFd,
    id: u32,
    verifier_log: String,
    queues: Mutex<Array<MapData, QueueValue>>,
    stats: PerCpuArray<MapData, u64>,
    clusters: Mutex<HashMap<MapData, u64, u64>>,
    stats_map_id: u32,
    log_thread: Option<LogThread>,
    // Keeps the remaining maps (.rodata) open for the program's lifetime;
    // the kernel holds its own references too, so this is belt and braces.
    _ebpf: Mutex<aya::Ebpf>,
}

impl BpfProgram {
    /// Loads the object embedded at build time ([`embedded_object`]).
    pub fn load_embedded(opts: LoadOptions) -> Result<Self> {
        Self::load(embedded_object(), opts)
    }

    /// Loads `object` (the ELF built from `ublk-ebpf/`).
    pub fn load(object: &[u8], opts: LoadOptions) -> Result<Self> {
        Self::load_patched(object, opts, |_| {})
    }

    /// [`Self::load`], with a hook on the final instructions (tests swap
    /// helper 212 for one a stock kernel offers, to verify the whole program).
    fn load_patched(
        object: &[u8],
        opts: LoadOptions,
        patch: impl FnOnce(&mut Vec<aya_obj::generated::bpf_insn>),
    ) -> Result<Self> {
        if !aya::features().bpf_global_data() {
            bpf_bail!(
                "aya's kernel feature probe found no BPF global data (.rodata) support; \
                 if this kernel has it, the probe ran while io_uring task work was pending \
                 (call bpf::prime_feature_probe() before using io_uring)"
            );
        }
        let log_flag = u8::from(opts.log);
        // 1. Maps, with UBLK_BPF_LOG patched into .rodata.
        let mut ebpf = EbpfLoader::new()
            .btf(None)
            .override_global(names::LOG_GLOBAL, &log_flag, true)
            .map_max_entries(names::CLUSTERS_MAP, opts.max_clusters.max(1))
            .load(object)
            .bpf_context("creating the BPF program's maps (aya)")?;

        // 2. Relocate a second parse of the same bytes against those maps.
        let mut obj = aya_obj::Object::parse(object).bpf_context("parsing the BPF object")?;
        let mut fds = Vec::new();
        for name in obj.maps.keys() {
            let map = ebpf
                .map(name)
                .ok_or_else(|| bpf_err!("aya did not create map {name}"))?;
            fds.push((
                name.clone(),
                map_fd(map).ok_or_else(|| bpf_err!("map {name}: unexpected map kind"))?,
            ));
        }
        let text_sections: HashSet<usize> = obj.functions.keys().map(|(s, _)| *s).collect();
        let maps = obj.maps.clone();
        obj.relocate_maps(
            fds.iter()
                .map(|(name, fd)| (name.as_str(), *fd, &maps[name])),
            &text_sections,
        )
        .bpf_context("relocating map references")?;
        obj.relocate_calls(&text_sections)
            .bpf_context("relocating calls")?;
        let program = obj
            .programs
            .get(names::PROGRAM)
            .ok_or_else(|| bpf_err!("the object has no program {}", names::PROGRAM))?;
        let mut function = obj
            .functions
            .get(&program.function_key())
            .ok_or_else(|| bpf_err!("the object has no code for {}", names::PROGRAM))?
            .clone();
        patch(&mut function.instructions);

        // 3. Load with our program type. The map fds in `ebpf` stay open
        //    until after this call.
        let flags = if opts.sleepable { BPF_F_SLEEPABLE } else { 0 };
        let (prog, verifier_log) = sys::prog_load(
            opts.prog_type,
            names::PROGRAM,
            &function.instructions,
            &program.license,
            flags,
            1,
            sys::LOG_SIZE,
        )
        .map_err(|e| {
            bpf_err!(
                "BPF_PROG_LOAD (type {}, {} insns) failed: {}\n--- verifier log ---\n{}",
                opts.prog_type,
                function.instructions.len(),
                e.errno,
                if e.log.is_empty() {
                    "(empty)"
                } else {
                    e.log.trim_end()
                }
            )
        })?;
        let id = sys::prog_id(prog.as_raw_fd()).bpf_context("BPF_OBJ_GET_INFO_BY_FD")?;

        // 4. Typed handles on the maps we use; the logger takes AYA_LOGS.
        let stats_map_id = ebpf
            .map(names::STATS_MAP)
            .and_then(map_data)
            .ok_or_else(|| bpf_err!("no map {}", names::STATS_MAP))?
            .info()
            .bpf_context("BPF map info")?
            .id();
        let queues: Array<MapData, QueueValue> = ebpf
            .take_map(names::QUEUES_MAP)
            .ok_or_else(|| bpf_err!("no map {}", names::QUEUES_MAP))?
            .try_into()
            .bpf_ctx(|| format!("map {}", names::QUEUES_MAP))?;
        let stats: PerCpuArray<MapData, u64> = ebpf
            .take_map(names::STATS_MAP)
            .ok_or_else(|| bpf_err!("no map {}", names::STATS_MAP))?
            .try_into()
            .bpf_ctx(|| format!("map {}", names::STATS_MAP))?;
        let clusters: HashMap<MapData, u64, u64> = ebpf
            .take_map(names::CLUSTERS_MAP)
            .ok_or_else(|| bpf_err!("no map {}", names::CLUSTERS_MAP))?
            .try_into()
            .bpf_ctx(|| format!("map {}", names::CLUSTERS_MAP))?;
        let log_thread = if opts.log {
            let logger = aya_log::EbpfLogger::init_with_logger(&mut ebpf, StderrLog)
                .bpf_context("starting the BPF logger")?;
            Some(LogThread::spawn(logger)?)
        } else {
            None
        };
        Ok(Self {
            prog,
            id,
            verifier_log,
            queues: Mutex::new(queues),
            stats,
            clusters: Mutex::new(clusters),
            stats_map_id,
            log_thread,
            _ebpf: Mutex::new(ebpf),
        })
    }

    /// The program fd, for `UBLK_CMD_REG_BPF_PROG` (`data[0]`).
    pub fn prog_fd(&self) -> BorrowedFd<'_> {
        self.prog.as_fd()
    }

    /// The kernel's program id (`bpftool prog show id N`).
    pub fn prog_id(&self) -> u32 {
        self.id
    }

    /// The verifier log of the successful load (statistics at level 1).
    pub fn verifier_log(&self) -> &str {
        &self.verifier_log
    }

    /// Fills queue `q_id`'s entry in `UBLK_QUEUES` (sets `valid`).
    pub fn set_queue(&self, q_id: u16, t: QueueTarget) -> Result<()> {
        if u32::from(q_id) >= MAX_QUEUES {
            bpf_bail!("queue {q_id}: the BPF program serves queues 0..{MAX_QUEUES}");
        }
        let t = QueueTarget { valid: 1, ..t };
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(u32::from(q_id), QueueValue(t), 0)
            .bpf_ctx(|| format!("updating {}[{q_id}]", names::QUEUES_MAP))
    }

    /// Clears queue `q_id`'s entry: the program passes its requests.
    pub fn clear_queue(&self, q_id: u16) -> Result<()> {
        if u32::from(q_id) >= MAX_QUEUES {
            return Ok(());
        }
        self.queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .set(u32::from(q_id), QueueValue(QueueTarget::default()), 0)
            .bpf_ctx(|| format!("clearing {}[{q_id}]", names::QUEUES_MAP))
    }

    /// The current `UBLK_QUEUES` entry of `q_id`.
    pub fn queue(&self, q_id: u16) -> Result<QueueTarget> {
        let v = self
            .queues
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&u32::from(q_id), 0)
            .bpf_ctx(|| format!("reading {}[{q_id}]", names::QUEUES_MAP))?;
        Ok(v.0)
    }

    /// Maps virtual cluster `vc` to host byte offset `host` in
    /// `UBLK_CLUSTERS` (a cluster-mapped target's published clusters).
    pub fn set_cluster(&self, vc: u64, host: u64) -> Result<()> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .insert(vc, host, 0)
            .bpf_ctx(|| format!("inserting cluster {vc} into {}", names::CLUSTERS_MAP))
    }

    /// The host offset `UBLK_CLUSTERS` holds for virtual cluster `vc`.
    pub fn cluster(&self, vc: u64) -> Option<u64> {
        self.clusters
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .get(&vc, 0)
            .ok()
    }

    /// The program's counters, summed over CPUs.
    pub fn stats(&self) -> Result<Stats> {
        read_stats(&self.stats)
    }

    /// The id of `UBLK_STATS`, for [`stats_by_map_id`] in another process.
    pub fn stats_map_id(&self) -> u32 {
        self.stats_map_id
    }

    /// A [`BpfHook`] for [`crate::Device::set_bpf_hook`]: fills
    /// `UBLK_QUEUES` per queue, registers the program before START_DEV and
    /// unregisters it on stop. The device's [`Mode`](crate::Mode) decides
    /// where the backing files go: in [`Mode::BpfKernel`](crate::Mode)
    /// into the device's file table (`REG_BPF_FILES`, from entry 0), which
    /// the program names by index, with no ring (`ring_fd` -1); in
    /// [`Mode::Bpf`](crate::Mode) the queue's ring.
    pub fn hook(self: Arc<Self>) -> Box<dyn BpfHook> {
        Box::new(Hook {
            prog: self,
            queues: Vec::new(),
            kernel_io: false,
            table: None,
            clusters: None,
        })
    }
}

impl Drop for BpfProgram {
    fn drop(&mut self) {
        if let Some(t) = self.log_thread.take() {
            t.stop();
        }
    }
}

/// Runs aya's one-time kernel feature probe now. aya caches the result for
/// the life of the process, and its global-data probe is a single
/// BPF_PROG_LOAD: if that load meets the verifier's transient EAGAIN
/// (pending io_uring task work raises TIF_NOTIFY_SIGNAL, which the verifier
/// treats as a pending signal), aya concludes the kernel has no global data,
/// skips `.rodata`, and every later load fails with "section not found".
/// Call this before the process touches io_uring; a forked child inherits
/// the cached result.
pub fn prime_feature_probe() {
    let _ = aya::features();
}

/// Can the embedded program be loaded here? `Err` says why not: the
/// kernel refuses it (no `BPF_PROG_TYPE_UBLK`, a verifier error). Loads
/// the program once and drops it; cheap (~ms). Meant for the caller's own
/// check in [`Mode::resolve`](crate::Mode::resolve) (which checks the
/// kernel's `UBLK_F_BPF` bits itself).
pub fn probe(log: bool) -> std::result::Result<(), String> {
    // The log thread is not needed for a probe, but the flag changes the code
    // the verifier walks, so probe with the same value.
    BpfProgram::load(
        embedded_object(),
        LoadOptions {
            log,
            ..Default::default()
        },
    )
    .map(drop)
    .map_err(|e| e.chain())
}

/// Loads the embedded program (in the serving process, after any fork: the
/// log thread and fds belong there) and returns a handle for stats plus the
/// [`BpfHook`] for [`crate::Device::set_bpf_hook`].
/// `max_clusters`: see [`LoadOptions::max_clusters`].
pub fn load_hook(log: bool, max_clusters: u32) -> Result<(Arc<BpfProgram>, Box<dyn BpfHook>)> {
    let prog = Arc::new(BpfProgram::load_embedded(LoadOptions {
        log,
        max_clusters,
        ..Default::default()
    })?);
    let hook = prog.clone().hook();
    Ok((prog, hook))
}

/// Reads `UBLK_STATS` by map id (e.g. from `ublk-user list`, with the id
/// the server recorded). Needs CAP_SYS_ADMIN.
pub fn stats_by_map_id(id: u32) -> Result<Stats> {
    let data = MapData::from_id(id).bpf_ctx(|| format!("opening BPF map id {id}"))?;
    let map: PerCpuArray<MapData, u64> = Map::PerCpuArray(data)
        .try_into()
        .bpf_ctx(|| format!("BPF map id {id} is not the stats map"))?;
    read_stats(&map)
}

fn read_stats(map: &PerCpuArray<MapData, u64>) -> Result<Stats> {
    let mut s = Stats::default();
    for (i, slot) in s.0.iter_mut().enumerate() {
        let v = map
            .get(&(i as u32), 0)
            .bpf_ctx(|| format!("reading {}[{i}]", names::STATS_MAP))?;
        *slot = v.iter().fold(0u64, |a, b| a.wrapping_add(*b));
    }
    Ok(s)
}

/// The `MapData` of any map kind this program uses.
fn map_data(m: &Map) -> Option<&MapData> {
    match m {
        Map::Array(d)
        | Map::PerCpuArray(d)
        | Map::RingBuf(d)
        | Map::HashMap(d)
        | Map::PerCpuHashMap(d)
        | Map::Unsupported(d) => Some(d),
        _ => None,
    }
}

fn map_fd(m: &Map) -> Option<RawFd> {
    map_data(m).map(|d| d.fd().as_fd().as_raw_fd())
}

struct Hook {
    prog: Arc<BpfProgram>,
    queues: Vec<u16>,
    /// The device's mode is [`crate::Mode::BpfKernel`] (from `queue`).
    kernel_io: bool,
    /// The fds put in the device's file table (kernel I/O mode).
    table: Option<Vec<i32>>,
    /// The target's cluster map, once attached to `UBLK_CLUSTERS`.
    clusters: Option<Arc<crate::target::ClusterMap>>,
}

/// Forwards a target's published clusters to `UBLK_CLUSTERS`.
struct ProgramClusters(Arc<BpfProgram>);

impl crate::target::ClusterSink for ProgramClusters {
    fn insert(&self, vc: u64, host: u64) -> Result<()> {
        self.0.set_cluster(vc, host)
    }
}

/// The map entry for one queue: the kernel mode names the device's file
/// table by index (from 0); the ring mode the server's descriptor of a
/// single file, or, for a stripe, the fixed files of the queue's ring
/// (the target's files sit from index 1, after `/dev/ublkcN`).
fn queue_target(ring_fd: i32, kernel_io: bool, l: &BpfLayout) -> QueueTarget {
    let nr_files = l.files.len() as u32;
    let cluster_map = if l.clusters.is_some() {
        ublk_ebpf_common::TARGET_CLUSTER_MAP
    } else {
        0
    };
    let (ring_fd, backing_fd, flags) = if kernel_io {
        (-1, 0, ublk_ebpf_common::TARGET_FIXED_FILE)
    } else if nr_files > 1 {
        (ring_fd, 1, ublk_ebpf_common::TARGET_FIXED_FILE)
    } else {
        (ring_fd, l.files[0], 0)
    };
    QueueTarget {
        ring_fd,
        backing_fd,
        backing_offset: l.offset,
        valid: 1,
        flags: flags | cluster_map,
        nr_files,
        chunk_shift: l.chunk_shift,
    }
}

impl BpfHook for Hook {
    fn queue(&mut self, _dev_id: u32, q: &QueueHookInfo) -> Result<()> {
        let layout = q.layout.as_ref().ok_or_else(|| {
            bpf_err!("the BPF modes need a target with backing files (loop, stripe)")
        })?;
        if layout.files.is_empty()
            || layout.files.len() > ublk_ebpf_common::MAX_STRIPE_FILES as usize
        {
            bpf_bail!("a BPF layout has 1 to 16 files, not {}", layout.files.len());
        }
        if !q.mode.bpf() {
            bpf_bail!("mode {} has no BPF program", q.mode);
        }
        self.kernel_io = q.mode.kernel_io();
        if self.kernel_io {
            match &self.table {
                Some(t) if *t != layout.files => {
                    bpf_bail!(
                        "queues with different backing files ({t:?}, {:?})",
                        layout.files
                    )
                }
                _ => self.table = Some(layout.files.clone()),
            }
        }
        if let Some(c) = layout.clusters.as_ref().filter(|_| self.clusters.is_none()) {
            c.attach(Arc::new(ProgramClusters(self.prog.clone())))?;
            self.clusters = Some(c.clone());
        }
        self.prog
            .set_queue(q.q_id, queue_target(q.ring_fd, self.kernel_io, layout))?;
        self.queues.push(q.q_id);
        Ok(())
    }

    fn attach(&mut self, ctrl: &mut Control, dev_id: u32) -> Result<()> {
        if let Some(fds) = self.table.as_ref().filter(|_| self.kernel_io) {
            ctrl.reg_bpf_files(dev_id, fds)
                .bpf_context("REG_BPF_FILES (the backing files)")?;
        }
        ctrl.reg_bpf_prog(dev_id, self.prog.prog_fd().as_raw_fd())
            .bpf_ctx(|| format!("REG_BPF_PROG (prog id {})", self.prog.prog_id()))?;
        Ok(())
    }

    fn detach(&mut self, ctrl: &mut Control, dev_id: u32) -> Result<()> {
        let res = ctrl.unreg_bpf_prog(dev_id, self.prog.prog_fd().as_raw_fd());
        if self.kernel_io && self.table.is_some() {
            // I/O in flight keeps its own file reference.
            let _ = ctrl.unreg_bpf_files(dev_id);
        }
        for q in self.queues.drain(..) {
            let _ = self.prog.clear_queue(q);
        }
        if let Some(c) = self.clusters.take() {
            c.detach();
        }
        res.bpf_context("UNREG_BPF_PROG")?;
        Ok(())
    }
}

/// Prints the program's aya-log records to stderr.
struct StderrLog;

impl log::Log for StderrLog {
    fn enabled(&self, _: &log::Metadata<'_>) -> bool {
        true
    }
    fn log(&self, r: &log::Record<'_>) {
        log::log!(target: "ublk_bpf_program", r.level(), "{}", r.args());
    }
    fn flush(&self) {}
}

/// Drains the `AYA_LOGS` ring buffer whenever it has data.
struct LogThread {
    stop: Arc<AtomicBool>,
    handle: JoinHandle<()>,
}

impl LogThread {
    fn spawn(mut logger: aya_log::EbpfLogger<StderrLog>) -> Result<Self> {
        let stop = Arc::new(AtomicBool::new(false));
        let s = stop.clone();
        let handle = std::thread::Builder::new()
            .name("ublk-bpf-log".into())
            .spawn(move || {
                let fd = logger.as_raw_fd();
                while !s.load(Ordering::Relaxed) {
                    let mut p = libc::pollfd {
                        fd,
                        events: libc::POLLIN,
                        revents: 0,
                    };
                    // SAFETY: one valid pollfd, for the duration of the call.
                    unsafe { libc::poll(&mut p, 1, 200) };
                    logger.flush();
                }
                logger.flush();
            })
            .bpf_context("spawning the BPF log thread")?;
        Ok(Self { stop, handle })
    }

    fn stop(self) {
        self.stop.store(true, Ordering::Relaxed);
        let _ = self.handle.join();
    }
}

#[repr(C, align(8))]
struct Aligned<B: ?Sized>(B);

static OBJECT: &Aligned<[u8]> = &Aligned(*include_bytes!(concat!(env!("OUT_DIR"), "/ublk-ebpf.o")));

/// The BPF object embedded at build time by `ublk-user/build.rs`: the
/// program it built from `ublk-ebpf/`, or `$UBLK_EBPF_OBJ`. A build with the
/// `bpf` feature always has it (build.rs fails otherwise).
pub fn embedded_object() -> &'static [u8] {
    &OBJECT.0
}

#[cfg(test)]
mod tests;
