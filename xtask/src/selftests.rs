//! The ublk driver's own selftests (tools/testing/selftests/ublk): build
//! `kublk` against our kernel's uapi headers and a current liburing, and
//! stage the test scripts where the guest sees them (target/selftests/ublk).

use crate::linux::{newer_apt, Kernel};
use crate::util::{cache_dir, cmd, log_path, root, run_logged, say, Fnv};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};

/// liburing from sid (bookworm's 2.3 lacks what kublk uses), unpacked into
/// the cache; returns its `usr` directory.
fn liburing() -> Result<PathBuf> {
    let cache = cache_dir()?;
    let dir = cache.join("liburing");
    let usr = dir.join("root/usr");
    if usr.join("include/liburing.h").is_file() {
        return Ok(usr);
    }
    fs::create_dir_all(&dir)?;
    let lists_ready = fs::read_dir(cache.join("apt/lists"))
        .map(|d| {
            d.flatten()
                .any(|e| e.file_name().to_string_lossy().contains("sid"))
        })
        .unwrap_or(false);
    let opts = newer_apt(&cache, !lists_ready)?;
    say("selftests: downloading liburing-dev from sid");
    run_logged(
        "apt-get download liburing-dev",
        cmd("apt-get")
            .current_dir(&dir)
            .args(&opts)
            .args(["download", "liburing-dev"]),
        &log_path("liburing-download.log")?,
    )?;
    let deb = fs::read_dir(&dir)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.extension().is_some_and(|x| x == "deb"))
        .context("apt-get download liburing-dev produced no .deb")?;
    run_logged(
        "dpkg -x liburing-dev",
        cmd("dpkg").arg("-x").arg(&deb).arg(dir.join("root")),
        &log_path("liburing-download.log")?,
    )?;
    Ok(usr)
}

/// Build kublk and stage the selftests; returns the staged directory.
pub fn build(k: &Kernel) -> Result<PathBuf> {
    let src = k.tree.join("tools/testing/selftests/ublk");
    let out = root().join("target/selftests/ublk");
    let uring = liburing()?;
    let hdrs = k.build.join("usr/include");
    let mut key = Fnv::default();
    key.add(k.image.as_os_str().as_encoded_bytes());
    let mut sources: Vec<PathBuf> = fs::read_dir(&src)
        .with_context(|| format!("no selftests in {}", src.display()))?
        .flatten()
        .map(|e| e.path())
        .collect();
    sources.sort();
    for p in &sources {
        if p.is_file() {
            key.add(&fs::read(p)?);
        }
    }
    let stamp = out.join(".xtask-key");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(&key.hex()) && out.join("kublk").is_file()
    {
        return Ok(out);
    }
    say("selftests: building kublk (tools/testing/selftests/ublk)");
    k.headers_install("selftests-headers.log")?;
    let _ = fs::remove_dir_all(&out);
    fs::create_dir_all(&out)?;
    copy_dir(&src, &out)?;
    // kublk is every .c but the Makefile's standalone utilities, which are
    // programs of their own (metadata_size, bpf_offload, ...).
    let makefile = fs::read_to_string(src.join("Makefile"))?;
    let standalone = standalone_utils(&makefile);
    let is_c = |p: &&PathBuf| p.extension().is_some_and(|x| x == "c");
    let name = |p: &PathBuf| p.file_name().unwrap().to_string_lossy().to_string();
    let kublk_srcs: Vec<PathBuf> = sources
        .iter()
        .filter(is_c)
        .filter(|p| !standalone.contains(&name(p)))
        .cloned()
        .collect();
    let liba =
        find_file(&uring.join("lib"), "liburing.a").context("liburing-dev has no liburing.a")?;
    let log = log_path("selftests-build.log")?;
    let gcc = |out_name: &str, srcs: &[PathBuf]| -> Result<()> {
        run_logged(
            &format!("gcc {out_name}"),
            cmd("gcc")
                .current_dir(&out)
                .args([
                    "-O2",
                    "-Wall",
                    "-D_GNU_SOURCE=",
                    "-Wl,-no-as-needed",
                    "-o",
                    out_name,
                ])
                .arg(format!("-I{}", hdrs.display()))
                .arg(format!("-I{}", uring.join("include").display()))
                .args(srcs)
                .arg(&liba)
                .args(["-lpthread", "-lm"]),
            &log,
        )
    };
    gcc("kublk", &kublk_srcs)?;
    for util in &standalone {
        let p = src.join(util);
        if p.is_file() {
            gcc(util.trim_end_matches(".c"), &[p])?;
        }
    }
    if !out.join("kublk").is_file() {
        bail!("selftests: gcc produced no kublk");
    }
    fs::write(&stamp, key.hex())?;
    Ok(out)
}

/// File names listed in `STANDALONE_UTILS := ...` / `+= ...`.
fn standalone_utils(makefile: &str) -> Vec<String> {
    makefile
        .lines()
        .filter_map(|l| l.strip_prefix("STANDALONE_UTILS"))
        .filter_map(|l| l.trim_start().split_once('=').map(|(_, v)| v))
        .flat_map(|v| v.split_whitespace().map(str::to_string))
        .collect()
}

fn find_file(dir: &Path, name: &str) -> Option<PathBuf> {
    for e in fs::read_dir(dir).ok()?.flatten() {
        let p = e.path();
        if p.is_dir() {
            if let Some(f) = find_file(&p, name) {
                return Some(f);
            }
        } else if e.file_name() == name {
            return Some(p);
        }
    }
    None
}

fn copy_dir(src: &Path, dst: &Path) -> Result<()> {
    for e in fs::read_dir(src)?.flatten() {
        let p = e.path();
        let d = dst.join(e.file_name());
        if p.is_dir() {
            fs::create_dir_all(&d)?;
            copy_dir(&p, &d)?;
        } else {
            fs::copy(&p, &d)?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn standalone_utils_parsed() {
        let mk = "X := 1\nSTANDALONE_UTILS := metadata_size.c bpf_offload.c\nSTANDALONE_UTILS += more.c\n";
        assert_eq!(
            standalone_utils(mk),
            ["metadata_size.c", "bpf_offload.c", "more.c"]
        );
    }
}
