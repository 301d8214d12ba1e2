//! The `ublk-user` command: a thin user of the library (part of the
//! binary, not of the library's API), one file a job:
//!
//! * [`args`]: the command line;
//! * this file: `add` and `recover` (the target, then [`start_server`]);
//! * [`mode`]: `--mode` to the mode served, with the fallback notes;
//! * [`server`]: serving a device, in the foreground or as a background
//!   server (its process protocol);
//! * [`del`]: stopping servers, deleting devices;
//! * [`list`]: `list`, `modes`, `features`; [`json`] and [`meta`]: the
//!   JSON of `list` and the per-device record.
//!
//! The background server (every `add` and `recover` without --foreground)
//! appends its stderr (errors, the BPF log with --bpf-log) to
//! `/run/ublk-user/server.log` ([`meta::RUN_DIR`]). The fallback notes of
//! [`mode::choose_mode`] are printed by the caller, on its stderr; a
//! start-up error goes to both.

pub mod args;
mod del;
pub mod json;
mod list;
pub mod meta;
mod mode;
mod server;

use anyhow::{bail, Result};
use args::{AddTarget, Cli, Command, CommonArgs};
use meta::Meta;
use server::{Report, ServeInfo};
use std::sync::Arc;
use ublk_user::ctrl::Control;
use ublk_user::device::DeviceOptions;
use ublk_user::target::{LoopTarget, NullTarget, Qcow2Target, StripeTarget, Target};

/// Run the CLI; returns the process exit code. Errors are printed as one line.
pub fn main_with(cli: Cli) -> i32 {
    let r = match cli.cmd {
        // A combination clap cannot check is a usage error (exit 2) too.
        Command::Add(a) => add(a.resolve().unwrap_or_else(|e| e.exit())),
        Command::List { id, json } => list::list(id, json),
        Command::Del(d) => del::del(d.id, d.all),
        Command::Recover { id, foreground } => recover(id, foreground),
        Command::Modes { available, json } => list::modes(available, json),
        Command::Features { json } => list::features(json),
    };
    match r {
        Ok(()) => 0,
        Err(e) => {
            eprintln!("ublk-user: {}", one_line(&e));
            1
        }
    }
}

fn one_line(e: &anyhow::Error) -> String {
    format!("{e:#}").replace('\n', " ")
}

fn require_root() -> Result<()> {
    if !rustix::process::geteuid().is_root() {
        bail!("must be run as root (ublk device management needs CAP_SYS_ADMIN)");
    }
    Ok(())
}

fn add(t: AddTarget) -> Result<()> {
    // Before any io_uring exists in this process: see the function's doc.
    #[cfg(feature = "bpf")]
    ublk_user::bpf::prime_feature_probe();
    let mut rec = Record::default();
    let (target, common): (Arc<dyn Target>, CommonArgs) = match t {
        AddTarget::Loop { file, common } => {
            require_root()?;
            (Arc::new(LoopTarget::open(&file, common.buffered)?), common)
        }
        AddTarget::Null { size, common } => {
            require_root()?;
            (Arc::new(NullTarget::new(size)?), common)
        }
        AddTarget::Stripe {
            files,
            chunk,
            common,
        } => {
            require_root()?;
            let t = StripeTarget::open(&files, chunk, common.buffered)?;
            rec.files = files.iter().map(|f| f.display().to_string()).collect();
            rec.chunk = chunk;
            (Arc::new(t), common)
        }
        AddTarget::Qcow2 { file, common } => {
            require_root()?;
            (Arc::new(Qcow2Target::open(&file, common.buffered)?), common)
        }
    };
    start_server(target, common, None, rec)
}

/// A new server for device `id` (added with --recovery), from what `add`
/// recorded: the target and its files and options, the requested mode and
/// its options (--no-fallback, --bpf-log), --reissue; queues and depth are
/// the device's.
fn recover(id: u32, foreground: bool) -> Result<()> {
    #[cfg(feature = "bpf")]
    ublk_user::bpf::prime_feature_probe();
    require_root()?;
    let m = Meta::read(id).ok_or_else(|| {
        anyhow::anyhow!(
            "no record of device {id} in {} (was it added by ublk-user?)",
            meta::RUN_DIR
        )
    })?;
    let info = Control::open()?.get_dev_info(id)?;
    let target: Arc<dyn Target> = match m.target.as_str() {
        "loop" => Arc::new(LoopTarget::open(
            std::path::Path::new(&m.backing),
            m.buffered,
        )?),
        "stripe" => {
            let files: Vec<std::path::PathBuf> = m.files.iter().map(Into::into).collect();
            Arc::new(StripeTarget::open(&files, m.chunk, m.buffered)?)
        }
        "qcow2" => Arc::new(Qcow2Target::open(
            std::path::Path::new(&m.backing),
            m.buffered,
        )?),
        "null" => Arc::new(NullTarget::new(m.size)?),
        t => bail!("device {id}: unknown target {t:?}"),
    };
    let common = CommonArgs {
        queues: info.nr_hw_queues,
        depth: info.queue_depth,
        foreground,
        ..m.add_args()
            .map_err(|e| anyhow::anyhow!("device {id}: {e}"))?
    };
    let rec = Record {
        files: m.files,
        chunk: m.chunk,
    };
    start_server(target, common, Some(id), rec)
}

/// What `recover` needs beyond the target's own listing and the
/// [`CommonArgs`]: the stripe's files and chunk.
#[derive(Clone, Debug, Default)]
pub struct Record {
    files: Vec<String>,
    chunk: u64,
}

/// Choose the data mode, then serve (in the background unless
/// `--foreground`): a new device, or with `recover` device `recover`. In a
/// background server ([`server::spawn`]) the mode is the one its caller
/// chose.
fn start_server(
    target: Arc<dyn Target>,
    common: CommonArgs,
    recover: Option<u32>,
    rec: Record,
) -> Result<()> {
    let mut ctl = Control::open()?;
    let features = ctl.get_features()?;
    drop(ctl);
    let given = server::given_mode().transpose()?;
    let report = match given {
        Some(_) => Report::caller()?,
        None => Report::Foreground,
    };
    let max_clusters = target
        .bpf_layout()
        .and_then(|l| l.clusters)
        .map(|c| u32::try_from(target.size().div_ceil(1 << c.shift())).unwrap_or(u32::MAX))
        .unwrap_or(1);
    let (mode, bpf) = match given {
        Some(m) => (m, mode::loader(m, common.bpf_log, max_clusters)),
        None => mode::choose_mode(&common, features, max_clusters)?,
    };
    let opts = DeviceOptions {
        id: common.id,
        queues: common.queues,
        depth: common.depth,
        mode,
        recovery: common.recovery,
        reissue: common.reissue,
        stats_dir: Some(meta::RUN_DIR.into()),
        ..Default::default()
    };
    ublk_user::device::validate_options(&opts)?;
    ublk_user::device::negotiate_flags(&opts, features)?;
    if given.is_none() && !common.foreground {
        return server::spawn(mode);
    }
    let info = ServeInfo {
        common,
        bpf,
        recover,
        rec,
    };
    server::serve(target, opts, info, report)
}
