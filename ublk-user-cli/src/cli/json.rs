//! `ublk-user list --json`: a JSON array with one [`DeviceJson`] object per
//! device (ordered by id; one element with `list -n N`). The README's
//! "list --json" table documents every key, its type and its meaning (a
//! unit test below checks that it names every key written here). Keys in
//! the groups `server_*`, `kernel_*` and `bpf_*` are present only when their
//! source is (see [`ServerCounters`], [`KernelCounters`], [`BpfCounters`]);
//! the other keys are always present.

use super::meta::Meta;
use serde::{Deserialize, Serialize};
use ublk_user::sys;

/// One device. Driver values come from GET_DEV_INFO; `target`, `backing`,
/// `size`, `mode_requested` and `mode` from the record `add` left in
/// `/run/ublk-user/<id>.json` (empty strings and 0 for a device that
/// ublk-user did not add).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct DeviceJson {
    pub id: u32,
    pub state: String,
    pub target: String,
    pub backing: String,
    pub size: u64,
    pub queues: u16,
    pub depth: u16,
    pub mode_requested: String,
    pub mode: String,
    pub pid: i32,
    pub bdev: String,
    pub flags: u64,
    pub features: Vec<String>,
    /// Stripe: its files in order (the key is absent for other targets).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub files: Vec<String>,
    /// Stripe: the chunk in bytes (absent for other targets).
    #[serde(default, skip_serializing_if = "is_zero")]
    pub chunk: u64,
    #[serde(flatten)]
    pub server: Option<ServerCounters>,
    #[serde(flatten)]
    pub kernel: Option<KernelCounters>,
    #[serde(flatten)]
    pub bpf: Option<BpfCounters>,
}

/// The server's own counters (`/run/ublk-user/<id>.stats`, summed over the
/// queues): present while a ublk-user server serves the device.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ServerCounters {
    pub server_served: u64,
    pub server_redirected: u64,
    pub server_errors: u64,
    pub server_cqes: u64,
    pub server_sqes: u64,
    pub server_enters: u64,
    pub server_fua: u64,
}

/// The driver's BPF counters (GET_BPF_STATS): present for a device with
/// UBLK_F_BPF on a kernel that answers the command.
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct KernelCounters {
    pub kernel_redirected: u64,
    pub kernel_redirect_fallback: u64,
    pub kernel_completed: u64,
    pub kernel_punted: u64,
    pub kernel_errors: u64,
    pub kernel_zero_filled: u64,
}

/// The BPF program's stats map (summed over CPUs): present when the server
/// loaded the program (modes bpf and bpf-kernel).
#[derive(Clone, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct BpfCounters {
    pub bpf_redirected: u64,
    pub bpf_redirected_bytes: u64,
    pub bpf_passed: u64,
    pub bpf_pass_op: u64,
    pub bpf_pass_no_target: u64,
    pub bpf_pass_helper_err: u64,
    /// Redirected requests of I/O priority class RT, BE, IDLE (the class
    /// the program read in `ctx->ioprio`).
    pub bpf_redirected_rt: u64,
    pub bpf_redirected_be: u64,
    pub bpf_redirected_idle: u64,
    pub bpf_pass_span: u64,
    /// Passed because the request's cluster is not in the cluster map
    /// (qcow2: unallocated, compressed, zero or shared).
    pub bpf_pass_unmapped: u64,
}

fn is_zero(v: &u64) -> bool {
    *v == 0
}

impl DeviceJson {
    /// The always-present keys, from the driver's view and `add`'s record.
    pub fn new(info: &sys::DevInfo, meta: Option<&Meta>) -> Self {
        let m = meta.cloned().unwrap_or_default();
        Self {
            id: info.dev_id,
            state: sys::state_name(info.state).into(),
            target: m.target,
            backing: m.backing,
            size: m.size,
            queues: info.nr_hw_queues,
            depth: info.queue_depth,
            mode_requested: m.mode_requested,
            mode: m.mode,
            pid: info.ublksrv_pid,
            bdev: format!("/dev/ublkb{}", info.dev_id),
            flags: info.flags,
            features: sys::feature_names(info.flags),
            files: m.files,
            chunk: m.chunk,
            server: None,
            kernel: None,
            bpf: None,
        }
    }
}

impl From<&sys::BpfKernStats> for KernelCounters {
    fn from(k: &sys::BpfKernStats) -> Self {
        Self {
            kernel_redirected: k.redirected,
            kernel_redirect_fallback: k.redirect_fallback,
            kernel_completed: k.kernel_completed,
            kernel_punted: k.kernel_punted,
            kernel_errors: k.kernel_errors,
            kernel_zero_filled: k.kernel_zero_filled,
        }
    }
}

#[cfg(feature = "bpf")]
impl From<&ublk_user::bpf::Stats> for BpfCounters {
    fn from(s: &ublk_user::bpf::Stats) -> Self {
        use ublk_ebpf_common::stat;
        let (rt, be, idle) = s.redirected_by_class();
        Self {
            bpf_redirected: s.redirected(),
            bpf_redirected_bytes: s.redirected_bytes(),
            bpf_passed: s.passed(),
            bpf_pass_op: s.get(stat::PASS_OP),
            bpf_pass_no_target: s.get(stat::PASS_NO_TARGET),
            bpf_pass_helper_err: s.get(stat::PASS_HELPER_ERR),
            bpf_pass_span: s.get(stat::PASS_SPAN),
            bpf_pass_unmapped: s.get(stat::PASS_UNMAPPED),
            bpf_redirected_rt: rt,
            bpf_redirected_be: be,
            bpf_redirected_idle: idle,
        }
    }
}

/// The `list --json` document.
pub fn to_string(devices: &[DeviceJson]) -> String {
    serde_json::to_string(devices).expect("strings, integers and arrays serialize")
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The keys every device has, in the order they are written.
    const BASE_KEYS: [&str; 13] = [
        "id",
        "state",
        "target",
        "backing",
        "size",
        "queues",
        "depth",
        "mode_requested",
        "mode",
        "pid",
        "bdev",
        "flags",
        "features",
    ];

    fn info() -> sys::DevInfo {
        sys::DevInfo {
            nr_hw_queues: 2,
            queue_depth: 64,
            state: sys::UBLK_S_DEV_LIVE,
            dev_id: 4,
            ublksrv_pid: 321,
            flags: sys::UBLK_F_BPF,
            ..Default::default()
        }
    }

    fn meta() -> Meta {
        Meta {
            id: 4,
            pid: 321,
            target: "loop".into(),
            backing: "/tmp/a \"b\".img".into(),
            size: 1 << 20,
            queues: 2,
            depth: 64,
            mode_requested: "bpf-kernel".into(),
            mode: "bpf".into(),
            bdev: "/dev/ublkb4".into(),
            bpf_stats_map_id: 9,
            ..Default::default()
        }
    }

    fn full() -> DeviceJson {
        DeviceJson {
            server: Some(ServerCounters {
                server_served: 1,
                server_redirected: 2,
                server_errors: 3,
                server_cqes: 4,
                server_sqes: 5,
                server_enters: 6,
                server_fua: 7,
            }),
            kernel: Some(KernelCounters::from(&sys::BpfKernStats {
                redirected: 11,
                redirect_fallback: 12,
                kernel_completed: 13,
                kernel_punted: 14,
                kernel_errors: 15,
                kernel_zero_filled: 16,
            })),
            bpf: Some(BpfCounters {
                bpf_redirected: 21,
                bpf_redirected_bytes: 22,
                bpf_passed: 23,
                bpf_pass_op: 24,
                bpf_pass_no_target: 25,
                bpf_pass_helper_err: 26,
                bpf_redirected_rt: 27,
                bpf_redirected_be: 28,
                bpf_redirected_idle: 29,
                bpf_pass_span: 30,
                bpf_pass_unmapped: 31,
            }),
            ..DeviceJson::new(&info(), Some(&meta()))
        }
    }

    /// Byte for byte the document scripts parse, for a device without
    /// counters and one with all of them: keys, their order, values (the
    /// hand-written JSON of the first version, with keys added at the end
    /// of their group only).
    #[test]
    fn exact_document() {
        let bare = DeviceJson::new(&info(), Some(&meta()));
        let head = r#"{"id":4,"state":"live","target":"loop","backing":"/tmp/a \"b\".img","size":1048576,"queues":2,"depth":64,"mode_requested":"bpf-kernel","mode":"bpf","pid":321,"bdev":"/dev/ublkb4","flags":1048576,"features":["bpf"]"#;
        assert_eq!(to_string(&[bare]), format!("[{head}}}]"));
        let counters = r#","server_served":1,"server_redirected":2,"server_errors":3,"server_cqes":4,"server_sqes":5,"server_enters":6,"server_fua":7,"kernel_redirected":11,"kernel_redirect_fallback":12,"kernel_completed":13,"kernel_punted":14,"kernel_errors":15,"kernel_zero_filled":16,"bpf_redirected":21,"bpf_redirected_bytes":22,"bpf_passed":23,"bpf_pass_op":24,"bpf_pass_no_target":25,"bpf_pass_helper_err":26,"bpf_redirected_rt":27,"bpf_redirected_be":28,"bpf_redirected_idle":29,"bpf_pass_span":30,"bpf_pass_unmapped":31"#;
        assert_eq!(to_string(&[full()]), format!("[{head}{counters}}}]"));
        assert_eq!(to_string(&[]), "[]");
    }

    #[test]
    fn device_without_record_or_counters() {
        let i = sys::DevInfo {
            state: sys::UBLK_S_DEV_QUIESCED,
            ublksrv_pid: -1,
            flags: 0,
            ..info()
        };
        let v: serde_json::Value =
            serde_json::from_str(&to_string(&[DeviceJson::new(&i, None)])).unwrap();
        // serde_json::Value sorts its keys; the order is checked above.
        let keys: Vec<&String> = v[0].as_object().unwrap().keys().collect();
        let mut want = BASE_KEYS.to_vec();
        want.sort_unstable();
        assert_eq!(keys, want);
        assert_eq!(v[0]["state"], "quiesced");
        assert_eq!(v[0]["target"], "");
        assert_eq!(v[0]["mode"], "");
        assert_eq!(v[0]["size"], 0);
        assert_eq!(v[0]["pid"], -1);
        assert_eq!(v[0]["features"], serde_json::json!([]));
    }

    /// Each counter group appears alone, with all its keys, and reads back.
    #[test]
    fn counter_groups_are_independent_and_round_trip() {
        let f = full();
        for (d, prefix) in [
            (
                DeviceJson {
                    kernel: None,
                    bpf: None,
                    ..f.clone()
                },
                "server_",
            ),
            (
                DeviceJson {
                    server: None,
                    bpf: None,
                    ..f.clone()
                },
                "kernel_",
            ),
            (
                DeviceJson {
                    server: None,
                    kernel: None,
                    ..f.clone()
                },
                "bpf_",
            ),
        ] {
            let s = to_string(std::slice::from_ref(&d));
            let v: serde_json::Value = serde_json::from_str(&s).unwrap();
            let o = v[0].as_object().unwrap();
            let extra: Vec<&String> = o
                .keys()
                .filter(|k| !BASE_KEYS.contains(&k.as_str()))
                .collect();
            assert_eq!(o.len(), BASE_KEYS.len() + extra.len(), "{s}");
            let want = match prefix {
                "server_" => 7,
                "kernel_" => 6,
                _ => 11,
            };
            assert_eq!(extra.len(), want, "{s}");
            assert!(extra.iter().all(|k| k.starts_with(prefix)), "{s}");
            let back: Vec<DeviceJson> = serde_json::from_str(&s).unwrap();
            assert_eq!(back, [d]);
        }
        let back: Vec<DeviceJson> =
            serde_json::from_str(&to_string(std::slice::from_ref(&f))).unwrap();
        assert_eq!(back, [f]);
    }

    #[cfg(feature = "bpf")]
    #[test]
    fn bpf_counters_from_the_stats_map() {
        use ublk_ebpf_common::stat;
        let mut s = ublk_user::bpf::Stats::default();
        s.0[stat::REDIRECTED as usize] = 5;
        s.0[stat::REDIRECTED_BYTES as usize] = 20480;
        s.0[stat::PASS_OP as usize] = 2;
        s.0[stat::PASS_NO_TARGET as usize] = 4;
        s.0[stat::PASS_HELPER_ERR as usize] = 1;
        s.0[stat::REDIRECTED_RT as usize] = 2;
        s.0[stat::REDIRECTED_IDLE as usize] = 3;
        s.0[stat::PASS_SPAN as usize] = 6;
        s.0[stat::PASS_UNMAPPED as usize] = 7;
        assert_eq!(
            BpfCounters::from(&s),
            BpfCounters {
                bpf_redirected: 5,
                bpf_redirected_bytes: 20480,
                bpf_passed: 20,
                bpf_pass_op: 2,
                bpf_pass_no_target: 4,
                bpf_pass_helper_err: 1,
                bpf_redirected_rt: 2,
                bpf_redirected_be: 0,
                bpf_redirected_idle: 3,
                bpf_pass_span: 6,
                bpf_pass_unmapped: 7,
            }
        );
    }

    /// The README's table (the one documented schema) names every key.
    #[test]
    fn readme_documents_every_key() {
        let readme = include_str!("../../../README.md");
        let v: serde_json::Value = serde_json::from_str(&to_string(&[full()])).unwrap();
        for k in v[0].as_object().unwrap().keys() {
            assert!(
                readme.contains(&format!("| `{k}` |")),
                "README.md's list --json table lacks `{k}`"
            );
        }
    }
}
