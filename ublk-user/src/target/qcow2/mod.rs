//! The qcow2 target: a QEMU disk image as a block device, with the data
//! path in the kernel and the metadata in the server.
//!
//! The image's clusters that can be read and written in place (allocated,
//! uncompressed, not zero, refcount 1) are published in a [`ClusterMap`].
//! A READ or WRITE inside one of them is a plain I/O at host offset +
//! offset in the cluster: the BPF program (both BPF modes) redirects it
//! through its copy of the map, and in the copy mode the queue thread
//! queues it on its ring, both on the image's data descriptor (O_DIRECT
//! unless `--buffered`). Everything else takes the slow path here, on the
//! queue thread, under the image's lock: reads of unallocated clusters
//! (the backing file or zeroes), zero and compressed clusters, first writes
//! (allocation, copy on write), FLUSH, DISCARD and WRITE_ZEROES. In zero
//! copy the server has no buffer: the device then also has
//! `UBLK_F_USER_COPY`, and the slow path moves a request's data through
//! `/dev/ublkcN` ([`crate::io::Completion::read_data`]).
//!
//! A request never spans two clusters: the device's `chunk_sectors` is the
//! cluster size, so the block layer splits READ and WRITE at cluster
//! boundaries and each maps to one host range (the same answer as the
//! stripe target's chunks). The cost: a 512 KiB request on an image with
//! 64 KiB clusters becomes 8 requests.
//!
//! Ordering (see [`image`]): data and refcount, `fdatasync`, the L2 entry,
//! `fdatasync`, and only then is the cluster published; so a FUA write
//! that the program redirects depends on no metadata that is not yet
//! durable. A FUA write served here is followed by `fdatasync` of the
//! image. FLUSH is an `fdatasync` of the image (all metadata is written
//! through).
//!
//! No host cluster is ever freed or moved while the image is served:
//! DISCARD and WRITE_ZEROES of an in-place cluster punch (or zero) the
//! range in the image file and keep the cluster allocated; clusters whose
//! data comes from elsewhere are overwritten with zeroes (allocating).
//! Allocation only appends at the end of the file, so even a cluster whose
//! refcount drops to 0 (a compressed one rewritten) is never reused.

pub mod format;
pub mod image;

use super::r#loop::file_params;
use super::{BpfLayout, ClusterMap, LoopTarget, Op, Request, Submit, Target};
use crate::io::IoCtx;
use crate::sys::Params;
use crate::{Error, Result};
use image::Image;
use std::os::fd::{AsRawFd, RawFd};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A qcow2 image served as a block device.
pub struct Qcow2Target {
    image: Mutex<Image>,
    data: LoopTarget,
    map: Arc<ClusterMap>,
    size: u64,
    cluster_bits: u32,
    path: PathBuf,
}

impl Qcow2Target {
    /// Opens the qcow2 image at `path` (its data descriptor O_DIRECT
    /// unless `buffered`), checks its header and backing chain, and
    /// publishes every cluster already usable in place.
    pub fn open(path: &Path, buffered: bool) -> Result<Self> {
        let mut image = Image::open(path, true).map_err(|e| {
            if e.kind() == std::io::ErrorKind::InvalidData {
                Error::InvalidOption(e.to_string())
            } else {
                Error::io("opening the qcow2 image", e)
            }
        })?;
        let h = image.header().clone();
        let data = LoopTarget::open(path, buffered)?;
        if (1u64 << data.logical_block_shift()) > h.cluster_size() {
            return Err(Error::InvalidOption(format!(
                "{}: clusters of {} bytes are smaller than the file's block size",
                path.display(),
                h.cluster_size()
            )));
        }
        let map = Arc::new(ClusterMap::new(h.cluster_bits));
        let mut res = Ok(());
        image
            .for_each_in_place(|vc, host| {
                if res.is_ok() {
                    res = map.publish(vc, host);
                }
            })
            .map_err(|e| Error::io(format!("reading the L2 tables of {}", path.display()), e))?;
        res?;
        Ok(Self {
            image: Mutex::new(image),
            data,
            map,
            size: h.size,
            cluster_bits: h.cluster_bits,
            path: path.to_path_buf(),
        })
    }

    /// The published clusters (what the BPF program and the fast path use).
    pub fn cluster_map(&self) -> &Arc<ClusterMap> {
        &self.map
    }

    /// Clusters of the device (the bound of the BPF program's map).
    pub fn clusters(&self) -> u64 {
        self.size.div_ceil(1 << self.cluster_bits)
    }

    fn publish(&self, new: Vec<(u64, u64)>) -> std::result::Result<(), i32> {
        for (vc, host) in new {
            self.map.publish(vc, host).map_err(|e| {
                log::error!(
                    "qcow2 {}: publishing cluster {vc}: {e}",
                    self.path.display()
                );
                -libc::EIO
            })?;
        }
        Ok(())
    }

    /// The slow path, on the queue thread under the image lock.
    fn serve_slow(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let mut img = self.image.lock().unwrap_or_else(|e| e.into_inner());
        let off = req.offset();
        let r: std::io::Result<Vec<(u64, u64)>> = match req.op {
            Op::Read | Op::Write => {
                let Some(buf) = ctx.data(req) else {
                    // Zero copy: no server buffer; the data moves through
                    // /dev/ublkcN (Device::create added USER_COPY).
                    return self.serve_user_copy(&mut img, ctx, req);
                };
                if req.op == Op::Read {
                    img.read(buf, off).map(|()| Vec::new())
                } else {
                    write_fua(&mut img, buf, off, req.flags.fua())
                }
            }
            Op::Flush => img.flush().map(|()| Vec::new()),
            Op::Discard => img.zero(off, req.bytes() as u64, true),
            Op::WriteZeroes => img.zero(off, req.bytes() as u64, !req.flags.no_unmap()),
            _ => return Submit::unsupported(),
        };
        Submit::Done(self.finish(req, r))
    }

    /// The slow path of a READ or WRITE without a server buffer (zc): the
    /// request is deferred and its data read from or written to
    /// `/dev/ublkcN` with user copy, still on the queue thread.
    fn serve_user_copy(&self, img: &mut Image, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let c = match ctx.defer() {
            Ok(c) => c,
            Err(e) => return Submit::Done(e),
        };
        let off = req.offset();
        let mut buf = vec![0u8; req.bytes() as usize];
        let r = if req.op == Op::Write {
            c.read_data(0, &mut buf)
                .and_then(|()| write_fua(img, &buf, off, req.flags.fua()))
        } else {
            img.read(&mut buf, off)
                .and_then(|()| c.write_data(0, &buf))
                .map(|()| Vec::new())
        };
        c.complete(self.finish(req, r));
        Submit::Deferred
    }

    /// The result of a served request: publishes new clusters, logs an
    /// error.
    fn finish(&self, req: &Request, r: std::io::Result<Vec<(u64, u64)>>) -> i32 {
        match r {
            Ok(new) => match self.publish(new) {
                Ok(()) if req.op.has_data() => req.bytes() as i32,
                Ok(()) => 0,
                Err(e) => e,
            },
            Err(e) => {
                log::warn!(
                    "qcow2 {}: {:?} at {} ({} bytes): {e}",
                    self.path.display(),
                    req.op,
                    req.offset(),
                    req.bytes()
                );
                super::errno_of(&e)
            }
        }
    }
}

/// [`Image::write`], then for a FUA write `fdatasync` (the metadata of a
/// cluster it allocated is durable already; its data may not be).
fn write_fua(img: &mut Image, buf: &[u8], off: u64, fua: bool) -> std::io::Result<Vec<(u64, u64)>> {
    let new = img.write(buf, off)?;
    if fua {
        img.flush()?;
    }
    Ok(new)
}

impl Target for Qcow2Target {
    fn name(&self) -> &'static str {
        "qcow2"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn backing_path(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }
    fn params(&self, p: &mut Params) {
        file_params(p, self.data.logical_block_shift(), self.data.direct());
        p.basic.chunk_sectors = 1 << (self.cluster_bits - 9);
    }
    fn files(&self) -> Vec<RawFd> {
        vec![self.data.file().as_raw_fd()]
    }
    fn bpf_layout(&self) -> Option<BpfLayout> {
        Some(BpfLayout {
            files: vec![self.data.file().as_raw_fd()],
            offset: 0,
            chunk_shift: self.cluster_bits,
            clusters: Some(self.map.clone()),
        })
    }
    fn needs_server_buffer(&self) -> bool {
        true
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        if matches!(req.op, Op::Read | Op::Write) {
            let mapped =
                ublk_ebpf_common::map_cluster(req.offset(), req.bytes(), self.cluster_bits, |vc| {
                    self.map.get(vc)
                });
            if let Ok(host) = mapped {
                let r = if req.op == Op::Read {
                    ctx.read(req, 0, host)
                } else {
                    let rw = if req.flags.fua() { libc::RWF_DSYNC } else { 0 };
                    ctx.write(req, 0, host, rw)
                };
                return match r {
                    Ok(()) => Submit::Queued,
                    Err(e) => Submit::Done(e),
                };
            }
        }
        self.serve_slow(ctx, req)
    }
    fn flush(&self) -> std::io::Result<()> {
        self.image.lock().unwrap_or_else(|e| e.into_inner()).flush()
    }
}

#[cfg(test)]
mod tests;
