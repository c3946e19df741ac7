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
    /// The key that signed the entry, if a trusted one (`--trusted-cache-key`): its name and
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

pub(crate) const SCHEMA: &str = "reprovm-audit/4";

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
                format!(
                    "-j{} (a build runs -j{}): the jobserver's tokens, all a node sees of the schedule (the nodes beside it change how many it gets)",
                    self.jobs,
                    util::default_jobs()
                ),
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
    let graph = project.graph()?;
    graph.require_targets(&opts.targets)?;
    if let Some(bundle) = &opts.bundle {
        let parent =
            bundle.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
        anyhow::ensure!(
            parent.is_dir() && !bundle.is_dir(),
            "--bundle {}: give a file in an existing directory",
            bundle.display()
        );
    }
    let against =
        opts.against.as_deref().map(crate::steps::substitution::Cache::connect).transpose()?;
    let targets = pins::targets_or_default(&graph, &opts.targets);
    let pins = pins::read_pins(project)?;
    let tc = {
        let lock = crate::model::store::store_shared(&project.out)?;
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

mod against;
mod rebuild;
mod report;

use against::*;
use rebuild::*;
pub use report::render;
pub(crate) use report::write_bundle;
#[cfg(test)]
use report::*;

pub(super) fn remove(p: &Path) -> Result<()> {
    match std::fs::symlink_metadata(p) {
        Ok(_) => Ok(reprovm_fs::beneath::Dir::open(p.parent().context("no parent")?)?
            .remove_all(Path::new(p.file_name().context("no name")?))?),
        Err(_) => Ok(()),
    }
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
