//! The format code against QEMU's own: images made by `qemu-img`, written
//! through [`Image`], then `qemu-img check` (no corruption, no leak) and
//! `qemu-img compare` against a raw file that received the same writes.

use super::image::{Cluster, Image};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::process::Command;

struct Dir(PathBuf);

impl Dir {
    fn new(name: &str) -> Self {
        let p = std::env::temp_dir().join(format!("ublk-qcow2-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
    fn path(&self, f: &str) -> PathBuf {
        self.0.join(f)
    }
}

impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn qemu_img(args: &[&str]) -> std::process::Output {
    let out = Command::new("qemu-img")
        .args(args)
        .output()
        .expect("qemu-img (Debian's qemu-utils; `cargo xtask setup` installs it)");
    out
}

fn ok(args: &[&str]) {
    let o = qemu_img(args);
    assert!(
        o.status.success(),
        "qemu-img {args:?}: {}{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

/// `qemu-img check` exits 0: no corruption and no leaked cluster.
fn check_clean(img: &Path) {
    ok(&["check", "-f", "qcow2", img.to_str().unwrap()]);
}

/// `qemu-img compare` says the images have the same content.
fn same(img: &Path, raw: &Path) {
    ok(&[
        "compare",
        "-f",
        "qcow2",
        "-F",
        "raw",
        img.to_str().unwrap(),
        raw.to_str().unwrap(),
    ]);
}

fn pattern(seed: u64, len: usize) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9e37_79b9_7f4a_7c15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

/// Writes the same data to the image and the raw file, at offsets that hit
/// the start, middle and end of clusters, span clusters, and overwrite.
fn write_both(img: &mut Image, raw: &std::fs::File, size: u64, cs: u64) -> usize {
    let mut new = 0;
    let writes = [
        (0u64, 512usize),
        (cs - 512, 1024),
        (3 * cs + 4096, 8192.min(cs as usize - 4096)),
        (size - 4096, 4096),
        (size / 2, 3 * cs as usize),
        (512, 512),
        (size / 2 + 100 * 512, 4096),
    ];
    for (i, (off, len)) in writes.into_iter().enumerate() {
        let d = pattern(i as u64 + 1, len);
        new += img.write(&d, off).unwrap().len();
        raw.write_all_at(&d, off).unwrap();
    }
    new
}

fn read_all(img: &mut Image, size: u64) -> Vec<u8> {
    let mut b = vec![0u8; size as usize];
    img.read(&mut b, 0).unwrap();
    b
}

#[test]
fn writes_match_qemu_for_every_cluster_size_and_version() {
    let d = Dir::new("sizes");
    for (cs, compat) in [
        (4096u64, "1.1"),
        (65536, "1.1"),
        (65536, "0.10"),
        (1 << 21, "1.1"),
    ] {
        let size: u64 = 64 << 20;
        let img_p = d.path(&format!("a-{cs}-{compat}.qcow2"));
        let raw_p = d.path("a.raw");
        ok(&[
            "create",
            "-q",
            "-f",
            "qcow2",
            "-o",
            &format!("cluster_size={cs},compat={compat}"),
            img_p.to_str().unwrap(),
            &size.to_string(),
        ]);
        let raw = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(&raw_p)
            .unwrap();
        raw.set_len(size).unwrap();
        let mut img = Image::open(&img_p, true).unwrap();
        assert_eq!(img.header().cluster_size(), cs);
        let new = write_both(&mut img, &raw, size, cs);
        assert!(new >= 7, "first writes allocate ({new} new clusters)");
        // what we read back is what we wrote
        let mut want = vec![0u8; size as usize];
        raw.read_exact_at(&mut want, 0).unwrap();
        assert!(read_all(&mut img, size) == want, "read back, cluster {cs}");
        // every allocated cluster is in place, and a reopen sees the same
        let mut n = 0;
        img.for_each_in_place(|_, _| n += 1).unwrap();
        drop(img);
        let mut again = Image::open(&img_p, true).unwrap();
        let mut m = 0;
        again.for_each_in_place(|_, _| m += 1).unwrap();
        assert_eq!(n, m);
        check_clean(&img_p);
        same(&img_p, &raw_p);
    }
}

#[test]
fn backing_file_reads_through_and_writes_copy_on_write() {
    let d = Dir::new("backing");
    let size: u64 = 16 << 20;
    let base = d.path("base.raw");
    let base_data = pattern(99, size as usize);
    std::fs::write(&base, &base_data).unwrap();
    let top = d.path("top.qcow2");
    ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "base.raw",
        "-F",
        "raw",
        top.to_str().unwrap(),
    ]);
    let raw_p = d.path("expect.raw");
    std::fs::write(&raw_p, &base_data).unwrap();
    let raw = std::fs::OpenOptions::new()
        .write(true)
        .open(&raw_p)
        .unwrap();
    let mut img = Image::open(&top, true).unwrap();
    assert!(img.has_backing());
    assert_eq!(img.cluster(0).unwrap(), Cluster::Unallocated);
    assert!(read_all(&mut img, size) == base_data, "reads fall through");
    write_both(&mut img, &raw, size, 65536);
    // zeroing an unallocated cluster over a backing file must allocate
    let z = img.zero(12 << 20, 65536, true).unwrap();
    assert_eq!(z.len(), 1);
    raw.write_all_at(&vec![0u8; 65536], 12 << 20).unwrap();
    drop(img);
    check_clean(&top);
    same(&top, &raw_p);
    // the base is untouched
    assert!(std::fs::read(&base).unwrap() == base_data);
}

#[test]
fn compressed_image_reads_back_and_rewrites_cleanly() {
    let d = Dir::new("compressed");
    let size: u64 = 8 << 20;
    let raw_p = d.path("src.raw");
    // compressible data with some holes
    let mut data = vec![0u8; size as usize];
    for (i, c) in data.chunks_mut(65536).enumerate() {
        if i % 3 != 1 {
            let p = pattern(i as u64, 64);
            for (k, b) in c.iter_mut().enumerate() {
                *b = p[k % 64];
            }
        }
    }
    std::fs::write(&raw_p, &data).unwrap();
    let img_p = d.path("c.qcow2");
    ok(&[
        "convert",
        "-q",
        "-c",
        "-f",
        "raw",
        "-O",
        "qcow2",
        raw_p.to_str().unwrap(),
        img_p.to_str().unwrap(),
    ]);
    let mut img = Image::open(&img_p, true).unwrap();
    assert!(matches!(img.cluster(0).unwrap(), Cluster::Compressed(_)));
    assert!(
        read_all(&mut img, size) == data,
        "compressed clusters inflate"
    );
    let mut published = 0;
    img.for_each_in_place(|_, _| published += 1).unwrap();
    assert_eq!(published, 0, "compressed clusters are never in place");
    // rewriting part of a compressed cluster copies it out
    let raw = std::fs::OpenOptions::new()
        .write(true)
        .open(&raw_p)
        .unwrap();
    let new = write_both(&mut img, &raw, size, 65536);
    assert!(new > 0);
    drop(img);
    check_clean(&img_p);
    same(&img_p, &raw_p);
}

#[test]
fn zeroing_keeps_in_place_clusters_allocated() {
    let d = Dir::new("zero");
    let size: u64 = 4 << 20;
    let img_p = d.path("z.qcow2");
    ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        img_p.to_str().unwrap(),
        &size.to_string(),
    ]);
    let mut img = Image::open(&img_p, true).unwrap();
    img.write(&pattern(1, 3 * 65536), 65536).unwrap();
    let before = img.cluster(2).unwrap();
    let host = before.in_place().expect("allocated in place");
    assert!(img.zero(2 * 65536 + 512, 4096, true).unwrap().is_empty());
    assert!(img.zero(65536, 65536, false).unwrap().is_empty());
    assert_eq!(img.cluster(2).unwrap(), before, "still mapped where it was");
    assert_eq!(img.refcount(host).unwrap(), 1);
    let mut b = vec![1u8; 65536];
    img.read(&mut b, 65536).unwrap();
    assert!(b.iter().all(|x| *x == 0));
    img.read(&mut b, 2 * 65536).unwrap();
    assert!(b[512..4608].iter().all(|x| *x == 0));
    assert_eq!(b[..512], pattern(1, 3 * 65536)[65536..65536 + 512]);
    drop(img);
    check_clean(&img_p);
}

#[test]
fn refcount_blocks_grow_past_the_first() {
    // 4 KiB clusters with 16-bit refcounts: one block covers 2048 clusters
    // (8 MiB of file); writing 12 MiB needs new refcount blocks.
    let d = Dir::new("grow");
    let size: u64 = 16 << 20;
    let img_p = d.path("g.qcow2");
    ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-o",
        "cluster_size=4096",
        img_p.to_str().unwrap(),
        &size.to_string(),
    ]);
    let mut img = Image::open(&img_p, true).unwrap();
    let chunk = pattern(5, 1 << 20);
    for i in 0..12u64 {
        img.write(&chunk, i << 20).unwrap();
    }
    drop(img);
    check_clean(&img_p);
}

#[test]
fn bad_images_fail_with_one_line() {
    let d = Dir::new("bad");
    let img_p = d.path("t.qcow2");
    ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        img_p.to_str().unwrap(),
        "64M",
    ]);
    let full = std::fs::read(&img_p).unwrap();
    let cases: Vec<(&str, Vec<u8>)> = vec![
        ("shorter", full[..40].to_vec()),
        ("magic", {
            let mut b = full.clone();
            b[0] ^= 0xff;
            b
        }),
        ("past the end", full[..0x30000.min(full.len() - 1)].to_vec()),
    ];
    for (want, bytes) in cases {
        std::fs::write(&img_p, &bytes).unwrap();
        let e = Image::open(&img_p, true)
            .err()
            .expect("refused")
            .to_string();
        assert!(e.contains(want), "{want}: {e}");
        assert!(!e.contains('\n'), "one line: {e}");
    }
    // a missing backing file
    let top = d.path("top.qcow2");
    let base = d.path("gone.raw");
    std::fs::write(&base, vec![0u8; 1 << 20]).unwrap();
    ok(&[
        "create",
        "-q",
        "-f",
        "qcow2",
        "-b",
        "gone.raw",
        "-F",
        "raw",
        top.to_str().unwrap(),
    ]);
    std::fs::remove_file(&base).unwrap();
    let e = Image::open(&top, true).err().expect("refused").to_string();
    assert!(e.contains("backing file") && e.contains("gone.raw"), "{e}");
}
