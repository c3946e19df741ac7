//! `update --write`: every new file downloaded (checked against its index), then the recipes
//! edited and read back and the locks resolved, all staged and renamed at once; then what
//! changed for the graph.

use super::{set_name, Pin, SourceState, UpdateReport, Written};
use crate::mechanisms::debian;
use crate::mechanisms::debian_version as dv;
use crate::mechanisms::fetch::Want;
use crate::model::arch::Arch;
use crate::model::pins;
use crate::model::recipe::edit::{self, SourceEdit};
use crate::model::store::InputHashes;
use crate::ops::context::RunContext;
use crate::steps::toolchain::archive::Archive;
use crate::steps::toolchain::{self, PackageSet, ResolvedLock};
use anyhow::{Context, Result};
use std::collections::{BTreeMap, BTreeSet};
use std::path::PathBuf;

/// Every node's input hash, per architecture whose toolchain is locked (`NODE` for x86_64,
/// `NODE (ARCH)` otherwise), and the published targets among them.
fn input_hashes(ctx: &RunContext) -> Result<(BTreeMap<String, String>, BTreeSet<String>)> {
    let mut hashes = BTreeMap::new();
    let mut published = BTreeSet::new();
    for (arch, _, _) in Arch::VALUES {
        let mut project = ctx.project.clone();
        project.arch = arch;
        if project.host_toolchain
            || toolchain::set_dir(&project, PackageSet::for_arch(arch))?.is_none()
        {
            continue;
        }
        let Some(tc) = toolchain::pinned_identity(&project)? else { continue };
        let graph = project.graph()?;
        let mut h = InputHashes::new(&graph, &project, &tc)?;
        let label = |n: &str| {
            if arch.is_default() {
                n.to_string()
            } else {
                format!("{n} ({arch})")
            }
        };
        for node in graph.recipes.keys() {
            hashes.insert(label(node), h.get(node)?);
        }
        for target in pins::read_pins(&project)?.keys() {
            published.insert(label(target));
        }
    }
    Ok((hashes, published))
}

/// `--write`: download what moves, then edit the recipes and write the locks.
pub(super) fn write(
    ctx: &RunContext,
    archive: &Archive,
    report: &UpdateReport,
    pins: &[Pin],
    resolved: BTreeMap<String, ResolvedLock>,
    names: &[String],
) -> Result<Written> {
    let project = &ctx.project;
    let chosen = |n: &str| names.is_empty() || names.iter().any(|x| x == n);
    let (before, published) = input_hashes(ctx)?;
    // 1. Every new file into the cache, checked against the index as it streams.
    let mut edits: BTreeMap<PathBuf, Vec<SourceEdit>> = BTreeMap::new();
    for (row, pin) in report.sources.iter().zip(pins) {
        let SourceState::Newer { file, sha256, size, pool_path } = &row.state else { continue };
        if !chosen(&row.node) {
            continue;
        }
        let d = pin.source.debian.as_ref().context("a Debian origin")?;
        let (old_up, new_up) = (
            dv::parse(&d.version).upstream.to_string(),
            dv::parse(row.newest.as_deref().unwrap_or_default()).upstream.to_string(),
        );
        // The recipe's own file name follows the upstream version when it names it.
        let recipe_file = if file.ends_with(".deb") || !pin.source.file.contains(&old_up) {
            file.clone()
        } else {
            pin.source.file.replace(&old_up, &new_up)
        };
        let mut urls: Vec<String> =
            project.debian_mirrors.iter().map(|m| format!("{m}/{pool_path}")).collect();
        urls.extend(pin.source.urls.iter().map(|u| u.replace(&old_up, &new_up)));
        let want = Want {
            file: recipe_file.clone(),
            sha256: sha256.clone(),
            size: *size,
            urls,
            aliases: vec![file.clone()],
        };
        ctx.fetcher.fetch(&want).with_context(|| {
            format!("{}: downloading {file} as the index lists it (nothing written)", row.node)
        })?;
        edits.entry(pin.recipe.clone()).or_default().push(SourceEdit {
            version_key: pin.version_key.clone(),
            old_file: pin.source.file.clone(),
            file: recipe_file,
            sha256: sha256.clone(),
            size: *size,
            old_upstream: old_up,
            new_upstream: new_up,
            debian_version: row.newest.clone().unwrap_or_default(),
            debian_file: file.clone(),
            snapshot: debian::snapshot_time_now(),
        });
    }
    // A set layered over a chosen one is chosen too: it was resolved over the base as it is
    // now, and a lock left resolved over the old base would not be read again.
    let chosen_set =
        |set: PackageSet| chosen(set_name(set)) || set.base().is_some_and(|b| chosen(set_name(b)));
    let mut locks_to_write = Vec::new();
    for (name, mut r) in resolved {
        if !chosen_set(r.set) {
            continue;
        }
        // A layered set written without its base is resolved over the base's lock as it is.
        if r.set.base().is_some_and(|b| !chosen(set_name(b))) {
            r = toolchain::resolve_set_over(project, archive, r.set, None)?;
        }
        if r.unchanged() {
            continue;
        }
        // The changes of the lock as it will be written (a layered set re-resolved above has
        // other rows than the report's).
        let old = toolchain::read_lock(project, r.set)?;
        let changes = super::lock_changes(&old, &r.lock);
        let down: Vec<String> = changes
            .iter()
            .filter(|c| c.downgrade)
            .map(|c| {
                format!(
                    "{} {} -> {}",
                    c.name,
                    c.current.as_deref().unwrap_or(""),
                    c.new.as_deref().unwrap_or("")
                )
            })
            .collect();
        anyhow::ensure!(
            down.is_empty(),
            "{}: the archive offers older versions than the lock ({}): a stale or rolled-back mirror? nothing written",
            r.path.display(),
            down.join(", ")
        );
        let have: BTreeSet<&str> = old.packages.iter().map(|p| p.sha256.as_str()).collect();
        for p in r.lock.packages.iter().filter(|p| !have.contains(p.sha256.as_str())) {
            ctx.fetcher
                .fetch(&toolchain::deb_want(project, &r.lock, p))
                .with_context(|| format!("{name}: downloading {} (nothing written)", p.filename))?;
        }
        locks_to_write.push(r);
    }
    // 2. The edits, all made in memory and the recipes read back (every architecture) before
    //    any file is written; then every file staged beside its target and renamed.
    let mut files: Vec<(PathBuf, Vec<u8>)> = Vec::new();
    for (path, list) in &edits {
        let mut text =
            std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
        for e in list {
            text = edit::edit_source(&text, e).with_context(|| path.display().to_string())?;
        }
        let shown = reprovm_fs::util::display_rel(path, &project.root);
        for (arch, _, _) in Arch::VALUES {
            crate::model::recipe::parse_for(path, &text, &shown, arch)
                .map_err(|e| anyhow::anyhow!("{e}"))
                .with_context(|| {
                    format!("{shown} as edited does not read back; nothing written")
                })?;
        }
        files.push((path.clone(), text.into_bytes()));
    }
    for r in &locks_to_write {
        files.push((r.path.clone(), r.body.clone().into_bytes()));
    }
    let mut written = Written::default();
    stage_and_rename(&files)?;
    for (path, _) in &files {
        written.files.push(reprovm_fs::util::display_rel(path, &project.root));
    }
    // 3. What changed for the graph (the files are written whatever this says).
    match input_hashes(ctx) {
        Ok((after, _)) => {
            for (node, h) in &after {
                if before.get(node) != Some(h) {
                    written.nodes.push(node.clone());
                    if published.contains(node) {
                        written.pins.push(node.clone());
                    }
                }
            }
        }
        Err(e) => written.note = Some(format!("the new input hashes could not be computed: {e:#}")),
    }
    Ok(written)
}

/// Write every file to a temp file beside it (fsynced), and only when all are written rename
/// them into place: an error before the renames leaves every file as it was.
fn stage_and_rename(files: &[(PathBuf, Vec<u8>)]) -> Result<()> {
    let mut staged: Vec<(PathBuf, PathBuf)> = Vec::new();
    let result = (|| -> Result<()> {
        for (path, bytes) in files {
            let name = path.file_name().context("a file name")?.to_string_lossy();
            let tmp = path.with_file_name(format!(".{name}.update-{}", std::process::id()));
            staged.push((tmp.clone(), path.clone()));
            let mut f = std::fs::File::create(&tmp)
                .with_context(|| format!("writing {}", tmp.display()))?;
            std::io::Write::write_all(&mut f, bytes)?;
            f.sync_all()?;
        }
        Ok(())
    })();
    if let Err(e) = result {
        for (tmp, _) in &staged {
            let _ = std::fs::remove_file(tmp);
        }
        return Err(e);
    }
    for (tmp, path) in &staged {
        std::fs::rename(tmp, path).with_context(|| format!("renaming into {}", path.display()))?;
    }
    Ok(())
}
