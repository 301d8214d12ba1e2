//! The loop target: a regular file or a block device, served with io_uring
//! on the queue's own ring (registered file index 1).

use super::{BpfLayout, Op, Request, Submit, Target};
use crate::io::IoCtx;
use crate::sys::{self, Params};
use crate::{Error, Result};
use std::fs::{File, OpenOptions};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::{FileTypeExt, OpenOptionsExt};
use std::path::{Path, PathBuf};

/// `_IOR(0x12, 114, size_t)`.
const BLKGETSIZE64: libc::c_ulong = 0x8008_1272;
const BLKSSZGET: libc::c_ulong = 0x1268;

/// A file or block device, served with io_uring on the queue rings.
pub struct LoopTarget {
    file: File,
    path: PathBuf,
    size: u64,
    direct: bool,
    block_dev: bool,
    lbs_shift: u8,
    /// `FALLOC_FL_ZERO_RANGE` works on this file (not on tmpfs).
    zero_range: bool,
}

impl LoopTarget {
    /// Open `path` (O_DIRECT unless `buffered`) and size the device from it.
    pub fn open(path: &Path, buffered: bool) -> Result<Self> {
        let meta = std::fs::metadata(path)
            .map_err(|e| Error::io(format!("backing file {}", path.display()), e))?;
        let block_dev = meta.file_type().is_block_device();
        if !block_dev && !meta.is_file() {
            return Err(Error::InvalidOption(format!(
                "backing file {} is neither a regular file nor a block device",
                path.display()
            )));
        }
        let mut oo = OpenOptions::new();
        oo.read(true).write(true);
        if !buffered {
            oo.custom_flags(libc::O_DIRECT);
        }
        let file = oo.open(path).map_err(|e| {
            Error::io(
                format!(
                    "cannot open backing file {}{}",
                    path.display(),
                    if buffered {
                        ""
                    } else {
                        " with O_DIRECT (without O_DIRECT: open it buffered)"
                    }
                ),
                e,
            )
        })?;
        let fd = file.as_raw_fd();
        let (size, mut lbs_shift) = if block_dev {
            let mut sz: u64 = 0;
            let mut ssz: libc::c_int = 512;
            // SAFETY: BLKGETSIZE64 writes one u64, BLKSSZGET one int, into
            // locals that outlive the calls.
            unsafe {
                if libc::ioctl(fd, BLKGETSIZE64, &mut sz as *mut u64) < 0 {
                    return Err(Error::io(
                        format!("BLKGETSIZE64 on {}", path.display()),
                        std::io::Error::last_os_error(),
                    ));
                }
                if libc::ioctl(fd, BLKSSZGET, &mut ssz as *mut libc::c_int) < 0 {
                    ssz = 512;
                }
            }
            (sz, (ssz.max(512) as u32).trailing_zeros() as u8)
        } else {
            (meta.len(), 9)
        };
        let size = size & !511;
        if size == 0 {
            return Err(Error::InvalidOption(format!(
                "backing file {} is empty (size 0): create it first, e.g. truncate -s 256M",
                path.display()
            )));
        }
        if !buffered && !block_dev && !dio_works(fd, 512) {
            lbs_shift = 12;
        }
        let zero_range = block_dev || probe_zero_range(fd, meta.len());
        Ok(Self {
            file,
            path: path.to_path_buf(),
            size,
            direct: !buffered,
            block_dev,
            lbs_shift,
            zero_range,
        })
    }

    /// Opened with O_DIRECT.
    pub fn direct(&self) -> bool {
        self.direct
    }

    /// The open file.
    pub fn file(&self) -> &File {
        &self.file
    }

    /// The path it was opened from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// A block device (not a regular file).
    pub fn is_block_device(&self) -> bool {
        self.block_dev
    }

    /// log2 of the smallest I/O the file takes (its logical block size,
    /// 4096 for an O_DIRECT file that refuses 512-byte I/O).
    pub fn logical_block_shift(&self) -> u8 {
        self.lbs_shift
    }

    /// `FALLOC_FL_ZERO_RANGE` works on it.
    pub fn zero_range(&self) -> bool {
        self.zero_range
    }
}

/// Does a `bs`-byte O_DIRECT read at offset 0 work?
fn dio_works(fd: RawFd, bs: usize) -> bool {
    let mut buf = vec![0u8; bs * 2 + 4096];
    let off = buf.as_ptr().align_offset(4096);
    // SAFETY: reads at most `bs` bytes into our own buffer at an in-bounds offset.
    let r = unsafe { libc::pread(fd, buf.as_mut_ptr().add(off) as *mut libc::c_void, bs, 0) };
    r >= 0 || std::io::Error::last_os_error().raw_os_error() != Some(libc::EINVAL)
}

/// Does `FALLOC_FL_ZERO_RANGE` work? Tried past EOF (KEEP_SIZE), then undone.
fn probe_zero_range(fd: RawFd, len: u64) -> bool {
    let off = (len + 4095) & !4095;
    // SAFETY: plain syscalls on our fd; the range is past EOF and KEEP_SIZE
    // leaves the file size (and so the device data) untouched.
    unsafe {
        let ok = libc::fallocate(
            fd,
            libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE,
            off as i64,
            4096,
        ) == 0;
        if ok {
            libc::fallocate(
                fd,
                libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE,
                off as i64,
                4096,
            );
        }
        ok
    }
}

/// The parameters of a device whose data lives in files or block devices
/// with logical blocks of `1 << lbs_shift` bytes (loop, stripe): that block
/// size, DISCARD and WRITE_ZEROES (punch or zero a range), and, for files
/// opened with O_DIRECT (`direct`), their memory alignment.
pub(super) fn file_params(p: &mut Params, lbs_shift: u8, direct: bool) {
    p.basic.logical_bs_shift = lbs_shift;
    p.basic.physical_bs_shift = p.basic.physical_bs_shift.max(lbs_shift);
    p.basic.io_min_shift = lbs_shift;
    p.types |= sys::UBLK_PARAM_TYPE_DISCARD | sys::UBLK_PARAM_TYPE_DMA_ALIGN;
    p.discard = sys::ParamDiscard::any_length(4096);
    // Zero copy hands the client's pages straight to the backing file's
    // O_DIRECT I/O: make the block layer enforce its memory alignment.
    p.dma.alignment = if direct { (1u32 << lbs_shift) - 1 } else { 3 };
}

impl Target for LoopTarget {
    fn name(&self) -> &'static str {
        "loop"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn backing_path(&self) -> Option<String> {
        Some(self.path.display().to_string())
    }
    fn params(&self, p: &mut Params) {
        file_params(p, self.lbs_shift, self.direct);
    }
    fn files(&self) -> Vec<RawFd> {
        vec![self.file.as_raw_fd()]
    }
    fn bpf_layout(&self) -> Option<BpfLayout> {
        Some(BpfLayout {
            files: vec![self.file.as_raw_fd()],
            offset: 0,
            chunk_shift: 0,
            clusters: None,
        })
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let off = req.offset();
        let keep = libc::FALLOC_FL_KEEP_SIZE;
        let queued = match req.op {
            Op::Read => ctx.read(req, 0, off),
            Op::Write => {
                // FUA: durable before it is acknowledged, as loop does
                let rw_flags = if req.flags.fua() { libc::RWF_DSYNC } else { 0 };
                ctx.write(req, 0, off, rw_flags)
            }
            Op::Flush => ctx.fsync(0, true),
            Op::Discard => ctx.fallocate(
                0,
                off,
                req.bytes() as u64,
                libc::FALLOC_FL_PUNCH_HOLE | keep,
            ),
            Op::WriteZeroes => {
                // tmpfs has no ZERO_RANGE; a punched hole reads back as zeroes too.
                let mode = if self.zero_range && (self.block_dev || req.flags.no_unmap()) {
                    libc::FALLOC_FL_ZERO_RANGE | keep
                } else {
                    libc::FALLOC_FL_PUNCH_HOLE | keep
                };
                ctx.fallocate(0, off, req.bytes() as u64, mode)
            }
            _ => return Submit::Done(-libc::EOPNOTSUPP),
        };
        match queued {
            Ok(()) => Submit::Queued,
            Err(e) => Submit::Done(e),
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        self.file.sync_all()
    }
}
