//! The library as a new user meets it (`cargo xtask test`, step
//! "library consumer"): a crate outside the workspace whose `Cargo.toml`
//! is the dependency line of `ublk-user/README.md` (its path pointed at this
//! checkout) and whose `main.rs` is that README's example, as written.
//! It must build, and its dependency tree must hold none of what only the
//! CLI or the BPF feature needs.

use crate::util::{cmd, log_path, root, run_logged};
use anyhow::{bail, Context, Result};
use std::path::Path;

/// Crates a library user must not compile: the CLI's (argument parsing,
/// error reporting, JSON) and the opt-in BPF feature's.
pub const FORBIDDEN: &[&str] = &[
    "clap",
    "anyhow",
    "serde",
    "serde_json",
    "aya",
    "aya-obj",
    "aya-log",
    "ublk-ebpf-build",
];

/// The first fenced block of `lang` in a Markdown text (the fence's info
/// string starts with `lang`), without its fences.
pub fn fenced_block<'a>(md: &'a str, lang: &str) -> Option<&'a str> {
    let mut rest = md;
    loop {
        let i = rest.find("```")?;
        let after = &rest[i + 3..];
        let nl = after.find('\n')?;
        let info = after[..nl].trim();
        let body = &after[nl + 1..];
        let end = body.find("\n```")?;
        if info.starts_with(lang) {
            return Some(&body[..end + 1]);
        }
        rest = &body[end + 4..];
    }
}

/// The README's `[dependencies]` block with the path of `ublk-user`
/// replaced by `lib` (the README's path is relative to a checkout beside
/// the user's crate).
pub fn manifest(readme: &str, lib: &Path) -> Result<String> {
    let deps = fenced_block(readme, "toml").context("ublk-user/README.md has no ```toml block")?;
    let mut out = String::from(
        "[package]\nname = \"ublk-user-consumer\"\nversion = \"0.0.0\"\nedition = \"2021\"\npublish = false\n\n# not part of the ublk-ebpf workspace\n[workspace]\n\n",
    );
    let mut found = false;
    for line in deps.lines() {
        if let Some(rest) = line.trim_start().strip_prefix("ublk-user") {
            if !rest.contains("path = \"") {
                bail!("README: the ublk-user line has no `path = \"...\"`: {line}");
            }
            out.push_str(&format!(
                "ublk-user = {{ path = {:?} }}\n",
                lib.display().to_string()
            ));
            found = true;
        } else {
            out.push_str(line);
            out.push('\n');
        }
    }
    if !found {
        bail!("README: no ublk-user dependency line in the ```toml block");
    }
    Ok(out)
}

/// Names of the crates in `cargo tree --prefix none --format {p}` output
/// ("name vX.Y.Z (path)" per line).
pub fn tree_names(tree: &str) -> Vec<&str> {
    tree.lines()
        .filter_map(|l| l.split_whitespace().next())
        .collect()
}

pub fn check() -> Result<()> {
    let root = root();
    let readme = std::fs::read_to_string(root.join("ublk-user/README.md"))?;
    let dir = root.join("target/consumer");
    std::fs::create_dir_all(dir.join("src"))?;
    std::fs::write(
        dir.join("Cargo.toml"),
        manifest(&readme, &root.join("ublk-user"))?,
    )?;
    let example =
        fenced_block(&readme, "rust").context("ublk-user/README.md has no ```rust block")?;
    std::fs::write(dir.join("src/main.rs"), example)?;
    // the workspace's versions, so that the check needs no registry access
    std::fs::copy(root.join("Cargo.lock"), dir.join("Cargo.lock"))?;
    let manifest_path = dir.join("Cargo.toml");
    let tree_out = dir.join("tree.txt");
    let mut tree = cmd("cargo");
    tree.args([
        "tree",
        "--offline",
        "--edges",
        "normal,build",
        "--prefix",
        "none",
    ])
    .args(["--format", "{p}", "--manifest-path"])
    .arg(&manifest_path);
    run_logged("cargo tree (library consumer)", &mut tree, &tree_out)?;
    let text = std::fs::read_to_string(&tree_out)?;
    let names = tree_names(&text);
    if !names.contains(&"ublk-user") {
        bail!(
            "cargo tree of the consumer does not list ublk-user: see {}",
            tree_out.display()
        );
    }
    let bad: Vec<&str> = FORBIDDEN
        .iter()
        .copied()
        .filter(|f| names.contains(f))
        .collect();
    if !bad.is_empty() {
        bail!(
            "a crate that depends on ublk-user compiles {bad:?} (CLI or BPF-only dependencies): see {}",
            tree_out.display()
        );
    }
    let mut build = cmd("cargo");
    build
        .args(["build", "--offline", "--manifest-path"])
        .arg(&manifest_path)
        .env("CARGO_TARGET_DIR", root.join("target/consumer-target"));
    run_logged(
        "cargo build (ublk-user/README.md's example, as a new crate)",
        &mut build,
        &log_path("test-library-consumer-build.log")?,
    )?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blocks_and_manifest_come_from_the_readme() {
        let md = "x\n```sh\nls\n```\n```toml\n[dependencies]\nublk-user = { path = \"a/b\" }  # c\n```\n```rust,no_run\nfn main() {}\n```\n";
        assert_eq!(fenced_block(md, "rust"), Some("fn main() {}\n"));
        assert_eq!(fenced_block(md, "sh"), Some("ls\n"));
        assert_eq!(fenced_block(md, "python"), None);
        let m = manifest(md, Path::new("/w/ublk-user")).unwrap();
        assert!(
            m.contains("[dependencies]\nublk-user = { path = \"/w/ublk-user\" }\n"),
            "{m}"
        );
        assert!(m.contains("[workspace]"));
        assert!(manifest(
            "```toml\n[dependencies]\nfoo = \"1\"\n```\n",
            Path::new("/x")
        )
        .is_err());
    }

    #[test]
    fn tree_lines_give_crate_names() {
        let t = "ublk-user-consumer v0.0.0 (/t)\nublk-user v0.1.0 (/w)\nclap v4.6.9\n";
        let n = tree_names(t);
        assert_eq!(n, ["ublk-user-consumer", "ublk-user", "clap"]);
        assert!(FORBIDDEN.iter().any(|f| n.contains(f)));
    }

    /// The README as committed parses (the VM-free half of the check).
    #[test]
    fn committed_readme_has_both_blocks() {
        let readme = std::fs::read_to_string(root().join("ublk-user/README.md")).unwrap();
        assert!(fenced_block(&readme, "rust").unwrap().contains("fn main()"));
        manifest(&readme, Path::new("/x")).unwrap();
    }
}
