//! Command line (clap). The words here are relied on by tests and benches.

use clap::{Args, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "ublk-user",
    version,
    about = "ublk server: loop and null targets, copy / zero-copy / BPF data paths"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a device and serve it (in the background unless --foreground).
    Add {
        #[command(subcommand)]
        target: AddTarget,
    },
    /// List ublk devices (all, or the one given by --id).
    List {
        /// Only this device (N in /dev/ublkbN); an error if there is none.
        #[arg(long)]
        id: Option<u32>,
        /// JSON output: an array with one object per device (keys: the
        /// README's "list --json" table).
        #[arg(long)]
        json: bool,
    },
    /// Stop servers and delete devices.
    Del(DelArgs),
    /// Start a new server for a device added with --recovery whose server
    /// died: same target, backing file and requested mode as recorded at
    /// `add`; I/O that waited resumes. Example: `ublk-user recover --id 0`.
    Recover {
        /// Device id (N in /dev/ublkbN).
        #[arg(long, short = 'n')]
        id: u32,
        /// Serve in the foreground (do not daemonize).
        #[arg(long)]
        foreground: bool,
    },
    /// Print the kernel's ublk feature bits.
    Features {
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand, Debug)]
pub enum AddTarget {
    /// Back the device by a file or block device.
    Loop {
        #[arg(long)]
        file: PathBuf,
        #[command(flatten)]
        common: CommonArgs,
    },
    /// A device that drops writes and returns unspecified data.
    Null {
        /// Size, e.g. 1G, 512M, 4096 (K/M/G/T are powers of 1024).
        #[arg(long, value_parser = parse_size)]
        size: u64,
        #[command(flatten)]
        common: CommonArgs,
    },
}

#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum ModeArg {
    Copy,
    Zc,
    Bpf,
    BpfKernel,
}

impl ModeArg {
    pub fn name(self) -> &'static str {
        match self {
            ModeArg::Copy => "copy",
            ModeArg::Zc => "zc",
            ModeArg::Bpf => "bpf",
            ModeArg::BpfKernel => "bpf-kernel",
        }
    }
}

#[derive(Args, Debug, Clone)]
pub struct CommonArgs {
    /// Data path: copy (server buffers), zc (UBLK_F_AUTO_BUF_REG), bpf (BPF
    /// redirect, the server commits), bpf-kernel (BPF redirect issued and
    /// completed by the kernel; falls back to bpf, then copy).
    #[arg(long, value_enum, default_value = "copy")]
    pub mode: ModeArg,
    /// With --mode bpf or bpf-kernel: fail instead of falling back (bpf-kernel
    /// to bpf, bpf to copy) when the requested mode is unavailable.
    #[arg(long)]
    pub no_fallback: bool,
    /// Hardware queues (one server thread each).
    #[arg(long, default_value_t = ublk_user::device::DEFAULT_QUEUES, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: u16,
    /// Queue depth.
    #[arg(long, default_value_t = ublk_user::device::DEFAULT_DEPTH, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub depth: u16,
    /// Device id (N in /dev/ublkbN); default: the kernel picks one.
    #[arg(long)]
    pub id: Option<u32>,
    /// Loop: open the backing file without O_DIRECT.
    #[arg(long)]
    pub buffered: bool,
    /// Serve in the foreground (do not daemonize).
    #[arg(long)]
    pub foreground: bool,
    /// With --mode bpf: forward the BPF program's log.
    #[arg(long)]
    pub bpf_log: bool,
    /// UBLK_F_USER_RECOVERY: if the server dies the device stays and its
    /// I/O waits until `ublk-user recover --id N` starts a new server.
    #[arg(long)]
    pub recovery: bool,
    /// With --recovery: re-issue the requests the dead server owned to the
    /// new one (UBLK_F_USER_RECOVERY_REISSUE) instead of failing them.
    #[arg(long, requires = "recovery")]
    pub reissue: bool,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// Device id to delete.
    #[arg(long, required_unless_present = "all", conflicts_with = "all")]
    pub id: Option<u32>,
    /// Delete every ublk device.
    #[arg(long)]
    pub all: bool,
}

/// Parse a size: bytes, or with a K/M/G/T suffix (powers of 1024; an
/// optional trailing "B" or "iB" is accepted). Must be a non-zero multiple
/// of 512.
pub fn parse_size(s: &str) -> Result<u64, String> {
    let t = s.trim();
    let lower = t.to_ascii_lowercase();
    let body = lower
        .strip_suffix("ib")
        .or_else(|| lower.strip_suffix('b'))
        .unwrap_or(&lower);
    let (num, mult) = match body.chars().last() {
        Some('k') => (&body[..body.len() - 1], 1u64 << 10),
        Some('m') => (&body[..body.len() - 1], 1 << 20),
        Some('g') => (&body[..body.len() - 1], 1 << 30),
        Some('t') => (&body[..body.len() - 1], 1 << 40),
        _ => (body, 1),
    };
    let n: u64 = num
        .trim()
        .parse()
        .map_err(|_| format!("invalid size '{s}' (examples: 1G, 512M, 4096)"))?;
    let v = n
        .checked_mul(mult)
        .ok_or_else(|| format!("size '{s}' is too large"))?;
    if v == 0 {
        return Err("size must not be zero".into());
    }
    if v % 512 != 0 {
        return Err(format!("size '{s}' is not a multiple of 512 bytes"));
    }
    Ok(v)
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[test]
    fn sizes() {
        assert_eq!(parse_size("1G"), Ok(1 << 30));
        assert_eq!(parse_size("512M"), Ok(512 << 20));
        assert_eq!(parse_size("512m"), Ok(512 << 20));
        assert_eq!(parse_size("4k"), Ok(4096));
        assert_eq!(parse_size("2GiB"), Ok(2 << 30));
        assert_eq!(parse_size("1T"), Ok(1 << 40));
        assert_eq!(parse_size("4096"), Ok(4096));
        assert!(parse_size("0").is_err());
        assert!(parse_size("0G").is_err());
        assert!(parse_size("100").is_err());
        assert!(parse_size("abc").is_err());
        assert!(parse_size("").is_err());
        assert!(parse_size("-1G").is_err());
        assert!(parse_size("99999999999999T").is_err());
    }

    #[test]
    fn add_loop() {
        let c = Cli::try_parse_from([
            "ublk-user",
            "add",
            "loop",
            "--file",
            "/tmp/a.img",
            "--mode",
            "zc",
        ])
        .unwrap();
        match c.cmd {
            Command::Add {
                target: AddTarget::Loop { file, common },
            } => {
                assert_eq!(file, PathBuf::from("/tmp/a.img"));
                assert_eq!(common.mode, ModeArg::Zc);
                assert_eq!(common.queues, ublk_user::device::DEFAULT_QUEUES);
                assert_eq!(common.depth, ublk_user::device::DEFAULT_DEPTH);
                assert!(!common.foreground && !common.buffered && !common.no_fallback);
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn add_null_all_flags() {
        let c = Cli::try_parse_from([
            "ublk-user",
            "add",
            "null",
            "--size",
            "512M",
            "--mode",
            "bpf",
            "--no-fallback",
            "--queues",
            "2",
            "--depth",
            "64",
            "--id",
            "7",
            "--foreground",
            "--bpf-log",
        ])
        .unwrap();
        match c.cmd {
            Command::Add {
                target: AddTarget::Null { size, common },
            } => {
                assert_eq!(size, 512 << 20);
                assert_eq!(common.mode, ModeArg::Bpf);
                assert!(common.no_fallback && common.foreground && common.bpf_log);
                assert_eq!((common.queues, common.depth, common.id), (2, 64, Some(7)));
            }
            c => panic!("{c:?}"),
        }
    }

    #[test]
    fn bad_inputs() {
        for args in [
            &["ublk-user", "add", "null", "--size", "0"][..],
            &["ublk-user", "add", "null", "--size", "1G", "--depth", "0"],
            &[
                "ublk-user",
                "add",
                "null",
                "--size",
                "1G",
                "--depth",
                "5000",
            ],
            &["ublk-user", "add", "null", "--size", "1G", "--queues", "0"],
            &["ublk-user", "add", "null", "--size", "1G", "--mode", "fast"],
            &["ublk-user", "add", "loop"],
            &["ublk-user", "del"],
            &["ublk-user", "del", "--id", "1", "--all"],
        ] {
            assert!(Cli::try_parse_from(args).is_err(), "{args:?}");
        }
    }

    #[test]
    fn list_del_features() {
        assert!(matches!(
            Cli::try_parse_from(["ublk-user", "list", "--json"])
                .unwrap()
                .cmd,
            Command::List {
                id: None,
                json: true
            }
        ));
        assert!(matches!(
            Cli::try_parse_from(["ublk-user", "list", "--id", "3"])
                .unwrap()
                .cmd,
            Command::List {
                id: Some(3),
                json: false
            }
        ));
        match Cli::try_parse_from(["ublk-user", "del", "--all"])
            .unwrap()
            .cmd
        {
            Command::Del(d) => assert!(d.all && d.id.is_none()),
            c => panic!("{c:?}"),
        }
        match Cli::try_parse_from(["ublk-user", "del", "--id", "3"])
            .unwrap()
            .cmd
        {
            Command::Del(d) => assert_eq!(d.id, Some(3)),
            c => panic!("{c:?}"),
        }
        assert!(matches!(
            Cli::try_parse_from(["ublk-user", "features"]).unwrap().cmd,
            Command::Features { .. }
        ));
    }
}
