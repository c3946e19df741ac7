//! `update`: which pins the configured Debian archive has moved past, and (`--write`) moving
//! them, as `nix flake update`, nix-update and Dependabot do for theirs.
//!
//! - **Sources with a Debian origin** (the kernel versions, busybox, dropbear, iproute2, the
//!   syslinux .debs): the newest version of the package in the same series (the first two
//!   numbers of the upstream version: 6.1.x stays 6.1.x, moving to 6.12 is a new
//!   `[versions]` entry) and the same release's suites: a `~bpoNN` version in that release's
//!   backports, a `+debNNuM` one in that release and its `-security` and `-updates`, any other
//!   in the first release the project's locks use whose suites carry the package in that series.
//!   A newer version with the same upstream file (a Debian revision: reprovm builds the
//!   upstream source, without Debian's patches) is reported and changes nothing.
//! - **Locks** (`pins/*.lock`): each set resolved again as `toolchain lock` would (its spec's
//!   suite, `updates` suites and backports), compared with the lock.
//!
//! Every index is read through its suite's verified InRelease (`steps::toolchain::archive`).
//! `--write` downloads every new file first (each checked against the index's sha256 and size
//! as it streams into the cache), then edits the recipes in place and writes the locks; it
//! reports the nodes whose input hashes changed and the published outputs needing new pins.

use crate::mechanisms::deb822::Paragraph;
use crate::mechanisms::debian;
use crate::mechanisms::debian_version as dv;
use crate::mechanisms::fetch::Want;
use crate::model::arch::Arch;
use crate::model::graph::Graph;
use crate::model::pins;
use crate::model::recipe::edit::{self, SourceEdit};
use crate::model::recipe::SourcePin;
use crate::model::store::InputHashes;
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
struct Pin {
    node: String,
    recipe: PathBuf,
    version_key: Option<String>,
    source: SourcePin,
}

/// Every source with a Debian origin, per node (a recipe and each of its `[versions]`).
fn pins_of(graph: &Graph) -> Vec<Pin> {
    let mut out = Vec::new();
    for (name, l) in graph.recipes.iter().filter(|(n, _)| !n.contains('@')) {
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

/// Indexes read for sources, kept by suite and kind, only the paragraphs of wanted packages.
struct Indexes<'a> {
    archive: &'a Archive,
    wanted: BTreeSet<String>,
    /// None: no configured mirror serves the suite.
    loaded: BTreeMap<(String, String), Option<Vec<Paragraph>>>,
}

impl Indexes<'_> {
    /// The paragraphs of `package` in `suite`'s index `stem` (none when the mirror has no
    /// such suite).
    /// The paragraphs of `package` in `suite`'s index `stem`; None when no configured mirror
    /// serves the suite.
    fn of(&mut self, suite: &str, stem: &str, package: &str) -> Result<Option<Vec<Paragraph>>> {
        let key = (suite.to_string(), stem.to_string());
        if !self.loaded.contains_key(&key) {
            let kept = if self.archive.has_suite(suite)? {
                let release = self.archive.release(suite)?;
                let text = self.archive.index_text(&release, stem)?;
                Some(crate::mechanisms::deb822::paragraphs_of(&text, &self.wanted))
            } else {
                None
            };
            self.loaded.insert(key.clone(), kept);
        }
        Ok(self.loaded[&key]
            .as_ref()
            .map(|ps| ps.iter().filter(|p| p.get("Package") == package).cloned().collect()))
    }
}

/// The suites of a release: the release itself, its security and its point updates.
fn release_group(codename: &str) -> Vec<String> {
    vec![codename.to_string(), format!("{codename}-security"), format!("{codename}-updates")]
}

/// The number after `marker` in a Debian revision (`~bpo13+1` -> 13, `+deb12u1` -> 12).
fn release_marker(revision: &str, marker: &str) -> Option<u32> {
    let at = revision.find(marker)? + marker.len();
    let digits: String = revision[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The groups of suites a pinned version may be in, in the order they are tried.
fn suite_groups(version: &str, releases: &[String]) -> Vec<Vec<String>> {
    let rev = dv::parse(version).revision;
    if let Some(n) = release_marker(rev, "~bpo").and_then(debian::codename) {
        return vec![vec![format!("{n}-backports")]];
    }
    // `+deb12u1` (a stable update), `~deb12u1` (a new upstream uploaded to stable).
    let stable = release_marker(rev, "+deb").or_else(|| release_marker(rev, "~deb"));
    if let Some(n) = stable.and_then(debian::codename) {
        return vec![release_group(n)];
    }
    releases.iter().map(|r| release_group(r)).collect()
}

/// Look one pinned source up.
fn source_row(pin: &Pin, releases: &[String], idx: &mut Indexes) -> Result<SourceRow> {
    let d = pin.source.debian.as_ref().context("a source without a Debian origin")?;
    let is_deb = d.file.ends_with(".deb");
    // A .deb is looked up in its own architecture's Packages (`all` is in every one).
    let (package, stem) = if is_deb {
        let name = d.file.split('_').next().unwrap_or_default().to_string();
        let arch = d.file.trim_end_matches(".deb").rsplit('_').next().unwrap_or("amd64");
        let arch = if arch == "all" { "amd64" } else { arch };
        (name, format!("main/binary-{arch}/Packages"))
    } else {
        (d.package.clone(), "main/source/Sources".to_string())
    };
    let series = dv::series(dv::parse(&d.version).upstream);
    let groups = suite_groups(&d.version, releases);
    let mut row = SourceRow {
        node: pin.node.clone(),
        recipe: pin.recipe.display().to_string(),
        file: pin.source.file.clone(),
        package: package.clone(),
        series: series.clone(),
        suites: Vec::new(),
        current: d.version.clone(),
        newest: None,
        newest_suite: None,
        security: false,
        state: SourceState::Current,
    };
    let mut missing = Vec::new();
    let mut older = None;
    for group in &groups {
        let mut found: Vec<(Paragraph, String)> = Vec::new();
        for suite in group {
            let Some(paragraphs) = idx.of(suite, &stem, &package)? else {
                missing.push(suite.clone());
                continue;
            };
            for p in paragraphs {
                if dv::series(dv::parse(p.get("Version")).upstream) == series {
                    found.push((p, suite.clone()));
                }
            }
        }
        // The group this pin is in carries it at its version or a newer one; a group whose
        // newest is older is another release (or a stale mirror): the next is tried.
        let best = found
            .into_iter()
            .max_by(|(a, _), (b, _)| dv::compare(a.get("Version"), b.get("Version")));
        let Some((newest, suite)) = best else { continue };
        if dv::compare(newest.get("Version"), &d.version).is_lt() {
            older.get_or_insert((newest.get("Version").to_string(), suite));
            continue;
        }
        row.suites = group.clone();
        let version = newest.get("Version").to_string();
        let index = format!("{suite}'s {stem}");
        row.security = suite.ends_with("-security");
        row.newest = Some(version.clone());
        row.newest_suite = Some(suite);
        if dv::compare(&version, &d.version).is_le() {
            return Ok(row);
        }
        row.state = if is_deb {
            let filename = newest.get("Filename").to_string();
            SourceState::Newer {
                file: filename.rsplit('/').next().unwrap_or_default().to_string(),
                sha256: newest.get("SHA256").to_string(),
                size: newest
                    .get("Size")
                    .parse()
                    .with_context(|| format!("{index}: {package} {version}: Size"))?,
                pool_path: filename,
            }
        } else if dv::parse(&version).upstream == dv::parse(&d.version).upstream {
            SourceState::SameFile
        } else {
            let upstream = dv::parse(&version).upstream.to_string();
            let orig = format!("{package}_{upstream}.orig.tar.");
            let line = newest
                .get("Checksums-Sha256")
                .lines()
                .map(str::split_whitespace)
                .map(|mut w| (w.next(), w.next(), w.next()))
                .find(|(_, _, n)| n.is_some_and(|n| n.starts_with(&orig)));
            let (Some(sha), Some(size), Some(name)) = line.unwrap_or_default() else {
                bail!("{index}: {package} {version} lists no {orig}* file");
            };
            SourceState::Newer {
                file: name.to_string(),
                sha256: sha.to_string(),
                size: size.parse().with_context(|| format!("{index}: {name}: size"))?,
                pool_path: format!("{}/{name}", newest.get("Directory")),
            }
        };
        return Ok(row);
    }
    let looked: Vec<String> = groups.iter().flatten().cloned().collect();
    let why = match older {
        Some((v, suite)) => format!(
            "the newest {package} {series}.x is {v} in {suite}, older than the pin (a stale or rolled-back mirror?)"
        ),
        None if !missing.is_empty() => format!(
            "{package} {series}.x is in none of {} (no configured mirror serves {})",
            looked.join(", "),
            missing.join(", ")
        ),
        None => format!("{package} {series}.x is in none of {}", looked.join(", ")),
    };
    row.state = SourceState::NotFound { why };
    Ok(row)
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
fn set_name(set: PackageSet) -> &'static str {
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
    let mut idx = Indexes {
        archive: &archive,
        wanted: pins
            .iter()
            .filter_map(|p| p.source.debian.as_ref())
            .map(|d| match d.file.ends_with(".deb") {
                true => d.file.split('_').next().unwrap_or_default().to_string(),
                false => d.package.clone(),
            })
            .collect(),
        loaded: BTreeMap::new(),
    };
    let mut sources = Vec::new();
    for pin in &pins {
        sources.push(source_row(pin, &releases, &mut idx)?);
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
        report.written = Some(write(ctx, &archive, &report, &pins, resolved, names)?);
    }
    Ok(report)
}

/// `--write`: download what moves, then edit the recipes and write the locks.
fn write(
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
        let row = report.locks.iter().find(|l| l.set == name).context("a lock row")?;
        let down: Vec<String> = row
            .changes
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
        let old = toolchain::read_lock(project, r.set)?;
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_names_the_suites_it_may_be_in() {
        let releases = vec!["bookworm".to_string(), "trixie".to_string()];
        assert_eq!(suite_groups("6.18.15-1~bpo13+1", &releases), [vec!["trixie-backports"]]);
        assert_eq!(
            suite_groups("1:1.35.0-4+deb12u1", &releases),
            [vec!["bookworm", "bookworm-security", "bookworm-updates"]]
        );
        assert_eq!(suite_groups("6.1.176-1", &releases).len(), 2);
        assert_eq!(suite_groups("6.1.176-1", &releases)[1][0], "trixie");
        assert_eq!(release_marker("4+deb12u1", "+deb"), Some(12));
        assert_eq!(release_marker("1", "+deb"), None);
    }

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
