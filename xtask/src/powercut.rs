//! `cargo xtask test`'s `powercut` step: data a bpf-kernel ublk device
//! acknowledged as durable (written, then fsynced; or written with FUA)
//! survives a power cut of the VM.
//!
//! The VM gets an extra virtio disk, a raw image on the host. The guest
//! phase (`tests/vm/powercut-guest.sh`) makes an ext4 on it with a backing
//! file, serves the file with `ublk-user add loop --mode bpf-kernel
//! --buffered` (the file's data sits in the guest's page cache until it is
//! synced), writes one set of blocks and fsyncs the device, writes a second
//! set with O_DSYNC (FUA), and prints `POWERCUT-FUA-DONE`. The host SIGKILLs
//! QEMU on that line: no sync, no shutdown. Then, on the host: e2fsck of a
//! copy of the image (replays the journal), debugfs dumps the backing file,
//! and every block of both sets must hold its pattern (the blocks written by
//! nobody: zeroes).

use crate::kernel::Flavor;
use crate::util::{cache_dir, log_path, say, which_in};
use crate::vm::{self, Drive, Extras, VmOpts};
use anyhow::{bail, Context, Result};
use std::fs;
use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

/// The step's name in `cargo xtask test` (its summary, `--filter`).
pub const NAME: &str = "powercut";
/// What the step costs, its own boot included (the VM tests' `# cost:`,
/// for the budget): 21-25 s measured warm under TCG, 2 cores.
pub const COST_SECS: u64 = 25;
/// The VM is killed (and the step fails) if the marker has not come by then.
const TIMEOUT_SECS: u64 = 300;
/// The guest's last line before the power cut.
const MARKER: &str = "POWERCUT-FUA-DONE";
/// The guest's line after the fsync of the first set.
const FSYNCED: &str = "POWERCUT-FSYNCED";
const GUEST_SCRIPT: &str = "tests/vm/powercut-guest.sh";

const BLOCK: usize = 4096;
/// A block is a unit of `UNIT` bytes repeated (fio's `buffer_pattern`, which
/// writes the FUA set, takes at most 512 bytes), a unit `UNIT / LINE` lines.
const UNIT: usize = 512;
const LINE: usize = 64;
const BACKING_MB: u64 = 16;
const BACKING_BLOCKS: u64 = BACKING_MB * 1024 * 1024 / BLOCK as u64;
/// Blocks in each set.
const PER_SET: usize = 48;
/// The extra disk (ext4 with the backing file and a journal).
const DISK_MB: u64 = 64;
/// The backing file's path in the ext4.
const BACKING_PATH: &str = "/backing";

/// How the guest made a set durable.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Set {
    /// O_DIRECT writes, then an fsync of the device (FLUSH).
    Fsync,
    /// O_DIRECT | O_DSYNC writes (FUA), nothing after.
    Fua,
}

impl Set {
    fn name(self) -> &'static str {
        match self {
            Set::Fsync => "fsync",
            Set::Fua => "fua",
        }
    }
}

/// Which blocks (of the backing file) each set writes, from the seed.
#[derive(Debug, PartialEq, Eq)]
pub struct Plan {
    pub seed: u32,
    pub fsync: Vec<u64>,
    pub fua: Vec<u64>,
}

/// splitmix64: a small deterministic generator (any seed, 0 included).
fn splitmix(state: &mut u64) -> u64 {
    *state = state.wrapping_add(0x9e37_79b9_7f4a_7c15);
    let mut z = *state;
    z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
    z ^ (z >> 31)
}

/// `PER_SET` distinct blocks per set out of `blocks`, the sets disjoint,
/// each sorted. The first and last block of the file are always in a set
/// (the edges).
pub fn plan(seed: u32, blocks: u64) -> Plan {
    assert!(blocks >= 2 * PER_SET as u64);
    let mut state = u64::from(seed);
    let mut picked = vec![0, blocks - 1];
    while picked.len() < 2 * PER_SET {
        let b = splitmix(&mut state) % blocks;
        if !picked.contains(&b) {
            picked.push(b);
        }
    }
    // Edges: block 0 to the fsync set, the last to the FUA set.
    let mut fsync: Vec<u64> = picked.iter().step_by(2).copied().collect();
    let mut fua: Vec<u64> = picked.iter().skip(1).step_by(2).copied().collect();
    fsync.sort_unstable();
    fua.sort_unstable();
    Plan { seed, fsync, fua }
}

/// The 512-byte unit of `block` in `set`: 8 lines of 64 bytes naming the
/// seed, the set, the block and the line (the guest's `pattern` prints the
/// same).
fn unit(seed: u32, set: Set, block: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(UNIT);
    for i in 0..UNIT / LINE {
        let line = format!(
            "powercut seed={seed:08x} set={:<5} block={block:08} line={i:02}........\n",
            set.name()
        );
        debug_assert_eq!(line.len(), LINE);
        out.extend_from_slice(line.as_bytes());
    }
    out
}

/// The bytes of `block` in `set`: its unit, repeated to a block.
pub fn block_pattern(seed: u32, set: Set, block: u64) -> Vec<u8> {
    unit(seed, set, block).repeat(BLOCK / UNIT)
}

/// What a block that is not as expected holds, for the failure message.
fn describe(data: &[u8]) -> String {
    if data.iter().all(|&b| b == 0) {
        return "zeroes".into();
    }
    let first = &data[..data.len().min(LINE)];
    let text: String = String::from_utf8_lossy(first)
        .chars()
        .map(|c| {
            if c.is_ascii_graphic() || c == ' ' {
                c
            } else {
                '.'
            }
        })
        .collect();
    format!("other data ({:?}...)", text.trim_end_matches('.'))
}

/// Check the dumped backing file against the plan: every block of each set
/// holds its pattern, every other block zeroes. `Err` lists the blocks that
/// do not, per set.
pub fn check(plan: &Plan, data: &[u8]) -> std::result::Result<(), String> {
    let want_len = BACKING_BLOCKS as usize * BLOCK;
    if data.len() != want_len {
        return Err(format!(
            "the backing file has {} bytes, not {want_len}",
            data.len()
        ));
    }
    let block = |b: u64| &data[b as usize * BLOCK..(b as usize + 1) * BLOCK];
    let mut problems = Vec::new();
    for (set, blocks) in [(Set::Fsync, &plan.fsync), (Set::Fua, &plan.fua)] {
        let mut bad: Vec<String> = Vec::new();
        let mut first_what = String::new();
        for &b in blocks {
            let got = block(b);
            if got != block_pattern(plan.seed, set, b).as_slice() {
                if bad.is_empty() {
                    first_what = format!("block {b} holds {}", describe(got));
                }
                bad.push(b.to_string());
            }
        }
        if !bad.is_empty() {
            problems.push(format!(
                "{} set: {} of {} blocks lost: {} ({first_what})",
                set.name(),
                bad.len(),
                blocks.len(),
                bad.join(" ")
            ));
        }
    }
    let stray: Vec<String> = (0..BACKING_BLOCKS)
        .filter(|b| !plan.fsync.contains(b) && !plan.fua.contains(b))
        .filter(|&b| block(b).iter().any(|&x| x != 0))
        .map(|b| b.to_string())
        .collect();
    if !stray.is_empty() {
        problems.push(format!(
            "blocks no one wrote are not zeroes: {}",
            stray.join(" ")
        ));
    }
    if problems.is_empty() {
        Ok(())
    } else {
        Err(problems.join("; "))
    }
}

/// The guest command: the plan in the environment, then the guest phase.
fn guest_command(plan: &Plan, disk_sectors: u64) -> String {
    let list = |v: &[u64]| v.iter().map(u64::to_string).collect::<Vec<_>>().join(" ");
    format!(
        "export POWERCUT_SEED={:08x} POWERCUT_BACKING_MB={BACKING_MB} POWERCUT_DISK_SECTORS={disk_sectors}\n\
         export POWERCUT_FSYNC='{}'\n\
         export POWERCUT_FUA='{}'\n\
         exec sh {GUEST_SCRIPT}\n",
        plan.seed,
        list(&plan.fsync),
        list(&plan.fua)
    )
}

/// The verdict of the step: `PASS`, `FAIL` or `SKIP`, and why (not PASS).
pub struct Outcome {
    pub verdict: &'static str,
    pub secs: u64,
    pub why: String,
}

/// Run the step on `flavor`'s kernel (the patched one: it skips, saying so,
/// on a kernel without UBLK_F_BPF_KERNEL_IO).
pub fn run(opts: &VmOpts, flavor: Flavor, timeout_scale: u32) -> Outcome {
    let t0 = Instant::now();
    let (verdict, why) = match run_inner(opts, flavor, timeout_scale) {
        Ok(None) => ("PASS", String::new()),
        Ok(Some(skip)) => ("SKIP", skip),
        Err(e) => ("FAIL", format!("{e:#}")),
    };
    Outcome {
        verdict,
        secs: t0.elapsed().as_secs(),
        why,
    }
}

/// QEMU's cache mode for the image: `none` (O_DIRECT on the host) where
/// the host's filesystem takes O_DIRECT, else `writethrough`. Either way a
/// write the guest saw complete is in the host's file when QEMU dies.
fn cache_mode(img: &Path) -> &'static str {
    use std::os::unix::fs::OpenOptionsExt;
    let direct = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_DIRECT)
        .open(img);
    if direct.is_ok() {
        "none"
    } else {
        "writethrough"
    }
}

/// A host tool from e2fsprogs (in /sbin, which a user's PATH may lack).
fn e2tool(name: &str) -> Result<PathBuf> {
    let path = format!(
        "{}:/usr/sbin:/sbin",
        std::env::var("PATH").unwrap_or_default()
    );
    which_in(name, Some(path.as_ref()))
        .with_context(|| format!("{name} is not installed (e2fsprogs): run `cargo xtask setup`"))
}

/// Remove the entries of `dir` older than `age`.
fn prune(dir: &Path, age: Duration) {
    for e in fs::read_dir(dir).into_iter().flatten().flatten() {
        let old = e
            .metadata()
            .and_then(|m| m.modified())
            .is_ok_and(|t| t.elapsed().unwrap_or_default() > age);
        if old {
            let _ = fs::remove_dir_all(e.path());
        }
    }
}

/// `Ok(Some(why))`: skipped.
fn run_inner(opts: &VmOpts, flavor: Flavor, timeout_scale: u32) -> Result<Option<String>> {
    let (e2fsck, debugfs) = (e2tool("e2fsck")?, e2tool("debugfs")?);
    // A failed run keeps its images for a look; a day later they go.
    let all = cache_dir()?.join("powercut");
    prune(&all, Duration::from_secs(86400));
    let work = all.join(std::process::id().to_string());
    let _ = fs::remove_dir_all(&work);
    fs::create_dir_all(&work)?;
    let img = work.join("disk.img");
    fs::File::create(&img)?.set_len(DISK_MB << 20)?;
    let seed = match std::env::var("POWERCUT_SEED") {
        Ok(s) => u32::from_str_radix(s.trim_start_matches("0x"), 16)
            .context("POWERCUT_SEED is not a hex number")?,
        Err(_) => std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos() ^ d.as_secs() as u32)
            .unwrap_or(1),
    };
    let plan = plan(seed, BACKING_BLOCKS);
    let cache = cache_mode(&img);
    say(format!(
        "test: {NAME}: seed {seed:08x}, {} + {} blocks, disk {} (cache={cache})",
        plan.fsync.len(),
        plan.fua.len(),
        img.display()
    ));
    let o = VmOpts {
        flavor,
        timeout: opts.timeout.min(Duration::from_secs(TIMEOUT_SECS)) * timeout_scale,
        ..opts.clone()
    };
    let extras = Extras {
        drives: vec![Drive {
            path: img.clone(),
            cache: cache.into(),
        }],
        kill_on: Some(MARKER.into()),
    };
    let r = vm::run_script_with(&o, &guest_command(&plan, (DISK_MB << 20) / 512), &extras)
        .context("the guest phase")?;
    let output = fs::read_to_string(r.dir.join("output.log")).unwrap_or_default();
    if !r.killed_on_marker {
        if r.status == 77 {
            let why = output
                .lines()
                .find_map(|l| l.split_once("SKIP: ").map(|(_, w)| w.trim().to_string()))
                .unwrap_or_else(|| "the guest phase skipped".into());
            return Ok(Some(why));
        }
        bail!(
            "the guest phase exited {} before {MARKER} (output: {})",
            r.status,
            r.dir.join("output.log").display()
        );
    }
    if !output.lines().any(|l| l.starts_with(FSYNCED)) {
        bail!("{MARKER} came without {FSYNCED} before it");
    }
    say(format!(
        "test: {NAME}: VM killed at {MARKER}; checking the image"
    ));
    // A copy: the image as the power cut left it stays for a look.
    let copy = work.join("fsck.img");
    fs::copy(&img, &copy)?;
    let log = log_path("powercut-e2fsck.log")?;
    let out = Command::new(&e2fsck)
        .arg("-fy")
        .arg(&copy)
        .output()
        .context("cannot run e2fsck")?;
    fs::write(
        &log,
        [out.stdout.as_slice(), out.stderr.as_slice()].concat(),
    )?;
    // 0: clean, 1: fixed (the journal replay counts), 2: fixed, reboot.
    match out.status.code() {
        Some(0..=2) => {}
        _ => bail!(
            "e2fsck -fy of the image: {} (log: {})",
            out.status,
            log.display()
        ),
    }
    let dump = work.join("backing");
    let out = Command::new(&debugfs)
        .arg("-R")
        .arg(format!("dump {BACKING_PATH} {}", dump.display()))
        .arg(&copy)
        .output()
        .context("cannot run debugfs")?;
    let data = fs::read(&dump).with_context(|| {
        format!(
            "debugfs dumped no {BACKING_PATH}: {}",
            String::from_utf8_lossy(&out.stderr).trim()
        )
    })?;
    if let Err(e) = check(&plan, &data) {
        bail!(
            "after the power cut (seed {seed:08x}; image: {}): {e}",
            img.display()
        );
    }
    say(format!(
        "test: {NAME}: all {} fsynced and {} FUA blocks survived the power cut",
        plan.fsync.len(),
        plan.fua.len()
    ));
    let _ = fs::remove_dir_all(&work);
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::root;

    #[test]
    fn plan_is_deterministic_disjoint_and_in_range() {
        for seed in [0, 1, 0xdead_beef, u32::MAX] {
            let p = plan(seed, BACKING_BLOCKS);
            assert_eq!(p, plan(seed, BACKING_BLOCKS));
            assert_eq!(p.fsync.len(), PER_SET);
            assert_eq!(p.fua.len(), PER_SET);
            assert!(p.fsync.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.fua.windows(2).all(|w| w[0] < w[1]), "{p:?}");
            assert!(p.fsync.iter().all(|b| !p.fua.contains(b)), "{p:?}");
            assert!(p.fsync.iter().chain(&p.fua).all(|&b| b < BACKING_BLOCKS));
            assert_eq!(p.fsync[0], 0);
            assert_eq!(*p.fua.last().unwrap(), BACKING_BLOCKS - 1);
        }
        assert_ne!(plan(1, BACKING_BLOCKS).fsync, plan(2, BACKING_BLOCKS).fsync);
    }

    #[test]
    fn pattern_names_seed_set_block_and_line() {
        let p = block_pattern(0xab, Set::Fua, 4095);
        assert_eq!(p.len(), BLOCK);
        let text = String::from_utf8(p).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), BLOCK / LINE);
        assert_eq!(
            lines[0],
            "powercut seed=000000ab set=fua   block=00004095 line=00........"
        );
        assert_eq!(
            lines[7],
            "powercut seed=000000ab set=fua   block=00004095 line=07........"
        );
        // The 512-byte unit, 8 times.
        assert!(lines.chunks(8).all(|c| c == &lines[..8]));
        assert_ne!(
            block_pattern(1, Set::Fsync, 7),
            block_pattern(1, Set::Fua, 7)
        );
        assert_ne!(
            block_pattern(1, Set::Fsync, 7),
            block_pattern(2, Set::Fsync, 7)
        );
    }

    /// The guest's `pattern` (bash printf) makes the units `block_pattern`
    /// repeats.
    #[test]
    fn guest_pattern_matches_host_pattern() {
        let script = fs::read_to_string(root().join(GUEST_SCRIPT)).unwrap();
        let start = script.find("pattern() {").expect("pattern() in the script");
        let end = start + script[start..].find("\n}\n").expect("end of pattern()") + 3;
        let func = &script[start..end];
        for (set, block) in [(Set::Fua, 0), (Set::Fsync, 17), (Set::Fua, 4095)] {
            let out = Command::new("bash")
                .args(["-c", &format!("{func}pattern {} {block}", set.name())])
                .env("POWERCUT_SEED", "00c0ffee")
                .output()
                .unwrap();
            assert!(out.status.success(), "{out:?}");
            assert!(
                out.stdout.repeat(BLOCK / UNIT) == block_pattern(0xc0ffee, set, block),
                "the guest's pattern of {set:?} block {block} differs"
            );
        }
    }

    fn image(p: &Plan) -> Vec<u8> {
        let mut data = vec![0u8; BACKING_BLOCKS as usize * BLOCK];
        for (set, blocks) in [(Set::Fsync, &p.fsync), (Set::Fua, &p.fua)] {
            for &b in blocks {
                let at = b as usize * BLOCK;
                data[at..at + BLOCK].copy_from_slice(&block_pattern(p.seed, set, b));
            }
        }
        data
    }

    #[test]
    fn check_passes_the_whole_plan() {
        let p = plan(42, BACKING_BLOCKS);
        assert_eq!(check(&p, &image(&p)), Ok(()));
    }

    #[test]
    fn check_names_lost_and_wrong_blocks() {
        let p = plan(42, BACKING_BLOCKS);
        let mut data = image(&p);
        // Two fsynced blocks lost (zeroes), one FUA block from another seed.
        let (a, b, c) = (p.fsync[0], p.fsync[5], p.fua[3]);
        for blk in [a, b] {
            data[blk as usize * BLOCK..(blk as usize + 1) * BLOCK].fill(0);
        }
        data[c as usize * BLOCK..(c as usize + 1) * BLOCK].copy_from_slice(&block_pattern(
            43,
            Set::Fua,
            c,
        ));
        let e = check(&p, &data).unwrap_err();
        assert_eq!(
            e,
            format!(
                "fsync set: 2 of {PER_SET} blocks lost: {a} {b} (block {a} holds zeroes); \
                 fua set: 1 of {PER_SET} blocks lost: {c} (block {c} holds other data \
                 (\"powercut seed=0000002b set=fua   block={c:08} line=00\"...))"
            )
        );
    }

    #[test]
    fn check_flags_stray_writes_and_a_short_file() {
        let p = plan(7, BACKING_BLOCKS);
        let mut data = image(&p);
        let stray = (0..BACKING_BLOCKS)
            .find(|b| !p.fsync.contains(b) && !p.fua.contains(b))
            .unwrap();
        data[stray as usize * BLOCK + 100] = 1;
        assert_eq!(
            check(&p, &data).unwrap_err(),
            format!("blocks no one wrote are not zeroes: {stray}")
        );
        data.truncate(BLOCK);
        assert_eq!(
            check(&p, &data).unwrap_err(),
            format!(
                "the backing file has {BLOCK} bytes, not {}",
                BACKING_BLOCKS as usize * BLOCK
            )
        );
    }

    #[test]
    fn guest_command_exports_the_plan() {
        let p = Plan {
            seed: 0x1f,
            fsync: vec![0, 9],
            fua: vec![4095],
        };
        assert_eq!(
            guest_command(&p, 131072),
            "export POWERCUT_SEED=0000001f POWERCUT_BACKING_MB=16 POWERCUT_DISK_SECTORS=131072\n\
             export POWERCUT_FSYNC='0 9'\n\
             export POWERCUT_FUA='4095'\n\
             exec sh tests/vm/powercut-guest.sh\n"
        );
    }
}
