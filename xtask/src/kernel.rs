//! `cargo xtask kernel`: Debian's linux-source-7.2, our patches, our config,
//! a cached bzImage.
//!
//! Cache layout (under `~/.cache/ublk-ebpf`):
//! - `dl/`: the downloaded `.deb`
//! - `src/<ver>/pristine`: the unpacked source as a git repo (one commit)
//! - `src/<ver>/<flavor>`: a worktree per flavor with its patches applied
//! - `build/<ver>/<flavor>`: the `O=` build directory (incremental)
//! - `images/<flavor>-<key>/bzImage`: finished images, keyed by a hash of
//!   base version + patches + config: a second run is instant.

pub use crate::linux::{ensure_pristine, pristine, sanitize, Kernel};
use crate::linux::{ensure_source, unpacked_version};
use crate::util::{cache_dir, cmd, lock, log_path, run_logged, run_with_progress, say, Fnv};
use anyhow::{bail, Context, Result};
use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};

#[derive(Clone, Copy, PartialEq, Eq, Debug, clap::ValueEnum)]
pub enum Flavor {
    /// Linux 7.2 with kernel-patches/ applied.
    Ublk,
    /// Linux 7.2 as released (no patches): the fallback reference.
    Vanilla,
    /// Patched, plus KASAN, lockdep and friends (kernel-patches/config.debug).
    Debug,
    /// Debian's own prebuilt kernel of the same 7.2 release (no build; a
    /// kernel without UBLK_F_BPF, ublk_drv a module): the fallback reference
    /// in CI and the kernel the kublk baseline is made on.
    Distro,
}

impl Flavor {
    pub fn name(self) -> &'static str {
        match self {
            Flavor::Ublk => "ublk",
            Flavor::Vanilla => "vanilla",
            Flavor::Debug => "debug",
            Flavor::Distro => "distro",
        }
    }
    fn patched(self) -> bool {
        matches!(self, Flavor::Ublk | Flavor::Debug)
    }
    /// Whether this flavor is a kernel without our series.
    pub fn unpatched(self) -> bool {
        !self.patched()
    }
}

/// The patch files in `kernel-patches/series` order.
pub fn series() -> Result<Vec<PathBuf>> {
    series_in(&crate::util::root().join("kernel-patches"))
}

/// The patch files listed by `dir/series`, in order (`dir` is
/// `kernel-patches/` but for the tests).
fn series_in(dir: &Path) -> Result<Vec<PathBuf>> {
    let series = dir.join("series");
    let text =
        fs::read_to_string(&series).with_context(|| format!("cannot read {}", series.display()))?;
    let mut out = Vec::new();
    for line in text.lines().map(str::trim) {
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let p = dir.join(line);
        if !p.is_file() {
            bail!("kernel-patches/series lists {line}, which does not exist");
        }
        out.push(p);
    }
    Ok(out)
}

fn config_fragments(flavor: Flavor) -> Vec<PathBuf> {
    let dir = crate::util::root().join("kernel-patches");
    let mut v = vec![dir.join("config")];
    if flavor == Flavor::Debug {
        v.push(dir.join("config.debug"));
    }
    v
}

/// Cache key of an image: base version + flavor + patches + config.
fn image_key(ver: &str, flavor: Flavor) -> Result<String> {
    let mut h = Fnv::default();
    h.add(ver.as_bytes()).add(flavor.name().as_bytes());
    if flavor.patched() {
        for p in series()? {
            h.add(p.file_name().unwrap().as_encoded_bytes());
            h.add(&fs::read(&p)?);
        }
    }
    for f in config_fragments(flavor) {
        h.add(&fs::read(&f).with_context(|| format!("cannot read {}", f.display()))?);
    }
    Ok(h.hex())
}

/// The kernel of this flavor if it is already built (the distro flavor:
/// downloaded) for the current patches and config, in the cache at `cache`.
/// A query: it builds, downloads and installs nothing, takes no lock and
/// writes nothing (`cargo xtask kernel --print-path`).
pub fn find_in(cache: &Path, flavor: Flavor) -> Result<Option<Kernel>> {
    if flavor == Flavor::Distro {
        return crate::distro::find_in(cache);
    }
    match unpacked_version(cache) {
        Some(ver) => cached(cache, ver, flavor),
        None => Ok(None),
    }
}

/// Make sure a kernel of this flavor is built; return its paths.
pub fn ensure(flavor: Flavor) -> Result<Kernel> {
    if flavor == Flavor::Distro {
        return crate::distro::ensure();
    }
    let cache = cache_dir()?;
    // Fast path, no lock: the image for exactly these inputs exists.
    if let Some(ver) = unpacked_version(&cache) {
        if let Some(k) = cached(&cache, ver, flavor)? {
            return Ok(k);
        }
    }
    let ver = {
        let _src = lock(
            &cache.join(".kernel-src.lock"),
            "the kernel source download",
        )?;
        ensure_source(&cache)?
    };
    // One build per flavor at a time; flavors have their own tree and O= dir.
    let _lock = lock(
        &cache.join(format!(".kernel-{}.lock", flavor.name())),
        &format!("the {} kernel build", flavor.name()),
    )?;
    if let Some(k) = cached(&cache, &ver, flavor)? {
        return Ok(k);
    }
    let sver = sanitize(&ver);
    let key = image_key(&ver, flavor)?;
    let (tree, build, img_dir) = paths(&cache, &ver, flavor, &key);
    let image = img_dir.join("bzImage");

    prepare_tree(&cache, &sver, flavor, &tree, &key)?;
    configure(flavor, &tree, &build)?;

    say(format!(
        "kernel: building {} bzImage (flavor {}) in {}; a cold build takes ~7 min on 2 cores",
        ver,
        flavor.name(),
        build.display()
    ));
    let jobs = std::thread::available_parallelism()
        .map(|n| n.get())
        .unwrap_or(2);
    let expected = fs::read_to_string(build.join(".xtask-steps"))
        .ok()
        .and_then(|s| s.trim().parse().ok());
    let steps = run_with_progress(
        "kernel build",
        cmd("make")
            .current_dir(&tree)
            .arg(format!("O={}", build.display()))
            .arg(format!("-j{jobs}"))
            .arg("bzImage"),
        &log_path(&format!("kernel-build-{}.log", flavor.name()))?,
        |l| {
            let l = l.trim_start();
            l.starts_with("CC ")
                || l.starts_with("LD ")
                || l.starts_with("AR ")
                || l.starts_with("AS ")
        },
        expected,
    )?;
    if expected.is_none() || steps > 200 {
        let _ = fs::write(build.join(".xtask-steps"), steps.to_string());
    }
    let release = fs::read_to_string(build.join("include/config/kernel.release"))
        .unwrap_or_default()
        .trim()
        .to_string();
    fs::create_dir_all(&img_dir)?;
    fs::copy(
        build.join("arch/x86/boot/bzImage"),
        img_dir.join("bzImage.tmp"),
    )
    .context("kernel build produced no arch/x86/boot/bzImage")?;
    fs::copy(build.join(".config"), img_dir.join("config"))?;
    fs::write(img_dir.join("release"), &release)?;
    fs::rename(img_dir.join("bzImage.tmp"), &image)?;
    say(format!("kernel: {} ready: {}", release, image.display()));
    Ok(Kernel {
        tree,
        build,
        image,
        release,
        initrd_extra: None,
    })
}

/// The warnings `make W=1` gives for these objects in a flavor's (already
/// built) tree, without line numbers so that two trees can be compared.
pub fn w1_warnings(
    flavor: Flavor,
    objects: &[String],
) -> Result<std::collections::BTreeSet<String>> {
    let k = ensure(flavor)?;
    let cache = cache_dir()?;
    let _lock = lock(
        &cache.join(format!(".kernel-{}.lock", flavor.name())),
        &format!("the {} kernel build", flavor.name()),
    )?;
    w1_compile(&k.tree, &k.build, flavor.name(), objects)
}

/// The same for the unpatched tree, without building a kernel: only
/// `make prepare` (generated headers, scripts, objtool) in an O= directory
/// of its own, configured like ours but for the options our series adds,
/// then the asked objects alone. The prepared directory is kept, keyed by
/// version + config fragment. Returns the warnings and the tree.
pub fn w1_pristine_warnings(
    objects: &[String],
) -> Result<(std::collections::BTreeSet<String>, PathBuf)> {
    let (ver, tree) = pristine()?;
    let cache = cache_dir()?;
    let _lock = lock(&cache.join(".kernel-w1.lock"), "the W=1 reference tree")?;
    let build = cache.join("build").join(sanitize(&ver)).join("w1-pristine");
    let mut h = Fnv::default();
    h.add(ver.as_bytes()).add(b"w1-prepare-1");
    for f in config_fragments(Flavor::Vanilla) {
        h.add(&fs::read(&f)?);
    }
    let stamp = build.join(".xtask-prepared");
    if fs::read_to_string(&stamp).ok().as_deref() != Some(h.hex().as_str()) {
        say("kernel: make prepare in the unpatched tree (W=1 reference, no kernel build)");
        let _ = fs::remove_file(&stamp);
        configure(Flavor::Vanilla, &tree, &build)?;
        let jobs = std::thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(2);
        run_logged(
            "make prepare (W=1 reference)",
            cmd("make")
                .current_dir(&tree)
                .arg(format!("O={}", build.display()))
                .arg(format!("-j{jobs}"))
                .arg("prepare"),
            &log_path("kernel-w1-prepare.log")?,
        )?;
        fs::write(&stamp, h.hex())?;
    }
    let w = w1_compile(&tree, &build, "unpatched", objects)?;
    Ok((w, tree))
}

fn w1_compile(
    tree: &Path,
    build: &Path,
    what: &str,
    objects: &[String],
) -> Result<std::collections::BTreeSet<String>> {
    // make only warns for what it compiles: an object left over from an
    // earlier W=1 run would be "up to date" and report nothing, so force a
    // fresh compile of every object we ask about.
    for o in objects {
        let built = build.join(o);
        if built.exists() {
            fs::remove_file(&built)
                .with_context(|| format!("removing {} for the W=1 build", built.display()))?;
        }
    }
    let out = cmd("make")
        .current_dir(tree)
        .arg(format!("O={}", build.display()))
        .arg("W=1")
        .args(objects)
        .output()?;
    let text =
        String::from_utf8_lossy(&out.stderr).to_string() + &String::from_utf8_lossy(&out.stdout);
    if !out.status.success() {
        bail!(
            "make W=1 failed on the {what} kernel: {}",
            text.lines().last().unwrap_or("")
        );
    }
    let tree = format!("{}/", tree.display());
    Ok(text
        .lines()
        .filter(|l| l.contains("warning:"))
        .map(|l| {
            let l = l.replace(&tree, "");
            // "file.c:12:5: warning: ..." -> "file.c: warning: ..."
            match l.split_once(": warning:") {
                Some((loc, msg)) => {
                    format!("{}: warning:{msg}", loc.split(':').next().unwrap_or(loc))
                }
                None => l,
            }
        })
        .collect())
}

fn paths(cache: &Path, ver: &str, flavor: Flavor, key: &str) -> (PathBuf, PathBuf, PathBuf) {
    let sver = sanitize(ver);
    (
        cache.join("src").join(&sver).join(flavor.name()),
        cache.join("build").join(&sver).join(flavor.name()),
        cache
            .join("images")
            .join(format!("{}-{key}", flavor.name())),
    )
}

/// The finished image for these exact inputs, if it was built before.
fn cached(cache: &Path, ver: &str, flavor: Flavor) -> Result<Option<Kernel>> {
    let key = image_key(ver, flavor)?;
    let (tree, build, img_dir) = paths(cache, ver, flavor, &key);
    let image = img_dir.join("bzImage");
    if !image.is_file() {
        return Ok(None);
    }
    let release = fs::read_to_string(img_dir.join("release")).unwrap_or_default();
    Ok(Some(Kernel {
        tree,
        build,
        image,
        release: release.trim().into(),
        initrd_extra: None,
    }))
}

/// The flavor's worktree with exactly its patches applied. Files a patch does
/// not touch keep their mtime, so the O= build stays incremental.
fn prepare_tree(cache: &Path, sver: &str, flavor: Flavor, tree: &Path, key: &str) -> Result<()> {
    let pristine = cache.join("src").join(sver).join("pristine");
    let stamp = tree.join(".xtask-applied");
    if fs::read_to_string(&stamp).ok().as_deref() == Some(key) {
        return Ok(());
    }
    let log = log_path(&format!("patch-{}.log", flavor.name()))?;
    let git = |dir: &Path, args: &[&str]| -> Result<()> {
        run_logged(
            &format!("git {}", args[0]),
            cmd("git").current_dir(dir).args(args),
            &log,
        )
    };
    if !tree.join(".git").exists() {
        // Worktrees share the pristine repository's metadata.
        let _src = lock(&cache.join(".kernel-src.lock"), "the kernel source")?;
        git(&pristine, &["worktree", "prune"])?;
        git(
            &pristine,
            &[
                "worktree",
                "add",
                "-f",
                "--detach",
                tree.to_str().unwrap(),
                "base",
            ],
        )?;
    }
    let _ = fs::remove_file(&stamp);
    // Build the patched tree in a scratch index, without touching the
    // working tree, then move the worktree to it: git rewrites only files
    // whose content differs, so an edited patch rebuilds only what it changes.
    let target = if flavor.patched() {
        let index = cache.join(format!("tmp/{}.index", flavor.name()));
        fs::create_dir_all(index.parent().unwrap())?;
        apply_series(tree, &index, &series()?)?
    } else {
        "base".to_string()
    };
    git(tree, &["reset", "-q", "--hard", &target])?;
    git(tree, &["clean", "-fdxq"])?;
    fs::write(&stamp, key)?;
    Ok(())
}

/// Apply `patches` in order on top of the tag `base` of the git repository
/// at `tree`, in the scratch index file `index` (neither the working tree nor
/// the repository's own index is touched); returns the id of a new commit
/// whose parent is `base`. A patch that does not apply is named in the error,
/// with git's first error line.
fn apply_series(tree: &Path, index: &Path, patches: &[PathBuf]) -> Result<String> {
    let git = |what: &str, args: &[&OsStr]| -> Result<String> {
        let out = cmd("git")
            .current_dir(tree)
            .env("GIT_INDEX_FILE", index)
            .args(["-c", "user.name=xtask", "-c", "user.email=xtask@localhost"])
            .args(args)
            .output()
            .with_context(|| format!("kernel: {what}: cannot start git"))?;
        if !out.status.success() {
            let err = String::from_utf8_lossy(&out.stderr);
            bail!(
                "kernel: {what}: {}",
                err.lines()
                    .find(|l| l.starts_with("error:"))
                    .unwrap_or(err.trim())
            );
        }
        Ok(String::from_utf8_lossy(&out.stdout).trim().to_string())
    };
    let os = OsStr::new;
    git("git read-tree", &[os("read-tree"), os("base")])?;
    for p in patches {
        let name = p.file_name().unwrap_or(p.as_os_str()).to_string_lossy();
        git(
            &format!("patch kernel-patches/{name} does not apply to linux 7.2"),
            &[
                os("apply"),
                os("--cached"),
                os("--whitespace=nowarn"),
                p.as_os_str(),
            ],
        )?;
    }
    let t = git("git write-tree", &[os("write-tree")])?;
    git(
        "git commit-tree",
        &[
            os("commit-tree"),
            os(t.as_str()),
            os("-p"),
            os("base"),
            os("-m"),
            os("kernel-patches/series"),
        ],
    )
}

fn configure(flavor: Flavor, tree: &Path, build: &Path) -> Result<()> {
    fs::create_dir_all(build)?;
    let log = log_path(&format!("kernel-config-{}.log", flavor.name()))?;
    let o = format!("O={}", build.display());
    run_logged(
        "make tinyconfig",
        cmd("make").current_dir(tree).args([&o, "tinyconfig"]),
        &log,
    )?;
    let frags = config_fragments(flavor);
    run_logged(
        "merge_config.sh",
        cmd(tree
            .join("scripts/kconfig/merge_config.sh")
            .to_str()
            .unwrap())
        .current_dir(tree)
        .args(["-m", "-O"])
        .arg(build)
        .arg(build.join(".config"))
        .args(&frags),
        &log,
    )?;
    run_logged(
        "make olddefconfig",
        cmd("make").current_dir(tree).args([&o, "olddefconfig"]),
        &log,
    )?;
    // Every requested option must have stuck.
    let cfg = fs::read_to_string(build.join(".config"))?;
    let mut bad = Vec::new();
    for frag in &frags {
        for line in fs::read_to_string(frag)?.lines().map(str::trim) {
            if line.starts_with("CONFIG_") {
                if !cfg.lines().any(|l| l == line) {
                    bad.push(line.to_string());
                }
            } else if let Some(opt) = line
                .strip_prefix("# ")
                .and_then(|l| l.strip_suffix(" is not set"))
            {
                if cfg.lines().any(|l| l.starts_with(&format!("{opt}="))) {
                    bad.push(line.to_string());
                }
            }
        }
    }
    // The unpatched kernel does not know the options our patches add.
    if !flavor.patched() {
        bad.retain(|line| {
            let opt = line
                .trim_start_matches("# ")
                .split(['=', ' '])
                .next()
                .unwrap_or("");
            kconfig_defines(tree, opt.trim_start_matches("CONFIG_"))
        });
    }
    if !bad.is_empty() {
        bail!(
            "kernel: config options did not stick (missing dependency or typo): {}",
            bad.join(", ")
        );
    }
    Ok(())
}

/// Whether any Kconfig file of the tree defines `config NAME`.
fn kconfig_defines(tree: &Path, name: &str) -> bool {
    let needle = format!("config {name}");
    let mut stack = vec![tree.to_path_buf()];
    while let Some(dir) = stack.pop() {
        let Ok(entries) = fs::read_dir(&dir) else {
            continue;
        };
        for e in entries.flatten() {
            let p = e.path();
            let fname = e.file_name();
            let fname = fname.to_string_lossy();
            if p.is_dir() && !fname.starts_with('.') {
                stack.push(p);
            } else if fname.starts_with("Kconfig")
                && fs::read_to_string(&p)
                    .map(|t| t.lines().any(|l| l.trim() == needle))
                    .unwrap_or(false)
            {
                return true;
            }
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::TempDir;
    use std::process::Command;

    fn git(dir: &Path, args: &[&str]) -> String {
        let out = Command::new("git")
            .current_dir(dir)
            .args(["-c", "user.name=t", "-c", "user.email=t@localhost"])
            .args([
                "-c",
                "commit.gpgsign=false",
                "-c",
                "init.defaultBranch=main",
            ])
            .args(args)
            .output()
            .expect("git runs");
        assert!(
            out.status.success(),
            "git {args:?}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).trim().to_string()
    }

    const BASE: &str = "one\ntwo\nthree\n";

    /// `find_in` reports the image built for the current inputs, and only
    /// for its own flavor.
    #[test]
    fn find_in_returns_the_cached_image_of_the_flavor() {
        let t = TempDir::new("find-kernel");
        let cache = t.path();
        let ver = crate::linux::VERSIONS[0];
        fs::create_dir_all(cache.join("src").join(sanitize(ver)).join("pristine/.git")).unwrap();
        assert!(find_in(cache, Flavor::Ublk).unwrap().is_none());
        let key = image_key(ver, Flavor::Ublk).unwrap();
        let (tree, build, img) = paths(cache, ver, Flavor::Ublk, &key);
        fs::create_dir_all(&img).unwrap();
        fs::write(img.join("bzImage"), "").unwrap();
        fs::write(img.join("release"), "7.2.12+\n").unwrap();
        let k = find_in(cache, Flavor::Ublk).unwrap().expect("found");
        assert_eq!(
            (k.tree, k.build, k.image, k.release.as_str()),
            (tree, build, img.join("bzImage"), "7.2.12+")
        );
        assert!(find_in(cache, Flavor::Debug).unwrap().is_none());
        assert!(find_in(cache, Flavor::Vanilla).unwrap().is_none());
    }

    /// A git repository with `a.txt` committed and tagged `base`, like the
    /// pristine kernel tree.
    fn base_repo(t: &TempDir) -> PathBuf {
        let repo = t.path().join("linux");
        fs::create_dir(&repo).unwrap();
        fs::write(repo.join("a.txt"), BASE).unwrap();
        git(&repo, &["init", "-q"]);
        git(&repo, &["add", "-A"]);
        git(&repo, &["commit", "-q", "-m", "base"]);
        git(&repo, &["tag", "base"]);
        repo
    }

    fn patch(from: &str, to: &str) -> String {
        format!(
            "diff --git a/a.txt b/a.txt\n--- a/a.txt\n+++ b/a.txt\n\
             @@ -1,3 +1,3 @@\n one\n-{from}\n+{to}\n three\n"
        )
    }

    fn write(dir: &Path, name: &str, text: impl AsRef<[u8]>) -> PathBuf {
        let p = dir.join(name);
        fs::write(&p, text).unwrap();
        p
    }

    #[test]
    fn series_applies_in_order_on_base() {
        let t = TempDir::new("series-good");
        let repo = base_repo(&t);
        let patches = [
            write(t.path(), "0001-two.patch", patch("two", "TWO")),
            write(t.path(), "0002-two-again.patch", patch("TWO", "2")),
        ];
        let commit = apply_series(&repo, &t.path().join("scratch.index"), &patches).unwrap();
        assert_eq!(
            git(&repo, &["show", &format!("{commit}:a.txt")]),
            "one\n2\nthree"
        );
        assert_eq!(
            git(&repo, &["rev-parse", &format!("{commit}^")]),
            git(&repo, &["rev-parse", "base^{commit}"])
        );
        // The working tree and the repository's own index are untouched.
        assert_eq!(fs::read_to_string(repo.join("a.txt")).unwrap(), BASE);
        assert_eq!(git(&repo, &["status", "--porcelain"]), "");
    }

    #[test]
    fn patch_that_does_not_apply_is_named_with_gits_error() {
        let t = TempDir::new("series-bad");
        let repo = base_repo(&t);
        let patches = [
            write(t.path(), "0001-two.patch", patch("two", "TWO")),
            write(t.path(), "0002-stale.patch", patch("zwei", "2")),
        ];
        let e = apply_series(&repo, &t.path().join("scratch.index"), &patches).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "kernel: patch kernel-patches/0002-stale.patch does not apply to linux 7.2: \
             error: patch failed: a.txt:1"
        );
    }

    #[test]
    fn garbage_in_the_series_is_an_error_naming_it() {
        let t = TempDir::new("series-garbage");
        let repo = base_repo(&t);
        let index = t.path().join("scratch.index");
        let text = write(t.path(), "0001-notes.patch", "this is not a patch\n");
        let e = apply_series(&repo, &index, &[text]).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "kernel: patch kernel-patches/0001-notes.patch does not apply to linux 7.2: \
             error: No valid patches in input (allow with \"--allow-empty\")"
        );
        let binary = write(t.path(), "0001-binary.patch", [0u8, 0xff, 0x13, 0x37, 0]);
        let e = apply_series(&repo, &index, &[binary]).unwrap_err();
        assert!(
            format!("{e:#}").starts_with(
                "kernel: patch kernel-patches/0001-binary.patch does not apply to linux 7.2: error:"
            ),
            "{e:#}"
        );
        let full = patch("two", "TWO");
        let truncated = write(t.path(), "0001-cut.patch", &full[..full.len() - 8]);
        let e = apply_series(&repo, &index, &[truncated]).unwrap_err();
        assert!(
            format!("{e:#}").starts_with(
                "kernel: patch kernel-patches/0001-cut.patch does not apply to linux 7.2: error:"
            ),
            "{e:#}"
        );
    }

    #[test]
    fn series_file_lists_patches_in_order() {
        let t = TempDir::new("series-list");
        let dir = t.path();
        write(dir, "0001-a.patch", "");
        write(dir, "0002-b.patch", "");
        write(dir, "series", "# ours\n\n0002-b.patch\n  0001-a.patch  \n");
        assert_eq!(
            series_in(dir).unwrap(),
            [dir.join("0002-b.patch"), dir.join("0001-a.patch")]
        );
    }

    #[test]
    fn series_listing_a_missing_patch_says_so() {
        let t = TempDir::new("series-missing");
        let dir = t.path();
        write(dir, "0001-a.patch", "");
        write(dir, "series", "0001-a.patch\n0002-gone.patch\n");
        let e = series_in(dir).unwrap_err();
        assert_eq!(
            format!("{e:#}"),
            "kernel-patches/series lists 0002-gone.patch, which does not exist"
        );
        fs::remove_file(dir.join("series")).unwrap();
        let e = series_in(dir).unwrap_err();
        assert!(
            format!("{e:#}").starts_with(&format!("cannot read {}", dir.join("series").display())),
            "{e:#}"
        );
    }
}
