//! `cargo xtask --version`: what this binary is, and what it builds with: the checkout's
//! commit (read from `.git`, no git program run) and the toolchain lock's identity.

use crate::model::project::Project;
use std::path::Path;

/// The commit `HEAD` names in `root`'s `.git` (a branch's ref, a packed ref, or a detached
/// hash), if `root` is a git checkout.
fn commit(root: &Path) -> Option<String> {
    let git = root.join(".git");
    let head = std::fs::read_to_string(git.join("HEAD")).ok()?;
    let head = head.trim();
    let Some(reference) = head.strip_prefix("ref: ") else {
        return Some(head.to_string());
    };
    if let Ok(hash) = std::fs::read_to_string(git.join(reference)) {
        return Some(hash.trim().to_string());
    }
    let packed = std::fs::read_to_string(git.join("packed-refs")).ok()?;
    packed.lines().find_map(|l| {
        let (hash, name) = l.split_once(' ')?;
        (name == reference).then(|| hash.to_string())
    })
}

/// `VERSION (commit C, toolchain T)`; an unreadable lock or a checkout without `.git` says so.
pub fn describe(project: &Project, version: &str) -> String {
    let commit = commit(&project.root)
        .map(|c| c.chars().take(12).collect::<String>())
        .unwrap_or_else(|| "unknown: not a git checkout".to_string());
    let toolchain = match crate::steps::toolchain::identity(project) {
        Ok(id) => id.chars().take(16).collect::<String>(),
        Err(e) => format!("unknown: {e:#}"),
    };
    format!("{version} (commit {commit}, toolchain {toolchain} of {})", project.root.display())
}
