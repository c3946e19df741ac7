//! A store entry as an OCI artifact, and back.
//!
//! The artifact (`application/vnd.reprovm.store-entry.v1`) is tagged with the node's input
//! hash. Its config blob is the entry's `manifest.json` (name, version, input hash, output
//! hash, every file with its sha256), its one layer the output tree as a tar+gzip that keeps
//! the store's modes. Its annotations repeat name, version and both hashes, and carry the
//! signature (`dev.reprovm.signature`, `KEY:BASE64`) over those four values.
//!
//! Taking an entry from a registry checks, in order: the artifact type and the annotations
//! against the node asked for; the signature against the trusted keys; the config blob (by
//! digest) against the annotations; the layer (by digest); and the unpacked tree's output
//! hash against the manifest. Any failure is a [`Refusal`] with its reason; nothing enters the
//! store but a complete, verified entry, renamed into place.

use super::keys::{self, PublicKey, SecretKey, Untrusted};
use crate::archive;
use crate::beneath::Dir;
use crate::manifest::{self, Manifest};
use crate::oci::client::{at_tag, Registry, MANIFEST_TYPE};
use crate::oci::layer::{self, Modes};
use crate::oci::layout::{canonical_json, descriptor};
use anyhow::{bail, Context, Result};
use oci_client::Reference;
use oci_spec::image::{ImageManifest, ImageManifestBuilder, MediaType};
use std::collections::{BTreeMap, HashMap};
use std::path::Path;

pub const ENTRY_TYPE: &str = "application/vnd.reprovm.store-entry.v1";
pub const STORE_MANIFEST_TYPE: &str = "application/vnd.reprovm.store-manifest.v1+json";
pub const OUTPUT_TYPE: &str = "application/vnd.reprovm.store-output.v1.tar+gzip";
const NAME: &str = "dev.reprovm.name";
const VERSION: &str = "dev.reprovm.version";
const INPUT_HASH: &str = "dev.reprovm.input-hash";
const OUTPUT_HASH: &str = "dev.reprovm.output-hash";
pub const SIGNATURE: &str = "dev.reprovm.signature";

/// Who signed the entry at `tag`, checked against `trusted`: the key's name, or why not.
pub fn signature_status(
    reg: &Registry,
    repo: &Reference,
    want: &Wanted,
    trusted: &[PublicKey],
) -> Result<Result<String, Untrusted>> {
    let tag = at_tag(repo, want.input_hash);
    let Some((bytes, _)) = reg.block_on(reg.manifest(&tag, &[MANIFEST_TYPE]))? else {
        bail!("{tag}: not in the cache");
    };
    let manifest: ImageManifest =
        serde_json::from_slice(&bytes).with_context(|| format!("{tag}"))?;
    let a = manifest.annotations().clone().unwrap_or_default();
    let output_hash = a.get(OUTPUT_HASH).cloned().unwrap_or_default();
    let msg = signed_message(want.name, want.version, want.input_hash, &output_hash);
    Ok(keys::verify(trusted, a.get(SIGNATURE).map(String::as_str), &msg))
}

/// What a signature covers: the node and its output, nothing about where it was built.
pub fn signed_message(name: &str, version: &str, input_hash: &str, output_hash: &str) -> Vec<u8> {
    format!("reprovm-store-entry-v1\n{name}\n{version}\n{input_hash}\n{output_hash}\n").into_bytes()
}

/// The node a substitution asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub input_hash: &'a str,
    /// The recipe's SOURCE_DATE_EPOCH: the unpacked tree is normalised to it, as a build is.
    pub source_date_epoch: i64,
}

/// Why an entry in a registry is not taken.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("untrusted: {0}")]
    Untrusted(#[from] Untrusted),
    #[error("{0}")]
    Mismatch(String),
    #[error("{0:#}")]
    Transfer(anyhow::Error),
}

/// How a push went.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Pushed {
    pub bytes_sent: u64,
    pub already_there: bool,
}

/// Push the store entry at `entry` (tagged by its input hash), signed with `key` if given.
pub fn push(
    reg: &Registry,
    repo: &Reference,
    entry: &Path,
    source_date_epoch: i64,
    key: Option<&SecretKey>,
) -> Result<Pushed> {
    let config = std::fs::read(entry.join("manifest.json"))
        .with_context(|| format!("reading {}/manifest.json", entry.display()))?;
    let m: Manifest = serde_json::from_slice(&config)
        .with_context(|| format!("{}/manifest.json", entry.display()))?;
    let tmp = tempfile::NamedTempFile::new()?;
    let out = Dir::open(&crate::store::out_dir(entry))?;
    let digests = layer::write_gzip_tar(
        &out,
        source_date_epoch,
        Modes::Keep,
        std::io::BufWriter::new(tmp.reopen()?),
    )?;
    let layer_bytes = std::fs::read(tmp.path())?;
    let config_hex = crate::hash::sha256_bytes(&config);
    let mut annotations = BTreeMap::from([
        (NAME.to_string(), m.name.clone()),
        (VERSION.to_string(), m.version.clone()),
        (INPUT_HASH.to_string(), m.input_hash.clone()),
        (OUTPUT_HASH.to_string(), m.output_hash.clone()),
    ]);
    if let Some(k) = key {
        let msg = signed_message(&m.name, &m.version, &m.input_hash, &m.output_hash);
        annotations.insert(SIGNATURE.to_string(), k.sign(&msg));
    }
    let manifest = ImageManifestBuilder::default()
        .schema_version(2u32)
        .media_type(MediaType::ImageManifest)
        .artifact_type(MediaType::Other(ENTRY_TYPE.into()))
        .config(descriptor(
            MediaType::Other(STORE_MANIFEST_TYPE.into()),
            &config_hex,
            config.len() as u64,
            BTreeMap::new(),
        )?)
        .layers(vec![descriptor(
            MediaType::Other(OUTPUT_TYPE.into()),
            &digests.blob_sha256,
            digests.blob_size,
            BTreeMap::new(),
        )?])
        .annotations(annotations.into_iter().collect::<HashMap<_, _>>())
        .build()?;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = format!("sha256:{}", crate::hash::sha256_bytes(&manifest_bytes));
    let tag = at_tag(repo, &m.input_hash);
    reg.block_on(async {
        if let Some((_, d)) = reg.manifest(&tag, &[MANIFEST_TYPE]).await? {
            if d == manifest_digest {
                return Ok(Pushed { bytes_sent: 0, already_there: true });
            }
        }
        let mut sent = 0;
        if reg.send_blob(repo, &format!("sha256:{config_hex}"), config.clone()).await? {
            sent += config.len() as u64;
        }
        let layer_digest = format!("sha256:{}", digests.blob_sha256);
        if reg.send_blob(repo, &layer_digest, layer_bytes).await? {
            sent += digests.blob_size;
        }
        reg.put_manifest(&tag, manifest_bytes, MANIFEST_TYPE).await?;
        Ok(Pushed { bytes_sent: sent, already_there: false })
    })
}

/// Whose signature an entry must carry.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// One of these keys (substitution).
    Keys(&'a [PublicKey]),
    /// None: the entry is only compared, never used (`audit --against`).
    CompareOnly,
}

/// Look the node up in the registry and, if it is there and passes every check, unpack it as
/// a complete entry at `into` (an empty directory; the caller renames it into the store).
/// Ok(None): the registry does not have it.
pub fn fetch(
    reg: &Registry,
    repo: &Reference,
    want: &Wanted,
    trust: Trust,
    into: &Path,
) -> Result<Option<Manifest>, Refusal> {
    let transfer = Refusal::Transfer;
    let tag = at_tag(repo, want.input_hash);
    let Some((bytes, _digest)) =
        reg.block_on(reg.manifest(&tag, &[MANIFEST_TYPE])).map_err(transfer)?
    else {
        return Ok(None);
    };
    let manifest: ImageManifest = serde_json::from_slice(&bytes)
        .map_err(|e| Refusal::Mismatch(format!("{tag} is not an OCI manifest: {e}")))?;
    let a = manifest.annotations().clone().unwrap_or_default();
    let get = |k: &str| a.get(k).map(String::as_str).unwrap_or("");
    let is_entry = manifest.artifact_type().as_ref().is_some_and(|t| t.to_string() == ENTRY_TYPE);
    if !is_entry
        || get(INPUT_HASH) != want.input_hash
        || get(NAME) != want.name
        || get(VERSION) != want.version
    {
        return Err(Refusal::Mismatch(format!(
            "{tag} holds {} {} [{}], not the store entry asked for",
            get(NAME),
            get(VERSION),
            get(INPUT_HASH)
        )));
    }
    let output_hash = get(OUTPUT_HASH).to_string();
    if let Trust::Keys(trusted) = trust {
        let msg = signed_message(want.name, want.version, want.input_hash, &output_hash);
        keys::verify(trusted, a.get(SIGNATURE).map(String::as_str), &msg)?;
    }

    // The config: the entry's manifest, which must say what the annotations say.
    let cd = manifest.config();
    let mut config = Vec::new();
    reg.block_on(reg.blob_into(repo, cd.digest().as_ref(), cd.size(), &mut config))
        .map_err(transfer)?;
    let m: Manifest = serde_json::from_slice(&config)
        .map_err(|e| Refusal::Mismatch(format!("the entry's manifest.json does not parse: {e}")))?;
    if m.input_hash != want.input_hash || m.name != want.name || m.output_hash != output_hash {
        return Err(Refusal::Mismatch(format!(
            "the entry's manifest.json says {} [{}] with output {}, its annotations {} [{}] with output {output_hash}",
            m.name, m.input_hash, m.output_hash, want.name, want.input_hash
        )));
    }
    let [layer_d] = manifest.layers().as_slice() else {
        return Err(Refusal::Mismatch(format!(
            "{tag} has {} layers, not one",
            manifest.layers().len()
        )));
    };

    // The layer, into a temp file, then unpacked; the tree must hash to the output hash.
    let unpack = || -> Result<Manifest, Refusal> {
        let tmp = tempfile::NamedTempFile::new().map_err(|e| transfer(e.into()))?;
        {
            let mut w = std::io::BufWriter::new(tmp.reopen().map_err(|e| transfer(e.into()))?);
            reg.block_on(reg.blob_into(repo, layer_d.digest().as_ref(), layer_d.size(), &mut w))
                .map_err(transfer)?;
            std::io::Write::flush(&mut w).map_err(|e| transfer(e.into()))?;
        }
        let out = crate::store::out_dir(into);
        let mismatch = |e: anyhow::Error| Refusal::Mismatch(format!("unpacking the output: {e:#}"));
        let dir = Dir::create(&out).map_err(mismatch)?;
        let r = archive::decoder(
            archive::Format::TarGz,
            std::fs::File::open(tmp.path()).map_err(|e| transfer(e.into()))?,
        )
        .map_err(mismatch)?;
        archive::extract_tar(r, &dir, 0, &|p| p.to_path_buf(), archive::Links::StayInTree)
            .map_err(mismatch)?;
        manifest::normalize(&out, want.source_date_epoch).map_err(mismatch)?;
        let files = manifest::scan(&out).map_err(mismatch)?;
        let got = manifest::output_hash(&files);
        if got != m.output_hash {
            return Err(Refusal::Mismatch(format!(
                "the unpacked output hashes to {got}, the entry says {}",
                m.output_hash
            )));
        }
        Dir::open(into)
            .and_then(|d| d.write_atomic(Path::new("manifest.json"), &config, 0o644))
            .map_err(mismatch)?;
        Ok(m.clone())
    };
    Ok(Some(unpack()?))
}
