//! A qcow2 image opened for serving: lookups, reads (through the backing
//! chain and compressed clusters), allocating writes with qcow2's
//! ordering, and zeroing that never frees a host cluster.
//!
//! Metadata is written through at once (no write-back cache): a killed
//! server leaves at worst a leaked cluster, never a dangling reference.
//! The order of an allocating write is QEMU's: the data and the new
//! cluster's refcount, then `fdatasync`, then the L2 entry (a new L2 table
//! likewise before its L1 entry), then `fdatasync` again, after which the
//! caller may publish the mapping to the paths that bypass this code.

use super::format::{self, Header, COMPRESSED, COPIED, OFFSET_MASK, ZERO};
use std::collections::HashMap;
use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

/// Deepest backing chain we follow.
const MAX_CHAIN: usize = 8;

/// What a virtual cluster is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Cluster {
    /// Not allocated: reads from the backing file, or zeroes.
    Unallocated,
    /// Reads as zeroes (v3 zero flag).
    Zero {
        /// A preallocated host cluster, or 0.
        host: u64,
    },
    /// Compressed: the whole cluster's data is deflated at this L2 entry.
    Compressed(u64),
    /// Data in the image.
    Data {
        /// Host byte offset of the cluster.
        host: u64,
        /// Refcount 1 (the L2 COPIED bit): writable in place.
        copied: bool,
    },
}

impl Cluster {
    fn of(entry: u64) -> Self {
        if entry & COMPRESSED != 0 {
            return Cluster::Compressed(entry);
        }
        let host = entry & OFFSET_MASK;
        if entry & ZERO != 0 {
            Cluster::Zero { host }
        } else if host == 0 {
            Cluster::Unallocated
        } else {
            Cluster::Data {
                host,
                copied: entry & COPIED != 0,
            }
        }
    }

    /// The host offset if the cluster can be read and written in place by
    /// anyone (allocated, uncompressed, not zero, refcount 1).
    pub fn in_place(self) -> Option<u64> {
        match self {
            Cluster::Data { host, copied: true } => Some(host),
            _ => None,
        }
    }
}

enum Backing {
    Raw { file: File, size: u64 },
    Qcow2(Box<Image>),
}

/// An open qcow2 image.
pub struct Image {
    path: PathBuf,
    file: File,
    h: Header,
    l1: Vec<u64>,
    l2: HashMap<u64, Vec<u64>>,
    rt: Vec<u64>,
    rb: HashMap<u64, Vec<u8>>,
    /// Where the next cluster is allocated (cluster aligned).
    end: u64,
    backing: Option<Backing>,
    writable: bool,
}

fn err(msg: String) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, msg)
}

fn read_exact_at(f: &File, buf: &mut [u8], off: u64) -> io::Result<()> {
    f.read_exact_at(buf, off)
}

fn be_words(b: &[u8]) -> Vec<u64> {
    b.chunks_exact(8)
        .map(|c| u64::from_be_bytes(c.try_into().unwrap()))
        .collect()
}

impl Image {
    /// Opens `path` (read-write if `writable`), its header checked and its
    /// backing chain opened read-only. Errors say what is wrong in one line.
    pub fn open(path: &Path, writable: bool) -> io::Result<Self> {
        Self::open_chain(path, writable, 0)
    }

    fn open_chain(path: &Path, writable: bool, depth: usize) -> io::Result<Self> {
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(writable)
            .open(path)
            .map_err(|e| io::Error::new(e.kind(), format!("{}: {e}", path.display())))?;
        let md = file.metadata()?;
        if !md.is_file() {
            return Err(err(format!("{}: not a regular file", path.display())));
        }
        let len = md.len();
        let mut first = vec![0u8; len.min(1 << 21) as usize];
        read_exact_at(&file, &mut first, 0)?;
        let h = Header::parse(&first, len).map_err(|m| err(format!("{}: {m}", path.display())))?;
        if writable && h.nb_snapshots != 0 {
            return Err(err(format!(
                "{}: images with internal snapshots are not supported",
                path.display()
            )));
        }
        let mut l1b = vec![0u8; h.l1_size as usize * 8];
        read_exact_at(&file, &mut l1b, h.l1_offset)?;
        let mut rtb = vec![0u8; (h.refcount_table_clusters as usize) << h.cluster_bits];
        read_exact_at(&file, &mut rtb, h.refcount_table_offset)?;
        let cs = h.cluster_size();
        let backing = match &h.backing_file {
            None => None,
            Some(name) => {
                if depth + 1 >= MAX_CHAIN {
                    return Err(err(format!(
                        "{}: backing chain deeper than {MAX_CHAIN}",
                        path.display()
                    )));
                }
                let p = Path::new(name);
                let p = if p.is_absolute() {
                    p.to_path_buf()
                } else {
                    path.parent().unwrap_or(Path::new(".")).join(p)
                };
                Some(open_backing(&p, depth + 1).map_err(|e| {
                    io::Error::new(
                        e.kind(),
                        format!("{}: backing file {}: {e}", path.display(), p.display()),
                    )
                })?)
            }
        };
        Ok(Image {
            path: path.to_path_buf(),
            file,
            l1: be_words(&l1b),
            l2: HashMap::new(),
            rt: be_words(&rtb),
            rb: HashMap::new(),
            end: len.div_ceil(cs) * cs,
            h,
            backing,
            writable,
        })
    }

    /// The header.
    pub fn header(&self) -> &Header {
        &self.h
    }

    /// The image file (for the data path's own descriptor).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Whether the image has a backing file.
    pub fn has_backing(&self) -> bool {
        self.backing.is_some()
    }

    fn l2_table(&mut self, l1i: u64) -> io::Result<Option<&mut Vec<u64>>> {
        let l2off = self.l1.get(l1i as usize).copied().unwrap_or(0) & OFFSET_MASK;
        if l2off == 0 {
            return Ok(None);
        }
        if !self.l2.contains_key(&l1i) {
            let mut b = vec![0u8; self.h.cluster_size() as usize];
            read_exact_at(&self.file, &mut b, l2off)?;
            self.l2.insert(l1i, be_words(&b));
        }
        Ok(self.l2.get_mut(&l1i))
    }

    /// What virtual cluster `vc` is.
    pub fn cluster(&mut self, vc: u64) -> io::Result<Cluster> {
        let n = self.h.l2_entries();
        Ok(match self.l2_table(vc / n)? {
            None => Cluster::Unallocated,
            Some(t) => Cluster::of(t[(vc % n) as usize]),
        })
    }

    /// Calls `f(vc, host)` for every cluster that can be used in place
    /// ([`Cluster::in_place`]).
    pub fn for_each_in_place(&mut self, mut f: impl FnMut(u64, u64)) -> io::Result<()> {
        let n = self.h.l2_entries();
        let clusters = self.h.size.div_ceil(self.h.cluster_size());
        for l1i in 0..self.l1.len() as u64 {
            if let Some(t) = self.l2_table(l1i)? {
                for (k, e) in t.iter().enumerate() {
                    let vc = l1i * n + k as u64;
                    if vc >= clusters {
                        break;
                    }
                    if let Some(host) = Cluster::of(*e).in_place() {
                        f(vc, host);
                    }
                }
            }
        }
        Ok(())
    }

    /// Reads `buf.len()` bytes at virtual offset `off`.
    pub fn read(&mut self, buf: &mut [u8], off: u64) -> io::Result<()> {
        let cs = self.h.cluster_size();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let in_c = pos % cs;
            let n = ((cs - in_c) as usize).min(buf.len() - done);
            let out = &mut buf[done..done + n];
            match self.cluster(pos / cs)? {
                Cluster::Data { host, .. } => read_exact_at(&self.file, out, host + in_c)?,
                Cluster::Zero { .. } => out.fill(0),
                Cluster::Unallocated => self.read_backing(out, pos)?,
                Cluster::Compressed(e) => {
                    let data = self.decompress(e)?;
                    out.copy_from_slice(&data[in_c as usize..in_c as usize + n]);
                }
            }
            done += n;
        }
        Ok(())
    }

    fn read_backing(&mut self, out: &mut [u8], pos: u64) -> io::Result<()> {
        match &mut self.backing {
            None => out.fill(0),
            Some(Backing::Raw { file, size }) => {
                out.fill(0);
                if pos < *size {
                    let n = ((*size - pos) as usize).min(out.len());
                    read_exact_at(file, &mut out[..n], pos)?;
                }
            }
            Some(Backing::Qcow2(img)) => {
                out.fill(0);
                let size = img.h.size;
                if pos < size {
                    let n = ((size - pos) as usize).min(out.len());
                    img.read(&mut out[..n], pos)?;
                }
            }
        }
        Ok(())
    }

    fn decompress(&self, entry: u64) -> io::Result<Vec<u8>> {
        let (off, len) = format::compressed_range(entry, self.h.cluster_bits);
        let file_len = self.file.metadata()?.len();
        let len = len.min(file_len.saturating_sub(off));
        let mut c = vec![0u8; len as usize];
        read_exact_at(&self.file, &mut c, off)?;
        let cs = self.h.cluster_size() as usize;
        let mut out = miniz_oxide::inflate::decompress_to_vec_with_limit(&c, cs)
            .map_err(|e| err(format!("compressed cluster at {off:#x}: {e:?}")))?;
        if out.len() != cs {
            return Err(err(format!(
                "compressed cluster at {off:#x} inflates to {} bytes, not {cs}",
                out.len()
            )));
        }
        out.truncate(cs);
        Ok(out)
    }

    fn sync(&self) -> io::Result<()> {
        self.file.sync_data()
    }

    /// Makes everything written durable (FLUSH).
    pub fn flush(&self) -> io::Result<()> {
        self.sync()
    }

    fn refblock(&mut self, rti: u64) -> io::Result<Option<&mut Vec<u8>>> {
        let off = self.rt.get(rti as usize).copied().unwrap_or(0) & OFFSET_MASK;
        if off == 0 {
            return Ok(None);
        }
        if !self.rb.contains_key(&rti) {
            let mut b = vec![0u8; self.h.cluster_size() as usize];
            read_exact_at(&self.file, &mut b, off)?;
            self.rb.insert(rti, b);
        }
        Ok(self.rb.get_mut(&rti))
    }

    /// The refcount of the host cluster at `host`.
    pub fn refcount(&mut self, host: u64) -> io::Result<u64> {
        let cb = self.h.cluster_bits;
        let per = self.h.refblock_entries();
        let order = self.h.refcount_order;
        let hc = host >> cb;
        Ok(match self.refblock(hc / per)? {
            None => 0,
            Some(b) => format::refcount_get(b, order, hc % per),
        })
    }

    /// Sets the refcount of host cluster `host` to `v`, written through.
    /// A missing refcount block is allocated (and counts itself).
    fn set_refcount(&mut self, host: u64, v: u64) -> io::Result<()> {
        let cb = self.h.cluster_bits;
        let per = self.h.refblock_entries();
        let order = self.h.refcount_order;
        let hc = host >> cb;
        let rti = hc / per;
        if rti as usize >= self.rt.len() {
            return Err(io::Error::new(
                io::ErrorKind::StorageFull,
                format!(
                    "{}: the refcount table is full (the image would need to grow it; recreate with a larger cluster size)",
                    self.path.display()
                ),
            ));
        }
        if self.refblock(rti)?.is_none() {
            // A new refcount block at the end of the file. If it falls in
            // the range it covers, it counts itself; otherwise its own
            // refcount goes into the block that covers it.
            let blk = self.end;
            self.end += self.h.cluster_size();
            let mut b = vec![0u8; self.h.cluster_size() as usize];
            let self_covered = (blk >> cb) / per == rti;
            if self_covered {
                format::refcount_set(&mut b, order, (blk >> cb) % per, 1);
            }
            self.file.write_all_at(&b, blk)?;
            if !self_covered {
                self.set_refcount(blk, 1)?;
            }
            self.sync()?;
            self.rt[rti as usize] = blk;
            self.file
                .write_all_at(&blk.to_be_bytes(), self.h.refcount_table_offset + rti * 8)?;
            self.rb.insert(rti, b);
        }
        let off = self.rt[rti as usize] & OFFSET_MASK;
        let b = self.refblock(rti)?.expect("just loaded");
        let r = format::refcount_set(b, order, hc % per, v);
        let bytes = b[r.clone()].to_vec();
        self.file.write_all_at(&bytes, off + r.start as u64)
    }

    /// A new host cluster (refcount 1) at the end of the file.
    fn alloc_cluster(&mut self) -> io::Result<u64> {
        let host = self.end;
        self.end += self.h.cluster_size();
        self.set_refcount(host, 1)?;
        Ok(host)
    }

    /// Drops one reference from each host cluster in `[off, off + len)`.
    fn unref_range(&mut self, off: u64, len: u64) -> io::Result<()> {
        let cs = self.h.cluster_size();
        let mut c = off / cs * cs;
        while c < off + len {
            let r = self.refcount(c)?;
            if r > 0 {
                self.set_refcount(c, r - 1)?;
            }
            c += cs;
        }
        Ok(())
    }

    /// Sets the L2 entry of `vc`, allocating its L2 table if needed.
    fn set_l2(&mut self, vc: u64, entry: u64) -> io::Result<()> {
        let n = self.h.l2_entries();
        let l1i = vc / n;
        if self.l2_table(l1i)?.is_none() {
            let t = self.alloc_cluster()?;
            self.file
                .write_all_at(&vec![0u8; self.h.cluster_size() as usize], t)?;
            self.sync()?;
            self.l1[l1i as usize] = t | COPIED;
            self.file
                .write_all_at(&(t | COPIED).to_be_bytes(), self.h.l1_offset + l1i * 8)?;
            self.l2.insert(l1i, vec![0; n as usize]);
        }
        let l2off = self.l1[l1i as usize] & OFFSET_MASK;
        let t = self.l2.get_mut(&l1i).expect("loaded");
        t[(vc % n) as usize] = entry;
        self.file
            .write_all_at(&entry.to_be_bytes(), l2off + (vc % n) * 8)
    }

    /// Writes a whole cluster's data `c` at `host` and points `vc`'s L2
    /// entry at it, in qcow2's order: the data (and the refcount, already
    /// written by the caller), `fdatasync`, the L2 entry, `fdatasync`; after
    /// this the cluster may be published.
    fn commit_cluster(&mut self, vc: u64, host: u64, c: &[u8]) -> io::Result<()> {
        self.file.write_all_at(c, host)?;
        self.sync()?;
        self.set_l2(vc, host | COPIED)?;
        self.sync()
    }

    /// The whole current content of virtual cluster `vc` (for copy on write).
    fn cluster_content(&mut self, vc: u64) -> io::Result<Vec<u8>> {
        let cs = self.h.cluster_size();
        let mut b = vec![0u8; cs as usize];
        // Past the virtual end the cluster's tail stays zero.
        let n = (self.h.size - vc * cs).min(cs) as usize;
        self.read(&mut b[..n], vc * cs)?;
        Ok(b)
    }

    /// Writes `buf` at virtual offset `off`. Returns the clusters that
    /// became writable in place (newly allocated, their metadata durable),
    /// as (virtual cluster, host offset), for the caller to publish.
    pub fn write(&mut self, buf: &[u8], off: u64) -> io::Result<Vec<(u64, u64)>> {
        if !self.writable {
            return Err(io::Error::from_raw_os_error(libc::EROFS));
        }
        let cs = self.h.cluster_size();
        let mut new = Vec::new();
        let mut done = 0usize;
        while done < buf.len() {
            let pos = off + done as u64;
            let vc = pos / cs;
            let in_c = pos % cs;
            let n = ((cs - in_c) as usize).min(buf.len() - done);
            let piece = &buf[done..done + n];
            match self.cluster(vc)? {
                Cluster::Data { host, copied: true } => {
                    self.file.write_all_at(piece, host + in_c)?;
                }
                Cluster::Zero { host } if host != 0 => {
                    // A preallocated zero cluster: fill it, then clear the
                    // flag (its refcount is already ours).
                    let mut c = vec![0u8; cs as usize];
                    c[in_c as usize..in_c as usize + n].copy_from_slice(piece);
                    self.commit_cluster(vc, host, &c)?;
                    if self.refcount(host)? == 1 {
                        new.push((vc, host));
                    }
                }
                old => {
                    // Copy on write into a new cluster: unallocated (from
                    // the backing file or zeroes), zero, compressed or
                    // shared.
                    let mut c = match old {
                        Cluster::Zero { .. } => vec![0u8; cs as usize],
                        _ => self.cluster_content(vc)?,
                    };
                    c[in_c as usize..in_c as usize + n].copy_from_slice(piece);
                    let host = self.alloc_cluster()?;
                    self.commit_cluster(vc, host, &c)?;
                    match old {
                        Cluster::Compressed(e) => {
                            let (o, l) = format::compressed_range(e, self.h.cluster_bits);
                            self.unref_range(o, l)?;
                        }
                        Cluster::Data { host: h, .. } => self.unref_range(h, cs)?,
                        _ => {}
                    }
                    new.push((vc, host));
                }
            }
            done += n;
        }
        Ok(new)
    }

    /// Makes `[off, off + len)` read as zeroes without freeing any host
    /// cluster: in-place clusters get the range punched (or zeroed) in the
    /// image file, so a published mapping stays valid; clusters whose
    /// content comes from elsewhere (the backing file, a compressed or
    /// shared cluster) are overwritten with zeroes through [`Self::write`];
    /// unallocated clusters without a backing file and zero clusters
    /// already read as zeroes. Returns newly allocated clusters, as
    /// [`Self::write`].
    pub fn zero(&mut self, off: u64, len: u64, unmap: bool) -> io::Result<Vec<(u64, u64)>> {
        let cs = self.h.cluster_size();
        let mut new = Vec::new();
        let mut pos = off;
        while pos < off + len {
            let vc = pos / cs;
            let in_c = pos % cs;
            let n = (cs - in_c).min(off + len - pos);
            match self.cluster(vc)? {
                Cluster::Data { host, copied: true } => {
                    zero_range(&self.file, host + in_c, n, unmap)?
                }
                Cluster::Zero { .. } => {}
                Cluster::Unallocated if self.backing.is_none() => {}
                _ => new.extend(self.write(&vec![0u8; n as usize], pos)?),
            }
            pos += n;
        }
        Ok(new)
    }
}

/// Zeroes `len` bytes of `f` at `off`: punch a hole (`unmap`) or zero the
/// range, falling back to writing zeroes where the filesystem has neither.
fn zero_range(f: &File, off: u64, len: u64, unmap: bool) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let mode = if unmap {
        libc::FALLOC_FL_PUNCH_HOLE | libc::FALLOC_FL_KEEP_SIZE
    } else {
        libc::FALLOC_FL_ZERO_RANGE | libc::FALLOC_FL_KEEP_SIZE
    };
    // SAFETY: fallocate on a descriptor we own; no memory is passed.
    let r = unsafe { libc::fallocate(f.as_raw_fd(), mode, off as i64, len as i64) };
    if r == 0 {
        return Ok(());
    }
    let e = io::Error::last_os_error();
    if e.raw_os_error() != Some(libc::EOPNOTSUPP) {
        return Err(e);
    }
    f.write_all_at(&vec![0u8; len as usize], off)
}

fn open_backing(p: &Path, depth: usize) -> io::Result<Backing> {
    let file = File::open(p)?;
    let mut magic = [0u8; 4];
    let len = file.metadata()?.len();
    if len >= 4 {
        read_exact_at(&file, &mut magic, 0)?;
    }
    if u32::from_be_bytes(magic) == format::MAGIC {
        Ok(Backing::Qcow2(Box::new(Image::open_chain(
            p, false, depth,
        )?)))
    } else {
        Ok(Backing::Raw { file, size: len })
    }
}
