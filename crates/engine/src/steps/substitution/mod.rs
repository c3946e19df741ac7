//! A shared binary cache and source mirror on any OCI registry (Zot, Harbor, GHCR,
//! distribution): what Nix's binary caches and substituters, Yocto's sstate mirrors and
//! Buildroot's PRIMARY_SITE do, on an engine teams already run.
//!
//! - `cache push REPO [TARGET]`: the store entries of TARGET's closure as OCI artifacts tagged
//!   by input hash (`entry.rs`), signed with `--sign-key`; every pinned source and toolchain
//!   .deb as a blob whose digest is its pin, kept alive by one artifact listing them all.
//! - Substituters (`--substituter REPO`, `REPROVM_SUBSTITUTERS`): before a node is built, its
//!   input hash is looked up; a trusted, verified entry is committed to the store like a local
//!   build. Sources and .debs are fetched from them by digest ([`SourceMirror`]).
//! - Trust (`keys.rs`): ed25519 keys in Nix's format; `--trusted-key` / `REPROVM_TRUSTED_KEYS`.
//!   Unsigned or untrusted entries are refused with the reason and the node is built locally
//!   (or the build fails with `--substitute-only`).

pub mod entry;
pub mod keys;

use crate::mechanisms::fetch::{BlobSource, Fetcher};
use crate::model::manifest::Manifest;
use crate::model::project::Project;
use crate::model::recipe::Loaded;
use crate::ops::build::{self, Options};
use anyhow::{bail, Context, Result};
use oci_spec::image::{ImageManifestBuilder, MediaType};
use reprovm_fs::progress;
use reprovm_oci::client::{parse_repository, rate, Reference, Registry, MANIFEST_TYPE};
use reprovm_oci::layout::{canonical_json, descriptor};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub const SOURCES_TYPE: &str = "application/vnd.reprovm.sources.v1";

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub what: CacheCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CacheCommand {
    /// Push TARGET's closure (default hd-image) and every pinned source and toolchain .deb to
    /// REPO (`REGISTRY/REPO`; `http://` for a registry on this machine without TLS).
    Push {
        repository: String,
        target: Option<String>,
        /// Sign each entry with this secret key (`cache keygen`).
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Make an ed25519 key pair: FILE (secret, 0600) and FILE.pub, in Nix's format.
    Keygen {
        file: PathBuf,
        /// The key's name, which signatures carry (default: the file's name).
        #[arg(long)]
        name: Option<String>,
    },
}

impl CacheArgs {
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<()> {
        match &self.what {
            CacheCommand::Keygen { file, name } => {
                let name = match name {
                    Some(n) => n.clone(),
                    None => file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .context("name the key with --name")?,
                };
                let public = keys::generate(&name, file)?;
                println!("{public}");
                progress::say(&format!(
                    "secret key {} (keep it), public key {} (give it to --trusted-key)",
                    file.display(),
                    file.with_extension("pub").display()
                ));
                Ok(())
            }
            CacheCommand::Push { repository, target, sign_key } => {
                let key = sign_key.as_deref().map(keys::SecretKey::load).transpose()?;
                push(
                    project,
                    fetcher,
                    repository,
                    target.as_deref().unwrap_or("hd-image"),
                    key.as_ref(),
                )
            }
        }
    }
}

/// A registry repository used as a cache.
pub struct Cache {
    pub text: String,
    pub repo: Reference,
    pub registry: Registry,
}

impl Cache {
    pub fn connect(text: &str) -> Result<Cache> {
        let (repo, plain) = parse_repository(text)?;
        let registry = Registry::connect(&repo, plain)?;
        Ok(Cache { text: text.to_string(), repo, registry })
    }
}

/// `cache push`: TARGET's closure (built where missing) and its sources and .debs.
pub fn push(
    project: &Project,
    fetcher: &Fetcher,
    repository: &str,
    target: &str,
    key: Option<&keys::SecretKey>,
) -> Result<()> {
    let cache = Cache::connect(repository)?;
    let graph = project.graph()?;
    let started = Instant::now();
    // Entries: build (or find) every node of the closure, then push each.
    let opts =
        Options { jobs: reprovm_fs::util::default_jobs(), quiet: true, ..Default::default() };
    let mut sent = 0u64;
    let (mut pushed, mut present) = (0, 0);
    for name in graph.closure(target)? {
        let res = build::build(project, &graph, fetcher, &name, &opts)?;
        let sde = graph.get(&name)?.recipe.source_date_epoch();
        let t = Instant::now();
        let p = entry::push(&cache.registry, &cache.repo, &res.entry, sde, key)
            .with_context(|| format!("pushing {name} to {repository}"))?;
        if p.already_there {
            present += 1;
            progress::say(&format!(
                "cache: {name} [{}] already there",
                &res.manifest.input_hash[..16]
            ));
        } else {
            pushed += 1;
            sent += p.bytes_sent;
            progress::say(&format!(
                "cache: {name} [{}] pushed{}, {} in {}",
                &res.manifest.input_hash[..16],
                if key.is_some() { " and signed" } else { "" },
                progress::human_bytes(p.bytes_sent),
                rate(p.bytes_sent, t)
            ));
        }
    }
    // Sources and .debs, by pin, and one artifact that lists them (so that no registry garbage
    // collection takes them, and `skopeo`/`oras` can list them).
    let mut wants = crate::steps::sources::wants(&graph, Some(target), project)?;
    let lock =
        crate::steps::toolchain::read_lock(project, crate::steps::toolchain::PackageSet::Build)?;
    wants
        .extend(lock.packages.iter().map(|p| crate::steps::toolchain::deb_want(project, &lock, p)));
    let mut layers = Vec::new();
    let mut blobs_sent = 0;
    for w in &wants {
        let path = fetcher.fetch(w).with_context(|| format!("fetching {} to push it", w.file))?;
        let digest = format!("sha256:{}", w.sha256);
        let mut data = std::fs::File::open(&path)?;
        if cache.registry.send_blob(&cache.repo, &digest, w.size, &mut data)? {
            blobs_sent += 1;
            sent += w.size;
        }
        let title = BTreeMap::from([(reprovm_oci::TITLE.to_string(), w.file.clone())]);
        layers.push(descriptor(
            MediaType::Other("application/octet-stream".into()),
            &w.sha256,
            w.size,
            title,
        )?);
    }
    layers.sort_by_key(|l| l.digest().to_string());
    layers.dedup_by(|a, b| a.digest() == b.digest());
    let list = reprovm_fs::hash::sha256_bytes(
        layers.iter().map(|l| l.digest().to_string()).collect::<Vec<_>>().join("\n").as_bytes(),
    );
    let empty = b"{}".to_vec();
    let empty_hex = reprovm_fs::hash::sha256_bytes(&empty);
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(SOURCES_TYPE.into()))
        .config(descriptor(MediaType::EmptyJSON, &empty_hex, 2, BTreeMap::new())?)
        .layers(layers.clone())
        .build()?;
    let tag = format!("sources-{}", &list[..32]);
    cache.registry.send_blob(&cache.repo, &format!("sha256:{empty_hex}"), 2, &mut &empty[..])?;
    cache.registry.put_manifest(
        &cache.repo.at_tag(&tag),
        &canonical_json(&manifest)?,
        MANIFEST_TYPE,
    )?;
    progress::say(&format!(
        "cache {repository}: {pushed} entries pushed, {present} already there; {} sources and .debs ({blobs_sent} sent) listed as {tag}; {} sent in {}",
        layers.len(),
        progress::human_bytes(sent),
        progress::human_duration(started.elapsed())
    ));
    Ok(())
}

/// The substituters of a run, with the keys their entries must be signed by.
pub struct Substituters {
    caches: Vec<Arc<Cache>>,
    trusted: Vec<keys::PublicKey>,
    /// Fail instead of building when no substituter has a node.
    pub only: bool,
}

impl std::fmt::Debug for Substituters {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let caches: Vec<&str> = self.caches.iter().map(|c| c.text.as_str()).collect();
        let keys: Vec<&str> = self.trusted.iter().map(|k| k.name.as_str()).collect();
        f.debug_struct("Substituters").field("caches", &caches).field("trusted", &keys).finish()
    }
}

impl Substituters {
    pub fn new(
        texts: &[String],
        trusted_key_files: &[PathBuf],
        only: bool,
    ) -> Result<Substituters> {
        let caches =
            texts.iter().map(|t| Cache::connect(t).map(Arc::new)).collect::<Result<Vec<_>>>()?;
        let trusted = trusted_key_files
            .iter()
            .map(|p| keys::PublicKey::load(p))
            .collect::<Result<Vec<_>>>()?;
        if only && caches.is_empty() {
            bail!("--substitute-only needs a --substituter");
        }
        Ok(Substituters { caches, trusted, only })
    }

    /// Mirrors for the fetcher: the same registries, serving sources and .debs by digest.
    pub fn source_mirrors(&self) -> Vec<Box<dyn BlobSource>> {
        self.caches
            .iter()
            .map(|c| Box::new(SourceMirror(c.clone())) as Box<dyn BlobSource>)
            .collect()
    }

    /// Take `l` [`ih`] (built on `toolchain`) from the first substituter that has a trusted,
    /// verified entry, and commit it at `dest` (a store entry path). None when none has one
    /// that passes; every refusal is said with its reason.
    pub fn substitute(
        &self,
        l: &Loaded,
        ih: &str,
        toolchain: &str,
        dest: &Path,
    ) -> Result<Option<Manifest>> {
        let r = &l.recipe;
        let want = entry::Wanted {
            name: &r.name,
            version: &r.version,
            input_hash: ih,
            toolchain,
            source_date_epoch: r.source_date_epoch(),
        };
        let parent =
            reprovm_fs::beneath::Dir::create(dest.parent().context("store entry has no parent")?)?;
        for c in &self.caches {
            let tmp_name = format!(".tmp-{}-{}-substitute", r.name, std::process::id());
            parent.remove_all(Path::new(&tmp_name))?;
            let tmp = parent.path().join(&tmp_name);
            std::fs::create_dir(&tmp)?;
            let t = Instant::now();
            let result =
                entry::fetch(&c.registry, &c.repo, &want, entry::Trust::Keys(&self.trusted), &tmp);
            match result {
                Ok(Some(taken)) => {
                    let name = dest.file_name().context("store entry has no name")?;
                    parent.remove_all(Path::new(name))?;
                    parent.rename(Path::new(&tmp_name), Path::new(name))?;
                    std::fs::File::open(parent.path())?.sync_all()?;
                    progress::say(&format!(
                        "substituted {} {} [{}] from {} in {}",
                        r.name,
                        r.version,
                        &ih[..16],
                        c.text,
                        progress::human_duration(t.elapsed())
                    ));
                    return Ok(Some(taken.manifest));
                }
                Ok(None) => parent.remove_all(Path::new(&tmp_name))?,
                Err(refusal) => {
                    parent.remove_all(Path::new(&tmp_name))?;
                    progress::say(&format!(
                        "substituter {}: refused {} [{}]: {refusal}",
                        c.text,
                        r.name,
                        &ih[..16]
                    ));
                }
            }
        }
        Ok(None)
    }
}

/// A cache registry serving sources and .debs by their pins.
pub struct SourceMirror(Arc<Cache>);

impl BlobSource for SourceMirror {
    fn describe(&self) -> String {
        format!("cache {}", self.0.text)
    }

    fn fetch_blob(
        &self,
        sha256: &str,
        size: u64,
        w: &mut dyn std::io::Write,
    ) -> Result<bool, String> {
        let reg = &self.0.registry;
        let digest = format!("sha256:{sha256}");
        if !reg.has_blob(&self.0.repo, &digest).map_err(|e| e.to_string())? {
            return Ok(false);
        }
        reg.blob_into(&self.0.repo, &digest, size, w).map_err(|e| e.to_string())?;
        Ok(true)
    }
}
