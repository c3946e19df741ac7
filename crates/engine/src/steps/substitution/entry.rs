//! A store entry as an OCI artifact, and back.
//!
//! The artifact (`application/vnd.reprovm.store-entry.v1`) is tagged with the node's input
//! hash. Its config blob is the entry's `manifest.json` (name, version, input hash, toolchain,
//! output hash, every file with its sha256), its one layer the output tree as a tar+gzip that
//! keeps the store's modes. Its annotations repeat name, version and both hashes, give the
//! length of the uncompressed tar, and carry the signature (`dev.reprovm.signature`,
//! `KEY:BASE64`) over all of that and the config's and the layer's digests and sizes
//! ([`signed_message`]): a trusted signature fixes every byte the registry sends.
//!
//! Taking an entry from a registry reads its manifest once (bounded) and checks, in order: the
//! artifact type and the annotations against the node asked for; the signature against the
//! trusted keys; the config (bounded, by digest); the layer (by digest, cut off at its declared
//! size as it streams, into the entry's own temp directory, which the store lock sweeps); the
//! unpacking (cut off at the signed tar length); the unpacked tree's output hash. The
//! `manifest.json` stored is then computed here from the verified tree, and the registry's copy
//! must be byte for byte the same: nothing the registry sends reaches the store unverified.

use super::keys::{self, PublicKey, SecretKey, Untrusted};
use crate::model::manifest::{self, Manifest};
use anyhow::{Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::Dir;
use reprovm_oci::client::{Fetched, Reference, Registry, RegistryError, MANIFEST_TYPE};
use reprovm_oci::layer::{self, Modes};
use reprovm_oci::layout::{canonical_json, descriptor};
use reprovm_oci::spec::ImageManifest;
use std::collections::BTreeMap;
use std::path::Path;

pub const ENTRY_TYPE: &str = "application/vnd.reprovm.store-entry.v1";
pub const STORE_MANIFEST_TYPE: &str = "application/vnd.reprovm.store-manifest.v1+json";
pub const OUTPUT_TYPE: &str = "application/vnd.reprovm.store-output.v1.tar+gzip";
const NAME: &str = "dev.reprovm.name";
const VERSION: &str = "dev.reprovm.version";
const INPUT_HASH: &str = "dev.reprovm.input-hash";
const OUTPUT_HASH: &str = "dev.reprovm.output-hash";
const TAR_SIZE: &str = "dev.reprovm.tar-size";
pub const SIGNATURE: &str = "dev.reprovm.signature";
/// The largest entry manifest.json taken from a registry (the kernel's, with every module
/// listed, is about 200 KiB).
pub const CONFIG_LIMIT: u64 = 16 << 20;

/// What a signature covers: the node, its output, and every blob that carries it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub input_hash: &'a str,
    pub output_hash: &'a str,
    pub config_digest: &'a str,
    pub config_size: u64,
    pub layer_digest: &'a str,
    pub layer_size: u64,
    pub tar_size: u64,
}

/// The signed text: one field per line, nothing about where the entry was built.
pub fn signed_message(s: &Signed) -> Vec<u8> {
    format!(
        "reprovm-store-entry-v2\n{}\n{}\n{}\n{}\nconfig {} {}\nlayer {} {}\ntar {}\n",
        s.name,
        s.version,
        s.input_hash,
        s.output_hash,
        s.config_digest,
        s.config_size,
        s.layer_digest,
        s.layer_size,
        s.tar_size
    )
    .into_bytes()
}

/// The node a substitution asks for.
#[derive(Debug, Clone, Copy)]
pub struct Wanted<'a> {
    pub name: &'a str,
    pub version: &'a str,
    pub input_hash: &'a str,
    /// The toolchain identity the input hash covers (the stored manifest.json names it).
    pub toolchain: &'a str,
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

impl From<RegistryError> for Refusal {
    fn from(e: RegistryError) -> Refusal {
        match e {
            RegistryError::Refused(why) => Refusal::Mismatch(why),
            RegistryError::Transfer(why) => Refusal::Transfer(anyhow::Error::msg(why)),
        }
    }
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
    // The layer is written beside the entry's temp files (a temp dir the caller's process owns).
    let tmp = tempfile::NamedTempFile::new()?;
    let out = Dir::open(&crate::model::store::out_dir(entry))?;
    let digests = layer::write_gzip_tar(
        &out,
        source_date_epoch,
        Modes::Keep,
        std::io::BufWriter::new(tmp.reopen()?),
    )?;
    let config_digest = format!("sha256:{}", reprovm_fs::hash::sha256_bytes(&config));
    let layer_digest = format!("sha256:{}", digests.blob_sha256);
    let mut annotations = BTreeMap::from([
        (NAME.to_string(), m.name.clone()),
        (VERSION.to_string(), m.version.clone()),
        (INPUT_HASH.to_string(), m.input_hash.clone()),
        (OUTPUT_HASH.to_string(), m.output_hash.clone()),
        (TAR_SIZE.to_string(), digests.tar_size.to_string()),
    ]);
    if let Some(k) = key {
        let msg = signed_message(&Signed {
            name: &m.name,
            version: &m.version,
            input_hash: &m.input_hash,
            output_hash: &m.output_hash,
            config_digest: &config_digest,
            config_size: config.len() as u64,
            layer_digest: &layer_digest,
            layer_size: digests.blob_size,
            tar_size: digests.tar_size,
        });
        annotations.insert(SIGNATURE.to_string(), k.sign(&msg));
    }
    let mut manifest = ImageManifest::new(
        descriptor(
            STORE_MANIFEST_TYPE,
            config_digest.trim_start_matches("sha256:"),
            config.len() as u64,
            BTreeMap::new(),
        ),
        vec![descriptor(OUTPUT_TYPE, &digests.blob_sha256, digests.blob_size, BTreeMap::new())],
    );
    manifest.artifact_type = Some(ENTRY_TYPE.into());
    manifest.annotations = annotations;
    let manifest_bytes = canonical_json(&manifest)?;
    let manifest_digest = format!("sha256:{}", reprovm_fs::hash::sha256_bytes(&manifest_bytes));
    let tag = repo.at_tag(&m.input_hash);
    if let Some(f) = reg.manifest(&tag, &[MANIFEST_TYPE])? {
        if f.digest == manifest_digest {
            return Ok(Pushed { bytes_sent: 0, already_there: true });
        }
    }
    let mut sent = 0;
    if reg.send_blob(repo, &config_digest, config.len() as u64, &mut config.as_slice())? {
        sent += config.len() as u64;
    }
    let mut layer_file = std::fs::File::open(tmp.path())?;
    if reg.send_blob(repo, &layer_digest, digests.blob_size, &mut layer_file)? {
        sent += digests.blob_size;
    }
    reg.put_manifest(&tag, &manifest_bytes, MANIFEST_TYPE)?;
    Ok(Pushed { bytes_sent: sent, already_there: false })
}

/// Whose signature an entry must carry.
#[derive(Debug, Clone, Copy)]
pub enum Trust<'a> {
    /// One of these keys (substitution).
    Keys(&'a [PublicKey]),
    /// Any, or none: the entry is only compared, never used (`audit --against`), and the
    /// signature's status is reported.
    CompareOnly(&'a [PublicKey]),
}

/// An entry taken from a registry: its manifest (computed here from the verified tree) and
/// who signed the registry document it came from, read once.
#[derive(Debug)]
pub struct Taken {
    pub manifest: Manifest,
    /// The trusted key that signed it, or why no trusted key did.
    pub signature: Result<String, Untrusted>,
    /// The digest of the registry's manifest document.
    pub document: String,
}

/// The registry document of an entry, parsed and checked against what was asked for.
struct Document {
    manifest: ImageManifest,
    annotations: BTreeMap<String, String>,
    fetched: Fetched,
}

fn read_document(
    reg: &Registry,
    repo: &Reference,
    want: &Wanted,
) -> Result<Option<Document>, Refusal> {
    let tag = repo.at_tag(want.input_hash);
    let Some(fetched) = reg.manifest(&tag, &[MANIFEST_TYPE])? else {
        return Ok(None);
    };
    let manifest: ImageManifest = serde_json::from_slice(&fetched.bytes).map_err(|e| {
        Refusal::Mismatch(format!(
            "{tag} is not an OCI image manifest ({}): {e}",
            fetched.media_type
        ))
    })?;
    let annotations = manifest.annotations.clone();
    let get = |k: &str| annotations.get(k).map(String::as_str).unwrap_or("");
    let artifact = manifest.artifact_type.as_ref().map(|t| t.to_string()).unwrap_or_default();
    if artifact != ENTRY_TYPE {
        return Err(Refusal::Mismatch(format!(
            "{tag} is a `{artifact}` artifact, not a store entry ({ENTRY_TYPE})"
        )));
    }
    if get(INPUT_HASH) != want.input_hash || get(NAME) != want.name || get(VERSION) != want.version
    {
        return Err(Refusal::Mismatch(format!(
            "{tag} holds {} {} [{}], not {} {} [{}] as asked",
            get(NAME),
            get(VERSION),
            get(INPUT_HASH),
            want.name,
            want.version,
            want.input_hash
        )));
    }
    Ok(Some(Document { manifest, annotations, fetched }))
}

/// Look the node up in the registry and, if it is there and passes every check, unpack it as
/// a complete entry at `into` (an empty directory the caller renames into the store, and
/// whose temp name the store lock sweeps). Ok(None): the registry does not have it.
pub fn fetch(
    reg: &Registry,
    repo: &Reference,
    want: &Wanted,
    trust: Trust,
    into: &Path,
) -> Result<Option<Taken>, Refusal> {
    let Some(doc) = read_document(reg, repo, want)? else {
        return Ok(None);
    };
    let tag = repo.at_tag(want.input_hash);
    let get = |k: &str| doc.annotations.get(k).map(String::as_str).unwrap_or("");
    let [layer_d] = doc.manifest.layers.as_slice() else {
        return Err(Refusal::Mismatch(format!(
            "{tag} has {} layers, a store entry has one",
            doc.manifest.layers.len()
        )));
    };
    let config_d = doc.manifest.config;
    let tar_size: u64 = get(TAR_SIZE).parse().map_err(|_| {
        Refusal::Mismatch(format!(
            "{tag}: the `{TAR_SIZE}` annotation `{}` is not a size",
            get(TAR_SIZE)
        ))
    })?;
    let output_hash = get(OUTPUT_HASH).to_string();
    let config_digest = config_d.digest.clone();
    let layer_digest = layer_d.digest.clone();
    let message = signed_message(&Signed {
        name: want.name,
        version: want.version,
        input_hash: want.input_hash,
        output_hash: &output_hash,
        config_digest: &config_digest,
        config_size: config_d.size,
        layer_digest: &layer_digest,
        layer_size: layer_d.size,
        tar_size,
    });
    let (trusted, required) = match trust {
        Trust::Keys(k) => (k, true),
        Trust::CompareOnly(k) => (k, false),
    };
    let signature =
        keys::verify(trusted, doc.annotations.get(SIGNATURE).map(String::as_str), &message);
    if required {
        signature.clone()?;
    }
    if config_d.size > CONFIG_LIMIT {
        return Err(Refusal::Mismatch(format!(
            "{tag}: its manifest.json declares {} bytes, more than the limit of {CONFIG_LIMIT}",
            config_d.size
        )));
    }
    let mut config = Vec::new();
    reg.blob_into(repo, &config_digest, config_d.size, &mut config)?;

    // The layer, into the entry's temp directory (swept with it), then unpacked, reading at
    // most the declared tar length; the tree must hash to the output hash.
    let dir = Dir::open(into).map_err(|e| Refusal::Transfer(e.into()))?;
    let layer_name = Path::new(".layer.tar.gz");
    {
        let f = dir.create_file(layer_name, 0o600).map_err(|e| Refusal::Transfer(e.into()))?;
        let mut w = std::io::BufWriter::new(f);
        reg.blob_into(repo, &layer_digest, layer_d.size, &mut w)?;
        std::io::Write::flush(&mut w).map_err(|e| Refusal::Transfer(e.into()))?;
    }
    let out = crate::model::store::out_dir(into);
    let mismatch = |e: anyhow::Error| Refusal::Mismatch(format!("unpacking the output: {e:#}"));
    let tree = Dir::create(&out).map_err(|e| mismatch(e.into()))?;
    let gz = dir.open_file(layer_name).map_err(|e| Refusal::Transfer(e.into()))?;
    let r = archive::decoder(archive::Format::TarGz, gz).map_err(mismatch)?;
    let bounded = archive::Bounded::new(r, tar_size);
    archive::extract_tar(
        Box::new(bounded),
        &tree,
        0,
        &|p| p.to_path_buf(),
        archive::Links::StayInTree,
    )
    .map_err(mismatch)?;
    dir.remove_all(layer_name).map_err(|e| Refusal::Transfer(e.into()))?;
    manifest::normalize(&out, want.source_date_epoch).map_err(mismatch)?;
    let files = manifest::scan(&out).map_err(mismatch)?;
    let got = manifest::output_hash(&files);
    if got != output_hash {
        return Err(Refusal::Mismatch(format!(
            "the unpacked output hashes to {got}, the entry says {output_hash}"
        )));
    }
    // The manifest.json stored is made here from the verified tree; the registry's must be it.
    let ours = Manifest {
        name: want.name.to_string(),
        version: want.version.to_string(),
        input_hash: want.input_hash.to_string(),
        toolchain: want.toolchain.to_string(),
        output_hash: got,
        files,
    };
    let ours_bytes = serde_json::to_vec_pretty(&ours).map_err(|e| Refusal::Transfer(e.into()))?;
    if ours_bytes != config {
        return Err(Refusal::Mismatch(config_mismatch(&config, &ours)));
    }
    dir.write_atomic(Path::new("manifest.json"), &ours_bytes, 0o644)
        .map_err(|e| Refusal::Transfer(e.into()))?;
    Ok(Some(Taken { manifest: ours, signature, document: doc.fetched.digest }))
}

/// Which field of the registry's manifest.json differs from the one the verified tree gives.
fn config_mismatch(theirs: &[u8], ours: &Manifest) -> String {
    let Ok(t) = serde_json::from_slice::<Manifest>(theirs) else {
        return "the entry's manifest.json is not a store manifest".to_string();
    };
    let field = if t.name != ours.name || t.version != ours.version {
        format!("it names {} {}, the node is {} {}", t.name, t.version, ours.name, ours.version)
    } else if t.input_hash != ours.input_hash {
        format!("input hash {} instead of {}", t.input_hash, ours.input_hash)
    } else if t.toolchain != ours.toolchain {
        format!("toolchain {} instead of {}", t.toolchain, ours.toolchain)
    } else if t.output_hash != ours.output_hash {
        format!("output hash {} instead of {}", t.output_hash, ours.output_hash)
    } else if t.files != ours.files {
        let extra = t.files.iter().find(|f| !ours.files.contains(f));
        let missing = ours.files.iter().find(|f| !t.files.contains(f));
        match (extra, missing) {
            (Some(f), _) => format!("it lists `{}` as the tree does not have it", f.path),
            (None, Some(f)) => format!("it does not list `{}`", f.path),
            _ => "its file list is in another order".into(),
        }
    } else {
        "it is written differently".into()
    };
    format!("the entry's manifest.json is not the one its verified tree gives: {field}")
}
