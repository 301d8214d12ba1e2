//! `cargo xtask build-ebpf` and `cargo xtask build`.

use crate::util::{cmd, log_path, root, run_logged, say};
use anyhow::{Context, Result};
use std::fs;
use std::path::PathBuf;

/// Where the BPF object lands; `ublk-user/build.rs` embeds it from here.
pub fn ebpf_object() -> PathBuf {
    root().join("target/bpf/ublk-ebpf.o")
}

pub fn build_ebpf() -> Result<PathBuf> {
    let dir = root().join("ublk-ebpf");
    say("build-ebpf: building the BPF program (nightly, bpfel-unknown-none, bpf-linker)");
    run_logged(
        "BPF program build",
        cmd("rustup")
            .current_dir(&dir)
            .args(["run", "nightly", "cargo", "build", "--release"])
            .args(["--target", "bpfel-unknown-none", "-Z", "build-std=core"]),
        &log_path("build-ebpf.log")?,
    )?;
    let built = dir.join("target/bpfel-unknown-none/release/ublk-ebpf");
    let out = ebpf_object();
    fs::create_dir_all(out.parent().unwrap())?;
    fs::copy(&built, &out)
        .with_context(|| format!("the BPF build produced no {}", built.display()))?;
    Ok(out)
}

pub fn build() -> Result<()> {
    build_ebpf()?;
    say("build: building the release userspace binaries");
    run_logged(
        "cargo build --release",
        cmd("cargo")
            .current_dir(root())
            .args(["build", "--release", "--package", "ublk-user"])
            // the library's examples run in the VM (15-examples)
            .args(["--bins", "--examples"]),
        &log_path("build.log")?,
    )?;
    Ok(())
}
