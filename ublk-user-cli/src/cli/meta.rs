//! Per-device metadata the server writes to `/run/ublk-user/<id>.json`, for
//! `list`, `del` and `recover`: one flat JSON object (serde), the fields of
//! [`Meta`] with their names as keys.

use super::args::CommonArgs;
use serde::{Deserialize, Serialize};
use std::path::PathBuf;

pub const RUN_DIR: &str = "/run/ublk-user";

#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Meta {
    pub id: u32,
    #[serde(default)]
    pub pid: i32,
    #[serde(default)]
    pub target: String,
    #[serde(default)]
    pub backing: String,
    #[serde(default)]
    pub size: u64,
    #[serde(default)]
    pub queues: u16,
    #[serde(default)]
    pub depth: u16,
    #[serde(default)]
    pub mode_requested: String,
    #[serde(default)]
    pub mode: String,
    #[serde(default)]
    pub bdev: String,
    /// BPF stats map id (0: no BPF program).
    #[serde(default)]
    pub bpf_stats_map_id: u32,
    /// Backing files opened without O_DIRECT (`--buffered`). This and the
    /// stripe's keys are only written when set, so a loop or null record
    /// reads as it always did.
    #[serde(default, skip_serializing_if = "is_false")]
    pub buffered: bool,
    /// `--no-fallback` (for `recover`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub no_fallback: bool,
    /// `--bpf-log` (for `recover`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub bpf_log: bool,
    /// `--reissue` (for `recover`).
    #[serde(default, skip_serializing_if = "is_false")]
    pub reissue: bool,
    /// Stripe: the files, in order.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Stripe: the chunk in bytes.
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk: u64,
}

impl Meta {
    /// The record with the options of `add` that `recover` restores
    /// ([`Meta::add_args`]).
    pub fn with_add_args(self, c: &CommonArgs) -> Self {
        // Every field named, so that a new option is a compile error here
        // until it is recorded or said to be not needed.
        let CommonArgs {
            mode,
            zero_copy: _,  // folded into `mode` by AddArgs::resolve
            recovery_r: _, // folded into `recovery`
            no_fallback,
            queues: _, // the device's own (GET_DEV_INFO)
            depth: _,  // the device's own
            id,
            buffered,
            foreground: _, // `recover --foreground`
            bpf_log,
            recovery: _, // a device to recover has it
            reissue,
        } = c.clone();
        Meta {
            id: id.unwrap_or(self.id),
            mode_requested: mode.name().into(),
            no_fallback,
            buffered,
            bpf_log,
            reissue,
            ..self
        }
    }

    /// The options of the `add` that created the device, as recorded:
    /// what `recover` starts the new server with (queues and depth are the
    /// device's; `foreground` is recover's own).
    pub fn add_args(&self) -> Result<CommonArgs, String> {
        Ok(CommonArgs {
            mode: self
                .mode_requested
                .parse()
                .map_err(|e| format!("recorded mode: {e}"))?,
            no_fallback: self.no_fallback,
            id: Some(self.id),
            buffered: self.buffered,
            bpf_log: self.bpf_log,
            recovery: true,
            reissue: self.reissue,
            ..CommonArgs::default()
        })
    }
}

fn is_false(b: &bool) -> bool {
    !*b
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

/// The server's live request counters ([`ublk_user::io::counters`]).
pub fn stats_path(id: u32) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{id}.stats"))
}

pub fn path(id: u32) -> PathBuf {
    PathBuf::from(format!("{RUN_DIR}/{id}.json"))
}

impl Meta {
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).expect("a struct of strings and integers serializes")
    }

    pub fn from_json(s: &str) -> Option<Self> {
        serde_json::from_str(s).ok()
    }

    pub fn write(&self) -> std::io::Result<()> {
        std::fs::create_dir_all(RUN_DIR)?;
        let p = path(self.id);
        let tmp = p.with_extension("json.tmp");
        std::fs::write(&tmp, self.to_json() + "\n")?;
        std::fs::rename(tmp, p)
    }

    pub fn read(id: u32) -> Option<Self> {
        Self::from_json(&std::fs::read_to_string(path(id)).ok()?)
    }

    pub fn remove(id: u32) {
        let _ = std::fs::remove_file(path(id));
        let _ = std::fs::remove_file(stats_path(id));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Meta {
        Meta {
            id: 3,
            pid: 1234,
            target: "loop".into(),
            backing: "/tmp/we\"ird \\ name\n".into(),
            size: 1 << 30,
            queues: 2,
            depth: 128,
            mode_requested: "bpf".into(),
            mode: "copy".into(),
            bdev: "/dev/ublkb3".into(),
            bpf_stats_map_id: 42,
            ..Default::default()
        }
    }

    #[test]
    fn stripe_and_buffered_round_trip() {
        let m = Meta {
            target: "stripe".into(),
            buffered: true,
            files: vec!["/a,1".into(), "/b".into()],
            chunk: 65536,
            ..sample()
        };
        let j = m.to_json();
        assert!(
            j.ends_with(r#""buffered":true,"files":["/a,1","/b"],"chunk":65536}"#),
            "{j}"
        );
        assert_eq!(Meta::from_json(&j), Some(m));
    }

    /// `recover` starts its server with every option `add` had (through
    /// the record on disk), but the device's own queues/depth and its own
    /// --foreground.
    #[test]
    fn recover_restores_the_add_options() {
        use crate::cli::args::{AddTarget, Cli, Command};
        use clap::Parser;
        let line = "ublk-user add loop -f /x --mode bpf-kernel --no-fallback --id 3 \
                    --buffered --bpf-log --recovery --reissue --queues 2 --depth 64";
        let Command::Add(a) = Cli::try_parse_from(line.split_whitespace()).unwrap().cmd else {
            panic!("add")
        };
        let AddTarget::Loop { common, .. } = a.resolve().unwrap() else {
            panic!("loop")
        };
        let m = Meta::default().with_add_args(&common);
        let back = Meta::from_json(&m.to_json()).unwrap().add_args().unwrap();
        let CommonArgs { queues, depth, .. } = common;
        assert_eq!(
            CommonArgs {
                queues,
                depth,
                ..back
            },
            common
        );
    }

    #[test]
    fn roundtrip() {
        let m = sample();
        assert_eq!(Meta::from_json(&m.to_json()), Some(m.clone()));
        assert_eq!(Meta::from_json(&(m.to_json() + "\n")), Some(m));
        assert_eq!(Meta::from_json("garbage"), None);
        assert_eq!(Meta::from_json("{}"), None, "id is required");
    }

    /// The file a server of the previous (hand-written JSON) version wrote
    /// still reads: same keys, same order, same escaping.
    #[test]
    fn same_format_as_before() {
        let old = r#"{"id":3,"pid":1234,"target":"loop","backing":"/tmp/we\"ird \\ name\n","size":1073741824,"queues":2,"depth":128,"mode_requested":"bpf","mode":"copy","bdev":"/dev/ublkb3","bpf_stats_map_id":42}"#;
        assert_eq!(sample().to_json(), old);
        assert_eq!(Meta::from_json(old), Some(sample()));
        let partial = Meta::from_json(r#"{"id":5,"target":"null"}"#).unwrap();
        assert_eq!(
            (partial.id, partial.target.as_str(), partial.size),
            (5, "null", 0)
        );
    }
}
