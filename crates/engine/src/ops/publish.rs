//! `push TARGET REF` and `pull REF DIR`: OCI layouts to and from any registry that speaks the
//! distribution protocol, through this project's client (`client.rs`). Manifests travel as the
//! exact bytes of the layout (so their digests survive), blobs the registry already has are not
//! sent again, and a pull streams every blob into a temporary layout, each checked against its
//! descriptor's digest and size as it arrives, then renames it into place.
//!
//! What a pull keeps of what the registry says refers to an image: only manifests whose
//! `subject` is that image's digest, each under its own `artifactType`, once each. Every
//! candidate a referrers list names is fetched once whatever the list repeats, and at most
//! `MAX_REFERRERS` candidates are fetched in all (a list naming more is cut there, with a
//! warning); a listed referrer the registry cannot serve is skipped with a warning. The bytes
//! a pull takes are bounded in all (`--max-size`, default 4 GiB), counted
//! from what each descriptor declares before it is fetched.

use crate::model::attestation::{
    CYCLONEDX_PREDICATE, DSSE_MEDIA_TYPE, PROVENANCE_ARTIFACT, SBOM_ARTIFACT, SLSA_PROVENANCE,
};
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use crate::steps::attest::sign_envelope;
use crate::steps::substitution::keys::SecretKey;
use anyhow::{bail, Context, Result};
use reprovm_fs::hash::sha256_bytes;
use reprovm_fs::progress;
use reprovm_oci::client::{
    explicit_tag, plain, rate, Reference, Registry, RegistryError, INDEX_TYPE, MANIFEST_LIMIT,
    MANIFEST_TYPE,
};
use reprovm_oci::layout::{self, canonical_json, Layout, LayoutWriter, REF_NAME};
use reprovm_oci::spec::{self, Descriptor, ImageIndex, ImageManifest};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Instant;

/// The most layers a pulled manifest may have.
pub(crate) const MAX_LAYERS: usize = 256;
/// The most layers a referrer (a signature, an attestation: one or two) may have, so that
/// the cap on referrers also caps the requests they cost.
pub(crate) const MAX_REFERRER_LAYERS: usize = 8;
/// The most referrer candidates a pull fetches (kept or not).
pub(crate) const MAX_REFERRERS: usize = 64;
/// The largest image config a pull takes.
pub(crate) const CONFIG_LIMIT: u64 = 4 << 20;

/// `push TARGET REFERENCE`: build TARGET (an OCI layout) if needed and push every tag of it;
/// `REFERENCE` may add one more tag (`REGISTRY/REPO:TAG`).
pub fn push_target(
    ctx: &RunContext,
    target: &str,
    reference: &str,
    plain_http: bool,
    sign_key: Option<&Path>,
) -> Result<()> {
    let key = sign_key.map(SecretKey::load).transpose()?;
    let graph = ctx.graph()?;
    graph.require_oci(target, "push")?;
    check_destination(reference, plain_http)?;
    let res = build::build(ctx, &graph, target, &BuildOptions::default())?;
    let dir = crate::model::store::out_dir(&res.entry);
    if !dir.join("oci-layout").is_file() {
        bail!(
            "{target}'s output is not an OCI layout; push a recipe with [oci] (e.g. krata-kernel-oci)"
        );
    }
    // Nothing damaged is published: every file of the entry against its manifest.
    crate::model::store::seal::verify_or_refuse(&res.entry, &res.manifest)?;
    let (parsed, registry, extra_tag) = destination(reference, plain_http)?;
    let extra_tag = extra_tag.as_deref();
    let layout = Layout::open(&dir)?;
    // The attestations are made before anything is sent: a failure leaves no image behind
    // without them.
    let envelopes = match &key {
        Some(key) => {
            let a = crate::ops::attest::attest_closure(ctx, &graph, &res.closure, &dir)?;
            vec![
                (PROVENANCE_ARTIFACT, SLSA_PROVENANCE, sign_envelope(key, &a.provenance)),
                (SBOM_ARTIFACT, CYCLONEDX_PREDICATE, sign_envelope(key, &a.sbom_statement)),
            ]
        }
        None => Vec::new(),
    };
    // Everything by digest first, then what signs and attests it, and only then the tags: a
    // push that fails on the way moves no tag to an image without its signature.
    push_content(&registry, &layout, &parsed)?;
    if envelopes.is_empty() {
        push_tags(&registry, &layout, &parsed, extra_tag)?;
        progress::say(
            "no attestations attached (push --sign-key KEY attaches a signed provenance and SBOM, and cosign's signature)",
        );
        return Ok(());
    }
    // Every image of the layout (not its own referrers) gets both, as OCI 1.1 referrers and in
    // cosign's tag scheme with cosign's signature (`ops::cosign`).
    let mut images = BTreeSet::new();
    for d in layout
        .manifests()
        .into_iter()
        .map(|(_, d)| layout.images_of(&d))
        .collect::<Result<Vec<_>>>()?
        .into_iter()
        .flatten()
    {
        let m: ImageManifest = serde_json::from_slice(&layout.blob(&d)?)?;
        if m.subject.is_none() && images.insert(d.digest.clone()) {
            let mut for_cosign = Vec::new();
            for (artifact_type, predicate_type, env) in &envelopes {
                let bytes = serde_json::to_vec(env)?;
                attach(&registry, &parsed, &d, artifact_type, predicate_type, &bytes)?;
                for_cosign.push((*predicate_type, bytes));
            }
            if let Some(key) = &key {
                crate::ops::cosign::publish(&registry, &parsed, key, &d, &for_cosign)?;
            }
        }
    }
    push_tags(&registry, &layout, &parsed, extra_tag)
}

/// Where a push goes: the reference, its registry connected, and the one more tag it names.
fn destination(reference: &str, plain_http: bool) -> Result<(Reference, Registry, Option<String>)> {
    let (reference, plain_http) = plain(reference, plain_http);
    let parsed = Reference::parse(reference)?;
    let registry = Registry::connect(&parsed, plain_http)?;
    let extra_tag = explicit_tag(reference).then(|| parsed.tag().map(str::to_string)).flatten();
    Ok((parsed, registry, extra_tag))
}

/// Refuse a destination a push cannot go to before any work: not `REGISTRY/REPO[:TAG]`, a
/// digest (a push names tags), or plain HTTP to a registry off this machine. Nothing is
/// sent.
pub fn check_destination(reference: &str, plain_http: bool) -> Result<()> {
    let (reference, plain_http) = plain(reference, plain_http);
    let parsed = Reference::parse(reference)?;
    if parsed.digest().is_some() {
        bail!("{reference}: a push names a repository and a tag (REGISTRY/REPO:TAG), not a digest");
    }
    Registry::connect(&parsed, plain_http).map(|_| ())
}

/// Push a layout on disk (a multi-architecture one: `multiarch TARGET REF`) as it is: every tag,
/// every image of every index, every referrer; `REFERENCE` may add one more tag. With
/// `sign_key`, each tagged image and index, and each image an index lists, is signed for
/// cosign (`ops::cosign::sign_images`) before any tag moves.
pub fn push_layout(
    dir: &Path,
    reference: &str,
    plain_http: bool,
    sign_key: Option<&Path>,
) -> Result<()> {
    let key = sign_key.map(SecretKey::load).transpose()?;
    let (parsed, registry, extra_tag) = destination(reference, plain_http)?;
    let extra_tag = extra_tag.as_deref();
    let layout = Layout::open(dir)?;
    push_content(&registry, &layout, &parsed)?;
    if let Some(key) = &key {
        let n = crate::ops::cosign::sign_images(&registry, &parsed, key, &layout)?;
        progress::say(&format!("signed {n} digests for cosign"));
    }
    push_tags(&registry, &layout, &parsed, extra_tag)
}

/// Push a DSSE envelope as an OCI 1.1 referrer of `subject`: an artifact manifest (empty
/// config, the envelope as its one layer, `artifactType`), listed in the referrers tag. The
/// image's own manifests and index are not touched, so its digests stay the pinned ones.
fn attach(
    reg: &Registry,
    reference: &Reference,
    subject: &Descriptor,
    artifact_type: &str,
    predicate_type: &str,
    envelope: &[u8],
) -> Result<()> {
    let empty = b"{}";
    let config = Descriptor::new(spec::EMPTY, &sha256_bytes(empty), empty.len() as u64);
    reg.send_blob(reference, &config.digest, config.size, &mut &empty[..])?;
    let layer = Descriptor::new(DSSE_MEDIA_TYPE, &sha256_bytes(envelope), envelope.len() as u64)
        .with_annotations(BTreeMap::from([(
            "in-toto.io/predicate-type".to_string(),
            predicate_type.to_string(),
        )]));
    reg.send_blob(reference, &layer.digest, layer.size, &mut &envelope[..])?;
    let mut manifest = ImageManifest::new(config, vec![layer]);
    manifest.artifact_type = Some(artifact_type.to_string());
    let mut subject = subject.clone();
    subject.annotations.clear();
    subject.artifact_type = None;
    subject.platform = None;
    manifest.subject = Some(subject.clone());
    let bytes = canonical_json(&manifest)?;
    let d = Descriptor::new(spec::MANIFEST, &sha256_bytes(&bytes), bytes.len() as u64);
    reg.put_manifest(&reference.at_digest(&d.digest), &bytes, MANIFEST_TYPE)?;
    progress::say(&format!("  attached {artifact_type} {} to {}", d.digest, subject.digest));
    add_referrer(reg, reference, &subject, &d, &manifest)
}

/// `pull REFERENCE DIR`: a tag or digest and what refers to it, into a new layout at `dir`,
/// taking at most `max_bytes` in all.
pub fn pull_reference(reference: &str, dir: &Path, plain_http: bool, max_bytes: u64) -> Result<()> {
    let (reference, plain_http) = plain(reference, plain_http);
    anyhow::ensure!(max_bytes > 0, "--max-size 0: a pull takes at least its manifest");
    if std::fs::symlink_metadata(dir).is_ok() {
        bail!("{} exists; pull writes a new layout", dir.display());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    anyhow::ensure!(
        parent.is_dir(),
        "{}: no such directory to pull into (create it first)",
        parent.display()
    );
    let parsed = Reference::parse(reference)?;
    if !explicit_tag(reference) && parsed.digest().is_none() {
        bail!("{reference}: name a tag (:TAG) or a digest (@sha256:...) to pull");
    }
    let registry = Registry::connect(&parsed, plain_http)?;
    pull(&registry, &parsed, dir, &Budget::new(max_bytes))
}

/// The bytes a pull may still take: each document and blob is counted, by the size it is
/// declared to have, before it is fetched.
struct Budget {
    limit: u64,
    used: std::cell::Cell<u64>,
}

impl Budget {
    fn new(limit: u64) -> Budget {
        Budget { limit, used: std::cell::Cell::new(0) }
    }

    fn take(&self, what: &str, bytes: u64) -> Result<()> {
        let used = self.used.get().saturating_add(bytes);
        if used > self.limit {
            return Err(OverBudget(format!(
                "{what} declares {bytes} bytes: the pull would take more than its limit of {} (pass --max-size to raise it)",
                self.limit
            ))
            .into());
        }
        self.used.set(used);
        Ok(())
    }
}

/// A pull over its budget: the end of the pull, not a referrer to skip.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
struct OverBudget(String);

/// Writing the pulled layout failed on this machine (a full disk, a permission): the end of
/// the pull, never a referrer to skip.
#[derive(Debug, thiserror::Error)]
#[error("writing the pulled layout: {0:#}")]
struct LayoutWriteFailed(anyhow::Error);

/// Whether a referrer's failure ends the pull (over budget, or this machine's own failure)
/// rather than skipping the referrer (what the registry served, or failed to serve).
fn ends_the_pull(e: &anyhow::Error) -> bool {
    e.downcast_ref::<OverBudget>().is_some() || e.downcast_ref::<LayoutWriteFailed>().is_some()
}

/// Send one blob of a layout unless the registry has it, saying which.
fn push_blob(reg: &Registry, r: &Reference, layout: &Layout, d: &Descriptor) -> Result<()> {
    let digest = d.digest.clone();
    let t = Instant::now();
    let mut file = layout.dir.open_file(&layout::blob_path(d.hex()))?;
    if reg.send_blob(r, &digest, d.size, &mut file)? {
        progress::say(&format!(
            "  {digest}: sent {} in {}",
            progress::human_bytes(d.size),
            rate(d.size, t)
        ));
    } else {
        progress::say(&format!("  {digest}: already there ({})", progress::human_bytes(d.size)));
    }
    Ok(())
}

/// Every blob and manifest of the layout, by digest (no tag moves): an image index after
/// every manifest it lists.
fn push_content(reg: &Registry, layout: &Layout, reference: &Reference) -> Result<()> {
    layout.verify().context("the layout to push does not verify")?;
    // Every manifest once (a manifest listed under several tags is sent once).
    let mut sent = BTreeSet::new();
    for (_, d) in &layout.manifests() {
        if d.media_type == spec::INDEX {
            for image in layout.images_of(d)? {
                push_image(reg, layout, reference, &image, &mut sent)?;
            }
            if sent.insert(d.digest.clone()) {
                let bytes = layout.blob(d)?;
                reg.put_manifest(&reference.at_digest(&d.digest), &bytes, INDEX_TYPE)?;
                progress::say(&format!("  index {} of its platforms' manifests", d.digest));
            }
        } else {
            push_image(reg, layout, reference, d, &mut sent)?;
        }
    }
    Ok(())
}

/// Every tag of the layout, and `extra_tag` for its first manifest, once its content is there.
fn push_tags(
    reg: &Registry,
    layout: &Layout,
    reference: &Reference,
    extra_tag: Option<&str>,
) -> Result<()> {
    let manifests = layout.manifests();
    let main = manifests
        .first()
        .map(|(_, d)| d.clone())
        .context("the layout's index.json lists no manifest")?;
    let media_type =
        |d: &Descriptor| if d.media_type == spec::INDEX { INDEX_TYPE } else { MANIFEST_TYPE };
    for (tag, d) in &manifests {
        if let Some(tag) = tag {
            reg.put_manifest(&reference.at_tag(tag), &layout.blob(d)?, media_type(d))?;
            progress::say(&format!("  tagged {} as {tag}", d.digest));
        }
    }
    if let Some(tag) = extra_tag {
        reg.put_manifest(&reference.at_tag(tag), &layout.blob(&main)?, media_type(&main))?;
        progress::say(&format!("  tagged {} as {tag}", main.digest));
    }
    Ok(())
}

/// Send one image manifest of a layout with its config and layers (unless already sent),
/// and list it in its subject's referrers.
fn push_image(
    reg: &Registry,
    layout: &Layout,
    reference: &Reference,
    d: &Descriptor,
    sent: &mut BTreeSet<String>,
) -> Result<()> {
    let digest = d.digest.clone();
    if !sent.insert(digest.clone()) {
        return Ok(());
    }
    let bytes = layout.blob(d)?;
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .with_context(|| format!("manifest {digest} of the layout"))?;
    progress::say(&format!(
        "pushing {digest} to {}/{}",
        reference.registry(),
        reference.repository()
    ));
    push_blob(reg, reference, layout, &manifest.config)?;
    for l in &manifest.layers {
        push_blob(reg, reference, layout, l)?;
    }
    reg.put_manifest(&reference.at_digest(&digest), &bytes, MANIFEST_TYPE)?;
    if let Some(subject) = &manifest.subject {
        add_referrer(reg, reference, subject, d, &manifest)?;
    }
    Ok(())
}

/// The referrers tag schema (distribution-spec): registries without the referrers API (such
/// as distribution 2.x) find a manifest's referrers in an index tagged `sha256-<hex>`, which
/// the client keeps. Add `d` to it.
fn add_referrer(
    reg: &Registry,
    reference: &Reference,
    subject: &Descriptor,
    d: &Descriptor,
    manifest: &ImageManifest,
) -> Result<()> {
    let tag = subject.digest.clone().replace(':', "-");
    let at = reference.at_tag(&tag);
    let mut entries = match referrers_index(reg, &at)? {
        Some(index) => index.manifests,
        None => Vec::new(),
    };
    if entries.iter().any(|e| e.digest == d.digest) {
        return Ok(());
    }
    let mut entry = d.clone();
    entry.artifact_type = manifest.artifact_type.clone();
    entry.annotations = manifest.annotations.clone();
    entries.push(entry);
    let index = ImageIndex::new(entries);
    reg.put_manifest(&at, &canonical_json(&index)?, INDEX_TYPE)?;
    progress::say(&format!("  {} refers to {} (referrers tag {tag})", d.digest, subject.digest));
    Ok(())
}

/// The referrers index at `at` (a `sha256-<hex>` tag), or None when the registry has none.
fn referrers_index(reg: &Registry, at: &Reference) -> Result<Option<ImageIndex>> {
    match reg.manifest(at, &[INDEX_TYPE])? {
        Some(f) => Ok(Some(
            serde_json::from_slice(&f.bytes)
                .with_context(|| format!("the referrers index {at} is not an OCI image index"))?,
        )),
        None => Ok(None),
    }
}

/// The name of a pull's temporary layout beside `dir`: `.pull-PID-NAME`, so that the next
/// pull into the same directory can tell a killed one's leftovers (its PID is gone).
fn pull_temp_name(dir: &Path) -> String {
    let name = dir.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    format!(".pull-{}-{name}", std::process::id())
}

/// Remove `.pull-PID-*` directories in `parent` whose process has exited.
fn sweep_pulls(parent: &reprovm_fs::beneath::Dir) -> Result<()> {
    for name in parent.names()? {
        let name = name.to_string_lossy().into_owned();
        let Some(rest) = name.strip_prefix(".pull-") else { continue };
        let Some(pid) = rest.split('-').next().and_then(|p| p.parse::<u32>().ok()) else {
            continue;
        };
        if pid != std::process::id() && !Path::new("/proc").join(pid.to_string()).exists() {
            parent.remove_all(Path::new(&name))?;
        }
    }
    Ok(())
}

/// Pull `reference` (its manifest, config and layers, and the artifacts that refer to it; for
/// an image index, every platform's manifest and the artifacts that refer to the index or to
/// any of them) into a new layout at `dir`.
fn pull(reg: &Registry, reference: &Reference, dir: &Path, budget: &Budget) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        bail!("{} exists; pull writes a new layout", dir.display());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let parent_dir = reprovm_fs::beneath::Dir::open(parent)?;
    sweep_pulls(&parent_dir)?;
    let tmp_name = pull_temp_name(dir);
    parent_dir.remove_all(Path::new(&tmp_name))?;
    let tmp = parent.join(&tmp_name);
    let result = (|| -> Result<()> {
        let w = LayoutWriter::create(&tmp)?;
        let main = reg
            .manifest(reference, &[MANIFEST_TYPE, INDEX_TYPE])?
            .with_context(|| format!("{reference}: the registry has no such manifest"))?;
        budget.take(&format!("{reference}"), main.bytes.len() as u64)?;
        // What the bytes say they are decides (a registry's Content-Type is only a claim).
        let kind: MediaTypeOnly = serde_json::from_slice(&main.bytes)
            .with_context(|| format!("{reference}: {} is not an OCI document", main.digest))?;
        let (main_d, images) = if kind.media_type.as_deref() == Some(spec::INDEX) {
            store_index(reg, reference, &w, &main.bytes, &main.digest, budget)?
        } else {
            let d = store_manifest(reg, reference, &w, &main.bytes, &main.digest, None, budget)?;
            (d.clone(), vec![d])
        };
        progress::say(&format!("pulled {reference} = {}", main.digest));
        let mut index = match reference.tag().filter(|_| reference.digest().is_none()) {
            Some(tag) => vec![with_ref_name(&main_d, tag)],
            None => vec![main_d.clone()],
        };
        // Artifacts that refer to each image, through the referrers tag schema: only those
        // whose subject is that image, each once. An image index is a subject too (a
        // signature or an SBOM of the multi-architecture image as a whole).
        let subjects = if main_d.media_type == spec::INDEX {
            [vec![main_d.clone()], images].concat()
        } else {
            images
        };
        // Every candidate once, whatever the lists repeat; at most MAX_REFERRERS fetched.
        let mut seen = BTreeSet::new();
        'subjects: for image in &subjects {
            let referrers_tag = image.digest.replace(':', "-");
            let Some(referrers) = referrers_index(reg, &reference.at_tag(&referrers_tag))? else {
                continue;
            };
            for r in &referrers.manifests {
                let digest = r.digest.clone();
                if let Err(e) = reprovm_oci::client::check_digest(&digest) {
                    progress::say(&format!("  skipped a referrer listed as `{digest}`: {e:#}"));
                    continue;
                }
                if !seen.insert(digest.clone()) {
                    continue;
                }
                if seen.len() > MAX_REFERRERS {
                    let left = referrers.manifests.len();
                    progress::say(&format!(
                        "  warning: {reference}: the registry lists more than {MAX_REFERRERS} referrer candidates (this list alone {left}); the rest are not fetched"
                    ));
                    break 'subjects;
                }
                match pull_referrer(reg, reference, &w, &digest, &image.digest, budget) {
                    Ok(d) => index.push(d),
                    Err(e) if ends_the_pull(&e) => return Err(e),
                    Err(e) => progress::say(&format!("  skipped referrer {digest}: {e:#}")),
                }
            }
        }
        w.finish(index)?;
        Layout::open(&tmp)?.verify().context("the pulled layout does not verify")?;
        Ok(())
    })();
    if let Err(e) = result {
        parent_dir.remove_all(Path::new(&tmp_name))?;
        return Err(e);
    }
    std::fs::rename(&tmp, dir)
        .with_context(|| format!("renaming the pulled layout to {}", dir.display()))?;
    progress::say(&format!("wrote {}", dir.display()));
    Ok(())
}

/// A referrer candidate of `subject`: its manifest, config and layers into the layout, or
/// why it is not kept (not served, not a referrer of `subject`, a blob refused). A budget
/// exceeded ends the pull (its error is no reason to skip).
fn pull_referrer(
    reg: &Registry,
    reference: &Reference,
    w: &LayoutWriter,
    digest: &str,
    subject: &str,
    budget: &Budget,
) -> Result<Descriptor> {
    let at = reference.at_digest(digest);
    let f = reg
        .manifest(&at, &[MANIFEST_TYPE])?
        .with_context(|| format!("the registry lists {at} but does not serve it"))?;
    budget.take(&format!("referrer {digest}"), f.bytes.len() as u64)?;
    store_manifest(reg, reference, w, &f.bytes, &f.digest, Some(subject), budget)
}

/// The most platforms a pulled image index may list.
pub(crate) const MAX_PLATFORMS: usize = 16;

/// Only a document's `mediaType` (to tell an index from a manifest).
#[derive(serde::Deserialize)]
#[serde(rename_all = "camelCase")]
struct MediaTypeOnly {
    media_type: Option<String>,
}

/// Check an image index (bytes already checked against its digest), pull every image
/// manifest it lists (each by digest, with its config and layers, each checked), store it.
/// Returns its descriptor and those of its images.
fn store_index(
    reg: &Registry,
    reference: &Reference,
    w: &LayoutWriter,
    bytes: &[u8],
    digest: &str,
    budget: &Budget,
) -> Result<(Descriptor, Vec<Descriptor>)> {
    anyhow::ensure!(bytes.len() as u64 <= MANIFEST_LIMIT, "image index {digest}: too large");
    let index: ImageIndex = serde_json::from_slice(bytes)
        .with_context(|| format!("{digest} from {reference} is not an OCI image index"))?;
    if index.manifests.len() > MAX_PLATFORMS {
        bail!(
            "image index {digest} lists {} manifests, more than {MAX_PLATFORMS}",
            index.manifests.len()
        );
    }
    let mut images: Vec<Descriptor> = Vec::new();
    for m in &index.manifests {
        reprovm_oci::client::check_digest(&m.digest)
            .with_context(|| format!("image index {digest} lists `{}`", m.digest))?;
        if images.iter().any(|i| i.digest == m.digest) {
            continue;
        }
        anyhow::ensure!(
            m.media_type == spec::MANIFEST,
            "image index {digest} lists {} of type {}: only image manifests are pulled",
            m.digest,
            m.media_type
        );
        let at = reference.at_digest(&m.digest);
        budget.take(&format!("manifest {}", m.digest), m.size)?;
        let f = reg
            .manifest(&at, &[MANIFEST_TYPE])?
            .with_context(|| format!("image index {digest} lists {at}, which is missing"))?;
        anyhow::ensure!(
            f.digest == m.digest && f.bytes.len() as u64 == m.size,
            "image index {digest}: {} is not the {} bytes it lists",
            m.digest,
            m.size
        );
        store_manifest(reg, reference, w, &f.bytes, &f.digest, None, budget)?;
        images.push(m.clone());
    }
    let hex = w.blob_bytes(bytes)?;
    let d = layout::descriptor(spec::INDEX, &hex, bytes.len() as u64, BTreeMap::new());
    Ok((d, images))
}

/// Check a manifest (bytes already checked against its digest by the client), fetch its config
/// and layers into the layout (each streamed, checked against digest and size), store it and
/// describe it with its own `artifactType`. With `subject`, it must refer to that digest.
fn store_manifest(
    reg: &Registry,
    reference: &Reference,
    w: &LayoutWriter,
    bytes: &[u8],
    digest: &str,
    subject: Option<&str>,
    budget: &Budget,
) -> Result<Descriptor> {
    anyhow::ensure!(bytes.len() as u64 <= MANIFEST_LIMIT, "manifest {digest}: too large");
    let manifest: ImageManifest = serde_json::from_slice(bytes)
        .with_context(|| format!("{digest} from {reference} is not an OCI image manifest"))?;
    if let Some(subject) = subject {
        let says = manifest.subject.as_ref().map(|s| s.digest.clone());
        if says.as_deref() != Some(subject) {
            bail!(
                "listed as a referrer of {subject}, its subject is {}",
                says.as_deref().unwrap_or("missing")
            );
        }
    }
    let most = if subject.is_some() { MAX_REFERRER_LAYERS } else { MAX_LAYERS };
    if manifest.layers.len() > most {
        bail!("manifest {digest} has {} layers, more than {most}", manifest.layers.len());
    }
    if manifest.config.size > CONFIG_LIMIT {
        bail!(
            "manifest {digest}: its config declares {} bytes, more than the limit of {CONFIG_LIMIT}",
            manifest.config.size
        );
    }
    for d in std::iter::once(manifest.config).chain(manifest.layers) {
        let want = d.digest.clone();
        budget.take(&format!("blob {want} of {digest}"), d.size)?;
        let t = Instant::now();
        let (hex, size, ()) = w
            .blob_stream(|out| reg.blob_into(reference, &want, d.size, out).map_err(Into::into))
            .map_err(|e| match e.downcast_ref::<RegistryError>() {
                Some(_) => e,
                None => LayoutWriteFailed(e).into(),
            })?;
        anyhow::ensure!(
            format!("sha256:{hex}") == want && size == d.size,
            "blob {want}: stored bytes differ"
        );
        progress::say(&format!("  {want}: {}", rate(d.size, t)));
    }
    let hex = w.blob_bytes(bytes).map_err(LayoutWriteFailed)?;
    let mut d = layout::descriptor(spec::MANIFEST, &hex, bytes.len() as u64, BTreeMap::new());
    if subject.is_some() {
        // A referrer is listed under its own artifactType, whatever the registry's list said.
        d.artifact_type = manifest.artifact_type.clone();
    }
    Ok(d)
}

fn with_ref_name(d: &Descriptor, tag: &str) -> Descriptor {
    let mut out = d.clone();
    out.annotations.insert(REF_NAME.to_string(), tag.to_string());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_budget_and_local_writes_end_a_pull() {
        let refused: anyhow::Error = RegistryError::Refused("a lying referrer".into()).into();
        assert!(!ends_the_pull(&refused.context("referrer sha256:ab")));
        assert!(!ends_the_pull(&anyhow::anyhow!("listed as a referrer of x, its subject is y")));
        let disk = std::io::Error::new(std::io::ErrorKind::StorageFull, "no space left");
        let local: anyhow::Error = LayoutWriteFailed(disk.into()).into();
        assert!(ends_the_pull(&local.context("referrer sha256:ab")));
        assert!(ends_the_pull(&OverBudget("pull over 4G".into()).into()));
    }
}
