//! Reproducibility audits: rebuild targets from scratch under deliberate variations of what
//! the sandbox claims to normalise, compare every output file with the store entry and with
//! `pins/outputs.toml`, and explain each difference (ELF sections and symbols, the kernel's
//! compressed payload, ext4 inodes, text diffs). Like reprotest + diffoscope, built in.

use crate::model::manifest::{self, Manifest};
use crate::model::pins::{self, PinnedOutput};
use crate::model::project::Project;
use crate::model::store;
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use crate::steps::explain::{self, DiffKind, FileDiff, Sides, Tools};
use crate::steps::toolchain;
use anyhow::{bail, Context, Result};
use reprovm_fs::progress;
use reprovm_fs::util;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::Write;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// What `audit` does (the command's options).
#[derive(Debug, Clone, Default)]
pub struct AuditOptions {
    /// Targets to rebuild and compare (empty: every published output).
    pub targets: Vec<String>,
    /// Write a deterministic zip with the report, both manifests and the logs.
    pub bundle: Option<PathBuf>,
    /// Parallel jobs of the rebuild (None: one more than the CPU count a build uses).
    pub rebuild_jobs: Option<std::num::NonZeroUsize>,
    /// Keep the rebuilt outputs even when they match.
    pub keep: bool,
    /// Also compare each rebuild with this binary cache (`REGISTRY/REPO`).
    pub against: Option<String>,
}

/// How a rebuild compares with a binary cache's entry for the same input hash.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct CacheComparison {
    pub repository: String,
    /// The cache's output hash; None when the cache has no entry for these inputs.
    pub output_hash: Option<String>,
    /// The key that signed the entry, if a trusted one (`--trusted-key`): its name and
    /// fingerprint.
    pub signed_by: Option<String>,
    /// Why the signature does not make it trusted, when it does not.
    pub untrusted: Option<String>,
    pub matches: bool,
    pub differences: Vec<FileDiff>,
    /// The digest of the registry document compared (read once, signature checked on it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub document: Option<String>,
    /// Why the cache's entry for these inputs was refused before it could be compared (it
    /// is not what it claims, or declares more than this machine's tree could take).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub refused: Option<String>,
}

/// One host-side variation of the rebuild, and whether it could be applied here.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Variation {
    pub name: String,
    pub detail: String,
    pub applied: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct TargetReport {
    pub name: String,
    pub input_hash: String,
    pub store_output_hash: String,
    pub rebuild_output_hash: String,
    pub pinned_output_hash: Option<String>,
    pub matches_store: bool,
    /// None when no pin exists for this target.
    pub matches_pin: Option<bool>,
    pub variations: Vec<Variation>,
    pub differences: Vec<FileDiff>,
    pub rebuild_dir: Option<String>,
    /// sha256 of the rebuild's provenance and SBOM (`steps::attest`), compared with the
    /// store's and with the pins like the outputs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub provenance: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sbom: Option<String>,
    /// With `--against`: the cache's entry compared with this machine's rebuild.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cache: Option<CacheComparison>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Report {
    pub schema: String,
    pub toolchain: String,
    pub ok: bool,
    pub targets: Vec<TargetReport>,
}

pub const SCHEMA: &str = "reprovm-audit/4";

const SIDES: Sides = Sides { a: "the store", b: "the rebuild" };

/// How the rebuild's host differs from the first build's.
struct Conditions {
    work_root: PathBuf,
    on_tmpfs: bool,
    other_hostname: bool,
    jobs: usize,
}

impl Conditions {
    fn variations(&self) -> Vec<Variation> {
        let v = |name: &str, detail: String, applied: bool| Variation {
            name: name.into(),
            detail,
            applied,
        };
        vec![
            v(
                "build root path",
                format!(
                    "work trees under {} ({})",
                    self.work_root.display(),
                    if self.on_tmpfs { "tmpfs, another file system" } else { "a longer path on the same file system" }
                ),
                true,
            ),
            v("wall-clock time", "the rebuild runs later than the first build".into(), true),
            v("directory order", "every source directory's entries re-created in reverse order".into(), true),
            v(
                "parallelism",
                format!("-j{} (a build runs -j{})", self.jobs, util::default_jobs()),
                self.jobs != util::default_jobs(),
            ),
            v("umask", "0002 in the rebuilding process".into(), true),
            v(
                "environment",
                "TZ=Pacific/Kiritimati, LANG=LC_ALL=et_EE.UTF-8 and an unknown variable in the rebuilding process".into(),
                true,
            ),
            v(
                "hostname",
                if self.other_hostname {
                    "reprovm-audit-other (own UTS namespace)".into()
                } else {
                    "not varied: a UTS namespace of its own needs root".into()
                },
                self.other_hostname,
            ),
        ]
    }
}

impl AuditOptions {
    /// The rebuild's job count: given, or the CPU count plus one.
    fn rebuild_jobs(&self) -> usize {
        self.rebuild_jobs.map_or_else(|| util::default_jobs() + 1, std::num::NonZeroUsize::get)
    }
}

/// Rebuild every target under varied conditions, compare, explain: the report (`ok` false
/// when anything differs).
pub fn audit(ctx: &RunContext, opts: &AuditOptions) -> Result<Report> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let against =
        opts.against.as_deref().map(crate::steps::substitution::Cache::connect).transpose()?;
    let graph = project.graph()?;
    let targets = pins::targets_or_default(&graph, &opts.targets);
    let pins = pins::read_pins(project)?;
    let tc = {
        let lock = crate::model::store::store_exclusive(&project.out)?;
        toolchain::ensure(project, fetcher, &lock)?
    };
    let audit_root = project.out.join("audit");
    std::fs::create_dir_all(&audit_root)?;
    // What killed audits left (cache entries being compared, work roots on tmpfs); the
    // rebuilds an audit kept for inspection stay (`gc` takes them). Another audit or gc
    // removing the same tree at the same time is no error.
    let dead = crate::ops::gc::dead_audit_trees(project, false).unwrap_or_else(|e| {
        progress::say(&format!("not sweeping out/audit: {e:#}"));
        Vec::new()
    });
    for (path, size) in dead {
        progress::say(&format!(
            "removing {} ({}, left by an interrupted audit)",
            path.display(),
            progress::human_bytes(size)
        ));
        if let Err(e) = crate::ops::gc::remove_path(&path) {
            progress::say(&format!("could not remove {}: {e:#}", path.display()));
        }
    }
    let mut reports = Vec::new();
    for t in &targets {
        let node = graph.resolve(t).to_string();
        // 1. The reference: the store entry (built now if missing, never overwritten).
        // An audit rebuilds here: nothing it compares may come from a cache.
        let reference = BuildOptions { quiet: true, substitute: false, ..Default::default() };
        let first = build::build(ctx, &graph, t, &reference)?;
        // The store's side is read as it is, every file hashed: a damaged entry is not
        // compared (it would pass for a difference of the rebuild's).
        store::seal::verify_or_refuse(&first.entry, &first.manifest)?;
        // 2. The rebuild, in another process under varied host conditions, into the audit dir.
        let into = audit_root.join(format!("{t}-{}", std::process::id()));
        remove(&into)?;
        std::fs::create_dir_all(&into)?;
        let cond = varied_conditions(project, &graph.get(&node)?.recipe, opts.rebuild_jobs())?;
        progress::say(&format!(
            "audit {t}: rebuilding from scratch with -j{} under varied conditions (work {}, log in {})",
            cond.jobs,
            cond.work_root.display(),
            into.join("logs").display()
        ));
        let rebuilt = rebuild(project, t, &into, &cond);
        remove(&cond.work_root)?;
        let rebuilt = rebuilt?;
        let entry_rebuilt = into.join(format!("{}-{node}", &first.manifest.input_hash[..16]));
        let pin = pins.get(t);
        let mut diffs = explain::compare(
            &first.manifest.files,
            &rebuilt.files,
            &store::out_dir(&first.entry),
            &store::out_dir(&entry_rebuilt),
            &Tools::Sandbox(&tc.root),
            &SIDES,
        );
        if let Some(p) = pin.filter(|p| p.output_hash != first.manifest.output_hash) {
            diffs.extend(compare_with_pin(p, &first.manifest, &store::out_dir(&first.entry))?);
        }
        // The attestations, regenerated over the rebuild: the same bytes as over the store's
        // entry, and as pinned.
        let mut rebuilt_closure = first.closure.clone();
        if let Some(last) = rebuilt_closure.last_mut() {
            last.entry = entry_rebuilt.clone();
            last.manifest = rebuilt.clone();
        }
        let a_store = crate::ops::attest::attest_closure(
            ctx,
            &graph,
            &first.closure,
            &store::out_dir(&first.entry),
        )?;
        let a_rebuilt = crate::ops::attest::attest_closure(
            ctx,
            &graph,
            &rebuilt_closure,
            &store::out_dir(&entry_rebuilt),
        )?;
        let digest = reprovm_fs::hash::sha256_bytes;
        let mut attestations_match_pin = true;
        for (what, a, b, pinned) in [
            (
                "provenance",
                &a_store.provenance,
                &a_rebuilt.provenance,
                pin.and_then(|p| p.provenance.clone()),
            ),
            ("sbom", &a_store.sbom, &a_rebuilt.sbom, pin.and_then(|p| p.sbom.clone())),
        ] {
            if a != b {
                diffs.push(FileDiff {
                    path: format!("({what})"),
                    kind: DiffKind::Content,
                    explanation: explain::explain_contents(
                        a,
                        b,
                        &Tools::Sandbox(&tc.root),
                        &SIDES,
                    )?,
                });
            }
            if let Some(p) = pinned.filter(|p| *p != digest(b)) {
                attestations_match_pin = false;
                diffs.push(FileDiff {
                    path: format!("({what})"),
                    kind: DiffKind::Pin,
                    explanation: vec![format!(
                        "pinned sha256 {p}, the rebuild's is {}: `cargo xtask attest {t}` writes it to out/attestations/, `cargo xtask diff OLD NEW` explains it by field",
                        digest(b)
                    )],
                });
            }
        }
        let matches_store = rebuilt.output_hash == first.manifest.output_hash
            && a_store.provenance == a_rebuilt.provenance
            && a_store.sbom == a_rebuilt.sbom;
        let matches_pin =
            pin.map(|p| p.output_hash == rebuilt.output_hash && attestations_match_pin);
        let keep = !matches_store || matches_pin == Some(false) || opts.keep;
        reports.push(TargetReport {
            name: t.clone(),
            input_hash: first.manifest.input_hash.clone(),
            store_output_hash: first.manifest.output_hash.clone(),
            rebuild_output_hash: rebuilt.output_hash.clone(),
            pinned_output_hash: pin.map(|p| p.output_hash.clone()),
            matches_store,
            matches_pin,
            variations: cond.variations(),
            differences: diffs,
            rebuild_dir: keep.then(|| entry_rebuilt.display().to_string()),
            provenance: Some(digest(&a_rebuilt.provenance)),
            sbom: Some(digest(&a_rebuilt.sbom)),
            cache: match &against {
                Some(c) => Some(compare_with_cache(
                    ctx,
                    c,
                    graph.get(&node)?,
                    &tc.id,
                    &rebuilt,
                    &store::out_dir(&entry_rebuilt),
                    &Tools::Sandbox(&tc.root),
                )?),
                None => None,
            },
        });
        if !keep {
            let keep_logs = audit_root.join(format!("{t}-last-logs"));
            remove(&keep_logs)?;
            std::fs::rename(into.join("logs"), &keep_logs)?;
            remove(&into)?;
        }
    }
    let ok = reports.iter().all(|r| {
        r.matches_store
            && r.matches_pin != Some(false)
            && r.cache.as_ref().is_none_or(|c| c.matches)
    });
    let report = Report { schema: SCHEMA.into(), toolchain: tc.id.clone(), ok, targets: reports };
    if let Some(b) = &opts.bundle {
        write_bundle(project, &report, b)?;
        progress::say(&format!("bundle written to {}", b.display()));
    }
    Ok(report)
}

/// Fetch the cache's entry for the rebuilt node (every registry document read once; integrity
/// checked as for a substitution; the signature on that same document reported) and explain
/// how it differs from this machine's rebuild. It matches only when the bytes are the same and
/// a trusted key signed it: an unsigned entry is what a substituter would refuse.
fn compare_with_cache(
    ctx: &RunContext,
    cache: &crate::steps::substitution::Cache,
    l: &crate::model::recipe::Loaded,
    toolchain: &str,
    rebuilt: &Manifest,
    rebuilt_out: &Path,
    tools: &Tools,
) -> Result<CacheComparison> {
    use crate::steps::substitution::{entry, keys};
    let r = &l.recipe;
    let node = l.node();
    let want = entry::Wanted {
        name: &node,
        version: &r.version,
        input_hash: &rebuilt.input_hash,
        toolchain,
        source_date_epoch: r.source_date_epoch(),
    };
    let project = &ctx.project;
    let trusted = keys::load_trusted(&ctx.substitution.trusted_keys)?;
    // Beside the audit's other trees, named by process: the next audit or `gc` removes it
    // when this process was killed before it could.
    let work_name = format!("{node}-cache-{}", std::process::id());
    let work = AuditTree::create(&project.out.join("audit").join(work_name))?;
    let mut c = CacheComparison {
        repository: cache.text.clone(),
        output_hash: None,
        signed_by: None,
        untrusted: None,
        matches: false,
        differences: Vec::new(),
        document: None,
        refused: None,
    };
    let limit = entry::tar_limit(&rebuilt.files);
    let fetched = entry::fetch(
        &cache.registry,
        &cache.repo,
        &want,
        entry::Trust::CompareOnly { keys: &trusted, limit },
        work.path(),
    );
    let taken = match fetched {
        Ok(Some(t)) => t,
        Ok(None) => {
            c.differences.push(FileDiff {
                path: node.clone(),
                kind: DiffKind::OnlyInB,
                explanation: vec![format!(
                    "{} has no entry for input hash {}",
                    cache.text, rebuilt.input_hash
                )],
            });
            return Ok(c);
        }
        Err(entry::Refusal::Mismatch(why)) => {
            c.refused = Some(why);
            return Ok(c);
        }
        Err(e) => bail!("{}: {e}", cache.text),
    };
    match &taken.signature {
        Ok(key) => c.signed_by = Some(key.to_string()),
        Err(why) => c.untrusted = Some(why.to_string()),
    }
    let same = taken.manifest.output_hash == rebuilt.output_hash;
    c.matches = same && c.signed_by.is_some();
    c.output_hash = Some(taken.manifest.output_hash.clone());
    c.document = Some(taken.document.clone());
    if !same {
        let sides = Sides { a: "the cache", b: "this machine" };
        c.differences = explain::compare(
            &taken.manifest.files,
            &rebuilt.files,
            &store::out_dir(work.path()),
            rebuilt_out,
            tools,
            &sides,
        );
    }
    Ok(c)
}

/// A directory removed when dropped (and, if this process is killed first, by the next audit
/// or `gc`, which remove every `out/audit/NAME-PID` whose process has exited).
struct AuditTree(PathBuf);

impl AuditTree {
    fn create(path: &Path) -> Result<AuditTree> {
        remove(path)?;
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Ok(AuditTree(path.to_path_buf()))
    }

    fn path(&self) -> &Path {
        &self.0
    }
}

impl Drop for AuditTree {
    fn drop(&mut self) {
        let _ = remove(&self.0);
    }
}

fn remove(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(reprovm_fs::beneath::Dir::open(p.parent().context("no parent")?)?
            .remove_all(Path::new(p.file_name().context("no name")?))?),
        Err(_) => Ok(()),
    }
}

/// Room (bytes) a node's work tree needs, estimated from its compressed sources: unpacked
/// and built, a tree is about 16 times its tarball (the kernel: 138 MB -> ~2 GB).
fn work_tree_estimate(r: &crate::model::recipe::Recipe) -> u64 {
    r.sources.iter().map(|s| s.size).sum::<u64>() * 16 + (256 << 20)
}

/// Free bytes of the file system at `path`, and whether it is a tmpfs.
fn free_space(path: &Path) -> Option<(u64, bool)> {
    let st = rustix::fs::statfs(path).ok()?;
    const TMPFS_MAGIC: i64 = 0x0102_1994;
    Some((st.f_bavail * st.f_bsize as u64, st.f_type as i64 == TMPFS_MAGIC))
}

/// The rebuild's work root: on tmpfs (/dev/shm) when it has room for this node with half of
/// the available memory to spare, so that the path, its length, the file system and directory
/// order all differ from the first build; else a longer path beside the store.
fn varied_conditions(
    project: &Project,
    r: &crate::model::recipe::Recipe,
    jobs: usize,
) -> Result<Conditions> {
    let need = work_tree_estimate(r);
    let mem_available = std::fs::read_to_string("/proc/meminfo")
        .ok()
        .and_then(|m| {
            m.lines().find_map(|l| {
                l.strip_prefix("MemAvailable:")
                    .map(|v| v.trim().trim_end_matches(" kB").to_string())
            })
        })
        .and_then(|kb| kb.parse::<u64>().ok())
        .map(|kb| kb * 1024);
    let shm = Path::new("/dev/shm");
    let fits = match (free_space(shm), mem_available) {
        (Some((free, true)), Some(mem)) => free > need && mem / 2 > need,
        _ => false,
    };
    let (work_root, on_tmpfs) = if fits {
        (
            shm.join(format!(
                "{}{}-{}",
                crate::ops::gc::SHM_WORK_PREFIX,
                r.name,
                std::process::id()
            )),
            true,
        )
    } else {
        (
            project.out.join("audit").join(crate::ops::gc::LONG_WORK_DIR).join(format!(
                "{}-{}",
                r.name,
                std::process::id()
            )),
            false,
        )
    };
    Ok(Conditions { work_root, on_tmpfs, other_hostname: sandbox_root(), jobs })
}

fn sandbox_root() -> bool {
    rustix::process::geteuid().is_root()
}

/// Rebuild `target` in a child xtask: umask 0002, another hostname (as root), another
/// environment, another job count, another work root, reversed directory order.
fn rebuild(project: &Project, target: &str, into: &Path, cond: &Conditions) -> Result<Manifest> {
    let mut c = Command::new(std::env::current_exe()?);
    if project.host_toolchain {
        c.arg("--host-toolchain");
    }
    c.arg("--recipes")
        .arg(&project.recipes)
        .arg("--out")
        .arg(&project.out)
        .arg("--cache")
        .arg(&project.downloads);
    for u in &project.uses {
        c.arg("--use").arg(u);
    }
    c.arg("--arch").arg(project.arch.name());
    c.args([
        "build",
        target,
        "--jobs",
        &cond.jobs.to_string(),
        "--rebuild",
        target,
        "--shuffle-dirents",
    ]);
    c.arg("--rebuild-into").arg(into).arg("--work-root").arg(&cond.work_root);
    c.env("TZ", "Pacific/Kiritimati")
        .env("LANG", "et_EE.UTF-8")
        .env("LC_ALL", "et_EE.UTF-8")
        .env("REPROVM_AUDIT_CANARY", "1");
    c.stdout(std::process::Stdio::from(std::io::stderr()));
    let other_hostname = cond.other_hostname;
    // SAFETY: between fork and exec only async-signal-safe calls (umask, unshare, sethostname).
    unsafe {
        c.pre_exec(move || {
            libc::umask(0o002);
            if other_hostname {
                if libc::unshare(libc::CLONE_NEWUTS) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                let name = b"reprovm-audit-other";
                if libc::sethostname(name.as_ptr().cast(), name.len()) != 0 {
                    return Err(std::io::Error::last_os_error());
                }
            }
            Ok(())
        });
    }
    util::run_checked(&mut c).with_context(|| {
        format!("the audit rebuild of {target} failed (logs in {})", into.join("logs").display())
    })?;
    let entry = std::fs::read_dir(into)?
        .flatten()
        .map(|e| e.path())
        .find(|p| p.join("manifest.json").is_file())
        .with_context(|| format!("the rebuild of {target} left no entry in {}", into.display()))?;
    manifest::read(&entry.join("manifest.json"))
}

fn compare_with_pin(pin: &PinnedOutput, m: &Manifest, out_dir: &Path) -> Result<Vec<FileDiff>> {
    let mut out = Vec::new();
    let now: BTreeMap<&str, &str> =
        m.files.iter().filter_map(|f| f.sha256.as_deref().map(|s| (f.path.as_str(), s))).collect();
    let note = if pin.input_hash != m.input_hash {
        " (the pin was recorded for other inputs: re-pin with `cargo xtask pin outputs` if the change is intended)"
    } else {
        ""
    };
    let diff = |path: &str, e: String| FileDiff {
        path: path.to_string(),
        kind: DiffKind::Pin,
        explanation: vec![e],
    };
    for (p, h) in &pin.files {
        match now.get(p.as_str()) {
            Some(x) if x == h => {}
            Some(x) => out.push(diff(p, format!("pinned {h}, store has {x}{note}"))),
            None => out.push(diff(p, format!("pinned but not produced{note}"))),
        }
    }
    for p in now.keys().filter(|p| !pin.files.contains_key(**p)) {
        out.push(diff(p, format!("produced but not pinned{note}")));
    }
    let manifests = pins::oci_manifests(out_dir)?;
    for (tag, d) in &pin.oci_manifests {
        match manifests.get(tag) {
            Some(x) if x == d => {}
            Some(x) => out.push(diff(
                &format!("OCI manifest {tag}"),
                format!("pinned {d}, store has {x}{note}"),
            )),
            None => out.push(diff(
                &format!("OCI manifest {tag}"),
                format!("pinned but not in index.json{note}"),
            )),
        }
    }
    Ok(out)
}

pub fn render(r: &Report) -> String {
    let mut s = String::new();
    for t in &r.targets {
        let pin = match t.matches_pin {
            Some(true) => "matches pins/outputs.toml",
            Some(false) => "DIFFERS from pins/outputs.toml",
            None => "no pin",
        };
        let store =
            if t.matches_store { "identical to the store" } else { "DIFFERS from the store" };
        s.push_str(&format!(
            "{:<10} {} rebuild {store}; {pin}\n",
            t.name,
            &t.rebuild_output_hash[..16]
        ));
        if let (Some(p), Some(b)) = (&t.provenance, &t.sbom) {
            s.push_str(&format!(
                "  provenance {} sbom {} (regenerated over the rebuild)\n",
                &p[..16],
                &b[..16]
            ));
        }
        let skipped: Vec<&str> =
            t.variations.iter().filter(|v| !v.applied).map(|v| v.name.as_str()).collect();
        if !skipped.is_empty() {
            s.push_str(&format!("  not varied here: {}\n", skipped.join(", ")));
        }
        s.push_str(&explain::render(&t.differences, &SIDES));
        if let Some(c) = &t.cache {
            let trust = match (&c.signed_by, &c.untrusted) {
                (Some(k), _) => format!("signed by {k}"),
                (None, Some(why)) => why.clone(),
                (None, None) => String::new(),
            };
            let verdict = match (&c.output_hash, &c.refused, c.matches) {
                (None, Some(why), _) => format!("has an entry for these inputs, refused: {why}"),
                (None, None, _) => "has no entry for these inputs".to_string(),
                (Some(_), _, true) => format!("holds the same bytes ({trust})"),
                (Some(h), _, false) if *h == t.rebuild_output_hash => {
                    format!("holds the same bytes, but {trust}: a substituter would not use it")
                }
                (Some(h), _, false) => format!("holds OTHER bytes: {} ({trust})", &h[..16]),
            };
            s.push_str(&format!("  cache {} {verdict}\n", c.repository));
            s.push_str(&explain::render(
                &c.differences,
                &Sides { a: "the cache", b: "this machine" },
            ));
        }
        if let Some(dir) = &t.rebuild_dir {
            s.push_str(&format!("  rebuilt outputs kept in {dir}\n"));
        }
    }
    s.push_str(&verdict(r));
    s
}

/// The last line of the report: which of the three checks failed, each named apart. A rebuild
/// that matches the store but not the pins is reproducible on this machine, and the pins are
/// what differ (a change not re-pinned, or another machine's bytes); only a rebuild that
/// differs from the store is not reproducible.
fn verdict(r: &Report) -> String {
    if r.ok {
        return "audit: all outputs reproduced bit for bit\n".into();
    }
    let names = |f: &dyn Fn(&TargetReport) -> bool| -> Vec<&str> {
        r.targets.iter().filter(|t| f(t)).map(|t| t.name.as_str()).collect()
    };
    let rebuilt_differently = names(&|t| !t.matches_store);
    let pins_differ = names(&|t| t.matches_store && t.matches_pin == Some(false));
    let cache = |t: &TargetReport, f: &dyn Fn(&CacheComparison) -> bool| {
        t.cache.as_ref().is_some_and(|c| !c.matches && f(c))
    };
    let cache_differs = names(&|t| {
        cache(t, &|c| c.output_hash.as_ref().is_some_and(|h| *h != t.rebuild_output_hash))
    });
    let cache_untrusted = names(&|t| {
        cache(t, &|c| c.output_hash.as_ref().is_some_and(|h| *h == t.rebuild_output_hash))
    });
    let cache_refused = names(&|t| cache(t, &|c| c.refused.is_some()));
    let cache_missing = names(&|t| cache(t, &|c| c.output_hash.is_none() && c.refused.is_none()));
    let mut lines = String::new();
    if !rebuilt_differently.is_empty() {
        lines.push_str(&format!(
            "audit: NOT reproducible: {} rebuilt to other bytes than the store's\n",
            rebuilt_differently.join(", ")
        ));
    }
    if !pins_differ.is_empty() {
        lines.push_str(&format!(
            "audit: {} reproduced bit for bit here, but differ from pins/outputs.toml (an unpinned change: `cargo xtask pin outputs`; or the pins come from bytes this machine does not make)\n",
            pins_differ.join(", ")
        ));
    }
    for (list, what) in [
        (cache_differs, "the cache holds other bytes than this machine makes for"),
        (cache_untrusted, "the cache holds the same bytes, signed by no trusted key, for"),
        (cache_refused, "the cache's entry was refused (not what it claims) for"),
        (cache_missing, "the cache has no entry for"),
    ] {
        if !list.is_empty() {
            lines.push_str(&format!("audit: {what} {}\n", list.join(", ")));
        }
    }
    lines
}

/// Read a file that may legitimately be absent (a log of a build made elsewhere).
fn read_optional(p: &Path) -> Result<Option<Vec<u8>>> {
    match std::fs::read(p) {
        Ok(b) => Ok(Some(b)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", p.display())),
    }
}

/// A zip whose bytes depend only on its contents: sorted names, fixed times, fixed method.
pub fn write_bundle(project: &Project, report: &Report, path: &Path) -> Result<()> {
    let mut files: BTreeMap<String, Vec<u8>> = BTreeMap::new();
    files.insert("report.json".into(), serde_json::to_vec_pretty(report)?);
    files.insert("report.txt".into(), render(report).into_bytes());
    let graph = project.graph()?;
    for t in &report.targets {
        let node = graph.resolve(&t.name);
        let l = graph.get(node)?;
        let entry = store::entry_dir(project, node, &l.recipe.version, &t.input_hash);
        let log_name = format!("{node}-{}.log", &t.input_hash[..16]);
        let mut add = |name: String, p: PathBuf| -> Result<()> {
            if let Some(b) = read_optional(&p)? {
                files.insert(name, b);
            }
            Ok(())
        };
        add(format!("{}/store-manifest.json", t.name), entry.join("manifest.json"))?;
        add(format!("{}/store-build.log", t.name), project.logs().join(&log_name))?;
        let logs = match &t.rebuild_dir {
            Some(d) => {
                add(
                    format!("{}/rebuild-manifest.json", t.name),
                    Path::new(d).join("manifest.json"),
                )?;
                Path::new(d).parent().context("rebuild directory without a parent")?.join("logs")
            }
            None => project.out.join("audit").join(format!("{}-last-logs", t.name)),
        };
        add(format!("{}/rebuild.log", t.name), logs.join(&log_name))?;
    }
    write_zip(path, &files)
}

pub fn write_zip(path: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let time = zip::DateTime::from_date_and_time(1980, 1, 1, 0, 0, 0)
            .map_err(|_| anyhow::format_err!("bad zip time"))?;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(time)
            .unix_permissions(0o644);
        for (name, data) in files {
            z.start_file(name.as_str(), opts)?;
            z.write_all(data)?;
        }
        z.finish()?;
    }
    util::write_atomic(path, &buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Report {
        let cond = Conditions {
            work_root: "/dev/shm/w".into(),
            on_tmpfs: true,
            other_hostname: false,
            jobs: 1,
        };
        Report {
            schema: SCHEMA.into(),
            toolchain: "t".into(),
            ok: false,
            targets: vec![TargetReport {
                name: "busybox".into(),
                input_hash: "a".repeat(64),
                store_output_hash: "b".repeat(64),
                rebuild_output_hash: "c".repeat(64),
                pinned_output_hash: None,
                matches_store: false,
                matches_pin: None,
                variations: cond.variations(),
                differences: vec![FileDiff {
                    path: "bin/busybox".into(),
                    kind: DiffKind::Content,
                    explanation: vec!["section .rodata differs".into()],
                }],
                rebuild_dir: Some("/x".into()),
                provenance: Some("ab".repeat(32)),
                sbom: None,
                cache: Some(CacheComparison {
                    repository: "http://127.0.0.1:5000/cache".into(),
                    output_hash: Some("d".repeat(64)),
                    signed_by: None,
                    untrusted: Some("it is signed by `ci`, which is not a trusted key".into()),
                    matches: false,
                    differences: vec![FileDiff {
                        path: "bin/busybox".into(),
                        kind: DiffKind::Content,
                        explanation: vec!["section .text differs".into()],
                    }],
                    document: Some(format!("sha256:{}", "e".repeat(64))),
                    refused: None,
                }),
            }],
        }
    }

    #[test]
    fn report_json_round_trips() {
        let r = sample();
        let text = serde_json::to_string(&r).unwrap();
        assert_eq!(serde_json::from_str::<Report>(&text).unwrap(), r);
        // Unknown schema shapes are refused rather than half-read.
        assert!(serde_json::from_str::<Report>("{\"schema\":\"x\"}").is_err());
    }

    #[test]
    fn rendered_report_names_variations_not_applied() {
        expect_test::expect![[r#"
            busybox    cccccccccccccccc rebuild DIFFERS from the store; no pin
              not varied here: hostname
              bin/busybox (content)
                  section .rodata differs
              cache http://127.0.0.1:5000/cache holds OTHER bytes: dddddddddddddddd (it is signed by `ci`, which is not a trusted key)
              bin/busybox (content)
                  section .text differs
              rebuilt outputs kept in /x
            audit: NOT reproducible: busybox rebuilt to other bytes than the store's
            audit: the cache holds other bytes than this machine makes for busybox
        "#]]
        .assert_eq(&render(&sample()));
    }

    #[test]
    fn the_verdict_names_which_check_failed() {
        let mut r = sample();
        r.targets[0].matches_store = true;
        r.targets[0].matches_pin = Some(false);
        r.targets[0].cache = None;
        let v = verdict(&r);
        assert!(!v.contains("NOT reproducible"), "{v}");
        assert!(
            v.starts_with(
                "audit: busybox reproduced bit for bit here, but differ from pins/outputs.toml"
            ),
            "{v}"
        );
        r.targets[0].matches_pin = Some(true);
        r.ok = true;
        assert_eq!(verdict(&r), "audit: all outputs reproduced bit for bit\n");
    }

    #[test]
    fn zip_bundle_is_deterministic() {
        let t = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("b.txt".to_string(), b"two".to_vec());
        files.insert("a.txt".to_string(), b"one".to_vec());
        write_zip(&t.path().join("1.zip"), &files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_zip(&t.path().join("2.zip"), &files).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("1.zip")).unwrap(),
            std::fs::read(t.path().join("2.zip")).unwrap()
        );
    }

    #[test]
    fn big_nodes_do_not_go_to_tmpfs_by_name() {
        // another kernel recipe is as big as kernel: the estimate, not the name, decides.
        let r = |name: &str, size: u64| -> crate::model::recipe::Recipe {
            let text = format!(
                "name = \"{name}\"\nversion = \"1\"\n[[source]]\nfile = \"x.tar.xz\"\nsha256 = \"{}\"\nsize = {size}\n[build]\nscript = \"true\"\n",
                "a".repeat(64)
            );
            crate::model::recipe::parse(Path::new(&format!("{name}.toml")), &text, name).unwrap()
        };
        assert_eq!(
            work_tree_estimate(&r("kernel", 137_945_728)),
            work_tree_estimate(&r("my-kernel", 137_945_728))
        );
        assert!(work_tree_estimate(&r("my-kernel", 137_945_728)) > 2_000_000_000);
    }
}
