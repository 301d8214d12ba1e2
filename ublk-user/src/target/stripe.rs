//! The stripe target: the device is dealt out over 2 to 16 files (or block
//! devices) in chunks, RAID-0 as dm-stripe lays it out: chunk `c` of the
//! device is chunk `c / n` of file `c % n`
//! ([`ublk_ebpf_common::stripe_map`], the same function the BPF program
//! runs).
//!
//! A request that crosses a chunk boundary would need one backing I/O per
//! chunk. For READ and WRITE the device's `chunk_sectors` (= the chunk)
//! makes the block layer split them at chunk boundaries, so each one lies
//! in one chunk of one file: one SQE, and in the BPF modes one redirected
//! backing I/O. DISCARD and WRITE_ZEROES are not split that way: the server
//! (here) covers such a range with one `fallocate` per file (the chunks of
//! one file that a device range covers are contiguous in that file), and
//! the BPF program passes them to it. FLUSH syncs every file.

use super::r#loop::file_params;
use super::{BpfLayout, LoopTarget, Op, Request, Submit, Target};
use crate::io::IoCtx;
use crate::sys::Params;
use crate::{Error, Result};
use std::os::fd::{AsRawFd, RawFd};
use std::os::unix::fs::MetadataExt;
use std::path::PathBuf;
use ublk_ebpf_common::{stripe_map, MAX_STRIPE_FILES};

/// Smallest and largest stripe chunk.
pub const MIN_CHUNK: u64 = 4096;
/// Largest stripe chunk.
pub const MAX_CHUNK: u64 = 1 << 20;

/// A device striped over several files.
pub struct StripeTarget {
    members: Vec<LoopTarget>,
    chunk_shift: u32,
    size: u64,
}

impl StripeTarget {
    /// Open `paths` (2 to 16 files or block devices, each as
    /// [`LoopTarget::open`] does) and stripe over them in chunks of `chunk`
    /// bytes (a power of two, 4 KiB to 1 MiB). Every file must have the same
    /// usable size (its size rounded down to whole chunks); the device is
    /// that times the number of files.
    pub fn open(paths: &[PathBuf], chunk: u64, buffered: bool) -> Result<Self> {
        let n = paths.len();
        if !(2..=MAX_STRIPE_FILES as usize).contains(&n) {
            return Err(Error::InvalidOption(format!(
                "a stripe needs 2 to {MAX_STRIPE_FILES} files, not {n}"
            )));
        }
        if !chunk.is_power_of_two() || !(MIN_CHUNK..=MAX_CHUNK).contains(&chunk) {
            return Err(Error::InvalidOption(format!(
                "the stripe chunk must be a power of two from 4K to 1M, not {chunk} bytes"
            )));
        }
        let members = paths
            .iter()
            .map(|p| LoopTarget::open(p, buffered))
            .collect::<Result<Vec<_>>>()?;
        let mut seen = Vec::with_capacity(n);
        for m in &members {
            let md = m
                .file()
                .metadata()
                .map_err(|e| Error::io(format!("stat {}", m.path().display()), e))?;
            let id = if m.is_block_device() {
                (0, md.rdev())
            } else {
                (md.dev(), md.ino())
            };
            if seen.contains(&id) {
                return Err(Error::InvalidOption(format!(
                    "{} is in the stripe twice",
                    m.path().display()
                )));
            }
            seen.push(id);
        }
        let usable = |m: &LoopTarget| m.size() & !(chunk - 1);
        let per_file = usable(&members[0]);
        if let Some(m) = members.iter().find(|m| usable(m) != per_file) {
            return Err(Error::InvalidOption(format!(
                "stripe files must have the same size: {} has {} bytes in whole chunks, {} has {}",
                members[0].path().display(),
                per_file,
                m.path().display(),
                usable(m)
            )));
        }
        if per_file == 0 {
            return Err(Error::InvalidOption(format!(
                "stripe files must hold at least one chunk ({chunk} bytes)"
            )));
        }
        Ok(Self {
            members,
            chunk_shift: chunk.trailing_zeros(),
            size: per_file * n as u64,
        })
    }

    /// The chunk in bytes.
    pub fn chunk(&self) -> u64 {
        1 << self.chunk_shift
    }

    /// The files, in stripe order.
    pub fn paths(&self) -> Vec<PathBuf> {
        self.members
            .iter()
            .map(|m| m.path().to_path_buf())
            .collect()
    }

    fn zero_range(&self, req: &Request) -> bool {
        self.members
            .iter()
            .all(|m| m.zero_range() && (m.is_block_device() || req.flags.no_unmap()))
    }
}

/// The ranges of each file that device bytes `[off, off + len)` cover:
/// (file, offset in the file, length), at most one per file, in file order.
pub fn file_ranges(off: u64, len: u64, nr_files: u32, chunk_shift: u32) -> Vec<(u32, u64, u64)> {
    let mut out = Vec::new();
    if len == 0 {
        return out;
    }
    let n = u64::from(nr_files);
    let (first, last) = (off >> chunk_shift, (off + len - 1) >> chunk_shift);
    for f in 0..n {
        // the first and last chunk of file f in [first, last]
        let c0 = first + (f + n - first % n) % n;
        if c0 > last {
            continue;
        }
        let c1 = last - (last + n - f) % n;
        let start = off.max(c0 << chunk_shift);
        let end = (off + len).min((c1 + 1) << chunk_shift);
        let (file, s) = stripe_map(start, nr_files, chunk_shift);
        let (_, e) = stripe_map(end - 1, nr_files, chunk_shift);
        out.push((file, s, e + 1 - s));
    }
    out
}

impl Target for StripeTarget {
    fn name(&self) -> &'static str {
        "stripe"
    }
    fn size(&self) -> u64 {
        self.size
    }
    fn backing_path(&self) -> Option<String> {
        let p: Vec<String> = self
            .members
            .iter()
            .map(|m| m.path().display().to_string())
            .collect();
        Some(p.join(","))
    }
    fn params(&self, p: &mut Params) {
        let lbs = self
            .members
            .iter()
            .map(LoopTarget::logical_block_shift)
            .max()
            .unwrap_or(9);
        file_params(p, lbs, self.members.iter().all(LoopTarget::direct));
        p.basic.io_opt_shift = self.chunk_shift as u8;
        // READ and WRITE never cross a chunk: one file, one backing I/O
        p.basic.chunk_sectors = (self.chunk() >> 9) as u32;
    }
    fn files(&self) -> Vec<RawFd> {
        self.members.iter().map(|m| m.file().as_raw_fd()).collect()
    }
    fn bpf_layout(&self) -> Option<BpfLayout> {
        Some(BpfLayout {
            files: self.files(),
            offset: 0,
            chunk_shift: self.chunk_shift,
            clusters: None,
        })
    }
    fn queue_io(&self, ctx: &mut IoCtx<'_>, req: &Request) -> Submit {
        let n = self.members.len() as u32;
        let (off, len) = (req.offset(), u64::from(req.bytes()));
        let queued = match req.op {
            Op::Read | Op::Write => {
                let (file, foff) = stripe_map(off, n, self.chunk_shift);
                if len == 0 || (off + len - 1) >> self.chunk_shift != off >> self.chunk_shift {
                    // chunk_sectors prevents it; refuse rather than misplace data
                    log::error!(
                        "stripe: {:?} of {len} bytes at {off} crosses a chunk",
                        req.op
                    );
                    return Submit::Done(-libc::EIO);
                }
                if req.op == Op::Read {
                    ctx.read(req, file, foff)
                } else {
                    let rw = if req.flags.fua() { libc::RWF_DSYNC } else { 0 };
                    ctx.write(req, file, foff, rw)
                }
            }
            Op::Flush => (0..n).try_for_each(|f| ctx.fsync(f, true)),
            Op::Discard | Op::WriteZeroes => {
                let keep = libc::FALLOC_FL_KEEP_SIZE;
                let mode = if req.op == Op::WriteZeroes && self.zero_range(req) {
                    libc::FALLOC_FL_ZERO_RANGE | keep
                } else {
                    libc::FALLOC_FL_PUNCH_HOLE | keep
                };
                file_ranges(off, len, n, self.chunk_shift)
                    .into_iter()
                    .try_for_each(|(f, o, l)| ctx.fallocate(f, o, l, mode))
            }
            _ => return Submit::unsupported(),
        };
        match queued {
            Ok(()) => Submit::Queued,
            Err(e) => Submit::Done(e),
        }
    }
    fn flush(&self) -> std::io::Result<()> {
        self.members.iter().try_for_each(|m| m.file().sync_all())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Byte by byte: which file bytes does a device range touch?
    fn reference(off: u64, len: u64, n: u32, shift: u32) -> Vec<(u32, u64, u64)> {
        let mut per_file: Vec<Option<(u64, u64)>> = vec![None; n as usize];
        for b in off..off + len {
            let (f, o) = stripe_map(b, n, shift);
            let e = per_file[f as usize].get_or_insert((o, o));
            e.0 = e.0.min(o);
            e.1 = e.1.max(o);
        }
        per_file
            .iter()
            .enumerate()
            .filter_map(|(f, r)| r.map(|(a, b)| (f as u32, a, b + 1 - a)))
            .collect()
    }

    #[test]
    fn file_ranges_cover_exactly_the_bytes_of_the_range() {
        for n in [2u32, 3, 4, 5] {
            let shift = 3; // 8-byte chunks keep the reference small
            let dev = 8 * u64::from(n) * 4;
            for off in 0..dev {
                for len in [
                    0,
                    1,
                    7,
                    8,
                    9,
                    16,
                    23,
                    8 * u64::from(n),
                    8 * u64::from(n) + 5,
                ] {
                    if off + len > dev {
                        continue;
                    }
                    let got = file_ranges(off, len, n, shift);
                    assert_eq!(
                        got,
                        reference(off, len, n, shift),
                        "n {n} off {off} len {len}"
                    );
                    // contiguous per file: the total is the range's length
                    assert_eq!(got.iter().map(|r| r.2).sum::<u64>(), len);
                }
            }
        }
    }

    fn files(dir: &std::path::Path, sizes: &[u64]) -> Vec<PathBuf> {
        sizes
            .iter()
            .enumerate()
            .map(|(i, &s)| {
                let p = dir.join(format!("s{i}.img"));
                std::fs::File::create(&p).unwrap().set_len(s).unwrap();
                p
            })
            .collect()
    }

    #[test]
    fn open_checks_count_chunk_sizes_and_duplicates() {
        let dir = std::env::temp_dir().join(format!("ublk-stripe-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let msg = |r: Result<StripeTarget>| match r {
            Ok(_) => String::from("ok"),
            Err(e) => e.to_string(),
        };
        let two = files(&dir, &[1 << 20, (1 << 20) + 4095]);
        let t = StripeTarget::open(&two, 64 << 10, true).unwrap();
        assert_eq!((t.size(), t.chunk()), (2 << 20, 64 << 10));
        let mut p = Params::default();
        t.params(&mut p);
        assert_eq!(p.basic.chunk_sectors, 128);
        assert_eq!(t.bpf_layout().unwrap().files, t.files());
        assert!(msg(StripeTarget::open(&two[..1], 4096, true)).contains("2 to 16 files, not 1"));
        let many = vec![two[0].clone(); 17];
        assert!(msg(StripeTarget::open(&many, 4096, true)).contains("not 17"));
        assert!(msg(StripeTarget::open(&two, 3 << 12, true)).contains("power of two"));
        assert!(msg(StripeTarget::open(&two, 2048, true)).contains("power of two"));
        assert!(msg(StripeTarget::open(&two, 2 << 20, true)).contains("power of two"));
        let twice = vec![two[0].clone(), two[0].clone()];
        assert!(msg(StripeTarget::open(&twice, 4096, true)).contains("twice"));
        let uneven = files(&dir, &[1 << 20, 2 << 20]);
        assert!(msg(StripeTarget::open(&uneven, 4096, true)).contains("same size"));
        let tiny = files(&dir, &[4096, 4096]);
        assert!(msg(StripeTarget::open(&tiny, 8192, true)).contains("at least one chunk"));
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
