//! `--mode` to the mode a server runs in: the library's fallback chain
//! ([`Mode::resolve`]) with this command's notes and its BPF loader.

use super::args::CommonArgs;
use anyhow::{Context, Result};
use ublk_user::device::BpfHook;
use ublk_user::Mode;

/// Builds the BPF loader's hook in the server process (in the server process); also
/// returns the id of the program's stats map (for `list`).
pub type BpfFactory = Box<dyn FnOnce() -> Result<(Box<dyn BpfHook>, u32)>>;

/// Beyond the kernel's features ([`Mode::resolve`] checks those): can the
/// BPF program be loaded here (refused by the verifier, no
/// `BPF_PROG_TYPE_UBLK`)? `Err` says why not.
#[cfg(feature = "bpf")]
fn program_usable(mode: Mode, log: bool) -> std::result::Result<(), String> {
    if mode.bpf() {
        ublk_user::bpf::probe(log)?;
    }
    Ok(())
}

/// The BPF loader of `mode` (a BPF mode), run in the server process.
/// `max_clusters`: the bound of the program's cluster map (a qcow2 image's
/// clusters; 1 for the other targets).
pub fn loader(mode: Mode, log: bool, max_clusters: u32) -> Option<BpfFactory> {
    if !mode.bpf() {
        return None;
    }
    #[cfg(feature = "bpf")]
    {
        Some(Box::new(move || {
            let (prog, hook) = ublk_user::bpf::load_hook(log, max_clusters)?;
            Ok((hook, prog.stats_map_id()))
        }))
    }
    // Mode::resolve refuses the BPF modes in this build, and the mode a
    // background server is given comes from it; Device::start says so if
    // one gets here anyway (a BPF mode without a hook).
    #[cfg(not(feature = "bpf"))]
    {
        let _ = (log, max_clusters);
        None
    }
}

/// The effective mode for `--mode` ([`Mode::resolve`]: the requested one if
/// the kernel and this build offer it, else down the fallback chain, each
/// step noted on stderr, or an error with `--no-fallback`) and, for a BPF
/// mode, its loader.
pub fn choose_mode(
    common: &CommonArgs,
    features: u64,
    max_clusters: u32,
) -> Result<(Mode, Option<BpfFactory>)> {
    #[cfg(feature = "bpf")]
    let usable = |m: Mode| program_usable(m, common.bpf_log);
    #[cfg(not(feature = "bpf"))]
    let usable = |_: Mode| Ok(());
    let res = common
        .mode
        .resolve(features, common.no_fallback, usable)
        .with_context(|| format!("--mode {}", common.mode))?;
    for f in &res.fallbacks {
        eprintln!(
            "ublk-user: --mode {} is not available ({}); falling back to --mode {}",
            f.from, f.why, f.to
        );
    }
    Ok((res.mode, loader(res.mode, common.bpf_log, max_clusters)))
}

#[cfg(all(test, not(feature = "bpf")))]
mod no_bpf_tests {
    use super::*;
    use crate::cli::args::{AddTarget, Cli, Command};
    use clap::Parser;

    fn common(mode: &str) -> CommonArgs {
        let argv = ["ublk-user", "add", "null", "--size", "16M", "--mode", mode];
        match Cli::try_parse_from(argv).unwrap().cmd {
            Command::Add(a) => match a.resolve().unwrap() {
                AddTarget::Null { common, .. } => common,
                _ => unreachable!("parsed as add null"),
            },
            _ => unreachable!("parsed as add"),
        }
    }

    /// Without the `bpf` feature the BPF modes are an error naming the
    /// build, even on a kernel that offers every feature and without
    /// --no-fallback; copy and zc are unaffected.
    #[test]
    fn bpf_modes_are_refused_not_fallen_back() {
        for mode in ["bpf", "bpf-kernel"] {
            let e = choose_mode(&common(mode), u64::MAX, 1)
                .err()
                .expect("refused");
            let e = format!("{e:#}");
            assert!(
                e.starts_with(&format!("--mode {mode}: mode {mode} is not available: ")),
                "{e}"
            );
            assert!(e.contains("cargo feature `bpf` is off"), "{e}");
        }
        let (m, bpf) = choose_mode(&common("zc"), u64::MAX, 1).unwrap();
        assert_eq!((m, bpf.is_none()), (Mode::Zc, true));
    }
}
