//! Substitution from a binary cache on any OCI registry (Zot, Harbor, GHCR, distribution):
//! what Nix's substituters, Yocto's sstate mirrors and Buildroot's PRIMARY_SITE do, on an
//! engine teams already run. (`ops::cache_push` fills such a cache.)
//!
//! - Store entries as OCI artifacts tagged by input hash, and every check on the way back
//!   (`entry.rs`).
//! - Substituters (`--substituter REPO`, `REPROVM_SUBSTITUTERS`): before a node is built, its
//!   input hash is looked up; a trusted, verified entry is committed to the store like a local
//!   build. Sources and .debs are fetched from them by digest (`SourceMirror`).
//! - Trust (`keys.rs`): ed25519 keys in Nix's format; `--trusted-cache-key` / `REPROVM_TRUSTED_KEYS`.
//!   Unsigned or untrusted entries are refused with the reason and the node is built locally
//!   (or the build fails with `--substitute-only`).

pub mod entry;
pub mod keys;

use crate::mechanisms::fetch::BlobSource;
use crate::model::manifest::Manifest;
use crate::model::recipe::Loaded;
use anyhow::{bail, Context, Result};
use reprovm_fs::progress;
use reprovm_oci::client::{parse_repository, Reference, Registry};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

pub(crate) const SOURCES_TYPE: &str = "application/vnd.reprovm.sources.v1";

/// A registry repository used as a cache.
pub(crate) struct Cache {
    pub text: String,
    pub repo: Reference,
    pub registry: Registry,
}

impl Cache {
    pub(crate) fn connect(text: &str) -> Result<Cache> {
        let (repo, plain) = parse_repository(text)?;
        let registry = Registry::connect(&repo, plain)?;
        Ok(Cache { text: text.to_string(), repo, registry })
    }
}

/// The substituters of a run, with the keys their entries must be signed by.
pub(crate) struct Substituters {
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
    pub(crate) fn new(
        texts: &[String],
        trusted_key_files: &[PathBuf],
        only: bool,
    ) -> Result<Substituters> {
        let caches =
            texts.iter().map(|t| Cache::connect(t).map(Arc::new)).collect::<Result<Vec<_>>>()?;
        let trusted = keys::load_trusted(trusted_key_files)?;
        if only && caches.is_empty() {
            bail!("--substitute-only needs a --substituter");
        }
        Ok(Substituters { caches, trusted, only })
    }

    /// Mirrors for the fetcher: the same registries, serving sources and .debs by digest.
    pub(crate) fn source_mirrors(&self) -> Vec<Box<dyn BlobSource>> {
        self.caches
            .iter()
            .map(|c| Box::new(SourceMirror(c.clone())) as Box<dyn BlobSource>)
            .collect()
    }

    /// Take `l` [`ih`] (built on `toolchain`) from the first substituter that has a trusted,
    /// verified entry, and commit it at `dest` (a store entry path). None when none has one
    /// that passes; every refusal is said with its reason.
    pub(crate) fn substitute(
        &self,
        l: &Loaded,
        ih: &str,
        toolchain: &str,
        dest: &Path,
        _store: &crate::model::store::StoreLock,
    ) -> Result<Option<Manifest>> {
        let r = &l.recipe;
        let node = l.node();
        let want = entry::Wanted {
            name: &node,
            version: &r.version,
            input_hash: ih,
            toolchain,
            source_date_epoch: r.source_date_epoch(),
        };
        let parent =
            reprovm_fs::beneath::Dir::create(dest.parent().context("store entry has no parent")?)?;
        for c in &self.caches {
            let tmp_name = format!(".tmp-{}-{}-substitute", l.node(), std::process::id());
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
                    crate::model::store::seal::seal(dest)?;
                    let signer = match &taken.signature {
                        Ok(s) => s.to_string(),
                        Err(why) => why.to_string(),
                    };
                    progress::say(&format!(
                        "substituted {} {} [{}] from {}, signed by {signer}, in {}",
                        node,
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
pub(crate) struct SourceMirror(Arc<Cache>);

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
