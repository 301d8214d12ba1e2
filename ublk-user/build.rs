//! Embeds the BPF program object, if one was built.
//!
//! Looks for `$UBLK_EBPF_OBJ`, else `<workspace>/target/bpf/ublk-ebpf.o`
//! (where `cargo xtask build-ebpf` puts it). If found, copies it to
//! `$OUT_DIR/ublk-ebpf.o` and sets `cfg(ublk_ebpf_embedded)`, so
//! `bpf::embedded_object()` returns it; if not, the build still succeeds and
//! `embedded_object()` returns `None`.

use std::env;
use std::fs;
use std::path::PathBuf;

fn main() {
    println!("cargo::rustc-check-cfg=cfg(ublk_ebpf_embedded)");
    println!("cargo:rerun-if-changed=build.rs");
    println!("cargo:rerun-if-env-changed=UBLK_EBPF_OBJ");

    let manifest = PathBuf::from(env::var_os("CARGO_MANIFEST_DIR").expect("CARGO_MANIFEST_DIR"));
    let out = PathBuf::from(env::var_os("OUT_DIR").expect("OUT_DIR")).join("ublk-ebpf.o");

    let obj = match env::var_os("UBLK_EBPF_OBJ") {
        Some(p) => {
            let p = PathBuf::from(p);
            println!("cargo:rerun-if-changed={}", p.display());
            p
        }
        None => {
            let dir = manifest.parent().unwrap_or(&manifest).join("target/bpf");
            // Watch the directory, not the (maybe missing) file: a missing
            // path would make cargo rerun this script, and rebuild the
            // crate, on every build. Creating the empty directory is
            // harmless (it is build output).
            let _ = fs::create_dir_all(&dir);
            println!("cargo:rerun-if-changed={}", dir.display());
            dir.join("ublk-ebpf.o")
        }
    };

    match fs::read(&obj) {
        Ok(bytes) if bytes.starts_with(b"\x7fELF") => {
            fs::write(&out, bytes).expect("writing OUT_DIR/ublk-ebpf.o");
            println!("cargo:rustc-cfg=ublk_ebpf_embedded");
        }
        Ok(_) => println!(
            "cargo:warning={} is not an ELF object; BPF program not embedded",
            obj.display()
        ),
        Err(_) => {
            let _ = fs::remove_file(&out);
        }
    }
}
