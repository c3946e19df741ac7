//! `push TARGET REF` and `pull REF DIR`: OCI layouts to and from any registry that speaks the
//! distribution protocol, through the `oci-client` crate. Credentials come from the docker
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`, credential helpers included); plain HTTP is
//! allowed only for loopback registries. Manifests travel as the exact bytes of the layout (so
//! their digests survive), blobs the registry already has are not sent again, and every blob
//! pulled is checked against its digest before the layout appears (temp directory, rename).

use super::client::{
    at_digest, at_tag, explicit_tag, parse_reference, rate, Registry, INDEX_TYPE, MANIFEST_TYPE,
};
use super::layout::{self, canonical_json, Layout, LayoutWriter, REF_NAME};
use crate::build::{self, Options};
use crate::fetch::Fetcher;
use crate::progress;
use crate::project::Project;
use anyhow::{bail, Context, Result};
use oci_client::Reference;
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// A recipe whose output is an OCI layout (built first if needed), e.g. krata-kernel-oci.
    pub target: String,
    /// Destination repository, `REGISTRY/REPO` or `REGISTRY/REPO:TAG`. Every tag of the
    /// layout is pushed; `:TAG` adds one for its main manifest.
    pub reference: String,
    /// Speak plain HTTP (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
}

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:...`.
    pub reference: String,
    /// Directory to create as the OCI layout (must not exist).
    pub dir: PathBuf,
    /// Speak plain HTTP (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
}

impl PushArgs {
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<()> {
        let graph = project.graph()?;
        let opts = Options { jobs: crate::util::default_jobs(), ..Default::default() };
        let res = build::build(project, &graph, fetcher, &self.target, &opts)?;
        let dir = crate::store::out_dir(&res.entry);
        if !dir.join("oci-layout").is_file() {
            bail!(
                "{}'s output is not an OCI layout; push a recipe with [oci] (e.g. krata-kernel-oci)",
                self.target
            );
        }
        let reference = parse_reference(&self.reference)?;
        let registry = Registry::connect(&reference, self.plain_http)?;
        let extra_tag = explicit_tag(&self.reference).then(|| reference.tag()).flatten();
        registry.block_on(push(&registry, &Layout::open(&dir)?, &reference, extra_tag))
    }
}

impl PullArgs {
    pub fn run(&self) -> Result<()> {
        let reference = parse_reference(&self.reference)?;
        if !explicit_tag(&self.reference) && reference.digest().is_none() {
            bail!("{}: name a tag (:TAG) or a digest (@sha256:...) to pull", self.reference);
        }
        let registry = Registry::connect(&reference, self.plain_http)?;
        registry.block_on(pull(&registry, &reference, &self.dir))
    }
}

/// Send one blob of a layout unless the registry has it, saying which.
async fn push_blob(reg: &Registry, r: &Reference, layout: &Layout, d: &Descriptor) -> Result<()> {
    let digest = d.digest().to_string();
    if reg.has_blob(r, &digest).await? {
        progress::say(&format!("  {digest}: already there ({})", progress::human_bytes(d.size())));
        return Ok(());
    }
    let t = Instant::now();
    reg.send_blob(r, &digest, layout.blob(d)?).await?;
    progress::say(&format!(
        "  {digest}: sent {} in {}",
        progress::human_bytes(d.size()),
        rate(d.size(), t)
    ));
    Ok(())
}

async fn push(
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
    // Every manifest once (a manifest listed under several tags is sent once per tag).
    let mut sent: BTreeMap<String, ()> = BTreeMap::new();
    for (tag, d) in &manifests {
        let digest = d.digest().to_string();
        let bytes = layout.blob(d)?;
        let manifest: ImageManifest = serde_json::from_slice(&bytes)
            .with_context(|| format!("manifest {digest} of the layout"))?;
        if sent.insert(digest.clone(), ()).is_none() {
            progress::say(&format!(
                "pushing {digest} to {}/{}",
                reference.registry(),
                reference.repository()
            ));
            push_blob(reg, reference, layout, manifest.config()).await?;
            for l in manifest.layers() {
                push_blob(reg, reference, layout, l).await?;
            }
            reg.put_manifest(&at_digest(reference, &digest), bytes.clone(), MANIFEST_TYPE).await?;
            if let Some(subject) = manifest.subject() {
                add_referrer(reg, reference, subject, d, &manifest).await?;
            }
        }
        if let Some(tag) = tag {
            reg.put_manifest(&at_tag(reference, tag), bytes.clone(), MANIFEST_TYPE).await?;
            progress::say(&format!("  tagged {digest} as {tag}"));
        }
    }
    if let Some(tag) = extra_tag {
        let bytes = layout.blob(&main)?;
        reg.put_manifest(&at_tag(reference, tag), bytes, MANIFEST_TYPE).await?;
        progress::say(&format!("  tagged {} as {tag}", main.digest()));
    }
    Ok(())
}

/// The referrers tag schema (distribution-spec): registries without the referrers API (such
/// as distribution 2.x) find a manifest's referrers in an index tagged `sha256-<hex>`, which
/// the client keeps. Add `d` to it.
async fn add_referrer(
    reg: &Registry,
    reference: &Reference,
    subject: &Descriptor,
    d: &Descriptor,
    manifest: &ImageManifest,
) -> Result<()> {
    let tag = subject.digest().to_string().replace(':', "-");
    let at = at_tag(reference, &tag);
    let mut entries = match referrers_index(reg, &at).await? {
        Some(index) => index.manifests().clone(),
        None => Vec::new(),
    };
    if entries.iter().any(|e| e.digest() == d.digest()) {
        return Ok(());
    }
    let mut entry = d.clone();
    entry.set_annotations(manifest.annotations().clone());
    entries.push(entry);
    let index = ImageIndexBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageIndex)
        .manifests(entries)
        .build()?;
    reg.put_manifest(&at, canonical_json(&index)?, INDEX_TYPE).await?;
    progress::say(&format!(
        "  {} refers to {} (referrers tag {tag})",
        d.digest(),
        subject.digest()
    ));
    Ok(())
}

/// The referrers index at `at` (a `sha256-<hex>` tag), or None when the registry has none.
async fn referrers_index(reg: &Registry, at: &Reference) -> Result<Option<ImageIndex>> {
    match reg.manifest(at, &[INDEX_TYPE]).await? {
        Some((bytes, _)) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("the referrers index {at}"))?,
        )),
        None => Ok(None),
    }
}

/// Pull `reference` (its manifest, config and layers, and the artifacts that refer to it)
/// into a new layout at `dir`.
async fn pull(reg: &Registry, reference: &Reference, dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        bail!("{} exists; pull writes a new layout", dir.display());
    }
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new().prefix(".pull-").tempdir_in(parent)?;
    let w = LayoutWriter::create(tmp.path())?;

    let (bytes, digest) = reg
        .manifest(reference, &[MANIFEST_TYPE])
        .await?
        .with_context(|| format!("{reference}: the registry has no such manifest"))?;
    let main = store_manifest(reg, reference, &w, &bytes, &digest).await?;
    progress::say(&format!("pulled {reference} = {digest}"));
    let mut index = match reference.tag().filter(|_| reference.digest().is_none()) {
        Some(tag) => vec![with_ref_name(&main, tag)],
        None => vec![main.clone()],
    };
    // Artifacts that refer to it, through the referrers tag schema.
    let referrers_tag = digest.replace(':', "-");
    if let Some(referrers) = referrers_index(reg, &at_tag(reference, &referrers_tag)).await? {
        for r in referrers.manifests() {
            let at = at_digest(reference, r.digest().as_ref());
            let (rb, rd) = reg
                .manifest(&at, &[MANIFEST_TYPE])
                .await?
                .with_context(|| format!("the referrer {at} is listed but missing"))?;
            let mut d = store_manifest(reg, reference, &w, &rb, &rd).await?;
            d.set_artifact_type(r.artifact_type().clone());
            index.push(d);
        }
    }
    w.finish(index)?;
    Layout::open(tmp.path())?.verify().context("the pulled layout does not verify")?;
    let kept = tmp.keep();
    std::fs::rename(&kept, dir)
        .with_context(|| format!("renaming the pulled layout to {}", dir.display()))?;
    progress::say(&format!("wrote {}", dir.display()));
    Ok(())
}

/// Check a manifest's bytes against its digest, fetch its config and layers (each checked
/// by oci-client against its digest while it streams, and again from the layout), store it.
async fn store_manifest(
    reg: &Registry,
    reference: &Reference,
    w: &LayoutWriter,
    bytes: &[u8],
    digest: &str,
) -> Result<Descriptor> {
    let hex = crate::hash::sha256_bytes(bytes);
    if format!("sha256:{hex}") != digest {
        bail!("the manifest from {reference} hashes to sha256:{hex}, not {digest}");
    }
    let manifest: ImageManifest =
        serde_json::from_slice(bytes).with_context(|| format!("manifest {digest}"))?;
    for d in std::iter::once(manifest.config()).chain(manifest.layers()) {
        let want = d.digest().to_string();
        let t = Instant::now();
        let mut buf = Vec::new();
        reg.blob_into(reference, &want, d.size(), &mut buf).await?;
        w.blob_bytes(&buf)?;
        progress::say(&format!("  {want}: {}", rate(d.size(), t)));
    }
    w.blob_bytes(bytes)?;
    layout::descriptor(MediaType::ImageManifest, &hex, bytes.len() as u64, BTreeMap::new())
}

fn with_ref_name(d: &Descriptor, tag: &str) -> Descriptor {
    let mut out = d.clone();
    let mut a = out.annotations().clone().unwrap_or_default();
    a.insert(REF_NAME.to_string(), tag.to_string());
    out.set_annotations(Some(a));
    out
}
