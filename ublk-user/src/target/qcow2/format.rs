//! The qcow2 on-disk format (docs/interop/qcow2.txt in QEMU): the header,
//! L1/L2 entries, refcounts and compressed-cluster descriptors. Pure
//! functions over byte slices, tested on the host.

/// "QFI\xfb".
pub const MAGIC: u32 = 0x5146_49fb;
/// Smallest and largest cluster we serve: 4 KiB to 2 MiB.
pub const MIN_CLUSTER_BITS: u32 = 12;
/// See [`MIN_CLUSTER_BITS`].
pub const MAX_CLUSTER_BITS: u32 = 21;

/// L1 / L2 entry: host offset bits 9..55.
pub const OFFSET_MASK: u64 = 0x00ff_ffff_ffff_fe00;
/// L1 / L2 entry: refcount is exactly 1, the cluster may be written in place.
pub const COPIED: u64 = 1 << 63;
/// L2 entry: a compressed cluster.
pub const COMPRESSED: u64 = 1 << 62;
/// L2 entry (v3): the cluster reads as zeroes.
pub const ZERO: u64 = 1;

/// Incompatible feature bits (v3).
pub mod incompat {
    /// Refcounts may be wrong (lazy refcounts): needs a repair first.
    pub const DIRTY: u64 = 1 << 0;
    /// Marked corrupt by QEMU.
    pub const CORRUPT: u64 = 1 << 1;
    /// Data in an external file.
    pub const EXTERNAL_DATA: u64 = 1 << 2;
    /// Compression type other than zlib.
    pub const COMPRESSION_TYPE: u64 = 1 << 3;
    /// Extended L2 entries (subclusters).
    pub const EXTENDED_L2: u64 = 1 << 4;
}

/// What a qcow2 header says, checked.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Header {
    /// 2 or 3.
    pub version: u32,
    /// Backing file name, if any.
    pub backing_file: Option<String>,
    /// log2 of the cluster size.
    pub cluster_bits: u32,
    /// Virtual size in bytes.
    pub size: u64,
    /// Entries of the L1 table.
    pub l1_size: u32,
    /// Host offset of the L1 table.
    pub l1_offset: u64,
    /// Host offset of the refcount table.
    pub refcount_table_offset: u64,
    /// Clusters of the refcount table.
    pub refcount_table_clusters: u32,
    /// Internal snapshots.
    pub nb_snapshots: u32,
    /// log2 of the refcount width in bits (v2: 4).
    pub refcount_order: u32,
    /// Incompatible feature bits (v2: 0).
    pub incompatible: u64,
}

fn be32(b: &[u8], at: usize) -> u32 {
    u32::from_be_bytes(b[at..at + 4].try_into().unwrap())
}

fn be64(b: &[u8], at: usize) -> u64 {
    u64::from_be_bytes(b[at..at + 8].try_into().unwrap())
}

impl Header {
    /// Parses and checks the header at the start of `b` (the first
    /// cluster of the file is enough; the backing file name must lie in
    /// `b`). `file_len` is the image file's size. The error says what is
    /// wrong in one line.
    pub fn parse(b: &[u8], file_len: u64) -> Result<Self, String> {
        if b.len() < 72 {
            return Err(format!(
                "not a qcow2 image: {} bytes, shorter than a qcow2 header",
                b.len()
            ));
        }
        if be32(b, 0) != MAGIC {
            return Err("not a qcow2 image (bad magic)".into());
        }
        let version = be32(b, 4);
        if version != 2 && version != 3 {
            return Err(format!("qcow2 version {version} is not supported (2 or 3)"));
        }
        let cluster_bits = be32(b, 20);
        if !(MIN_CLUSTER_BITS..=MAX_CLUSTER_BITS).contains(&cluster_bits) {
            return Err(format!(
                "cluster size 2^{cluster_bits} is not supported (4 KiB to 2 MiB)"
            ));
        }
        let crypt = be32(b, 32);
        if crypt != 0 {
            return Err("encrypted qcow2 images are not supported".into());
        }
        let (incompatible, refcount_order, header_len) = if version == 3 {
            if b.len() < 104 {
                return Err("truncated qcow2 v3 header".into());
            }
            (be64(b, 72), be32(b, 96), be32(b, 100) as usize)
        } else {
            (0, 4, 72)
        };
        let mut compression_type = 0u8;
        if incompatible & incompat::COMPRESSION_TYPE != 0 {
            if header_len < 105 || b.len() < 105 {
                return Err("truncated qcow2 header (compression type)".into());
            }
            compression_type = b[104];
        }
        if compression_type != 0 {
            return Err(format!(
                "compression type {compression_type} is not supported (zlib only)"
            ));
        }
        let known = incompat::DIRTY
            | incompat::CORRUPT
            | incompat::EXTERNAL_DATA
            | incompat::COMPRESSION_TYPE
            | incompat::EXTENDED_L2;
        if incompatible & !known != 0 {
            return Err(format!(
                "unknown incompatible qcow2 features {:#x}",
                incompatible & !known
            ));
        }
        if incompatible & incompat::CORRUPT != 0 {
            return Err("the image is marked corrupt (qemu-img check -r all)".into());
        }
        if incompatible & incompat::DIRTY != 0 {
            return Err(
                "the image is dirty (lazy refcounts): repair it with qemu-img check -r all".into(),
            );
        }
        if incompatible & incompat::EXTERNAL_DATA != 0 {
            return Err("qcow2 images with an external data file are not supported".into());
        }
        if incompatible & incompat::EXTENDED_L2 != 0 {
            return Err("qcow2 images with extended L2 entries are not supported".into());
        }
        if refcount_order > 6 {
            return Err(format!("refcount order {refcount_order} is invalid"));
        }
        let size = be64(b, 24);
        let cluster = 1u64 << cluster_bits;
        let h = Header {
            version,
            backing_file: None,
            cluster_bits,
            size,
            l1_size: be32(b, 36),
            l1_offset: be64(b, 40),
            refcount_table_offset: be64(b, 48),
            refcount_table_clusters: be32(b, 56),
            nb_snapshots: be32(b, 60),
            refcount_order,
            incompatible,
        };
        if size == 0 || !size.is_multiple_of(512) {
            return Err(format!(
                "virtual size {size} is not a non-zero multiple of 512"
            ));
        }
        let l2_entries = cluster / 8;
        let covered = u128::from(h.l1_size) * u128::from(l2_entries) * u128::from(cluster);
        if covered < u128::from(size) {
            return Err(format!(
                "virtual size {size} does not fit the L1 table ({} entries)",
                h.l1_size
            ));
        }
        // QEMU's own limit (QCOW_MAX_L1_SIZE, 32 MiB of entries).
        if u64::from(h.l1_size) * 8 > 32 << 20 {
            return Err(format!("L1 table of {} entries is too large", h.l1_size));
        }
        for (what, off, len) in [
            ("L1 table", h.l1_offset, u64::from(h.l1_size) * 8),
            (
                "refcount table",
                h.refcount_table_offset,
                u64::from(h.refcount_table_clusters) << cluster_bits,
            ),
        ] {
            if !off.is_multiple_of(cluster) || off == 0 && len != 0 {
                return Err(format!("{what} offset {off:#x} is not cluster aligned"));
            }
            if off.saturating_add(len) > file_len {
                return Err(format!(
                    "{what} at {off:#x} ({len} bytes) lies past the end of the file ({file_len} bytes): truncated image?"
                ));
            }
        }
        if h.refcount_table_clusters == 0 {
            return Err("the image has no refcount table".into());
        }
        let bf_off = be64(b, 8) as usize;
        let bf_len = be32(b, 16) as usize;
        let mut h = h;
        if bf_off != 0 && bf_len != 0 {
            if bf_len > 1023 || bf_off + bf_len > b.len() {
                return Err("the backing file name lies outside the first cluster".into());
            }
            let name = std::str::from_utf8(&b[bf_off..bf_off + bf_len])
                .map_err(|_| "the backing file name is not UTF-8".to_string())?;
            h.backing_file = Some(name.to_string());
        }
        Ok(h)
    }

    /// Cluster size in bytes.
    pub fn cluster_size(&self) -> u64 {
        1 << self.cluster_bits
    }

    /// Entries of one L2 table.
    pub fn l2_entries(&self) -> u64 {
        self.cluster_size() / 8
    }

    /// Refcount entries of one refcount block.
    pub fn refblock_entries(&self) -> u64 {
        (self.cluster_size() * 8) >> self.refcount_order
    }
}

/// The host range of a compressed cluster's data (L2 entry with
/// [`COMPRESSED`]): (offset, bytes), the bytes an upper bound.
pub fn compressed_range(entry: u64, cluster_bits: u32) -> (u64, u64) {
    let x = 62 - (cluster_bits - 8);
    let off = entry & ((1u64 << x) - 1);
    let sectors = ((entry & !COMPRESSED & !COPIED) >> x) + 1;
    (off, sectors * 512 - (off & 511))
}

/// Refcount `i` of a refcount block `blk` with entries of
/// `1 << order` bits, big endian.
pub fn refcount_get(blk: &[u8], order: u32, i: u64) -> u64 {
    let bits = 1u64 << order;
    if bits >= 8 {
        let w = (bits / 8) as usize;
        let at = i as usize * w;
        blk[at..at + w]
            .iter()
            .fold(0u64, |a, b| (a << 8) | u64::from(*b))
    } else {
        let per = 8 / bits;
        let byte = blk[(i / per) as usize];
        let shift = (i % per) * bits;
        (u64::from(byte) >> shift) & ((1 << bits) - 1)
    }
}

/// Sets refcount `i` of `blk` (see [`refcount_get`]); returns the byte
/// range of `blk` that changed. `v` must fit.
pub fn refcount_set(blk: &mut [u8], order: u32, i: u64, v: u64) -> std::ops::Range<usize> {
    let bits = 1u64 << order;
    if bits >= 8 {
        let w = (bits / 8) as usize;
        let at = i as usize * w;
        for k in 0..w {
            blk[at + k] = (v >> (8 * (w - 1 - k))) as u8;
        }
        at..at + w
    } else {
        let per = 8 / bits;
        let at = (i / per) as usize;
        let shift = (i % per) * bits;
        let mask = (((1u64 << bits) - 1) << shift) as u8;
        blk[at] = (blk[at] & !mask) | (((v << shift) as u8) & mask);
        at..at + 1
    }
}

/// The largest refcount of width `1 << order` bits.
pub fn refcount_max(order: u32) -> u64 {
    if order == 6 {
        u64::MAX
    } else {
        (1u64 << (1u64 << order)) - 1
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A v3 header like `qemu-img create -f qcow2 -o cluster_size=64k` makes
    /// for 1 GiB: L1 at 0x30000, refcount table at 0x10000 (1 cluster).
    fn v3(size: u64) -> Vec<u8> {
        let mut b = vec![0u8; 65536];
        b[0..4].copy_from_slice(&MAGIC.to_be_bytes());
        b[4..8].copy_from_slice(&3u32.to_be_bytes());
        b[20..24].copy_from_slice(&16u32.to_be_bytes());
        b[24..32].copy_from_slice(&size.to_be_bytes());
        b[36..40].copy_from_slice(&2u32.to_be_bytes());
        b[40..48].copy_from_slice(&0x30000u64.to_be_bytes());
        b[48..56].copy_from_slice(&0x10000u64.to_be_bytes());
        b[56..60].copy_from_slice(&1u32.to_be_bytes());
        b[96..100].copy_from_slice(&4u32.to_be_bytes());
        b[100..104].copy_from_slice(&112u32.to_be_bytes());
        b
    }

    #[test]
    fn parses_a_v3_header_and_refuses_bad_ones() {
        let h = Header::parse(&v3(1 << 30), 0x40000).unwrap();
        assert_eq!((h.version, h.cluster_bits, h.size), (3, 16, 1 << 30));
        assert_eq!((h.l1_size, h.l1_offset), (2, 0x30000));
        assert_eq!(h.refblock_entries(), 32768);
        assert_eq!(h.backing_file, None);

        let err = |b: &[u8], len: u64| Header::parse(b, len).unwrap_err();
        assert!(err(&v3(1 << 30)[..50], 0x40000).contains("shorter"));
        let mut b = v3(1 << 30);
        b[0] = 0;
        assert!(err(&b, 0x40000).contains("magic"));
        // 1 GiB needs 2 L1 entries of 64 KiB clusters; 3 GiB does not fit
        assert!(err(&v3(3 << 30), 0x40000).contains("does not fit"));
        assert!(err(&v3(1 << 30), 0x30000).contains("past the end"));
        let mut b = v3(1 << 30);
        b[72..80].copy_from_slice(&incompat::DIRTY.to_be_bytes());
        assert!(err(&b, 0x40000).contains("dirty"));
        let mut b = v3(1 << 30);
        b[20..24].copy_from_slice(&9u32.to_be_bytes());
        assert!(err(&b, 0x40000).contains("cluster size"));
        let mut b = v3(1 << 30);
        b[8..16].copy_from_slice(&200u64.to_be_bytes());
        b[16..20].copy_from_slice(&8u32.to_be_bytes());
        b[200..208].copy_from_slice(b"base.raw");
        let h = Header::parse(&b, 0x40000).unwrap();
        assert_eq!(h.backing_file.as_deref(), Some("base.raw"));
    }

    #[test]
    fn refcounts_of_every_width() {
        for order in 0..=6u32 {
            let mut blk = vec![0u8; 64];
            let n = (64 * 8) >> order;
            let max = refcount_max(order);
            for i in 0..n {
                refcount_set(&mut blk, order, i, (i * 7 + 1) & max);
            }
            for i in 0..n {
                assert_eq!(
                    refcount_get(&blk, order, i),
                    (i * 7 + 1) & max,
                    "order {order} i {i}"
                );
            }
        }
        // 16 bits big endian, as QEMU writes them
        let mut blk = vec![0u8; 8];
        assert_eq!(refcount_set(&mut blk, 4, 1, 0x0102), 2..4);
        assert_eq!(blk[2..4], [1, 2]);
    }

    #[test]
    fn compressed_descriptor() {
        // cluster_bits 16: x = 62 - 8 = 54; 3 extra sectors at offset 0x12345
        let e = COMPRESSED | (3u64 << 54) | 0x12345;
        assert_eq!(compressed_range(e, 16), (0x12345, 4 * 512 - 0x145));
    }
}
