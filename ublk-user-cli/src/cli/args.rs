//! Command line (clap). The long options are relied on by tests and benches
//! (`add loop --file F --mode M --queues Q --depth D --id N`, `del --id N` /
//! `--all`, `recover --id N`); the short ones are the words ublksrv, kublk
//! and rublk users know (`add -t loop -f F -q Q -d D -n N -z -r 1`,
//! `del -n N` / `-a`, `list -n N`, `recover -n N`).

use clap::builder::{PossibleValuesParser, TypedValueParser};
use clap::error::ErrorKind;
use clap::{ArgGroup, Args, CommandFactory, Parser, Subcommand, ValueEnum};
use std::path::PathBuf;
use ublk_user::Mode;

#[derive(Parser, Debug)]
#[command(
    name = "ublk-user",
    version,
    about = "ublk server: loop and null targets, copy / zero-copy / BPF data paths",
    after_help = "Examples (one per subcommand; `ublk-user help SUBCOMMAND` has more):
  ublk-user add loop --file /tmp/a.img --mode zc   # prints /dev/ublkbN
  ublk-user list --json
  ublk-user del -n 0
  ublk-user recover -n 0
  ublk-user modes --available
  ublk-user features"
)]
pub struct Cli {
    #[command(subcommand)]
    pub cmd: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Create a device and serve it (in the background unless --foreground);
    /// prints the block device's path once it is ready.
    #[command(after_help = "Examples:
  ublk-user add loop --file /tmp/a.img --mode zc --queues 2 --depth 128
  ublk-user add -t loop -f /tmp/a.img -z -q 2 -d 128   # the same, ublksrv style
  ublk-user add -t null --size 1G --mode bpf-kernel --no-fallback
  ublk-user add -t loop -f /dev/vdb -n 3 -r 1          # /dev/ublkb3, user recovery")]
    Add(AddArgs),
    /// List ublk devices (all, or the one given by -n).
    #[command(after_help = "Examples:
  ublk-user list
  ublk-user list -n 0 --json | jq -r '.[0].mode'   # the effective data mode

--json prints an array of objects, one per device; the keys are listed in
the README (\"list --json\").")]
    List {
        /// Only this device (N in /dev/ublkbN); an error if there is none.
        #[arg(long, short = 'n', visible_alias = "number")]
        id: Option<u32>,
        /// JSON output: an array with one object per device.
        #[arg(long)]
        json: bool,
    },
    /// Stop servers and delete devices.
    #[command(after_help = "Examples:
  ublk-user del -n 0       # or: del --id 0
  ublk-user del -a         # or: del --all")]
    Del(DelArgs),
    /// Start a new server for a device added with --recovery (-r 1) whose
    /// server died: same target, backing file and requested mode as recorded
    /// at `add`; I/O that waited resumes.
    #[command(after_help = "Example:
  ublk-user add -t loop -f /tmp/a.img -n 0 -r 1
  kill -9 <the server's pid>                # the device waits (quiesced)
  ublk-user recover -n 0                    # or: recover --id 0")]
    Recover {
        /// Device id (N in /dev/ublkbN).
        #[arg(long, short = 'n', visible_alias = "number")]
        id: u32,
        /// Serve in the foreground (do not daemonize).
        #[arg(long)]
        foreground: bool,
    },
    /// List the data modes: each with what it needs from the kernel and
    /// the mode it falls back to; with --available only the names of those
    /// this kernel offers (the features; the BPF program is checked at add).
    #[command(after_help = "Examples:
  ublk-user modes
  ublk-user modes --available          # e.g. copy zc bpf bpf-kernel, one a line
  ublk-user modes --json | jq -r '.[] | select(.available and .bpf) | .name'")]
    Modes {
        /// Only the modes the kernel offers, one name a line.
        #[arg(long, conflicts_with = "json")]
        available: bool,
        /// JSON output: an array with one object per mode.
        #[arg(long)]
        json: bool,
    },
    /// Print the kernel's ublk feature bits.
    #[command(after_help = "Examples:
  ublk-user features
  ublk-user features --json | jq -r '.names[]'")]
    Features {
        #[arg(long)]
        json: bool,
    },
}

/// What backs a device.
#[derive(Clone, Copy, Debug, PartialEq, Eq, ValueEnum)]
pub enum TargetKind {
    // (No doc comments: clap would list them twice in `add --help`.)
    // A file or block device (--file).
    Loop,
    // No storage: writes are dropped, reads return unspecified data (--size).
    Null,
    // Striped over 2 to 16 files or block devices (-f F1 -f F2 ..., --chunk).
    Stripe,
    // A qcow2 image (--file), QEMU's disk format.
    Qcow2,
}

/// `add`: the target is a positional word (`add loop`) or `-t` / `--type`
/// (`add -t loop`, as ublksrv spells it); [`AddArgs::resolve`] checks what
/// clap cannot (options of the other target, --reissue without recovery).
#[derive(Args, Debug)]
#[command(group(ArgGroup::new("target_kind").required(true).args(["target", "kind"])))]
pub struct AddArgs {
    /// The target: loop (a file or block device, --file), stripe (2 to 16
    /// of them, --file once per file, --chunk), qcow2 (an image, --file)
    /// or null (no storage, --size); or -t TARGET.
    #[arg(value_enum, value_name = "TARGET")]
    pub target: Option<TargetKind>,
    /// The target, ublksrv style: -t loop, -t stripe, -t qcow2, -t null.
    #[arg(short = 't', long = "type", value_enum, value_name = "TARGET")]
    pub kind: Option<TargetKind>,
    /// Loop: the backing file or block device. Stripe: one of its files,
    /// given once per file in stripe order. Qcow2: the image.
    #[arg(
        short = 'f',
        long,
        required_if_eq_any = [("target", "loop"), ("kind", "loop"), ("target", "stripe"), ("kind", "stripe"), ("target", "qcow2"), ("kind", "qcow2")]
    )]
    pub file: Vec<PathBuf>,
    /// Stripe: the chunk, a power of two from 4K to 1M (default 64K).
    #[arg(long, value_parser = parse_size)]
    pub chunk: Option<u64>,
    /// Null: the size, e.g. 1G, 512M, 4096 (K/M/G/T are powers of 1024).
    #[arg(
        long,
        value_parser = parse_size,
        required_if_eq_any = [("target", "null"), ("kind", "null")]
    )]
    pub size: Option<u64>,
    #[command(flatten)]
    pub common: CommonArgs,
}

/// A checked `add`.
#[derive(Debug, PartialEq, Eq)]
pub enum AddTarget {
    /// Back the device by a file or block device.
    Loop { file: PathBuf, common: CommonArgs },
    /// A device that drops writes and returns unspecified data.
    Null { size: u64, common: CommonArgs },
    /// A device striped over several files.
    Stripe {
        files: Vec<PathBuf>,
        chunk: u64,
        common: CommonArgs,
    },
    /// A qcow2 image.
    Qcow2 { file: PathBuf, common: CommonArgs },
}

/// The stripe chunk without --chunk.
pub const DEFAULT_CHUNK: u64 = 64 << 10;

impl AddArgs {
    /// The target and its options, with the aliases folded into the long
    /// options (`-z` into `mode`, `-r 0|1` into `recovery`; `zero_copy` and
    /// `recovery_r` are then cleared, so equal commands compare equal); a
    /// usage error (exit 2, like clap's own) for a combination clap cannot
    /// express.
    pub fn resolve(self) -> Result<AddTarget, clap::Error> {
        let usage = |kind: ErrorKind, msg: &str| {
            let mut cmd = Cli::command();
            cmd.build(); // so the usage line says `ublk-user add`
            let add = cmd.find_subcommand_mut("add").expect("add exists");
            add.error(kind, msg)
        };
        let mut common = self.common;
        if std::mem::take(&mut common.zero_copy) {
            common.mode = Mode::Zc;
        }
        if let Some(r) = common.recovery_r.take() {
            common.recovery = r;
        }
        if common.reissue && !common.recovery {
            return Err(usage(
                ErrorKind::MissingRequiredArgument,
                "--reissue needs user recovery (--recovery or -r 1)",
            ));
        }
        // The required group makes exactly one of them present.
        let Some(kind) = self.target.or(self.kind) else {
            return Err(usage(
                ErrorKind::MissingRequiredArgument,
                "add needs a target: loop, stripe, qcow2 or null (or -t loop, -t stripe, -t qcow2, -t null)",
            ));
        };
        if self.chunk.is_some() && kind != TargetKind::Stripe {
            return Err(usage(
                ErrorKind::ArgumentConflict,
                "--chunk is for the stripe target",
            ));
        }
        let mut files = self.file;
        match (kind, files.len(), self.size) {
            (TargetKind::Loop, 1, None) => Ok(AddTarget::Loop {
                file: files.remove(0),
                common,
            }),
            (TargetKind::Null, 0, Some(size)) => Ok(AddTarget::Null { size, common }),
            (TargetKind::Stripe, 1.., None) => Ok(AddTarget::Stripe {
                files,
                chunk: self.chunk.unwrap_or(DEFAULT_CHUNK),
                common,
            }),
            (TargetKind::Qcow2, 1, None) => Ok(AddTarget::Qcow2 {
                file: files.remove(0),
                common,
            }),
            (TargetKind::Qcow2, 2.., None) => Err(usage(
                ErrorKind::ArgumentConflict,
                "the qcow2 target takes one --file (its backing file is named in the image)",
            )),
            (TargetKind::Qcow2, _, Some(_)) => Err(usage(
                ErrorKind::ArgumentConflict,
                "--size is for the null target (a qcow2 device has its image's virtual size)",
            )),
            (TargetKind::Qcow2, 0, None) => Err(usage(
                ErrorKind::MissingRequiredArgument,
                "the qcow2 target needs --file",
            )),
            (TargetKind::Loop, 2.., None) => Err(usage(
                ErrorKind::ArgumentConflict,
                "the loop target takes one --file (several: the stripe target)",
            )),
            (TargetKind::Stripe, _, Some(_)) => Err(usage(
                ErrorKind::ArgumentConflict,
                "--size is for the null target (a stripe's size comes from its files)",
            )),
            (TargetKind::Stripe, 0, None) => Err(usage(
                ErrorKind::MissingRequiredArgument,
                "the stripe target needs --file once per file",
            )),
            (TargetKind::Loop, _, Some(_)) => Err(usage(
                ErrorKind::ArgumentConflict,
                "--size is for the null target (a loop device has its file's size)",
            )),
            (TargetKind::Null, 1.., _) => Err(usage(
                ErrorKind::ArgumentConflict,
                "--file is for the loop target (null has no backing file)",
            )),
            // Not reached: required_if_eq_any on --file and --size.
            (TargetKind::Loop, 0, None) => Err(usage(
                ErrorKind::MissingRequiredArgument,
                "the loop target needs --file",
            )),
            (TargetKind::Null, 0, None) => Err(usage(
                ErrorKind::MissingRequiredArgument,
                "the null target needs --size",
            )),
        }
    }
}

/// `--mode`: one of the library's server modes ([`Mode::SERVER`]), by name.
fn mode_parser() -> impl TypedValueParser<Value = Mode> {
    PossibleValuesParser::new(Mode::SERVER.map(Mode::name))
        .map(|s| Mode::from_name(&s).expect("a possible value is a mode's name"))
}

#[derive(Args, Debug, Clone, Default, PartialEq, Eq)]
pub struct CommonArgs {
    /// Data path: copy (server buffers), zc (UBLK_F_AUTO_BUF_REG), bpf (BPF
    /// redirect, the server commits), bpf-kernel (BPF redirect issued and
    /// completed by the kernel; falls back to bpf, then copy).
    #[arg(long, default_value = "copy", value_parser = mode_parser())]
    pub mode: Mode,
    /// Zero copy: the same as --mode zc.
    #[arg(short = 'z', long, conflicts_with = "mode")]
    pub zero_copy: bool,
    /// With --mode bpf or bpf-kernel: fail instead of falling back (bpf-kernel
    /// to bpf, bpf to copy) when the requested mode is unavailable.
    #[arg(long)]
    pub no_fallback: bool,
    /// Hardware queues (one server thread each).
    #[arg(short = 'q', long, default_value_t = ublk_user::device::DEFAULT_QUEUES, value_parser = clap::value_parser!(u16).range(1..=64))]
    pub queues: u16,
    /// Queue depth.
    #[arg(short = 'd', long, default_value_t = ublk_user::device::DEFAULT_DEPTH, value_parser = clap::value_parser!(u16).range(1..=4096))]
    pub depth: u16,
    /// Device id (N in /dev/ublkbN); default: the kernel picks one.
    #[arg(short = 'n', long, visible_alias = "number")]
    pub id: Option<u32>,
    /// Loop: open the backing file without O_DIRECT.
    #[arg(long)]
    pub buffered: bool,
    /// Serve in the foreground (do not daemonize).
    #[arg(long)]
    pub foreground: bool,
    /// With --mode bpf or bpf-kernel: forward the BPF program's log (to
    /// stderr: the server log unless --foreground).
    #[arg(long)]
    pub bpf_log: bool,
    /// UBLK_F_USER_RECOVERY: if the server dies the device stays and its
    /// I/O waits until `ublk-user recover --id N` starts a new server.
    #[arg(long)]
    pub recovery: bool,
    /// User recovery as ublksrv spells it: -r 1 is --recovery, -r 0 is off.
    #[arg(
        short = 'r',
        value_name = "0|1",
        conflicts_with = "recovery",
        value_parser = PossibleValuesParser::new(["0", "1"]).map(|s| s == "1")
    )]
    pub recovery_r: Option<bool>,
    /// With --recovery: re-issue the requests the dead server owned to the
    /// new one (UBLK_F_USER_RECOVERY_REISSUE) instead of failing them.
    #[arg(long)]
    pub reissue: bool,
}

#[derive(Args, Debug)]
pub struct DelArgs {
    /// Device id to delete.
    #[arg(
        short = 'n',
        long,
        visible_alias = "number",
        required_unless_present = "all",
        conflicts_with = "all"
    )]
    pub id: Option<u32>,
    /// Delete every ublk device.
    #[arg(short = 'a', long)]
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

    fn argv(line: &str) -> Vec<&str> {
        std::iter::once("ublk-user")
            .chain(line.split_whitespace())
            .collect()
    }

    /// `line` parsed and resolved as an `add` command line.
    fn add(line: &str) -> AddTarget {
        match Cli::try_parse_from(argv(line))
            .unwrap_or_else(|e| panic!("{line}: {e}"))
            .cmd
        {
            Command::Add(a) => a.resolve().unwrap_or_else(|e| panic!("{line}: {e}")),
            c => panic!("{line}: {c:?}"),
        }
    }

    /// `line` is refused, by clap or by [`AddArgs::resolve`], as a usage
    /// error (exit status 2).
    fn refused(line: &str) {
        let e = match Cli::try_parse_from(argv(line)) {
            Err(e) => e,
            Ok(Cli {
                cmd: Command::Add(a),
            }) => match a.resolve() {
                Err(e) => e,
                Ok(t) => panic!("{line}: accepted as {t:?}"),
            },
            Ok(c) => panic!("{line}: accepted as {c:?}"),
        };
        assert_eq!(e.exit_code(), 2, "{line}: {e}");
    }

    fn common(t: &AddTarget) -> &CommonArgs {
        match t {
            AddTarget::Loop { common, .. }
            | AddTarget::Null { common, .. }
            | AddTarget::Stripe { common, .. }
            | AddTarget::Qcow2 { common, .. } => common,
        }
    }

    #[test]
    fn clap_definition_is_consistent() {
        Cli::command().debug_assert();
    }

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
    fn add_loop_long_options() {
        match add("add loop --file /tmp/a.img --mode zc") {
            AddTarget::Loop { file, common } => {
                assert_eq!(file, PathBuf::from("/tmp/a.img"));
                assert_eq!(common.mode, Mode::Zc);
                assert_eq!(common.queues, ublk_user::device::DEFAULT_QUEUES);
                assert_eq!(common.depth, ublk_user::device::DEFAULT_DEPTH);
                assert_eq!(common.id, None);
                assert!(!common.foreground && !common.buffered && !common.no_fallback);
                assert!(!common.recovery && !common.reissue);
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn add_null_all_long_options() {
        match add("add null --size 512M --mode bpf --no-fallback --queues 2 --depth 64 --id 7 --foreground --bpf-log --buffered --recovery --reissue") {
            AddTarget::Null { size, common } => {
                assert_eq!(size, 512 << 20);
                assert_eq!(common.mode, Mode::Bpf);
                assert!(common.no_fallback && common.foreground && common.bpf_log);
                assert!(common.buffered && common.recovery && common.reissue);
                assert_eq!((common.queues, common.depth, common.id), (2, 64, Some(7)));
            }
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn add_stripe() {
        match add("add stripe -f /a -f /b -f /c --chunk 128K --mode bpf-kernel") {
            AddTarget::Stripe {
                files,
                chunk,
                common,
            } => {
                assert_eq!(files, [PathBuf::from("/a"), "/b".into(), "/c".into()]);
                assert_eq!(chunk, 128 << 10);
                assert_eq!(common.mode, Mode::BpfKernel);
            }
            t => panic!("{t:?}"),
        }
        match add("add -t stripe -f /a -f /b") {
            AddTarget::Stripe { chunk, .. } => assert_eq!(chunk, DEFAULT_CHUNK),
            t => panic!("{t:?}"),
        }
    }

    #[test]
    fn add_qcow2() {
        match add("add qcow2 -f /vm/disk.qcow2 --mode bpf-kernel --buffered") {
            AddTarget::Qcow2 { file, common } => {
                assert_eq!(file, PathBuf::from("/vm/disk.qcow2"));
                assert_eq!(common.mode, Mode::BpfKernel);
                assert!(common.buffered);
            }
            t => panic!("{t:?}"),
        }
        assert!(matches!(add("add -t qcow2 -f /a"), AddTarget::Qcow2 { .. }));
    }

    #[test]
    fn add_short_options() {
        match add("add -t loop -f /tmp/b.img -q 4 -d 256 -n 9 -z -r 1") {
            AddTarget::Loop { file, common } => {
                assert_eq!(file, PathBuf::from("/tmp/b.img"));
                assert_eq!(common.mode, Mode::Zc);
                assert_eq!((common.queues, common.depth, common.id), (4, 256, Some(9)));
                assert!(common.recovery && !common.reissue);
            }
            t => panic!("{t:?}"),
        }
        match add("add -t null --size 1G --mode bpf-kernel") {
            AddTarget::Null { size, common } => {
                assert_eq!(size, 1 << 30);
                assert_eq!(common.mode, Mode::BpfKernel);
            }
            t => panic!("{t:?}"),
        }
    }

    /// Every alias resolves to exactly what its long spelling does.
    #[test]
    fn add_aliases_match_long_options() {
        const F: &str = "--file /tmp/a.img";
        for (alias, long) in [
            ("add -t loop -f /tmp/a.img", format!("add loop {F}")),
            ("add --type loop --file /tmp/a.img", format!("add loop {F}")),
            ("add -t null --size 1G", "add null --size 1G".into()),
            ("add --type null --size 1G", "add null --size 1G".into()),
            (
                "add loop -f /tmp/a.img -z",
                format!("add loop {F} --mode zc"),
            ),
            (
                "add loop -f /tmp/a.img --zero-copy",
                format!("add loop {F} --mode zc"),
            ),
            (
                "add loop -f /tmp/a.img -q 3",
                format!("add loop {F} --queues 3"),
            ),
            (
                "add loop -f /tmp/a.img -d 32",
                format!("add loop {F} --depth 32"),
            ),
            (
                "add loop -f /tmp/a.img -n 5",
                format!("add loop {F} --id 5"),
            ),
            (
                "add loop -f /tmp/a.img --number 5",
                format!("add loop {F} --id 5"),
            ),
            (
                "add loop -f /tmp/a.img -r 1",
                format!("add loop {F} --recovery"),
            ),
            ("add loop -f /tmp/a.img -r 0", format!("add loop {F}")),
            (
                "add loop -f /tmp/a.img -r 1 --reissue",
                format!("add loop {F} --recovery --reissue"),
            ),
            (
                "add -t loop -f /tmp/a.img --mode bpf",
                format!("add loop {F} --mode bpf"),
            ),
            (
                "add -t loop -f /tmp/a.img --mode bpf-kernel",
                format!("add loop {F} --mode bpf-kernel"),
            ),
            (
                "add -t null --size 1G -n 2 -q 2 -d 64 -r 1",
                "add null --size 1G --id 2 --queues 2 --depth 64 --recovery".into(),
            ),
        ] {
            assert_eq!(add(alias), add(&long), "{alias} vs {long}");
        }
        // ... and the long spellings are not all the default.
        assert_eq!(common(&add(&format!("add loop {F} --queues 3"))).queues, 3);
        assert_eq!(common(&add(&format!("add loop {F} --depth 32"))).depth, 32);
        assert_eq!(common(&add(&format!("add loop {F} --id 5"))).id, Some(5));
        assert!(common(&add(&format!("add loop {F} --recovery"))).recovery);
        assert_eq!(
            common(&add(&format!("add loop {F} --mode bpf"))).mode,
            Mode::Bpf
        );
        assert_eq!(
            common(&add(&format!("add loop {F} --mode bpf-kernel"))).mode,
            Mode::BpfKernel
        );
        assert_eq!(common(&add(&format!("add loop {F}"))).mode, Mode::Copy);
    }

    #[test]
    fn bad_inputs() {
        for line in [
            "",
            "frobnicate",
            "add",
            "add loop",
            "add -t loop",
            "add -f /tmp/a.img",
            "add disk -f /tmp/a.img",
            "add stripe",
            "add stripe --chunk 64K",
            "add stripe -f /a -f /b --size 1G",
            "add qcow2",
            "add qcow2 -f /a -f /b",
            "add qcow2 -f /a --size 1G",
            "add qcow2 -f /a --chunk 64K",
            "add loop -f /a -f /b",
            "add loop -f /a --chunk 64K",
            "add null --size 1G --chunk 64K",
            "add -t disk -f /tmp/a.img",
            "add loop -t loop -f /tmp/a.img",
            "add loop -t null -f /tmp/a.img",
            "add null",
            "add -t null",
            "add null --size 0",
            "add null --size 100",
            "add null --size 1G --depth 0",
            "add null --size 1G --depth 5000",
            "add null --size 1G --queues 0",
            "add null --size 1G --queues 65",
            "add null --size 1G --mode fast",
            "add null --size 1G -f /tmp/a.img",
            "add loop -f /tmp/a.img --size 1G",
            "add loop -f /tmp/a.img -z --mode bpf",
            "add loop -f /tmp/a.img -z --mode zc",
            "add loop -f /tmp/a.img -r 2",
            "add loop -f /tmp/a.img -r yes",
            "add loop -f /tmp/a.img -r 1 --recovery",
            "add loop -f /tmp/a.img -r 0 --recovery",
            "add loop -f /tmp/a.img --reissue",
            "add loop -f /tmp/a.img -r 0 --reissue",
            "add loop -f /tmp/a.img -n 1 --id 1",
            "add loop --file /tmp/a.img --id -1",
            "del",
            "del --id 1 --all",
            "del -n 1 -a",
            "recover",
            "list -n x",
        ] {
            refused(line);
        }
    }

    #[test]
    fn list_del_recover_features() {
        let cmd = |line: &str| {
            Cli::try_parse_from(argv(line))
                .unwrap_or_else(|e| panic!("{line}: {e}"))
                .cmd
        };
        assert!(matches!(
            cmd("list"),
            Command::List {
                id: None,
                json: false
            }
        ));
        assert!(matches!(
            cmd("list --json"),
            Command::List {
                id: None,
                json: true
            }
        ));
        for line in [
            "list -n 3 --json",
            "list --id 3 --json",
            "list --json --number 3",
        ] {
            assert!(
                matches!(
                    cmd(line),
                    Command::List {
                        id: Some(3),
                        json: true
                    }
                ),
                "{line}"
            );
        }
        assert!(matches!(
            cmd("list -n 4"),
            Command::List {
                id: Some(4),
                json: false
            }
        ));
        for line in ["del --all", "del -a"] {
            match cmd(line) {
                Command::Del(d) => assert!(d.all && d.id.is_none(), "{line}"),
                c => panic!("{line}: {c:?}"),
            }
        }
        for line in ["del --id 3", "del -n 3", "del --number 3"] {
            match cmd(line) {
                Command::Del(d) => assert!(!d.all && d.id == Some(3), "{line}"),
                c => panic!("{line}: {c:?}"),
            }
        }
        for line in ["recover --id 2", "recover -n 2", "recover --number 2"] {
            assert!(
                matches!(
                    cmd(line),
                    Command::Recover {
                        id: 2,
                        foreground: false
                    }
                ),
                "{line}"
            );
        }
        assert!(matches!(
            cmd("recover -n 2 --foreground"),
            Command::Recover {
                id: 2,
                foreground: true
            }
        ));
        assert!(matches!(cmd("features"), Command::Features { json: false }));
        assert!(matches!(
            cmd("modes --available"),
            Command::Modes {
                available: true,
                json: false
            }
        ));
        assert!(matches!(
            cmd("features --json"),
            Command::Features { json: true }
        ));
    }

    /// `--help` of every subcommand ends with an example of that subcommand.
    #[test]
    fn help_has_an_example_per_subcommand() {
        let mut cli = Cli::command();
        let top = cli.render_long_help().to_string();
        for sub in Cli::command().get_subcommands() {
            let name = sub.get_name();
            let usage = format!("ublk-user {name}");
            let after = sub
                .get_after_help()
                .unwrap_or_else(|| panic!("{name}: no after_help"))
                .to_string();
            assert!(after.starts_with("Example"), "{name}: {after}");
            assert!(
                after.contains(&usage),
                "{name}: no `{usage}` example in {after}"
            );
            assert!(top.contains(&usage), "top-level help has no `{usage}`");
            let mut sub = sub.clone();
            let help = sub.render_long_help().to_string();
            assert!(
                help.contains(&after),
                "{name}: --help does not show the example"
            );
        }
    }
}
