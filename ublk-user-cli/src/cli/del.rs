//! `del`: stop a device's server (SIGTERM, then SIGKILL if it does not
//! react) and delete the device.

use super::meta::Meta;
use super::{one_line, require_root};
use anyhow::{bail, Context, Result};
use rustix::process::{kill_process, test_kill_process, Pid, Signal};
use std::time::{Duration, Instant};
use ublk_user::ctrl::{self, Control};

fn proc_alive(pid: Pid) -> bool {
    if test_kill_process(pid).is_err() {
        return false;
    }
    // A zombie (exited, not yet reaped by its new parent) counts as gone.
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(st) => st
            .rsplit_once(") ")
            .map(|(_, rest)| !rest.starts_with('Z'))
            .unwrap_or(true),
        Err(_) => false,
    }
}

/// The process `pid` (a recorded server pid; not positive: none) if it is
/// a live `ublk-user`.
fn our_server(pid: i32) -> Option<Pid> {
    Pid::from_raw(pid).filter(|&p| is_our_server(p))
}

fn is_our_server(pid: Pid) -> bool {
    proc_alive(pid)
        && std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .map(|c| c.split('\0').next().unwrap_or("").ends_with("ublk-user"))
            .unwrap_or(false)
}

pub fn del(id: Option<u32>, all: bool) -> Result<()> {
    require_root()?;
    let mut ctl = Control::open()?;
    let ids = if all {
        ctrl::list_dev_ids()
    } else {
        id.into_iter().collect()
    };
    let mut failed = 0;
    for id in ids {
        if let Err(e) = del_one(&mut ctl, id, all) {
            eprintln!("ublk-user: device {id}: {}", one_line(&e));
            failed += 1;
        }
    }
    if failed > 0 {
        bail!("{failed} device(s) could not be deleted");
    }
    Ok(())
}

fn gone(ctl: &mut Control, id: u32) -> bool {
    matches!(ctl.get_dev_info(id), Err(e) if e.errno() == Some(libc::ENODEV))
}

fn del_one(ctl: &mut Control, id: u32, all: bool) -> Result<()> {
    let info = match ctl.get_dev_info(id) {
        Ok(i) => i,
        Err(e) if e.errno() == Some(libc::ENODEV) => {
            Meta::remove(id);
            if all {
                return Ok(());
            }
            bail!("no ublk device with id {id}");
        }
        Err(e) => return Err(e.into()),
    };
    let pid =
        our_server(info.ublksrv_pid).or_else(|| Meta::read(id).and_then(|m| our_server(m.pid)));
    if let Some(pid) = pid {
        // it may have exited since: then the wait below sees it gone
        let _ = kill_process(pid, Signal::TERM);
        let t0 = Instant::now();
        while t0.elapsed() < Duration::from_secs(30) {
            if !proc_alive(pid) && gone(ctl, id) {
                Meta::remove(id);
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        // A server that does not react (stopped, stuck) keeps /dev/ublkcN
        // open, and DEL_DEV below would wait for it forever: kill it.
        eprintln!("ublk-user: device {id}: server {pid} did not stop in 30 s, killing it and deleting the device directly");
        let _ = kill_process(pid, Signal::KILL);
        let t0 = Instant::now();
        while proc_alive(pid) && t0.elapsed() < Duration::from_secs(10) {
            std::thread::sleep(Duration::from_millis(10));
        }
    }
    // No (live) server: stop and delete from here.
    ctl.stop_dev(id).context("stop")?;
    ctl.del_dev(id).context("delete")?;
    Meta::remove(id);
    Ok(())
}
