//! `cargo xtask`: build the kernel and the BPF object, boot the QEMU VM, run
//! the server, the tests and the benchmarks inside it.

mod baseline;
mod bench;
mod build;
mod consumer;
mod distro;
mod kernel;
mod linux;
mod powercut;
mod selftests;
mod setup;
mod suites;
mod test;
mod util;
mod vm;

use anyhow::Result;
use clap::{Args, Parser, Subcommand};
use std::time::Duration;

#[derive(Parser)]
#[command(
    name = "cargo xtask",
    about = "Build, boot and test ublk-ebpf in a QEMU VM"
)]
struct Cli {
    #[command(subcommand)]
    cmd: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Install what is missing: Debian packages, the nightly toolchain's
    /// rust-src, bpf-linker (says what first). The only subcommand that
    /// installs anything; `test` and `run` run it first, the others fail
    /// naming it when something they need is missing.
    Setup,
    /// Download Linux 7.2, apply kernel-patches/, build bzImage (cached).
    Kernel {
        #[arg(long, value_enum, default_value = "ublk")]
        flavor: kernel::Flavor,
        /// Shorthand for --flavor vanilla.
        #[arg(long)]
        vanilla: bool,
        /// Shorthand for --flavor debug (KASAN, lockdep, ...).
        #[arg(long)]
        debug: bool,
        /// Print where the tree, build directory and image of the built
        /// kernel are; builds nothing (fails if it is not built).
        #[arg(long)]
        print_path: bool,
    },
    /// Build the BPF object (ublk-ebpf/target/bpfel-unknown-none/release/ublk-ebpf).
    BuildEbpf,
    /// Build the BPF object and the release binaries (ublk-user, ublk-bpf-fixture).
    Build,
    /// Boot the VM and run the demo, or `-- CMD [ARGS...]` as root inside it.
    Run {
        #[command(flatten)]
        vm: VmArgs,
        /// Use the binaries as they are; do not rebuild them first.
        #[arg(long)]
        no_build: bool,
        /// Command and arguments to run in the guest (after `--`).
        #[arg(last = true)]
        command: Vec<String>,
    },
    /// The whole test suite: fmt, clippy, unit tests, checkpatch, kernel, VM tests.
    Test {
        /// Only VM tests whose name contains this, or any of a comma-separated
        /// list (e.g. `10-,30-,5`).
        #[arg(long)]
        filter: Option<String>,
        /// Skip fmt, clippy, unit tests and checkpatch.
        #[arg(long)]
        vm_only: bool,
        /// Soak variants (UBLK_SOAK=1 in the guest: 100 kills per mode, 50
        /// deletes per mode instead of 6 and 4, 100 recovery runs instead of
        /// 30), with 5x the test timeouts.
        #[arg(long)]
        soak: bool,
        /// Test 40 runs every kublk selftest (but the stress ones, which
        /// need UBLK_SELFTEST_STRESS=1), not only the CI subset.
        #[arg(long)]
        full_selftests: bool,
        #[command(flatten)]
        vm: VmArgs,
    },
    /// Only the W=1 check of `test`: the kernel C files the series touches
    /// must not warn more than in the unpatched tree.
    W1,
    /// Regenerate tests/kublk-baseline.txt: every upstream kublk selftest on
    /// Debian's prebuilt 7.2 (the distro kernel) in one VM boot (~33 min).
    KublkBaseline {
        #[command(flatten)]
        vm: VmArgs,
        /// Use the binaries as they are; do not rebuild them first.
        #[arg(long)]
        no_build: bool,
    },
    /// blktests (ublk group; block group on loop and ublk-user in every
    /// mode) and every liburing test, on the distro kernel and on ours (one
    /// boot each); writes tests/suites-baseline.txt, which test 44 (CI) reads.
    Suites {
        #[command(flatten)]
        vm: VmArgs,
        /// Use the binaries as they are; do not rebuild them first.
        #[arg(long)]
        no_build: bool,
        /// Run on this kernel only (distro or ublk); the other's results
        /// come from its last run (target/suites/results-FLAVOR.txt).
        #[arg(long, value_enum)]
        only: Option<kernel::Flavor>,
        /// Boot nothing: write the baseline from both kernels' last results.
        #[arg(long, conflicts_with = "only")]
        merge_only: bool,
    },
    /// fio matrix in one VM boot: kernel loop vs ublk copy / zc / bpf vs the raw
    /// backing store; writes bench/results/<date>-<kernel>-<accel>.md + SVG + CSV.
    Bench {
        #[command(flatten)]
        bench: bench::BenchOpts,
        #[command(flatten)]
        vm: VmArgs,
        /// Use the binaries as they are; do not rebuild them first.
        #[arg(long)]
        no_build: bool,
    },
}

#[derive(Args, Clone)]
struct VmArgs {
    /// Boot vanilla 7.2 (no patches) instead of the patched kernel.
    #[arg(long)]
    vanilla: bool,
    /// Boot the debug kernel flavor.
    #[arg(long, conflicts_with = "vanilla")]
    debug_kernel: bool,
    /// Boot Debian's prebuilt 7.2 kernel (no build, no UBLK_F_BPF).
    #[arg(long, conflicts_with_all = ["vanilla", "debug_kernel"])]
    distro: bool,
    /// Guest vCPUs.
    #[arg(long, default_value_t = 2, env = "XTASK_VM_CPUS")]
    cpus: u32,
    /// Guest memory (QEMU syntax).
    #[arg(long, default_value = "4G", env = "XTASK_VM_MEM")]
    mem: String,
    /// Accelerator: auto uses KVM only if a probe boot works.
    #[arg(long, value_enum, default_value = "auto", env = "XTASK_VM_ACCEL")]
    accel: vm::Accel,
    /// Seconds before the VM is killed.
    #[arg(long, default_value_t = 3600)]
    timeout: u64,
}

impl VmArgs {
    fn opts(&self) -> vm::VmOpts {
        vm::VmOpts {
            flavor: if self.vanilla {
                kernel::Flavor::Vanilla
            } else if self.debug_kernel {
                kernel::Flavor::Debug
            } else if self.distro {
                kernel::Flavor::Distro
            } else {
                kernel::Flavor::Ublk
            },
            cpus: self.cpus,
            mem: self.mem.clone(),
            timeout: Duration::from_secs(self.timeout),
            boot_timeout: Duration::from_secs(120),
            accel: self.accel,
            tmp_size: "2G".into(),
        }
    }
}

fn main() {
    let cli = Cli::parse();
    match real_main(cli) {
        Ok(code) => std::process::exit(code),
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::exit(1);
        }
    }
}

/// What a subcommand does about the tools it needs before it starts.
#[derive(Debug, PartialEq, Eq)]
enum Prep {
    /// A query: needs no tool, installs nothing, needs no root.
    Nothing,
    /// Fails naming `cargo xtask setup` if one of these is missing.
    Check(Vec<setup::Need>),
    /// Runs `setup` (installs what is missing): `setup` itself, and `test`
    /// and `run`, which CI and the README run on fresh machines.
    Setup,
}

fn prep(cmd: &Cmd) -> Prep {
    use setup::Need::{Bpf, Kernel, Vm};
    let vm_run = |no_build: bool| {
        let mut v = vec![Kernel, Vm];
        if !no_build {
            v.push(Bpf);
        }
        Prep::Check(v)
    };
    match cmd {
        Cmd::Setup | Cmd::Test { .. } | Cmd::Run { .. } => Prep::Setup,
        Cmd::Kernel {
            print_path: true, ..
        } => Prep::Nothing,
        Cmd::Kernel { .. } | Cmd::W1 => Prep::Check(vec![Kernel]),
        Cmd::BuildEbpf | Cmd::Build => Prep::Check(vec![Bpf]),
        Cmd::Bench { bench, .. } if bench.from.is_some() || bench.plan => Prep::Nothing,
        Cmd::Suites {
            merge_only: true, ..
        } => Prep::Nothing,
        Cmd::Bench { no_build, .. }
        | Cmd::KublkBaseline { no_build, .. }
        | Cmd::Suites { no_build, .. } => vm_run(*no_build),
    }
}

fn real_main(cli: Cli) -> Result<i32> {
    let t0 = std::time::Instant::now();
    match prep(&cli.cmd) {
        // Not even the pruning of old VM runs: a query changes nothing.
        Prep::Nothing => {}
        Prep::Check(needs) => {
            setup::check(&needs)?;
            vm::prune_runs();
        }
        Prep::Setup => {
            setup::setup()?;
            vm::prune_runs();
        }
    }
    let setup_time = t0.elapsed();
    match cli.cmd {
        Cmd::Setup => Ok(0),
        Cmd::Kernel {
            mut flavor,
            vanilla,
            debug,
            print_path,
        } => {
            if vanilla {
                flavor = kernel::Flavor::Vanilla;
            }
            if debug {
                flavor = kernel::Flavor::Debug;
            }
            if print_path {
                let cache = util::cache_root()?;
                let Some(k) = kernel::find_in(&cache, flavor)? else {
                    anyhow::bail!(
                        "kernel: no {} kernel for the current patches and config in {}: \
                         `cargo xtask kernel --flavor {}` {} it",
                        flavor.name(),
                        cache.display(),
                        flavor.name(),
                        if flavor == kernel::Flavor::Distro {
                            "downloads"
                        } else {
                            "builds"
                        }
                    );
                };
                println!("tree:    {}", k.tree.display());
                println!("build:   {}", k.build.display());
                println!("image:   {}", k.image.display());
                println!("release: {}", k.release);
            } else {
                let k = kernel::ensure(flavor)?;
                util::say(format!(
                    "kernel {} ({}): {}",
                    k.release,
                    flavor.name(),
                    k.image.display()
                ));
            }
            Ok(0)
        }
        Cmd::BuildEbpf => {
            let o = build::build_ebpf()?;
            println!("{}", o.display());
            Ok(0)
        }
        Cmd::Build => {
            build::build()?;
            Ok(0)
        }
        Cmd::Run {
            vm,
            no_build,
            command,
        } => {
            if !no_build {
                build::build()?;
            }
            let script = if command.is_empty() {
                include_str!("demo.sh").to_string()
            } else {
                vm::command_script(&command)
            };
            let r = vm::run_script(&vm.opts(), &script)?;
            Ok(r.status)
        }
        Cmd::Test {
            filter,
            vm_only,
            soak,
            full_selftests,
            vm,
        } => test::test(
            &test::TestOpts {
                filter: filter.as_deref(),
                vm_only,
                soak,
                full_selftests,
                setup: setup_time,
            },
            &vm.opts(),
        ),
        Cmd::Bench {
            bench,
            vm,
            no_build,
        } => bench::bench(&bench, &vm.opts(), no_build),
        Cmd::W1 => {
            test::w1_check()?;
            Ok(0)
        }
        Cmd::KublkBaseline { vm, no_build } => baseline::generate(&vm.opts(), no_build),
        Cmd::Suites {
            vm,
            no_build,
            only,
            merge_only,
        } => suites::run(&vm.opts(), no_build, only, merge_only),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use setup::Need::{Bpf, Kernel, Vm};

    fn prep_of(args: &[&str]) -> Prep {
        let argv = std::iter::once("xtask").chain(args.iter().copied());
        prep(&Cli::try_parse_from(argv).expect("parses").cmd)
    }

    /// Only `setup`, `test` and `run` may install; the queries need nothing
    /// at all (no tool, no root); the rest check and name `cargo xtask setup`.
    #[test]
    fn only_setup_test_and_run_install() {
        assert_eq!(prep_of(&["setup"]), Prep::Setup);
        assert_eq!(prep_of(&["test"]), Prep::Setup);
        assert_eq!(
            prep_of(&["test", "--vm-only", "--filter", "61-"]),
            Prep::Setup
        );
        assert_eq!(prep_of(&["run", "--", "true"]), Prep::Setup);
        assert_eq!(prep_of(&["kernel", "--print-path"]), Prep::Nothing);
        assert_eq!(
            prep_of(&["kernel", "--flavor", "distro", "--print-path"]),
            Prep::Nothing
        );
        assert_eq!(
            prep_of(&["bench", "--from", "target/bench-out/x"]),
            Prep::Nothing
        );
        assert_eq!(prep_of(&["kernel"]), Prep::Check(vec![Kernel]));
        assert_eq!(prep_of(&["kernel", "--debug"]), Prep::Check(vec![Kernel]));
        assert_eq!(prep_of(&["w1"]), Prep::Check(vec![Kernel]));
        assert_eq!(prep_of(&["build"]), Prep::Check(vec![Bpf]));
        assert_eq!(prep_of(&["build-ebpf"]), Prep::Check(vec![Bpf]));
        assert_eq!(
            prep_of(&["bench", "--quick"]),
            Prep::Check(vec![Kernel, Vm, Bpf])
        );
        assert_eq!(
            prep_of(&["bench", "--no-build"]),
            Prep::Check(vec![Kernel, Vm])
        );
        assert_eq!(
            prep_of(&["kublk-baseline"]),
            Prep::Check(vec![Kernel, Vm, Bpf])
        );
        assert_eq!(
            prep_of(&["suites", "--no-build", "--only", "distro"]),
            Prep::Check(vec![Kernel, Vm])
        );
        assert_eq!(prep_of(&["suites", "--merge-only"]), Prep::Nothing);
    }

    /// `kernel --print-path`'s lookup in an empty cache finds nothing and
    /// leaves the cache as it was: no download, no lock file, no log dir.
    #[test]
    fn print_path_lookup_changes_nothing() {
        let t = util::TempDir::new("print-path");
        let cache = t.path().join("cache");
        for f in [
            kernel::Flavor::Ublk,
            kernel::Flavor::Debug,
            kernel::Flavor::Vanilla,
            kernel::Flavor::Distro,
        ] {
            assert!(kernel::find_in(&cache, f).unwrap().is_none(), "{f:?}");
        }
        assert!(!cache.exists());
    }
}
