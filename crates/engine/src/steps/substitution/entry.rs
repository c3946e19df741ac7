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
//! trusted keys (an entry only compared, by `audit --against`, may be unsigned: then every size
//! it declares must fit what this machine's rebuild could make, `tar_limit`); the config
//! (bounded, by digest); the layer, unpacked as it streams into the entry's own temp directory
//! (which the store lock sweeps), cut off at its declared size, its unpacking cut off at the
//! signed tar length, its digest checked at its end; the unpacked tree's output hash. The
//! `manifest.json` stored is then computed here from the verified tree, and the registry's copy
//! must be byte for byte the same: nothing the registry sends reaches the store unverified,
//! and nothing but the unpacked tree is written.

use super::keys::{self, PublicKey, SecretKey, Untrusted};
use crate::model::manifest::{self, Manifest};
use anyhow::{Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::Dir;
use reprovm_oci::client::{BlobReader, Fetched, Reference, Registry, RegistryError, MANIFEST_TYPE};
use reprovm_oci::layer::{self, Modes};
use reprovm_oci::layout::{canonical_json, descriptor};
use reprovm_oci::spec::ImageManifest;
use std::collections::BTreeMap;
use std::path::Path;

pub(crate) const ENTRY_TYPE: &str = "application/vnd.reprovm.store-entry.v1";
pub(crate) const STORE_MANIFEST_TYPE: &str = "application/vnd.reprovm.store-manifest.v1+json";
pub(crate) const OUTPUT_TYPE: &str = "application/vnd.reprovm.store-output.v1.tar+gzip";
const NAME: &str = "dev.reprovm.name";
const VERSION: &str = "dev.reprovm.version";
const INPUT_HASH: &str = "dev.reprovm.input-hash";
const OUTPUT_HASH: &str = "dev.reprovm.output-hash";
const TAR_SIZE: &str = "dev.reprovm.tar-size";
pub const SIGNATURE: &str = "dev.reprovm.signature";
/// The largest entry manifest.json taken from a registry: the store's own limit.
pub(crate) const CONFIG_LIMIT: u64 = crate::model::manifest::MAX_BYTES;

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
pub(crate) struct Wanted<'a> {
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
pub(crate) enum Refusal {
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
pub(crate) struct Pushed {
    pub bytes_sent: u64,
    pub already_there: bool,
}

/// Push the store entry at `entry` (tagged by its input hash), signed with `key` if given.
pub(crate) fn push(
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
    // Nothing damaged leaves this machine: every file is hashed against the manifest first
    // (a damaged entry is refused with the file named), and the layer records the manifest's
    // modes (the store's own are sealed without write bits).
    crate::model::store::seal::verify_or_refuse(entry, &m)?;
    let modes: BTreeMap<std::path::PathBuf, u32> =
        m.files.iter().map(|f| (std::path::PathBuf::from(&f.path), f.mode)).collect();
    // The layer is written beside the entry's temp files (a temp dir the caller's process owns).
    let tmp = tempfile::NamedTempFile::new()?;
    let out = Dir::open(&crate::model::store::out_dir(entry))?;
    let digests = layer::write_gzip_tar(
        &out,
        source_date_epoch,
        Modes::Listed(&modes),
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
pub(crate) enum Trust<'a> {
    /// One of these keys (substitution).
    Keys(&'a [PublicKey]),
    /// Any, or none: the entry is only compared, never used (`audit --against`), and the
    /// signature's status is reported. Unless one of `keys` signed it, no size it declares
    /// (layer, tar) may exceed `limit` ([`tar_limit`] of the tree it is compared with).
    CompareOnly { keys: &'a [PublicKey], limit: u64 },
}

/// What an unsigned entry compared with a tree of `files` may declare, in bytes of tar (and of
/// gzip over it): the tar this crate's layer writer makes of that tree (a header, a GNU
/// long-name record and a long-link record per entry at most, the contents in 512-byte
/// blocks, the end blocks) plus a fixed margin of [`LIMIT_MARGIN`] for another machine's
/// differences and gzip's overhead.
pub(crate) fn tar_limit(files: &[crate::model::manifest::FileEntry]) -> u64 {
    let block = |n: u64| n.div_ceil(512) * 512;
    let entries: u64 = files
        .iter()
        .map(|f| {
            let name = block(f.path.len() as u64 + 2);
            let link = block(f.target.as_ref().map_or(0, |t| t.len() as u64 + 1));
            3 * 512 + name + link + block(f.size.unwrap_or(0))
        })
        .sum();
    entries + 20 * 512 + LIMIT_MARGIN
}

/// The margin [`tar_limit`] adds: 1 MiB.
pub(crate) const LIMIT_MARGIN: u64 = 1 << 20;

/// An entry taken from a registry: its manifest (computed here from the verified tree) and
/// who signed the registry document it came from, read once.
#[derive(Debug)]
pub(crate) struct Taken {
    pub manifest: Manifest,
    /// The trusted key that signed it, or why no trusted key did.
    pub signature: Result<keys::Signer, Untrusted>,
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
    match manifest.artifact_type.as_deref().filter(|t| !t.is_empty()) {
        Some(ENTRY_TYPE) => {}
        Some(other) => {
            return Err(Refusal::Mismatch(format!(
                "{tag} is a `{other}` artifact, not a store entry ({ENTRY_TYPE})"
            )))
        }
        None => {
            return Err(Refusal::Mismatch(format!(
                "{tag} has no artifactType: it is not a store entry ({ENTRY_TYPE})"
            )))
        }
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
pub(crate) fn fetch(
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
    let (trusted, required, limit) = match trust {
        Trust::Keys(k) => (k, true, None),
        Trust::CompareOnly { keys, limit } => (keys, false, Some(limit)),
    };
    let signature =
        keys::verify(trusted, doc.annotations.get(SIGNATURE).map(String::as_str), &message);
    if required {
        signature.clone()?;
    }
    // Unsigned (or signed by nobody trusted), an entry only compared gets no more room than
    // the tree it is compared with could take: refused before a byte of it is read.
    if let Some(limit) = limit.filter(|_| signature.is_err()) {
        for (what, declared) in [("its layer", layer_d.size), ("its tar", tar_size)] {
            if declared > limit {
                return Err(Refusal::Mismatch(format!(
                    "{tag}: {what} declares {declared} bytes, more than the {limit} a tree like this machine's rebuild takes (with a margin of {LIMIT_MARGIN}); not downloaded"
                )));
            }
        }
    }
    if config_d.size > CONFIG_LIMIT {
        return Err(Refusal::Mismatch(format!(
            "{tag}: its manifest.json declares {} bytes, more than the limit of {CONFIG_LIMIT}",
            config_d.size
        )));
    }
    let mut config = Vec::new();
    reg.blob_into(repo, &config_digest, config_d.size, &mut config)?;

    // The layer, unpacked as it streams into the entry's temp directory (swept with it),
    // reading at most the declared tar length; then the rest of the blob is read, so that its
    // size and digest are checked before anything of it is kept. The tree must hash to the
    // output hash.
    let out = crate::model::store::out_dir(into);
    let mismatch = |e: anyhow::Error| Refusal::Mismatch(format!("unpacking the output: {e:#}"));
    let tree = Dir::create(&out).map_err(|e| mismatch(e.into()))?;
    let blob = Shared::new(reg.blob_reader(repo, &layer_digest, layer_d.size)?);
    let r = archive::decoder(archive::Format::TarGz, blob.clone()).map_err(mismatch)?;
    let bounded = archive::Bounded::new(r, tar_size);
    let unpacked = archive::extract_tar(
        Box::new(bounded),
        &tree,
        0,
        &|p| p.to_path_buf(),
        archive::Links::StayInTree,
    );
    // The blob's own verdict first: a blob that is not what its descriptor says explains a
    // failed unpacking better than the unpacking does.
    let rest = std::io::copy(&mut blob.clone(), &mut std::io::sink());
    if let Err(e) = rest {
        return Err(BlobReader::error(e).into());
    }
    unpacked.map_err(mismatch)?;
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
    let dir = Dir::open(into).map_err(|e| Refusal::Transfer(e.into()))?;
    dir.write_atomic(Path::new("manifest.json"), &ours_bytes, 0o644)
        .map_err(|e| Refusal::Transfer(e.into()))?;
    Ok(Some(Taken { manifest: ours, signature, document: doc.fetched.digest }))
}

/// One reader read from two places (the unpacker, then the drain that checks the digest).
#[derive(Clone)]
struct Shared(std::rc::Rc<std::cell::RefCell<BlobReader>>);

impl Shared {
    fn new(r: BlobReader) -> Shared {
        Shared(std::rc::Rc::new(std::cell::RefCell::new(r)))
    }
}

impl std::io::Read for Shared {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        self.0.borrow_mut().read(buf)
    }
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
