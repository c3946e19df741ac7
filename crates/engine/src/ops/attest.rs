//! `attest [TARGETS] [--sign-key KEY]`: the provenance and SBOM of built nodes
//! (`steps::attest`), written to `out/attestations/NODE/`, signed into DSSE envelopes with a
//! cache key; and `verify ENVELOPE... --trusted-attestation-key FILE [--against DIR]`.

use crate::model::graph::Graph;
use crate::model::pins::targets_or_default;
use crate::model::store::{self, BuiltNode};
use crate::ops::build::{self, BuildOptions, BuildResult};
use crate::ops::context::RunContext;
use crate::steps::attest::{self, Attestations, Inputs, ToolchainPackages};
use crate::steps::substitution::keys::{PublicKey, SecretKey};
use crate::steps::toolchain;
use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::sha256_bytes;
use reprovm_fs::progress;
use std::path::{Path, PathBuf};

/// File names under `out/attestations/NODE/`.
pub(crate) const PROVENANCE_FILE: &str = "provenance.json";
pub(crate) const SBOM_FILE: &str = "sbom.cdx.json";
pub(crate) const PROVENANCE_ENVELOPE: &str = "provenance.dsse.json";
pub(crate) const SBOM_ENVELOPE: &str = "sbom.dsse.json";

/// The attestations of `closure`'s last node, whose outputs are in `target_out` (its store
/// entry, or an audit's rebuild).
pub(crate) fn attest_closure(
    ctx: &RunContext,
    graph: &Graph,
    closure: &[BuiltNode],
    target_out: &Path,
) -> Result<Attestations> {
    let project = &ctx.project;
    let tc = {
        let lock = store::store_shared(&project.out)?;
        toolchain::ensure(project, &ctx.fetcher, &lock)?
    };
    let packages = ToolchainPackages::of(project, &tc.root, &ctx.fetcher)?;
    let target = closure.last().context("attest: nothing built")?;
    attest::attest(&Inputs {
        project,
        graph,
        target: &target.name,
        closure,
        target_out,
        toolchain_id: &tc.id,
        toolchain: &packages,
    })
}

/// Build `target` (or find it in the store) and make its attestations.
pub(crate) fn attest_target(
    ctx: &RunContext,
    graph: &Graph,
    target: &str,
) -> Result<(BuildResult, Attestations)> {
    let opts = BuildOptions { quiet: true, ..Default::default() };
    let res = build::build(ctx, graph, target, &opts)?;
    let a = attest_closure(ctx, graph, &res.closure, &store::out_dir(&res.entry))?;
    Ok((res, a))
}

/// `attest`: write each target's provenance and SBOM, and with `sign_key` their envelopes.
pub fn attest_targets(ctx: &RunContext, targets: &[String], sign_key: Option<&Path>) -> Result<()> {
    let key = sign_key.map(SecretKey::load).transpose()?;
    let graph = ctx.graph()?;
    graph.require_targets(targets)?;
    let root = ctx.project.out.join("attestations");
    for t in targets_or_default(&graph, targets) {
        let (res, a) = attest_target(ctx, &graph, &t)?;
        let node = res.closure.last().map(|n| n.name.clone()).unwrap_or_else(|| t.clone());
        let dir = Dir::create(&root)?.create_dir_all(Path::new(&node))?;
        dir.write_atomic(Path::new(PROVENANCE_FILE), &a.provenance, 0o644)?;
        dir.write_atomic(Path::new(SBOM_FILE), &a.sbom, 0o644)?;
        let mut written = vec![PROVENANCE_FILE, SBOM_FILE];
        if key.is_none() {
            // Envelopes of an earlier run would sign other documents than these.
            dir.remove_all(Path::new(PROVENANCE_ENVELOPE))?;
            dir.remove_all(Path::new(SBOM_ENVELOPE))?;
        }
        if let Some(key) = &key {
            for (file, statement) in
                [(PROVENANCE_ENVELOPE, &a.provenance), (SBOM_ENVELOPE, &a.sbom_statement)]
            {
                let env = attest::sign_envelope(key, statement);
                dir.write_atomic(Path::new(file), &serde_json::to_vec(&env)?, 0o644)?;
                written.push(file);
            }
        }
        progress::say(&format!(
            "{node}: provenance sha256:{} sbom sha256:{} -> {} ({})",
            &sha256_bytes(&a.provenance)[..16],
            &sha256_bytes(&a.sbom)[..16],
            root.join(&node).display(),
            written.join(", ")
        ));
    }
    Ok(())
}

/// What `verify` checks.
pub struct VerifyOptions {
    /// Envelope files; none means every DSSE referrer of the OCI layout `against`.
    pub envelopes: Vec<PathBuf>,
    pub trusted_keys: Vec<PathBuf>,
    /// An output directory or OCI layout holding the subjects.
    pub against: Option<PathBuf>,
    /// Check signatures and Statements only (no `against`), and say so.
    pub signature_only: bool,
}

/// `verify`: every envelope must be signed by a trusted key, hold an in-toto Statement, and
/// (with `against`) name subjects whose bytes are there. The first refusal is the error;
/// otherwise what each envelope was found to be.
pub fn verify(opts: &VerifyOptions) -> Result<Vec<VerifiedEnvelope>> {
    anyhow::ensure!(
        !opts.trusted_keys.is_empty(),
        "verify needs --trusted-attestation-key FILE (a public key written by `cargo xtask cache keygen`)"
    );
    anyhow::ensure!(
        opts.against.is_some() != opts.signature_only,
        "verify needs --against DIR (the outputs the statements are about) or, to check only who signed them, --signature-only"
    );
    let trusted: Vec<PublicKey> =
        crate::steps::substitution::keys::load_trusted(&opts.trusted_keys)?;
    let mut envelopes: Vec<(String, Vec<u8>)> = Vec::new();
    for p in &opts.envelopes {
        let bytes = std::fs::read(p).with_context(|| format!("reading {}", p.display()))?;
        envelopes.push((p.display().to_string(), bytes));
    }
    if opts.envelopes.is_empty() {
        let dir = opts.against.as_deref().context(
            "verify: name envelope files, or --against an OCI layout holding attestations",
        )?;
        envelopes = layout_envelopes(dir)?;
        anyhow::ensure!(
            !envelopes.is_empty(),
            "{}: the layout holds no DSSE attestation (push with --sign-key, then pull)",
            dir.display()
        );
    }
    let mut out = Vec::new();
    for (name, bytes) in &envelopes {
        let v =
            attest::open_envelope(&trusted, bytes).map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
        let checked = match &opts.against {
            Some(dir) => {
                let n = attest::check_subjects(&v.statement, dir)
                    .map_err(|e| anyhow::anyhow!("{name}: {e}"))?;
                format!("{n} subjects match {}", dir.display())
            }
            None => "subjects not checked (--signature-only)".to_string(),
        };
        out.push(VerifiedEnvelope {
            name: name.clone(),
            signer: v.key.to_string(),
            predicate_type: v.statement.predicate_type.clone(),
            subjects: v.statement.subject.len(),
            checked,
        });
    }
    Ok(out)
}

/// An envelope `verify` accepted.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct VerifiedEnvelope {
    /// The file (or `LAYOUT:DIGEST`) it was read from.
    pub name: String,
    /// The trusted key that signed it, by name and fingerprint.
    pub signer: String,
    pub predicate_type: String,
    pub subjects: usize,
    /// What was checked of the subjects.
    pub checked: String,
}

/// The DSSE layers of the attestation referrers in an OCI layout (untagged manifests with a
/// `subject` and one of our artifact types), by digest.
fn layout_envelopes(dir: &Path) -> Result<Vec<(String, Vec<u8>)>> {
    use crate::model::attestation::{PROVENANCE_ARTIFACT, SBOM_ARTIFACT};
    let layout = reprovm_oci::layout::Layout::open(dir)?;
    let mut out = Vec::new();
    for (tag, d) in layout.manifests() {
        let ours = [PROVENANCE_ARTIFACT, SBOM_ARTIFACT];
        if tag.is_some() || !d.artifact_type.as_deref().is_some_and(|t| ours.contains(&t)) {
            continue;
        }
        let bytes = layout.blob(&d)?;
        let m: reprovm_oci::spec::ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("{}: referrer {}", dir.display(), d.digest))?;
        if m.subject.is_none() {
            continue;
        }
        for l in
            m.layers.iter().filter(|l| l.media_type == crate::model::attestation::DSSE_MEDIA_TYPE)
        {
            out.push((format!("{}:{}", dir.display(), l.digest), layout.blob(l)?));
        }
    }
    Ok(out)
}
