//! Targets: what serves a request once it has arrived and the data path has
//! said where its data is. A target either completes a request at once
//! ([`Submit::Done`]) or queues SQEs on the queue's ring through
//! [`IoCtx`] ([`Submit::Queued`]); the queue then commits
//! when all their CQEs are back.

mod cluster_map;
pub mod r#loop;
pub mod null;
pub mod qcow2;
mod request;
pub mod stripe;

pub use cluster_map::{ClusterMap, ClusterSink};
pub use null::NullTarget;
pub use qcow2::Qcow2Target;
pub use r#loop::LoopTarget;
pub use request::{errno_of, result_of, IoFlags, Op, Request};
pub use stripe::StripeTarget;

use crate::io::IoCtx;
use crate::sys::Params;
use std::os::fd::RawFd;

/// What [`Target::queue_io`] did with a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Submit {
    /// Complete now with this result (bytes for READ/WRITE, 0 for others,
    /// or a negative errno).
    Done(i32),
    /// SQEs were pushed with [`IoCtx`]'s builders (or
    /// [`IoCtx::push_raw`]); the queue commits when they have all
    /// completed: the sum of their results for READ/WRITE (a short total
    /// becomes -EIO), 0 for other ops, or the first negative result.
    Queued,
    /// The target took the request with [`IoCtx::defer`] and completes it
    /// through the [`Completion`](crate::io::Completion), from any thread.
    Deferred,
}

impl Submit {
    /// [`Submit::Done`] with the result of `r` (see [`result_of`]):
    /// `Submit::from_io(file.read_at(..))` for a target that served the
    /// request on the queue thread.
    pub fn from_io(r: std::io::Result<usize>) -> Self {
        Submit::Done(result_of(r))
    }

    /// [`Submit::Done`] with `-EOPNOTSUPP`: the target does not serve this
    /// operation.
    pub fn unsupported() -> Self {
        Submit::Done(-libc::EOPNOTSUPP)
    }
}

/// A backend. Shared by all queue threads.
///
/// # Which requests a target receives
///
/// The kernel sends only what the device's parameters
/// ([`Target::params`]) advertise; the library's defaults are the first
/// column:
///
/// | request | sent when | default |
/// |---|---|---|
/// | [`Op::Read`], [`Op::Write`] | always | yes |
/// | [`Op::Flush`] | `basic.attrs` has `UBLK_ATTR_VOLATILE_CACHE` | yes: the default says the device caches writes, so a target that keeps data anywhere but stable storage must make it durable on FLUSH |
/// | WRITE with [`IoFlags::fua`] | `basic.attrs` has `UBLK_ATTR_FUA` (else the block layer sends WRITE + FLUSH) | yes |
/// | [`Op::Discard`] | `types` has `UBLK_PARAM_TYPE_DISCARD` and `discard.max_discard_sectors > 0` | no |
/// | [`Op::WriteZeroes`] | the same with `discard.max_write_zeroes_sectors > 0` | no |
/// | zone operations ([`Op::Other`]) | a zoned device (`UBLK_PARAM_TYPE_ZONED`) | no |
///
/// A READ or WRITE is at most `basic.max_sectors` long (the device's
/// largest request, [`DeviceOptions::max_io_bytes`](crate::DeviceOptions)).
/// A request the target does not serve completes with `-EOPNOTSUPP`
/// ([`Submit::unsupported`]).
///
/// # Lifetime
///
/// The device holds the target in an `Arc` until
/// [`Device::stop`](crate::Device::stop) returns; the queue threads hold clones while they
/// run. Anything the target owns (a channel to worker threads, say) lives
/// as long as the last clone: if workers wait for the target's sender to
/// close before they exit, keep no clone of the `Arc` of your own past
/// `Device::stop` (or tell them to stop some other way), or joining them
/// waits forever.
pub trait Target: Send + Sync + 'static {
    /// Short name for listings ("loop", "null").
    fn name(&self) -> &'static str;
    /// Device size in bytes (a multiple of 512).
    fn size(&self) -> u64;
    /// Backing path, if any (for listings).
    fn backing_path(&self) -> Option<String> {
        None
    }
    /// Adjust the device parameters. `basic` (with `dev_sectors` and
    /// `max_sectors`) is filled in already.
    fn params(&self, _p: &mut Params) {}
    /// Files registered in every queue ring's fixed file table, at indices
    /// 1.. (index 0 is `/dev/ublkcN`); [`IoCtx::file`] maps them.
    fn files(&self) -> Vec<RawFd> {
        Vec::new()
    }
    /// For the BPF data paths: the files the program sends the device's
    /// I/O to and how the device maps onto them; `None` if the target
    /// cannot be served that way (the BPF modes then refuse it).
    fn bpf_layout(&self) -> Option<BpfLayout> {
        None
    }
    /// The target reads or writes some requests' data in the server's
    /// memory: with copy buffers through [`IoCtx::data`], in zero copy
    /// through a deferred request's [`Completion::read_data`] /
    /// [`Completion::write_data`](crate::io::Completion::write_data)
    /// ([`crate::Device::create`] then adds `UBLK_F_USER_COPY` to a zc
    /// device; it refuses the user-copy mode for such a target).
    ///
    /// [`Completion::read_data`]: crate::io::Completion::read_data
    fn needs_server_buffer(&self) -> bool {
        false
    }
    /// Serve one request. At most [`MAX_SQES_PER_REQUEST`] SQEs.
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit;
    /// Make written data durable; called at clean stop after all I/O drained.
    /// (FLUSH requests reach [`Target::queue_io`] like any other.)
    fn flush(&self) -> std::io::Result<()> {
        Ok(())
    }
}

/// The most SQEs a target may push for one request (a FLUSH of a stripe
/// syncs each of its up to 16 files).
pub const MAX_SQES_PER_REQUEST: usize = 16;

/// How the BPF program maps the device onto a target's files
/// ([`Target::bpf_layout`]).
#[derive(Clone, Debug)]
pub struct BpfLayout {
    /// The files (the server's descriptors), 1 to 16. With one, byte `o`
    /// of the device is byte `offset + o` of it. With more, the device is
    /// striped over them in chunks of `1 << chunk_shift` bytes (chunk `c`
    /// is chunk `c / n` of file `c % n`), and they must be the first
    /// entries of [`Target::files`], in the same order: the ring mode names
    /// them by their fixed-file index.
    pub files: Vec<RawFd>,
    /// Byte offset of the device's data in each file.
    pub offset: u64,
    /// log2 of the stripe chunk in bytes (two or more files), or of the
    /// cluster (with `clusters`).
    pub chunk_shift: u32,
    /// One file mapped cluster by cluster (a qcow2 image): the program
    /// redirects only READ and WRITE inside a cluster of this map, at its
    /// host offset (`offset` is then 0).
    pub clusters: Option<std::sync::Arc<ClusterMap>>,
}

impl PartialEq for BpfLayout {
    fn eq(&self, o: &Self) -> bool {
        self.files == o.files
            && self.offset == o.offset
            && self.chunk_shift == o.chunk_shift
            && match (&self.clusters, &o.clusters) {
                (None, None) => true,
                (Some(a), Some(b)) => std::sync::Arc::ptr_eq(a, b),
                _ => false,
            }
    }
}

impl Eq for BpfLayout {}
