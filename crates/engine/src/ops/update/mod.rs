//! `update`: which pins the configured Debian archive has moved past, and (`--write`) moving
//! them, as `nix flake update`, nix-update and Dependabot do for theirs.
//!
//! - **Sources with a Debian origin** (the kernel versions, busybox, dropbear, iproute2, the
//!   syslinux .debs): the newest version of the package in the same series (the first two
//!   numbers of the upstream version: 6.1.x stays 6.1.x, moving to 6.12 is a new
//!   `[versions]` entry) and the same release's suites: a `~bpoNN` version in that release's
//!   backports, a `+debNNuM` or `~debNNuM` one in that release and its `-security` and
//!   `-updates`, any other in the first release the project's locks use whose suites carry the
//!   package in that series at the pinned version or a newer one (`sources.rs`). A newer
//!   version with the same upstream file (a Debian revision: reprovm builds the upstream
//!   source, without Debian's patches) is reported and changes nothing; a source found
//!   nowhere, or only older, fails `--check`.
//! - A lock change that moves a package backwards (a stale or rolled-back mirror) is
//!   reported and refused by `--write` (`write.rs`).
//! - **Locks** (`pins/*.lock`): each set resolved again as `toolchain lock` would (its spec's
//!   suite, `updates` suites and backports), compared with the lock.
//!
//! Every index is read through its suite's verified InRelease (`steps::toolchain::archive`).
//! `--write` downloads every new file first (each checked against the index's sha256 and size
//! as it streams into the cache), then edits the recipes in place and writes the locks; it
//! reports the nodes whose input hashes changed and the published outputs needing new pins.

mod sources;
mod write;

use crate::mechanisms::debian;
use crate::mechanisms::debian_version as dv;
use crate::model::graph::Graph;
use crate::model::recipe::SourcePin;
use crate::ops::context::RunContext;
use crate::steps::toolchain::archive::Archive;
use crate::steps::toolchain::{self, PackageSet, ResolvedLock};
use anyhow::{bail, Context, Result};
use reprovm_fs::progress;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// What `update` does.
#[derive(Debug, Clone, Default)]
pub struct UpdateOptions {
    /// Move these forward (source nodes or package sets; empty: everything out of date).
    /// None: read only.
    pub write: Option<Vec<String>>,
    /// Verify the archive with this keyring instead of the pinned one.
    pub keyring: Option<PathBuf>,
}

/// Where a pinned source stands.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "state", rename_all = "kebab-case")]
pub enum SourceState {
    /// The newest in its series and suites.
    Current,
    /// A newer Debian revision of the same upstream file: nothing to change.
    SameFile,
    /// A newer file: what `--write` pins.
    Newer { file: String, sha256: String, size: u64, pool_path: String },
    /// The package is in none of the suites looked at, in this series.
    NotFound { why: String },
}

/// One pinned source with a Debian origin.
#[derive(Debug, Clone, Serialize)]
pub struct SourceRow {
    /// The node it belongs to (`kernel`, `kernel@6.18`, `syslinux-bios`).
    pub node: String,
    pub recipe: String,
    pub file: String,
    /// The Debian package looked up (a source package, or a binary one for a .deb).
    pub package: String,
    pub series: String,
    /// The suites looked in.
    pub suites: Vec<String>,
    pub current: String,
    pub newest: Option<String>,
    pub newest_suite: Option<String>,
    /// The newest comes from a `-security` suite.
    pub security: bool,
    #[serde(flatten)]
    pub state: SourceState,
}

/// A package whose lock entry would change.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct PackageChange {
    pub name: String,
    pub arch: String,
    /// None: a package the resolution adds.
    pub current: Option<String>,
    /// None: a package the resolution drops.
    pub new: Option<String>,
    pub suite: String,
    pub security: bool,
    /// The new version sorts below the pinned one: an archive rolled back (or replayed), which
    /// `--write` refuses.
    pub downgrade: bool,
}

/// One package set.
#[derive(Debug, Clone, Serialize)]
pub struct LockRow {
    pub set: String,
    pub lock: String,
    pub suite: String,
    pub packages: usize,
    pub changes: Vec<PackageChange>,
}

/// What `--write` did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Written {
    pub files: Vec<String>,
    /// Nodes whose input hash changed (`NODE` or `NODE (ARCH)`).
    pub nodes: Vec<String>,
    /// Published outputs (targets in the pins) whose input hash changed: build them and
    /// `cargo xtask pin outputs` them.
    pub pins: Vec<String>,
    /// Why the changed nodes could not be listed, if they could not.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
}

/// `update`'s answer.
#[derive(Debug, Clone, Serialize)]
pub struct UpdateReport {
    pub keyring: String,
    pub sources: Vec<SourceRow>,
    pub locks: Vec<LockRow>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub written: Option<Written>,
}

impl UpdateReport {
    /// Something the archive has moved past, or a pin it cannot vouch for (`update --check`
    /// fails: a source not found in its series, a lock that would move backwards).
    pub fn out_of_date(&self) -> bool {
        self.sources
            .iter()
            .any(|s| matches!(s.state, SourceState::Newer { .. } | SourceState::NotFound { .. }))
            || self.locks.iter().any(|l| !l.changes.is_empty())
    }
}

/// One pinned source and where it is.
pub(super) struct Pin {
    pub(super) node: String,
    pub(super) recipe: PathBuf,
    pub(super) version_key: Option<String>,
    pub(super) source: SourcePin,
}

/// Every source with a Debian origin, per node (a recipe and each of its `[versions]`).
fn pins_of(graph: &Graph) -> Vec<Pin> {
    let mut out = Vec::new();
    for (name, l) in graph.recipes.iter().filter(|(n, _)| crate::model::graph::is_base(n)) {
        let t = &l.template;
        let versions = std::iter::once((None, &t.sources))
            .chain(t.versions.iter().map(|(k, v)| (Some(k.clone()), &v.sources)));
        for (key, sources) in versions {
            for s in sources.iter().filter(|s| s.debian.is_some()) {
                out.push(Pin {
                    node: match &key {
                        Some(k) => format!("{name}@{k}"),
                        None => name.clone(),
                    },
                    recipe: l.path.clone(),
                    version_key: key.clone(),
                    source: s.clone(),
                });
            }
        }
    }
    out
}

/// The releases the project's locks are resolved from (`bookworm`, `trixie`), oldest first.
fn releases(ctx: &RunContext) -> Vec<String> {
    let suites: BTreeSet<String> = PackageSet::ALL
        .iter()
        .filter_map(|s| toolchain::read_lock(&ctx.project, *s).ok())
        .map(|l| l.suite)
        .collect();
    debian::RELEASES.iter().map(|(_, c)| c.to_string()).filter(|c| suites.contains(c)).collect()
}

/// The name of a package set on the command line.
pub(super) fn set_name(set: PackageSet) -> &'static str {
    PackageSet::VALUES.iter().find(|v| v.0 == set).map_or("", |v| v.1)
}

/// The changes between a lock and its resolution again.
fn lock_changes(old: &toolchain::LockFile, new: &toolchain::LockFile) -> Vec<PackageChange> {
    let key = |p: &toolchain::LockedDeb| (p.name.clone(), p.arch.clone());
    let olds: BTreeMap<_, _> = old.packages.iter().map(|p| (key(p), p)).collect();
    let news: BTreeMap<_, _> = new.packages.iter().map(|p| (key(p), p)).collect();
    let mut out = Vec::new();
    for k in olds.keys().chain(news.keys()).collect::<BTreeSet<_>>() {
        let (o, n) = (olds.get(k), news.get(k));
        if o.map(|p| (&p.version, &p.sha256)) == n.map(|p| (&p.version, &p.sha256)) {
            continue;
        }
        let suite = n.or(o).map(|p| p.suite.clone()).unwrap_or_default();
        let downgrade = match (o, n) {
            (Some(o), Some(n)) => dv::compare(&n.version, &o.version).is_lt(),
            _ => false,
        };
        out.push(PackageChange {
            name: k.0.clone(),
            arch: k.1.clone(),
            current: o.map(|p| p.version.clone()),
            new: n.map(|p| p.version.clone()),
            security: n.is_some_and(|p| p.suite.ends_with("-security")),
            downgrade,
            suite,
        });
    }
    out
}

/// `update`: the table, and with `write`, the pins moved.
pub fn update(ctx: &RunContext, opts: &UpdateOptions) -> Result<UpdateReport> {
    let project = &ctx.project;
    let graph = ctx.graph()?;
    let pins = pins_of(&graph);
    let sets: Vec<PackageSet> =
        PackageSet::ALL.into_iter().filter(|s| s.lock(project).is_file()).collect();
    // Every name is checked before anything is read from the network.
    if let Some(names) = &opts.write {
        for n in names {
            let known = pins.iter().any(|p| &p.node == n) || sets.iter().any(|s| set_name(*s) == n);
            if !known {
                let mut all: Vec<String> = pins.iter().map(|p| p.node.clone()).collect();
                all.dedup();
                all.extend(sets.iter().map(|s| set_name(*s).to_string()));
                bail!(
                    "update --write {n}: not a source node or package set (one of {})",
                    all.join(", ")
                );
            }
        }
    }
    let archive = Archive::open(project, &ctx.fetcher, opts.keyring.as_deref())?;
    progress::say(&format!("reading the archive, verified with the {}", archive.keyring.origin));
    let releases = releases(ctx);
    let mut idx = sources::Indexes { archive: &archive };
    let mut sources = Vec::new();
    for pin in &pins {
        sources.push(sources::source_row(pin, &releases, &mut idx)?);
    }
    // Each set resolved again; a layered set over its base as that is now resolved.
    let mut resolved: BTreeMap<String, ResolvedLock> = BTreeMap::new();
    let mut locks = Vec::new();
    for set in &sets {
        let base = set.base().and_then(|b| resolved.get(set_name(b))).map(|r| &r.lock);
        let r = toolchain::resolve_set_over(project, &archive, *set, base)
            .with_context(|| format!("resolving {} again", set.lock(project).display()))?;
        let old = toolchain::read_lock(project, *set)?;
        locks.push(LockRow {
            set: set_name(*set).to_string(),
            lock: reprovm_fs::util::display_rel(&r.path, &project.root),
            suite: old.suite.clone(),
            packages: old.packages.len(),
            changes: lock_changes(&old, &r.lock),
        });
        resolved.insert(set_name(*set).to_string(), r);
    }
    let mut report =
        UpdateReport { keyring: archive.keyring.origin.clone(), sources, locks, written: None };
    if let Some(names) = &opts.write {
        report.written = Some(write::write(ctx, &archive, &report, &pins, resolved, names)?);
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lock_changes_name_what_moves() {
        let deb = |name: &str, version: &str, suite: &str| toolchain::LockedDeb {
            name: name.into(),
            version: version.into(),
            arch: "amd64".into(),
            suite: suite.into(),
            filename: format!("pool/{name}_{version}.deb"),
            size: 1,
            sha256: format!("{name}{version}"),
        };
        let lock =
            |packages| toolchain::LockFile { suite: "bookworm".into(), snapshot: None, packages };
        let old = lock(vec![
            deb("bc", "1", "bookworm"),
            deb("gone", "1", "bookworm"),
            deb("same", "1", "bookworm"),
        ]);
        let new = lock(vec![
            deb("bc", "2", "bookworm-security"),
            deb("new", "1", "bookworm"),
            deb("same", "1", "bookworm"),
        ]);
        let c = lock_changes(&old, &new);
        let shown: Vec<(String, Option<String>, Option<String>, bool)> =
            c.into_iter().map(|c| (c.name, c.current, c.new, c.security)).collect();
        assert_eq!(
            shown,
            [
                ("bc".into(), Some("1".into()), Some("2".into()), true),
                ("gone".into(), Some("1".into()), None, false),
                ("new".into(), None, Some("1".into()), false),
            ]
        );
    }
}
