//! `gc`: remove what nothing reaches, under the store lock (so it waits for running builds
//! and never removes what one of them is using).
//!
//! Reached, and kept: the store entries the pins name (`pins/outputs.toml` and every other
//! architecture's `pins/outputs-ARCH.toml`), the closures of the pinned targets as the recipes
//! are now (for every architecture), and the closures of the last N `build` commands
//! (recorded in `out/builds.jsonl`); the cache files of every pinned source and of every
//! package set's lock; the current toolchain roots. Everything else in `out/store`,
//! `out/cache/sha256` and `out/toolchain` goes (`--dry-run` lists it with its size), and so do
//! the trees of audits that have exited (`dead_audit_trees`: rebuilds kept for inspection,
//! cache entries being compared, the rebuilds' work roots on tmpfs); the `TARGET-last-logs`
//! directories stay.

use crate::model::arch::Arch;
use crate::model::history;
use crate::model::pins;
use crate::model::project::Project;
use crate::model::store::{self, InputHashes};
use crate::model::store::{StoreExclusive, ENTRY_LOCKS};
use crate::steps::toolchain::{self, PackageSet};
use anyhow::{Context, Result};
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::lock;
use reprovm_fs::progress;

use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

/// What gc would remove, by kind.
#[derive(Debug, Default)]
pub(crate) struct Garbage {
    pub entries: Vec<(String, u64)>,
    pub cache_files: Vec<(String, u64)>,
    pub toolchains: Vec<(String, u64)>,
    pub audit_trees: Vec<(PathBuf, u64)>,
}

/// One thing `gc` removed (or, with a dry run, would remove).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct Removal {
    /// `store entry`, `cache file`, `toolchain`, `audit tree`.
    pub kind: &'static str,
    pub name: String,
    pub bytes: u64,
}

/// What `gc` did.
#[derive(Debug, Clone, Default, serde::Serialize)]
pub struct GcReport {
    pub dry_run: bool,
    pub removed: Vec<Removal>,
}

impl GcReport {
    /// How many of `kind` were removed.
    pub fn count(&self, kind: &str) -> usize {
        self.removed.iter().filter(|r| r.kind == kind).count()
    }

    pub fn bytes(&self) -> u64 {
        self.removed.iter().map(|r| r.bytes).sum()
    }
}

/// `gc`: remove what nothing reaches (or, with `dry_run`, only say what and how much).
pub fn gc(project: &Project, dry_run: bool, keep_last: usize) -> Result<GcReport> {
    anyhow::ensure!(
        project.out.is_dir(),
        "--out {}: no such output directory, nothing to collect",
        project.out.display()
    );
    let store = crate::model::store::store_exclusive(&project.out)?;
    // Downloads in progress hold the cache lock shared: wait for them.
    let _cache = lock::Lock::exclusive(&project.downloads.join(".lock"))?;
    let g = find(project, keep_last, &store)?;
    let mut report = GcReport { dry_run, removed: Vec::new() };
    // Named as before under out/audit; a work root on tmpfs by its whole path.
    let audit_dir = project.out.join("audit");
    let audit_trees: Vec<(String, u64)> = g
        .audit_trees
        .iter()
        .map(|(p, size)| (reprovm_fs::util::display_rel(p, &audit_dir), *size))
        .collect();
    for (kind, list, dir) in [
        ("store entry", &g.entries, Some(project.store())),
        ("cache file", &g.cache_files, Some(project.downloads.join("sha256"))),
        ("toolchain", &g.toolchains, Some(project.out.join("toolchain"))),
        ("audit tree", &audit_trees, None),
    ] {
        for (name, size) in list {
            if !dry_run {
                match &dir {
                    Some(dir) => Dir::open(dir)?.remove_all(Path::new(name))?,
                    None => remove_path(&audit_dir.join(name))?,
                }
                progress::say(&format!("removed {kind} {name}"));
            }
            report.removed.push(Removal { kind, name: name.clone(), bytes: *size });
        }
    }
    if !dry_run {
        // The locks of entries and roots that are not there (removed now, never committed, or
        // repaired): nobody holds one while gc holds the store.
        for dir in [project.store(), project.out.join("toolchain")] {
            remove_orphan_locks(&dir)?;
        }
    }
    Ok(report)
}

/// Everything unreachable. The store lock keeps builds from adding to the store meanwhile (the
/// caller also holds the download cache's lock exclusively).
pub(crate) fn find(
    project: &Project,
    keep_last: usize,
    _store: &StoreExclusive,
) -> Result<Garbage> {
    let graph = project.graph()?;
    let mut keep: BTreeSet<String> = BTreeSet::new();
    // Every architecture's pins and pinned closures (whatever `--arch` this run has).
    for (arch, _, _) in Arch::VALUES {
        let mut project = project.clone();
        project.arch = arch;
        let project = &project;
        let graph = project.graph()?;
        let pinned = pins::read_pins(project)?;
        for (target, p) in &pinned {
            keep.insert(entry_name(project, target, &p.version, &p.input_hash)?);
        }
        // An architecture whose toolchain is not locked here has no closures to keep.
        if toolchain::set_dir(project, PackageSet::for_arch(arch))?.is_none() {
            continue;
        }
        let Some(tc_id) = toolchain::pinned_identity(project)? else { continue };
        let mut hashes = InputHashes::new(&graph, project, &tc_id)?;
        for target in pinned.keys().filter(|t| graph.get(t).is_ok()) {
            for name in graph.closure(target)? {
                let l = graph.get(&name)?;
                keep.insert(entry_name(project, &name, &l.recipe.version, &hashes.get(&name)?)?);
            }
        }
    }
    for record in history::read(project)?.iter().rev().take(keep_last) {
        keep.extend(record.entries.iter().cloned());
    }
    let mut g = Garbage::default();
    for (name, size) in children(&project.store())? {
        if !keep.contains(&name) {
            g.entries.push((name, size));
        }
    }

    let mut pins_kept: BTreeSet<String> = crate::steps::sources::wants(&graph, None, project)?
        .into_iter()
        .map(|w| w.sha256)
        .collect();
    let mut toolchains_kept = BTreeSet::new();
    for set in PackageSet::ALL {
        let Ok(lockf) = toolchain::read_lock(project, set) else { continue };
        pins_kept.extend(lockf.packages.iter().map(|p| p.sha256.clone()));
        if let Some(dir) = toolchain::set_dir(project, set)? {
            toolchains_kept.insert(dir);
        }
    }
    for (name, size) in children(&project.downloads.join("sha256"))? {
        if !pins_kept.contains(&name) {
            g.cache_files.push((name, size));
        }
    }
    for (name, size) in children(&project.out.join("toolchain"))? {
        if !toolchains_kept.contains(&name) {
            g.toolchains.push((name, size));
        }
    }
    g.audit_trees = dead_audit_trees(project, true)?;
    Ok(g)
}

/// Where an audit's rebuild works: on tmpfs when it fits (`SHM_WORK_PREFIX` + `NODE-PID`),
/// else `LONG_WORK_DIR/NODE-PID` under `out/audit` (audit.rs names them; gc finds them).
pub(crate) const SHM_WORK_PREFIX: &str = "reprovm-audit-variant-build-root-";
pub(crate) const LONG_WORK_DIR: &str = "a-much-longer-variant-build-root-path";

/// The trees of audits whose process has exited, with their sizes: the cache entries an
/// audit was comparing (`out/audit/NODE-cache-PID`), the rebuilds' work roots
/// (`out/audit/LONG_WORK_DIR/NODE-PID`, and `/dev/shm/SHM_WORK_PREFIX` + `NODE-PID` of this
/// user's), and with `kept`, the rebuilds an audit kept for inspection (`out/audit/TARGET-PID`,
/// which only `gc` removes: the next audit leaves them to be read). A kill -9 leaves the
/// others; the next audit and `gc` remove them. (A process id says "exited" when no
/// `/proc/PID` exists here: an `out/` shared across PID namespaces is not supported.)
pub(crate) fn dead_audit_trees(project: &Project, kept: bool) -> Result<Vec<(PathBuf, u64)>> {
    let dead = |name: &str| {
        audit_pid(name).is_some_and(|pid| {
            pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists()
        })
    };
    let audit = project.out.join("audit");
    let is_cache = |name: &str| name.rsplit_once('-').is_some_and(|(t, _)| t.ends_with("-cache"));
    let at_top = |name: &str| dead(name) && (kept || is_cache(name));
    let mut out = Vec::new();
    for (name, size) in children_where(&audit, &at_top)? {
        out.push((audit.join(name), size));
    }
    let work = audit.join(LONG_WORK_DIR);
    for (name, size) in children_where(&work, &dead)? {
        out.push((work.join(name), size));
    }
    // tmpfs is shared with everything else on the machine: only these names, of this user.
    let shm = Path::new("/dev/shm");
    let uid = rustix::process::geteuid().as_raw();
    let ours = |n: &str| {
        n.strip_prefix(SHM_WORK_PREFIX).is_some_and(dead)
            && std::fs::symlink_metadata(shm.join(n))
                .is_ok_and(|m| std::os::unix::fs::MetadataExt::uid(&m) == uid)
    };
    if shm.is_dir() {
        for (name, size) in children_where(shm, &ours)? {
            out.push((shm.join(name), size));
        }
    }
    Ok(out)
}

/// Remove `path` (a directory tree or a file) beneath its parent's handle.
/// Remove `dir/.locks/NAME.lock` where `dir/NAME` does not exist.
fn remove_orphan_locks(dir: &Path) -> Result<()> {
    let locks = dir.join(ENTRY_LOCKS);
    if !locks.is_dir() {
        return Ok(());
    }
    let (d, l) = (Dir::open(dir)?, Dir::open(&locks)?);
    for name in l.names()? {
        let name = name.to_string_lossy().into_owned();
        let Some(entry) = name.strip_suffix(".lock") else { continue };
        if d.metadata(Path::new(entry))?.is_none() {
            l.remove_all(Path::new(&name))?;
        }
    }
    Ok(())
}

pub(crate) fn remove_path(path: &Path) -> Result<()> {
    let parent = path.parent().context("no parent")?;
    let name = path.file_name().context("no name")?;
    Ok(Dir::open(parent)?.remove_all(Path::new(name))?)
}

/// The process id in the name of an audit's rebuild tree (`TARGET-PID`); None for anything
/// else (`TARGET-last-logs`).
fn audit_pid(name: &str) -> Option<u32> {
    let (target, pid) = name.rsplit_once('-')?;
    if target.is_empty() || pid.is_empty() || !pid.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    pid.parse().ok()
}

/// The store entry directory name of a node.
fn entry_name(project: &Project, name: &str, version: &str, input_hash: &str) -> Result<String> {
    let dir = store::entry_dir(project, name, version, input_hash);
    Ok(dir.file_name().context("entry name")?.to_string_lossy().into_owned())
}

/// The entries of a directory (dot-names excluded: locks and temp entries) and their sizes.
fn children(dir: &Path) -> Result<Vec<(String, u64)>> {
    children_where(dir, &|_| true)
}

/// [`children`] whose name `keep` accepts (only those are sized).
fn children_where(dir: &Path, keep: &dyn Fn(&str) -> bool) -> Result<Vec<(String, u64)>> {
    if !dir.is_dir() {
        return Ok(Vec::new());
    }
    let d = Dir::open(dir)?;
    let mut out = Vec::new();
    for name in d.names()? {
        let name = name.to_string_lossy().into_owned();
        if name.starts_with('.') || !keep(&name) {
            continue;
        }
        let meta = d.metadata(Path::new(&name))?.context("vanished")?;
        let size = match meta.kind {
            Kind::Dir => d.open_dir(Path::new(&name))?.walk()?.iter().map(|e| e.size).sum(),
            _ => meta.size,
        };
        out.push((name, size));
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn audit_trees_are_named_by_target_and_process() {
        assert_eq!(audit_pid("hd-image-4242"), Some(4242));
        assert_eq!(audit_pid("my-kernel-7"), Some(7));
        assert_eq!(audit_pid("hd-image-last-logs"), None);
        assert_eq!(audit_pid("-42"), None);
        assert_eq!(audit_pid("iso-"), None);
        assert_eq!(audit_pid("iso-+42"), None);
        assert_eq!(audit_pid("iso-99999999999"), None);
    }
}
