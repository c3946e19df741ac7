//! `push TARGET REF` and `pull REF DIR`: OCI layouts to and from any registry that speaks the
//! distribution protocol, through the `oci-client` crate. Credentials come from the docker
//! `config.json` (`$DOCKER_CONFIG` or `~/.docker`, credential helpers included); plain HTTP is
//! allowed only for loopback registries. Manifests travel as the exact bytes of the layout (so
//! their digests survive), blobs the registry already has are not sent again, and every blob
//! pulled is checked against its digest before the layout appears (temp directory, rename).

use super::layout::{self, canonical_json, Layout, LayoutWriter, REF_NAME};
use crate::build::{self, Options};
use crate::fetch::Fetcher;
use crate::progress;
use crate::project::Project;
use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use oci_spec::image::{Descriptor, ImageIndex, ImageIndexBuilder, ImageManifest, MediaType};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Instant;

const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

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
        registry.runtime.block_on(push(&registry, &Layout::open(&dir)?, &reference, extra_tag))
    }
}

impl PullArgs {
    pub fn run(&self) -> Result<()> {
        let reference = parse_reference(&self.reference)?;
        if !explicit_tag(&self.reference) && reference.digest().is_none() {
            bail!("{}: name a tag (:TAG) or a digest (@sha256:...) to pull", self.reference);
        }
        let registry = Registry::connect(&reference, self.plain_http)?;
        registry.runtime.block_on(pull(&registry, &reference, &self.dir))
    }
}

/// Whether the reference text names a tag (the parser fills in `latest` when it does not).
fn explicit_tag(s: &str) -> bool {
    !s.contains('@') && s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

fn parse_reference(s: &str) -> Result<Reference> {
    s.parse::<Reference>()
        .with_context(|| format!("`{s}` is not an image reference (REGISTRY/REPO[:TAG|@DIGEST])"))
}

/// A client for one registry, with its credentials, on a runtime of its own.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

impl Registry {
    pub fn connect(reference: &Reference, plain_http: bool) -> Result<Registry> {
        // reqwest over rustls needs a crypto provider; ring, as ureq uses. Installing fails
        // only when one is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = reference.resolve_registry().to_string();
        let protocol = if plain_http {
            if !is_loopback(&host) {
                bail!("--plain-http is only for registries on this machine (127.0.0.1, ::1, localhost), not {host}");
            }
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            read_timeout: Some(std::time::Duration::from_secs(120)),
            connect_timeout: Some(std::time::Duration::from_secs(20)),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        Ok(Registry { client: Client::new(config), auth: credentials(&host)?, runtime })
    }
}

/// `host[:port]` is this machine.
fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Credentials for `host` from the docker config; anonymous when it names none.
fn credentials(host: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(host) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(t)) => Ok(RegistryAuth::Bearer(t)),
        Err(E::ConfigNotFound | E::NoCredentialConfigured | E::ConfigReadError) => {
            Ok(RegistryAuth::Anonymous)
        }
        Err(e) => Err(anyhow::anyhow!("credentials for {host} from the docker config.json: {e:?}")),
    }
}

fn at_digest(r: &Reference, digest: &str) -> Reference {
    Reference::with_digest(r.registry().to_string(), r.repository().to_string(), digest.to_string())
}

fn at_tag(r: &Reference, tag: &str) -> Reference {
    Reference::with_tag(r.registry().to_string(), r.repository().to_string(), tag.to_string())
}

/// Send one blob unless the registry has it.
async fn push_blob(reg: &Registry, r: &Reference, layout: &Layout, d: &Descriptor) -> Result<()> {
    let digest = d.digest().to_string();
    if reg
        .client
        .blob_exists(r, &digest)
        .await
        .with_context(|| format!("asking {r} for {digest}"))?
    {
        progress::say(&format!("  {digest}: already there ({})", progress::human_bytes(d.size())));
        return Ok(());
    }
    let data = layout.blob(d)?;
    let t = Instant::now();
    reg.client
        .push_blob(r, data, &digest)
        .await
        .with_context(|| format!("pushing {digest} to {r}"))?;
    progress::say(&format!(
        "  {digest}: sent {} in {}",
        progress::human_bytes(d.size()),
        rate(d.size(), t)
    ));
    Ok(())
}

fn rate(bytes: u64, since: Instant) -> String {
    let s = since.elapsed().as_secs_f64().max(1e-3);
    format!(
        "{} ({}/s)",
        progress::human_duration(since.elapsed()),
        progress::human_bytes((bytes as f64 / s) as u64)
    )
}

async fn push(
    reg: &Registry,
    layout: &Layout,
    reference: &Reference,
    extra_tag: Option<&str>,
) -> Result<()> {
    reg.client.store_auth_if_needed(reference.resolve_registry(), &reg.auth).await;
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
            put_manifest(reg, &at_digest(reference, &digest), bytes.clone(), MANIFEST_TYPE).await?;
            if let Some(subject) = manifest.subject() {
                add_referrer(reg, reference, subject, d, &manifest).await?;
            }
        }
        if let Some(tag) = tag {
            put_manifest(reg, &at_tag(reference, tag), bytes.clone(), MANIFEST_TYPE).await?;
            progress::say(&format!("  tagged {digest} as {tag}"));
        }
    }
    if let Some(tag) = extra_tag {
        let bytes = layout.blob(&main)?;
        put_manifest(reg, &at_tag(reference, tag), bytes, MANIFEST_TYPE).await?;
        progress::say(&format!("  tagged {} as {tag}", main.digest()));
    }
    Ok(())
}

async fn put_manifest(
    reg: &Registry,
    r: &Reference,
    bytes: Vec<u8>,
    media_type: &str,
) -> Result<()> {
    let content_type = media_type.parse().context("media type header")?;
    reg.client
        .push_manifest_raw(r, bytes, content_type)
        .await
        .with_context(|| format!("putting the manifest {r}"))?;
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
    put_manifest(reg, &at, canonical_json(&index)?, INDEX_TYPE).await?;
    progress::say(&format!(
        "  {} refers to {} (referrers tag {tag})",
        d.digest(),
        subject.digest()
    ));
    Ok(())
}

/// The referrers index at `at` (a `sha256-<hex>` tag), or None when the registry has none.
async fn referrers_index(reg: &Registry, at: &Reference) -> Result<Option<ImageIndex>> {
    use oci_client::errors::{OciDistributionError as E, OciErrorCode};
    match reg.client.pull_manifest_raw(at, &reg.auth, &[INDEX_TYPE]).await {
        Ok((bytes, _)) => Ok(Some(
            serde_json::from_slice(&bytes).with_context(|| format!("the referrers index {at}"))?,
        )),
        Err(E::ImageManifestNotFoundError(_)) | Err(E::ServerError { code: 404, .. }) => Ok(None),
        Err(E::RegistryError { envelope, .. })
            if envelope.errors.iter().any(|e| {
                matches!(e.code, OciErrorCode::ManifestUnknown | OciErrorCode::NotFound)
            }) =>
        {
            Ok(None)
        }
        Err(e) => Err(anyhow::Error::new(e).context(format!("reading the referrers index {at}"))),
    }
}

/// Pull `reference` (its manifest, config and layers, and the artifacts that refer to it)
/// into a new layout at `dir`.
async fn pull(reg: &Registry, reference: &Reference, dir: &Path) -> Result<()> {
    if std::fs::symlink_metadata(dir).is_ok() {
        bail!("{} exists; pull writes a new layout", dir.display());
    }
    reg.client.store_auth_if_needed(reference.resolve_registry(), &reg.auth).await;
    let parent = dir.parent().filter(|p| !p.as_os_str().is_empty()).unwrap_or(Path::new("."));
    std::fs::create_dir_all(parent)?;
    let tmp = tempfile::Builder::new().prefix(".pull-").tempdir_in(parent)?;
    let w = LayoutWriter::create(tmp.path())?;

    let (bytes, digest) = reg
        .client
        .pull_manifest_raw(reference, &reg.auth, &[MANIFEST_TYPE])
        .await
        .with_context(|| format!("pulling the manifest {reference}"))?;
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
                .client
                .pull_manifest_raw(&at, &reg.auth, &[MANIFEST_TYPE])
                .await
                .with_context(|| format!("pulling the referrer {at}"))?;
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
        reg.client
            .pull_blob(reference, want.as_str(), &mut buf)
            .await
            .map_err(|e| anyhow::anyhow!("blob {want} from {reference} refused: {e}"))?;
        let got = crate::hash::sha256_bytes(&buf);
        if format!("sha256:{got}") != want || buf.len() as u64 != d.size() {
            bail!(
                "blob {want} from {reference} refused: it holds {} bytes with sha256:{got}",
                buf.len()
            );
        }
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        for h in ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "127.0.0.1", "localhost"] {
            assert!(is_loopback(h), "{h}");
        }
        for h in
            ["10.0.0.1:5000", "registry.example:5000", "[2001:db8::1]:443", "localhost.example"]
        {
            assert!(!is_loopback(h), "{h}");
        }
        let r = parse_reference("10.0.0.1:5000/reprovm/kernel:1").unwrap();
        assert!(explicit_tag("10.0.0.1:5000/reprovm/kernel:1"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel@sha256:00"));
        let e = Registry::connect(&r, true).err().unwrap();
        assert!(
            e.to_string().contains("--plain-http is only for registries on this machine"),
            "{e}"
        );
    }
}
