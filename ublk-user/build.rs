//! Embeds the BPF program object when the (opt-in) `bpf` feature is on.
//!
//! * `$UBLK_EBPF_OBJ` set: that file is embedded (it must be a BPF ELF).
//! * else: the program in `../ublk-ebpf` is built (`ublk-ebpf-build`: the
//!   nightly toolchain with rust-src and bpf-linker, target directory
//!   `ublk-ebpf/target`, shared with `cargo xtask build-ebpf`) and embedded.
//!
//! Either way the object is copied to `$OUT_DIR/ublk-ebpf.o`, which
//! `bpf::embedded_object()` includes. If it cannot be had, the build fails
//! and says how to fix it: there is no build of ublk-user with the `bpf`
//! feature and without the program. Without the feature nothing is built.

use std::env;

#[cfg(not(feature = "bpf"))]
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UBLK_EBPF_OBJ");
    if env::var_os("UBLK_EBPF_OBJ").is_some() {
        println!("cargo:warning=UBLK_EBPF_OBJ is ignored: the `bpf` feature is off");
    }
}

#[cfg(feature = "bpf")]
use std::{
    fs,
    path::{Path, PathBuf},
};
#[cfg(feature = "bpf")]
use ublk_ebpf_build::{EbpfCrate, Error};

#[cfg(feature = "bpf")]
fn main() {
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UBLK_EBPF_OBJ");
    let out_dir = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR"));
    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    match object(&manifest, &out_dir) {
        Ok(bytes) => {
            fs::write(out_dir.join("ublk-ebpf.o"), bytes).expect("writing OUT_DIR/ublk-ebpf.o")
        }
        Err(lines) => {
            for l in lines {
                println!("cargo::error={l}");
            }
        }
    }
}

/// The object's bytes, or the lines of the error to print.
#[cfg(feature = "bpf")]
fn object(manifest: &Path, out_dir: &Path) -> Result<Vec<u8>, Vec<String>> {
    if let Some(p) = env::var_os("UBLK_EBPF_OBJ") {
        let p = PathBuf::from(p);
        println!("cargo:rerun-if-changed={}", p.display());
        let bytes = fs::read(&p).map_err(|e| {
            vec![format!(
                "UBLK_EBPF_OBJ={}: cannot read it: {e}",
                p.display()
            )]
        })?;
        ublk_ebpf_build::check_object(&bytes).map_err(|why| {
            vec![format!(
                "UBLK_EBPF_OBJ={}: {why}; it must be the BPF program \
                 (ublk-ebpf/target/bpfel-unknown-none/release/ublk-ebpf)",
                p.display()
            )]
        })?;
        return Ok(bytes);
    }
    let ebpf = EbpfCrate::at(manifest.with_file_name("ublk-ebpf"));
    for p in ebpf.inputs() {
        println!("cargo:rerun-if-changed={}", p.display());
    }
    let obj = ebpf
        .build(&out_dir.join("ublk-ebpf-build.log"))
        .map_err(explain)?;
    fs::read(&obj).map_err(|e| vec![format!("cannot read {}: {e}", obj.display())])
}

/// The error, then the three ways out.
#[cfg(feature = "bpf")]
fn explain(e: Error) -> Vec<String> {
    let mut lines = vec![format!(
        "ublk-user embeds its BPF program (cargo feature `bpf`) \
         and could not build it: {e}"
    )];
    if let Error::Failed { errors, .. } = &e {
        lines.extend(errors.iter().map(|l| format!("    {l}")));
    }
    lines.extend([
        "fix it with one of:".into(),
        format!(
            "  * `cargo xtask setup`: installs the {} toolchain's rust-src and bpf-linker {} \
             (and the Debian packages the VM tests use)",
            ublk_ebpf_build::TOOLCHAIN,
            ublk_ebpf_build::BPF_LINKER_VERSION
        ),
        "  * UBLK_EBPF_OBJ=/path/to/ublk-ebpf.o: embed an object built elsewhere".into(),
        "  * without the `bpf` feature (ublk-user-cli: --no-default-features): no BPF data paths"
            .into(),
    ]);
    lines
}
