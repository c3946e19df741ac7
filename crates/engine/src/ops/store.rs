//! `store verify [--repair]`: every store entry's files hashed against its manifest, as Nix's
//! `nix store verify --check-contents` does. With `--repair`, each damaged entry is removed
//! and its node substituted or built again (`nix store verify --repair`), and the new bytes are
//! compared with what the damaged entry's manifest recorded (and with the pins).
//!
//! Which node an entry holds is found by input hash: every node of the current recipes, for
//! every architecture whose toolchain is locked, as `gc` reaches them. An entry that no node
//! of this checkout has (a recipe since changed) cannot be rebuilt: `--repair` removes it,
//! since nothing may use it as it is, and says so.

use crate::model::arch::Arch;
use crate::model::manifest::Manifest;
use crate::model::store::seal::{self, Problem};
use crate::model::store::{self, InputHashes};
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use crate::steps::toolchain::{self, PackageSet};
use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::progress;
use serde::Serialize;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;

/// What `store verify` does.
#[derive(Debug, Clone, Default)]
pub struct VerifyOptions {
    /// Remove each damaged entry and substitute or build its node again.
    pub repair: bool,
}

/// How a damaged entry was repaired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
#[serde(tag = "outcome", rename_all = "kebab-case")]
pub enum Repair {
    /// Built or substituted again, to the bytes the damaged entry's manifest recorded.
    Restored { node: String, arch: String },
    /// Built again to other bytes than the damaged manifest recorded (the manifest may have
    /// been the damaged part, or the node does not build reproducibly here).
    OtherBytes { node: String, arch: String, recorded: String, rebuilt: String },
    /// No node of the current recipes has this input hash (for the architectures whose
    /// toolchain is locked): removed, not rebuilt.
    Removed,
    /// Gone or intact by the time the store lock was held (another repair or a build).
    AlreadyReplaced,
    /// The rebuild failed (the entry is gone; the next build of the node makes it).
    Failed { node: String, arch: String, error: String },
}

/// One damaged entry.
#[derive(Debug, Clone, Serialize)]
pub struct DamagedEntry {
    /// The entry's directory name in `out/store`.
    pub entry: String,
    pub problems: Vec<Problem>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub repair: Option<Repair>,
}

/// What `store verify` found (and repaired).
#[derive(Debug, Clone, Serialize)]
pub struct VerifyReport {
    /// Entries verified.
    pub entries: usize,
    /// Files hashed, and their bytes.
    pub files: u64,
    pub bytes: u64,
    pub damaged: Vec<DamagedEntry>,
}

impl VerifyReport {
    /// Every entry verified, or repaired to the bytes it had recorded.
    pub fn ok(&self) -> bool {
        self.damaged
            .iter()
            .all(|d| matches!(d.repair, Some(Repair::Restored { .. } | Repair::AlreadyReplaced)))
    }
}

/// The entries of `out/store` (temp entries, the lock and other dot-names aside).
fn entry_names(store: &Path) -> Result<Vec<String>> {
    if !store.is_dir() {
        return Ok(Vec::new());
    }
    Ok(Dir::open(store)?
        .names()?
        .into_iter()
        .map(|n| n.to_string_lossy().into_owned())
        .filter(|n| !n.starts_with('.'))
        .collect())
}

/// One entry as verified: its problems (a manifest that cannot be read is one), the files and
/// bytes read, and its manifest when that could be read.
struct Verified {
    problems: Vec<Problem>,
    files: u64,
    bytes: u64,
    manifest: Option<Manifest>,
}

/// Verify one entry.
fn verify_entry(dir: &Path) -> Verified {
    let m = match crate::model::manifest::read(&dir.join("manifest.json")) {
        Ok(m) => m,
        Err(e) => {
            let problem = Problem { path: "manifest.json".into(), what: format!("{e:#}") };
            return Verified { problems: vec![problem], files: 0, bytes: 0, manifest: None };
        }
    };
    // Whatever stops the reading (a directory without permissions, a file gone) is damage to
    // report, not the end of the command.
    match seal::verify(dir, &m) {
        Ok(v) => {
            Verified { problems: v.problems, files: v.files, bytes: v.bytes, manifest: Some(m) }
        }
        Err(e) => {
            let problem = Problem { path: "out".into(), what: format!("{e:#}") };
            Verified { problems: vec![problem], files: 0, bytes: 0, manifest: Some(m) }
        }
    }
}

/// Whether the entry at `path` is there: gone (removed by gc or a repair meanwhile) only when
/// the name is absent; any other failure to look is an error, never taken for "gone".
fn present(path: &Path) -> Result<bool> {
    match std::fs::symlink_metadata(path) {
        Ok(_) => Ok(true),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(e).with_context(|| format!("looking at {}", path.display())),
    }
}

/// `store verify`: hash every entry's files; with `repair`, rebuild what is damaged.
pub fn verify(ctx: &mut RunContext, opts: &VerifyOptions) -> Result<VerifyReport> {
    let store_dir = ctx.project.store();
    anyhow::ensure!(
        store_dir.is_dir(),
        "{}: no store here (is --out {} the output directory you built into?)",
        store_dir.display(),
        ctx.project.out.display()
    );
    let names = entry_names(&store_dir)?;
    progress::say(&format!("verifying {} store entries in {}", names.len(), store_dir.display()));
    let mut report = VerifyReport { entries: 0, files: 0, bytes: 0, damaged: Vec::new() };
    for name in &names {
        let dir = store_dir.join(name);
        // An entry gc removed meanwhile is not damage.
        if !present(&dir)? {
            continue;
        }
        let Verified { problems, files, bytes, .. } = verify_entry(&dir);
        report.entries += 1;
        report.files += files;
        report.bytes += bytes;
        if !problems.is_empty() {
            progress::say(&format!("damaged: {name}: {}", problems[0]));
            report.damaged.push(DamagedEntry { entry: name.clone(), problems, repair: None });
        }
    }
    if opts.repair && !report.damaged.is_empty() {
        repair(ctx, &mut report.damaged)?;
    }
    Ok(report)
}

/// A node of the current recipes, by the name of the store entry that holds it.
#[derive(Debug, Clone)]
struct NodeAt {
    node: String,
    arch: Arch,
}

/// Every node of the current recipes (every architecture whose toolchain is locked, or the
/// host toolchain's own), by store entry name.
fn nodes_by_entry(ctx: &RunContext) -> Result<BTreeMap<String, NodeAt>> {
    let mut out = BTreeMap::new();
    for (arch, _, _) in Arch::VALUES {
        let mut project = ctx.project.clone();
        project.arch = arch;
        let tc_id = if project.host_toolchain {
            if !arch.is_default() {
                continue;
            }
            let lock = store::store_shared(&project.out)?;
            toolchain::ensure(&project, &ctx.fetcher, &lock)?.id
        } else {
            if toolchain::set_dir(&project, PackageSet::for_arch(arch))?.is_none() {
                continue;
            }
            match toolchain::pinned_identity(&project)? {
                Some(id) => id,
                None => continue,
            }
        };
        let graph = project.graph()?;
        let mut hashes = InputHashes::new(&graph, &project, &tc_id)?;
        for (node, l) in &graph.recipes {
            let dir = store::entry_dir(&project, node, &l.recipe.version, &hashes.get(node)?);
            let name = dir.file_name().context("entry name")?.to_string_lossy().into_owned();
            out.insert(name, NodeAt { node: node.clone(), arch });
        }
    }
    Ok(out)
}

/// Remove each damaged entry (under the store lock, so no build is using it), then build or
/// substitute its node again and compare the new output hash with the recorded one.
fn repair(ctx: &mut RunContext, damaged: &mut [DamagedEntry]) -> Result<()> {
    let nodes = nodes_by_entry(ctx)?;
    let store_dir = ctx.project.store();
    let mut recorded: BTreeMap<String, Option<Manifest>> = BTreeMap::new();
    let mut gone = BTreeSet::new();
    {
        let _lock = store::store_exclusive(&ctx.project.out)?;
        let dir = Dir::open(&store_dir)?;
        for d in damaged.iter_mut() {
            let path = store_dir.join(&d.entry);
            // Judged without the lock: judged again under it (another repair or a build may
            // have replaced it, or removed it, meanwhile).
            if !present(&path)? {
                gone.insert(d.entry.clone());
                continue;
            }
            let v = verify_entry(&path);
            if v.problems.is_empty() {
                gone.insert(d.entry.clone());
                continue;
            }
            d.problems = v.problems;
            recorded.insert(d.entry.clone(), v.manifest);
            // Renamed aside first: a temp name the next sweep removes if this is killed.
            let aside = format!(".tmp-damaged-{}-{}", d.entry, std::process::id());
            dir.rename(Path::new(&d.entry), Path::new(&aside))?;
            dir.remove_all(Path::new(&aside))?;
            progress::say(&format!("removed damaged {}", path.display()));
        }
    }
    let before = ctx.project.arch;
    for d in damaged.iter_mut() {
        if gone.contains(&d.entry) {
            d.repair = Some(Repair::AlreadyReplaced);
            continue;
        }
        let Some(at) = nodes.get(&d.entry) else {
            d.repair = Some(Repair::Removed);
            continue;
        };
        ctx.project.arch = at.arch;
        let rebuilt = (|| -> Result<Manifest> {
            let graph = ctx.graph()?;
            let opts = BuildOptions { quiet: true, ..Default::default() };
            Ok(build::build(ctx, &graph, &at.node, &opts)?.manifest)
        })();
        ctx.project.arch = before;
        let (node, arch) = (at.node.clone(), at.arch.name().to_string());
        d.repair = Some(match rebuilt {
            Err(e) => Repair::Failed { node, arch, error: format!("{e:#}") },
            Ok(m) => match recorded.get(&d.entry).cloned().flatten() {
                Some(old) if old.output_hash == m.output_hash => Repair::Restored { node, arch },
                Some(old) => Repair::OtherBytes {
                    node,
                    arch,
                    recorded: old.output_hash,
                    rebuilt: m.output_hash,
                },
                // The manifest itself was unreadable: nothing recorded to compare with.
                None => Repair::OtherBytes {
                    node,
                    arch,
                    recorded: "(unreadable)".into(),
                    rebuilt: m.output_hash,
                },
            },
        });
    }
    Ok(())
}
