//! The listings: `list` (devices), `modes`, `features`.

#[cfg(feature = "bpf")]
use super::json::BpfCounters;
use super::json::{self, DeviceJson, KernelCounters, ServerCounters};
use super::meta::{self, Meta};
use super::require_root;
use anyhow::{bail, Result};
use ublk_user::ctrl::{self, Control};
use ublk_user::io::counters::{self, Counter};
use ublk_user::sys;
use ublk_user::Mode;

/// The server's counters file of device `id`, if a server keeps one.
fn server_counters(id: u32) -> Option<ServerCounters> {
    let sp = meta::stats_path(id);
    let c = |which| counters::read_file(&sp, which).ok();
    Some(ServerCounters {
        server_served: c(Counter::Served)?,
        server_redirected: c(Counter::Redirected)?,
        server_errors: c(Counter::Errors)?,
        server_cqes: c(Counter::Cqes)?,
        server_sqes: c(Counter::Sqes)?,
        server_enters: c(Counter::Enters)?,
        server_fua: c(Counter::Fua)?,
    })
}

/// `list [-n ID] [--json]`: every device, or device `only` (an error if it
/// does not exist).
pub fn list(only: Option<u32>, json: bool) -> Result<()> {
    let ids: Vec<u32> = match only {
        None => ctrl::list_dev_ids(),
        Some(id) => vec![id],
    };
    let mut rows = Vec::new();
    let mut ctl = None;
    if !ids.is_empty() {
        require_root()?;
        let ctl = ctl.insert(Control::open()?);
        for id in ids {
            match ctl.get_dev_info(id) {
                Ok(info) => rows.push((info, Meta::read(id))),
                Err(e) if only.is_some() && e.errno() == Some(libc::ENODEV) => {
                    bail!("no ublk device with id {id}")
                }
                Err(e) if only.is_some() => return Err(e.into()),
                Err(_) => continue,
            }
        }
    }
    if json {
        let devices: Vec<DeviceJson> = rows
            .iter()
            .map(|(i, m)| {
                let mut d = DeviceJson::new(i, m.as_ref());
                d.server = server_counters(i.dev_id);
                if i.flags & sys::UBLK_F_BPF != 0 {
                    if let Some(Ok(k)) = ctl.as_mut().map(|c| c.get_bpf_stats(i.dev_id)) {
                        d.kernel = Some(KernelCounters::from(&k));
                    }
                }
                #[cfg(feature = "bpf")]
                {
                    let map_id = m.as_ref().map_or(0, |m| m.bpf_stats_map_id);
                    if map_id != 0 {
                        if let Ok(st) = ublk_user::bpf::stats_by_map_id(map_id) {
                            d.bpf = Some(BpfCounters::from(&st));
                        }
                    }
                }
                d
            })
            .collect();
        println!("{}", json::to_string(&devices));
        return Ok(());
    }
    println!(
        "{:<4} {:<6} {:<6} {:<28} {:>6} {:>5} {:<14} {:>7}",
        "ID", "STATE", "TARGET", "BACKING", "QUEUES", "DEPTH", "MODE(req/eff)", "PID"
    );
    for (i, m) in rows {
        let m = m.unwrap_or_default();
        let backing = if m.backing.is_empty() {
            "-".to_string()
        } else {
            m.backing.clone()
        };
        let mode = if m.mode.is_empty() {
            "-".to_string()
        } else {
            format!("{}/{}", m.mode_requested, m.mode)
        };
        println!(
            "{:<4} {:<6} {:<6} {:<28} {:>6} {:>5} {:<14} {:>7}",
            i.dev_id,
            sys::state_name(i.state),
            if m.target.is_empty() { "-" } else { &m.target },
            backing,
            i.nr_hw_queues,
            i.queue_depth,
            mode,
            i.ublksrv_pid
        );
    }
    Ok(())
}

/// `modes`: every mode of `--mode` with what it needs and its fallback, and
/// whether this kernel offers it (when there is a ublk driver to ask).
pub fn modes(available_only: bool, json: bool) -> Result<()> {
    let features = Control::open().and_then(|mut c| Ok(c.get_features()?));
    if available_only {
        let f = features?;
        for m in Mode::SERVER
            .iter()
            .filter(|m| m.built() && m.missing_feature(f).is_none())
        {
            println!("{m}");
        }
        return Ok(());
    }
    let features = features.ok();
    let offered = |m: Mode| features.map(|f| m.missing_feature(f).is_none() && m.built());
    if json {
        let doc: Vec<_> = Mode::SERVER
            .iter()
            .map(|&m| {
                serde_json::json!({
                    "name": m.name(),
                    "summary": m.summary(),
                    "features": m.required_features().iter().map(|(_, n)| *n).collect::<Vec<_>>(),
                    "fallback": m.fallback().map(Mode::name),
                    "bpf": m.bpf(),
                    "kernel_io": m.kernel_io(),
                    "built": m.built(),
                    "available": offered(m),
                })
            })
            .collect();
        println!("{}", serde_json::Value::from(doc));
        return Ok(());
    }
    for m in Mode::SERVER {
        let needs: Vec<&str> = m.required_features().iter().map(|(_, n)| *n).collect();
        let avail = match offered(m) {
            Some(true) => "available",
            Some(false) => "not available",
            None => "(no ublk driver to ask)",
        };
        println!(
            "{:<11} {avail}; needs {}; falls back to {}",
            m.name(),
            if needs.is_empty() {
                "nothing".into()
            } else {
                needs.join(" + ")
            },
            m.fallback().map_or("nothing", Mode::name),
        );
        println!("            {}", m.summary());
    }
    Ok(())
}

pub fn features(json: bool) -> Result<()> {
    let mut ctl = Control::open()?;
    let f = ctl.get_features()?;
    let names = sys::feature_names(f);
    if json {
        let doc = serde_json::json!({ "features": f, "names": names });
        println!("{doc}");
    } else {
        println!("features: {f:#x}");
        for n in names {
            println!("  {n}");
        }
    }
    Ok(())
}
