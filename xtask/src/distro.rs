//! The `distro` kernel flavor: Debian's own prebuilt kernel of the same 7.2
//! release, downloaded, not built. It is a real kernel without our series
//! (no UBLK_F_BPF), so the fallback test runs on it, and the committed kublk
//! baseline (tests/kublk-baseline.txt) is made on it.
//!
//! Debian ships the image (`linux-binary-ABI`), the modules
//! (`linux-modules-ABI`, `.ko.xz`, no modules.dep: depmod runs at install)
//! and config/modules.builtin (`linux-base-ABI`) separately. ublk_drv, 9p,
//! loop and ext4 are modules there: the ones the guest needs and their
//! dependencies (read from each module's `depends=` modinfo) are
//! decompressed on the host (busybox insmod loads plain `.ko` only) into a
//! second initramfs that the guest's /init loads in order.
//!
//! Cache: `dl/` for the .debs, `distro/<version>/` for the unpacked packages,
//! `modules.cpio.gz` and a `ready` stamp.

use crate::linux::{ensure_pristine, newer_apt, sanitize, unpacked_version, Kernel};
use crate::util::{cache_dir, cmd, lock, log_path, run_logged, say};
use anyhow::{bail, Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;

/// (kernel ABI, Debian version): pinned first, then fallbacks seen in
/// trixie-backports / sid (the same releases as kernel.rs's VERSIONS).
pub const VERSIONS: &[(&str, &str)] = &[
    ("7.2.12+deb13-amd64", "7.2.12-1~bpo13+1"),
    ("7.2.11+deb13-amd64", "7.2.11-1~bpo13+1"),
    ("7.2.13+deb14-amd64", "7.2.13-1"),
    ("7.2.9+deb13-amd64", "7.2.9-1~bpo13+1"),
    ("7.2.6+deb13-amd64", "7.2.6-1~bpo13+1"),
];

/// Modules the guest loads (their dependencies are added): 9p for the
/// project and control mounts, ublk, loop (losetup), ext4 (mkfs + mount).
const GUEST_MODULES: &[&str] = &["9pnet_virtio", "9p", "ublk_drv", "loop", "ext4"];

/// Make sure the distro kernel and its module initramfs are unpacked.
pub fn ensure() -> Result<Kernel> {
    let cache = cache_dir()?;
    let _l = lock(&cache.join(".kernel-distro.lock"), "the distro kernel")?;
    let order = preference(&cache);
    for (abi, ver) in &order {
        let dir = cache.join("distro").join(sanitize(ver));
        if dir.join("ready").is_file() {
            return kernel_in(&dir, abi, ensure_pristine()?);
        }
    }
    let mut last = None;
    for (abi, ver) in &order {
        match fetch(&cache, abi, ver) {
            Ok(k) => return Ok(k),
            Err(e) => {
                say(format!(
                    "distro kernel: {abi} {ver} not available ({e:#}); trying the next"
                ));
                last = Some(e);
            }
        }
    }
    Err(last.unwrap_or_else(|| anyhow::anyhow!("no distro kernel versions listed")))
        .context("distro kernel: none of Debian's prebuilt 7.2 kernels could be downloaded")
}

/// The releases in the order they are tried: first the one whose source
/// the other flavors use.
fn preference(cache: &Path) -> Vec<(&'static str, &'static str)> {
    let src = unpacked_version(cache);
    let mut order: Vec<(&str, &str)> = VERSIONS.to_vec();
    order.sort_by_key(|(_, v)| Some(*v) != src);
    order
}

/// The distro kernel if it is already downloaded and unpacked in `cache`
/// (see `kernel::find_in`: a query that changes nothing). Its
/// `tree` is the unpacked linux-source tree if there is one, else where
/// `cargo xtask kernel` would unpack it.
pub fn find_in(cache: &Path) -> Result<Option<Kernel>> {
    for (abi, ver) in preference(cache) {
        let dir = cache.join("distro").join(sanitize(ver));
        if dir.join("ready").is_file() {
            let src = unpacked_version(cache).unwrap_or(ver);
            let tree = cache.join("src").join(sanitize(src)).join("pristine");
            return kernel_in(&dir, abi, tree).map(Some);
        }
    }
    Ok(None)
}

/// The (ABI, Debian version) of the distro kernel in use.
pub fn version() -> Result<(String, String)> {
    let k = ensure()?;
    let ver = fs::read_to_string(k.build.join("version"))?;
    Ok((k.release, ver.trim().to_string()))
}

fn kernel_in(dir: &Path, abi: &str, tree: PathBuf) -> Result<Kernel> {
    let root = dir.join("root");
    let image = [
        root.join(format!("usr/lib/modules/{abi}/vmlinuz")),
        root.join(format!("boot/vmlinuz-{abi}")),
    ]
    .into_iter()
    .find(|p| p.is_file())
    .with_context(|| format!("distro kernel: no vmlinuz for {abi} in {}", root.display()))?;
    Ok(Kernel {
        tree,
        build: dir.to_path_buf(),
        image,
        release: abi.to_string(),
        initrd_extra: Some(dir.join("modules.cpio.gz")),
    })
}

fn fetch(cache: &Path, abi: &str, ver: &str) -> Result<Kernel> {
    let dl = cache.join("dl");
    fs::create_dir_all(&dl)?;
    let pkgs = [
        format!("linux-binary-{abi}"),
        format!("linux-modules-{abi}"),
        format!("linux-base-{abi}"),
    ];
    let deb = |p: &str| dl.join(format!("{p}_{}_amd64.deb", ver.replace(':', "%3a")));
    let missing: Vec<String> = pkgs
        .iter()
        .filter(|p| !deb(p).is_file())
        .map(|p| format!("{p}={ver}"))
        .collect();
    if !missing.is_empty() {
        let lists_ready = fs::read_dir(cache.join("apt/lists"))
            .map(|d| {
                d.flatten()
                    .any(|e| e.file_name().to_string_lossy().contains("trixie-backports"))
            })
            .unwrap_or(false);
        let mut opts = newer_apt(cache, !lists_ready)?;
        say(format!(
            "distro kernel: downloading Debian's linux-binary/-modules/-base {abi} {ver} (~175 MB)"
        ));
        let dl_cmd = |opts: &[String]| {
            run_logged(
                "apt-get download",
                cmd("apt-get")
                    .current_dir(&dl)
                    .args(opts)
                    .arg("download")
                    .args(&missing),
                &log_path("apt-download-distro.log")?,
            )
        };
        if dl_cmd(&opts).is_err() && lists_ready {
            // Stale lists: refresh once.
            opts = newer_apt(cache, true)?;
            dl_cmd(&opts)?;
        }
        for p in &pkgs {
            if !deb(p).is_file() {
                bail!("apt-get download gave no {}", deb(p).display());
            }
        }
    }
    let dir = cache.join("distro").join(sanitize(ver));
    let _ = fs::remove_dir_all(&dir);
    let root = dir.join("root");
    fs::create_dir_all(&root)?;
    for p in &pkgs {
        run_logged(
            &format!("dpkg -x {p}"),
            cmd("dpkg").arg("-x").arg(deb(p)).arg(&root),
            &log_path("distro-unpack.log")?,
        )?;
    }
    let k = kernel_in(&dir, abi, ensure_pristine()?)?;
    let mods = root.join(format!("usr/lib/modules/{abi}"));
    modules_initramfs(&mods, &dir.join("stage"), &dir.join("modules.cpio.gz"))?;
    fs::write(dir.join("version"), ver)?;
    fs::write(dir.join("ready"), abi)?;
    say(format!(
        "distro kernel: {abi} ({ver}) ready: {}",
        k.image.display()
    ));
    Ok(k)
}

/// Module name as the kernel knows it: file stem with `-` as `_`.
fn mod_name(file: &str) -> String {
    file.split(".ko").next().unwrap_or(file).replace('-', "_")
}

/// Every `*.ko*` under `dir`, by module name.
fn index_modules(dir: &Path, out: &mut BTreeMap<String, PathBuf>) -> Result<()> {
    for e in fs::read_dir(dir)?.flatten() {
        let p = e.path();
        let name = e.file_name().to_string_lossy().to_string();
        if p.is_dir() {
            index_modules(&p, out)?;
        } else if name.contains(".ko") {
            out.insert(mod_name(&name), p);
        }
    }
    Ok(())
}

/// The `depends=` list of a module's `.modinfo` (NUL-separated key=value).
pub fn modinfo_depends(ko: &[u8]) -> Vec<String> {
    let key = b"depends=";
    let mut out = Vec::new();
    for (i, w) in ko.windows(key.len()).enumerate() {
        if w == key && (i == 0 || ko[i - 1] == 0) {
            let rest = &ko[i + key.len()..];
            let end = rest.iter().position(|&b| b == 0).unwrap_or(rest.len());
            let v = String::from_utf8_lossy(&rest[..end]);
            out.extend(
                v.split(',')
                    .map(str::trim)
                    .filter(|s| !s.is_empty())
                    .map(|s| s.replace('-', "_")),
            );
            break;
        }
    }
    out
}

/// The module's bytes, decompressed (.ko.xz, .ko.zst, .ko.gz or .ko).
fn read_module(p: &Path) -> Result<Vec<u8>> {
    let name = p.to_string_lossy();
    let tool = if name.ends_with(".xz") {
        Some("xz")
    } else if name.ends_with(".zst") {
        Some("zstd")
    } else if name.ends_with(".gz") {
        Some("gzip")
    } else {
        None
    };
    match tool {
        None => Ok(fs::read(p)?),
        Some(t) => {
            let out = Command::new(t)
                .args(["-dc"])
                .arg(p)
                .output()
                .with_context(|| format!("cannot run {t}"))?;
            if !out.status.success() {
                bail!("{t} -dc {} failed", p.display());
            }
            Ok(out.stdout)
        }
    }
}

/// Dependencies first: the load order of `wanted` and what they need.
/// Names not in `have` are built in (or missing: insmod will say).
pub fn load_order(
    wanted: &[&str],
    deps: &dyn Fn(&str) -> Result<Option<Vec<String>>>,
) -> Result<Vec<String>> {
    fn visit(
        m: &str,
        deps: &dyn Fn(&str) -> Result<Option<Vec<String>>>,
        done: &mut Vec<String>,
        active: &mut BTreeSet<String>,
    ) -> Result<()> {
        if done.iter().any(|d| d == m) {
            return Ok(());
        }
        if !active.insert(m.to_string()) {
            bail!("module dependency cycle at {m}");
        }
        if let Some(ds) = deps(m)? {
            for d in ds {
                visit(&d, deps, done, active)?;
            }
            done.push(m.to_string());
        }
        active.remove(m);
        Ok(())
    }
    let mut done = Vec::new();
    let mut active = BTreeSet::new();
    for m in wanted {
        visit(m, deps, &mut done, &mut active)?;
    }
    Ok(done)
}

/// A gzip'd cpio with `lib/modules/xtask/NAME.ko` (decompressed) and
/// `lib/modules/xtask/load` (their insmod order).
fn modules_initramfs(mods: &Path, stage: &Path, out: &Path) -> Result<()> {
    let mut index = BTreeMap::new();
    index_modules(&mods.join("kernel"), &mut index)?;
    let builtin = fs::read_to_string(mods.join("modules.builtin")).unwrap_or_default();
    let builtin: BTreeSet<String> = builtin
        .lines()
        .filter_map(|l| l.rsplit('/').next())
        .map(mod_name)
        .collect();
    let _ = fs::remove_dir_all(stage);
    let dst = stage.join("lib/modules/xtask");
    fs::create_dir_all(&dst)?;
    let cache: std::cell::RefCell<BTreeMap<String, Vec<u8>>> = Default::default();
    let deps = |m: &str| -> Result<Option<Vec<String>>> {
        let Some(p) = index.get(m) else {
            if builtin.contains(m) || GUEST_MODULES.contains(&m) {
                // A wanted module that is built in needs no loading.
                return Ok(None);
            }
            bail!("module {m} is neither in linux-modules nor built in");
        };
        let bytes = read_module(p)?;
        let d = modinfo_depends(&bytes);
        cache.borrow_mut().insert(m.to_string(), bytes);
        Ok(Some(d))
    };
    let order = load_order(GUEST_MODULES, &deps)?;
    for m in &order {
        let bytes = cache.borrow().get(m).cloned().unwrap();
        fs::write(dst.join(format!("{m}.ko")), bytes)?;
    }
    fs::write(dst.join("load"), order.join("\n") + "\n")?;
    say(format!(
        "distro kernel: guest modules (load order): {}",
        order.join(" ")
    ));
    crate::util::pack_cpio(stage, out, "cpio (distro modules)", "initramfs-distro.log")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn find_in_wants_the_ready_stamp_and_downloads_nothing() {
        let t = crate::util::TempDir::new("find-distro");
        let cache = t.path();
        let (abi, ver) = VERSIONS[1];
        let dir = cache.join("distro").join(sanitize(ver));
        let image = dir.join(format!("root/usr/lib/modules/{abi}/vmlinuz"));
        fs::create_dir_all(image.parent().unwrap()).unwrap();
        fs::write(&image, "").unwrap();
        assert!(find_in(cache).unwrap().is_none(), "not ready yet");
        fs::write(dir.join("ready"), abi).unwrap();
        let k = find_in(cache).unwrap().expect("found");
        assert_eq!((k.image, k.release.as_str()), (image, abi));
        assert_eq!(k.initrd_extra, Some(dir.join("modules.cpio.gz")));
        // No source unpacked: the tree is where `kernel` would unpack it.
        assert_eq!(
            k.tree,
            cache.join("src").join(sanitize(ver)).join("pristine")
        );
        assert!(!cache.join("dl").exists());
    }

    #[test]
    fn depends_from_modinfo() {
        let ko = b"\x7fELF junk\0license=GPL\0depends=jbd2,mbcache,crc16\0name=ext4\0";
        assert_eq!(modinfo_depends(ko), ["jbd2", "mbcache", "crc16"]);
        let none = b"junk\0depends=\0name=loop\0";
        assert!(modinfo_depends(none).is_empty());
        // "xdepends=" is another key, not ours.
        assert!(modinfo_depends(b"\0xdepends=a\0").is_empty());
        assert_eq!(modinfo_depends(b"\0depends=a-b\0"), ["a_b"]);
    }

    #[test]
    fn load_order_puts_dependencies_first_once() {
        let graph: BTreeMap<&str, Vec<&str>> = [
            ("9p", vec!["9pnet", "netfs"]),
            ("9pnet_virtio", vec!["9pnet"]),
            ("9pnet", vec![]),
            ("netfs", vec![]),
            ("ext4", vec!["jbd2", "crc16"]),
            ("jbd2", vec![]),
            // crc16 is built in: not in the graph.
        ]
        .into();
        let deps = |m: &str| -> Result<Option<Vec<String>>> {
            Ok(graph
                .get(m)
                .map(|d| d.iter().map(|s| s.to_string()).collect()))
        };
        let order = load_order(&["9pnet_virtio", "9p", "ext4"], &deps).unwrap();
        assert_eq!(
            order,
            ["9pnet", "9pnet_virtio", "netfs", "9p", "jbd2", "ext4"]
        );
        let cyclic = |m: &str| -> Result<Option<Vec<String>>> {
            Ok(Some(vec![if m == "a" { "b" } else { "a" }.to_string()]))
        };
        assert!(format!("{:#}", load_order(&["a"], &cyclic).unwrap_err()).contains("cycle"));
    }

    #[test]
    fn module_names() {
        assert_eq!(mod_name("ublk_drv.ko.xz"), "ublk_drv");
        assert_eq!(mod_name("nf-conntrack.ko"), "nf_conntrack");
    }
}
