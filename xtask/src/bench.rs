//! `cargo xtask bench`: the benchmark is its own crate (`bench/`,
//! `ublk-bench`); xtask gives it the harness: the build, kublk, and the VM
//! that runs its guest script.

use crate::util::{root, shell_quote};
use crate::vm::{self, VmOpts};
use anyhow::Result;
use std::path::PathBuf;
pub use ublk_bench::BenchOpts;
use ublk_bench::{GuestExit, GuestRun, Harness};

/// How long a bench boot may take to reach the guest's init.
const BOOT_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(600);

/// The harness as `cargo xtask` runs it.
struct Xtask<'a> {
    vm_opts: &'a VmOpts,
    no_build: bool,
}

impl Harness for Xtask<'_> {
    fn kernel_flag(&self) -> Option<&'static str> {
        match self.vm_opts.flavor {
            crate::kernel::Flavor::Ublk => None,
            crate::kernel::Flavor::Vanilla => Some("--vanilla"),
            crate::kernel::Flavor::Debug => Some("--debug-kernel"),
            crate::kernel::Flavor::Distro => Some("--distro"),
        }
    }

    fn build(&self) -> Result<()> {
        if self.no_build {
            return Ok(());
        }
        crate::build::build()
    }

    /// kublk, as `cargo xtask test` stages it, or why it is n/a.
    fn kublk(&self) -> std::result::Result<PathBuf, String> {
        let p = root().join("target/selftests/ublk/kublk");
        if p.is_file() {
            return Ok(p);
        }
        if !self.no_build && std::env::var_os("UBLK_EBPF_KERNEL_IMAGE").is_none() {
            match crate::kernel::ensure(self.vm_opts.flavor)
                .and_then(|k| crate::selftests::build(&k))
            {
                Ok(d) if d.join("kublk").is_file() => return Ok(d.join("kublk")),
                Ok(_) => {}
                Err(e) => return Err(format!("building kublk failed: {e:#}")),
            }
        }
        Err(format!(
            "{} is not built: `cargo xtask test` builds it (its selftests step), or run bench without --no-build and without UBLK_EBPF_KERNEL_IMAGE",
            p.strip_prefix(root()).unwrap_or(&p).display()
        ))
    }

    /// The host's perf with its libraries and loader, staged in
    /// target/bench-perf (the guest sees the project at the same path):
    /// `perf.sh` runs it through that loader.
    fn perf(&self) -> std::result::Result<PathBuf, String> {
        let stage = || -> Result<PathBuf> {
            let Some(perf) = crate::util::which("perf") else {
                anyhow::bail!("no perf on the host (Debian: apt-get install linux-perf)");
            };
            let dir = root().join("target/bench-perf");
            let lib = dir.join("lib");
            let _ = std::fs::remove_dir_all(&dir);
            std::fs::create_dir_all(&lib)?;
            std::fs::copy(&perf, dir.join("perf"))?;
            let mut loader = None;
            for l in vm::shared_libs(&perf)? {
                let name = l.file_name().unwrap_or_default().to_owned();
                if name.to_string_lossy().starts_with("ld-linux") {
                    loader = Some(lib.join(&name));
                }
                std::fs::copy(&l, lib.join(&name))?;
            }
            let loader = loader.ok_or_else(|| anyhow::anyhow!("no ld-linux in ldd's output"))?;
            let sh = dir.join("perf.sh");
            std::fs::write(
                &sh,
                format!(
                    "#!/bin/sh\nexec {} --library-path {} {} \"$@\"\n",
                    shell_quote(&loader.to_string_lossy()),
                    shell_quote(&lib.to_string_lossy()),
                    shell_quote(&dir.join("perf").to_string_lossy())
                ),
            )?;
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&sh, std::fs::Permissions::from_mode(0o755))?;
            Ok(sh)
        };
        stage().map_err(|e| format!("staging perf failed: {e:#}"))
    }

    /// A TCG boot (icount comes in `qemu_extra`) running
    /// `export ENV...; exec sh SCRIPT ARGS...`.
    fn run_guest(&self, g: &GuestRun) -> Result<GuestExit> {
        let opts = VmOpts {
            accel: vm::Accel::Tcg,
            timeout: self.vm_opts.timeout.max(g.min_timeout),
            // An icount boot on a loaded 2-core host can take minutes
            // before its first console line.
            boot_timeout: self.vm_opts.boot_timeout.max(BOOT_TIMEOUT),
            ..self.vm_opts.clone()
        };
        let env: Vec<String> = g
            .env
            .iter()
            .map(|(k, v)| format!("{k}={}", shell_quote(v)))
            .collect();
        let mut exec = vec![
            "exec".to_string(),
            "sh".into(),
            shell_quote(&g.script.to_string_lossy()),
        ];
        exec.extend(g.args.iter().map(|a| shell_quote(a)));
        let script = format!("export {}\n{}\n", env.join(" "), exec.join(" "));
        let saved = std::env::var_os("XTASK_QEMU_EXTRA");
        std::env::set_var("XTASK_QEMU_EXTRA", &g.qemu_extra);
        let r = vm::run_script(&opts, &script);
        match saved {
            Some(v) => std::env::set_var("XTASK_QEMU_EXTRA", v),
            None => std::env::remove_var("XTASK_QEMU_EXTRA"),
        }
        let r = r?;
        Ok(GuestExit {
            status: r.status,
            console: r.console,
        })
    }
}

pub fn bench(o: &BenchOpts, vm_opts: &VmOpts, no_build: bool) -> Result<i32> {
    ublk_bench::bench(o, &Xtask { vm_opts, no_build })
}
