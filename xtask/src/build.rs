//! `cargo xtask build-ebpf` and `cargo xtask build`.
//!
//! The BPF program is built by `ublk-ebpf-build`, the same code
//! `ublk-user/build.rs` runs, into the same target directory
//! (`ublk-ebpf/target`): `build` builds it here first (its own step, log and
//! error), and the ublk-user build that follows finds it fresh.

use crate::util::{cmd, log_path, root, run_logged, say};
use anyhow::{anyhow, Result};
use std::path::PathBuf;
use ublk_ebpf_build::{EbpfCrate, Error};

/// The BPF crate of this checkout.
pub fn ebpf_crate() -> EbpfCrate {
    EbpfCrate::at(root().join("ublk-ebpf"))
}

/// Builds the BPF object; returns its path.
pub fn build_ebpf() -> Result<PathBuf> {
    say("build-ebpf: building the BPF program (nightly, bpfel-unknown-none, bpf-linker)");
    ebpf_crate()
        .build(&log_path("build-ebpf.log")?)
        .map_err(|e| match e {
            Error::Missing(_) => anyhow!("build-ebpf: {e}: run `cargo xtask setup`"),
            e => anyhow!("build-ebpf: {e}"),
        })
}

/// The release binaries the VM uses: the server and the test fixture.
/// (The library's package builds the examples; the CLI's the command.)
pub const PACKAGES: &[&str] = &["ublk-user", "ublk-user-cli", "ublk-bpf-fixture"];

pub fn build() -> Result<()> {
    build_ebpf()?;
    say("build: building the release userspace binaries");
    let mut c = cmd("cargo");
    c.current_dir(root()).args(["build", "--release"]);
    // the library's examples run in the VM (15-examples)
    c.args(["--bins", "--examples"]);
    for p in PACKAGES {
        c.args(["--package", p]);
    }
    run_logged("cargo build --release", &mut c, &log_path("build.log")?)?;
    Ok(())
}
