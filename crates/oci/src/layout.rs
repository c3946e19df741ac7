//! OCI image layouts on disk (`oci-layout`, `index.json`, `blobs/sha256/<hex>`): writing one
//! deterministically, and reading and verifying one.
//!
//! The documents are `spec`'s types, written through [`canonical_json`]: keys sorted at every
//! level, no insignificant whitespace. The same document then has the same digest on every
//! machine, whatever the order its fields or maps were built in.

use crate::spec::{Descriptor, ImageIndex, ImageManifest};
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::{sha256_bytes, HashingWriter};
use serde::Serialize;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// `org.opencontainers.image.ref.name`: a tag of a manifest in index.json.
pub const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// Serialise with object keys sorted at every level and no whitespace.
pub fn canonical_json<T: Serialize>(value: &T) -> Result<Vec<u8>> {
    fn sort(v: serde_json::Value) -> serde_json::Value {
        match v {
            serde_json::Value::Object(map) => {
                let sorted: BTreeMap<String, serde_json::Value> =
                    map.into_iter().map(|(k, v)| (k, sort(v))).collect();
                serde_json::Value::Object(sorted.into_iter().collect())
            }
            serde_json::Value::Array(items) => {
                serde_json::Value::Array(items.into_iter().map(sort).collect())
            }
            other => other,
        }
    }
    Ok(serde_json::to_vec(&sort(serde_json::to_value(value)?))?)
}

/// A descriptor of `size` bytes with digest `sha256:hex` and these annotations.
pub fn descriptor(
    media_type: &str,
    hex: &str,
    size: u64,
    annotations: BTreeMap<String, String>,
) -> Descriptor {
    Descriptor::new(media_type, hex, size).with_annotations(annotations)
}

/// An image layout being written into an empty directory (a build's `$OUT`).
pub struct LayoutWriter {
    dir: Dir,
}

impl LayoutWriter {
    /// Start a layout in `dir` (created if missing): writes `oci-layout`.
    pub fn create(dir: &Path) -> Result<LayoutWriter> {
        let dir = Dir::create(dir)?;
        dir.write_atomic(Path::new("oci-layout"), br#"{"imageLayoutVersion":"1.0.0"}"#, 0o644)?;
        dir.create_dir_all(Path::new("blobs/sha256"))?;
        Ok(LayoutWriter { dir })
    }

    /// Store `data` as a blob; returns its sha256 hex.
    pub fn blob_bytes(&self, data: &[u8]) -> Result<String> {
        let hex = sha256_bytes(data);
        self.dir.write_atomic(&blob_path(&hex), data, 0o644)?;
        Ok(hex)
    }

    /// Store a document (canonical JSON) as a blob and describe it.
    pub fn blob_json<T: Serialize>(
        &self,
        media_type: &str,
        doc: &T,
        annotations: BTreeMap<String, String>,
    ) -> Result<Descriptor> {
        let bytes = canonical_json(doc)?;
        let hex = self.blob_bytes(&bytes)?;
        Ok(descriptor(media_type, &hex, bytes.len() as u64, annotations))
    }

    /// Store what `write` writes as a blob, streamed through a temporary file and renamed to
    /// its digest; returns (sha256 hex, size, what `write` returned).
    pub fn blob_stream<R>(
        &self,
        write: impl FnOnce(&mut dyn Write) -> Result<R>,
    ) -> Result<(String, u64, R)> {
        let tmp = PathBuf::from(format!("blobs/.tmp-{}", std::process::id()));
        let f = self.dir.create_file(&tmp, 0o644)?;
        let mut w = HashingWriter::new(std::io::BufWriter::new(f));
        let r = match write(&mut w) {
            Ok(r) => r,
            Err(e) => {
                // A blob refused half-way leaves nothing in the layout.
                drop(w);
                let _ = self.dir.remove_all(&tmp);
                return Err(e);
            }
        };
        let size = w.written;
        let (buf, hex) = w.finish();
        let f = buf.into_inner().map_err(|e| e.into_error())?;
        f.sync_all()?;
        self.dir.rename(&tmp, &blob_path(&hex))?;
        Ok((hex, size, r))
    }

    /// Store a file's bytes as a blob.
    pub fn blob_file(&self, src: &mut dyn Read) -> Result<(String, u64)> {
        let (hex, size, ()) = self.blob_stream(|w| {
            std::io::copy(src, w)?;
            Ok(())
        })?;
        Ok((hex, size))
    }

    /// Write `index.json` listing `manifests` (in this order) and finish the layout.
    pub fn finish(self, manifests: Vec<Descriptor>) -> Result<()> {
        let index = ImageIndex::new(manifests);
        Ok(self.dir.write_atomic(Path::new("index.json"), &canonical_json(&index)?, 0o644)?)
    }
}

/// Where a blob lives in a layout.
pub fn blob_path(hex: &str) -> PathBuf {
    Path::new("blobs/sha256").join(hex)
}

/// A layout on disk, opened for reading.
pub struct Layout {
    pub dir: Dir,
    pub index: ImageIndex,
}

impl Layout {
    /// Open `path` as an image layout: `oci-layout` must say version 1.0.0 and `index.json`
    /// must parse.
    pub fn open(path: &Path) -> Result<Layout> {
        let dir = Dir::open(path)?;
        let header: serde_json::Value = serde_json::from_slice(&dir.read(Path::new("oci-layout"))?)
            .with_context(|| format!("{}/oci-layout is not JSON", path.display()))?;
        if header["imageLayoutVersion"] != "1.0.0" {
            bail!("{}: not an OCI image layout 1.0.0 (oci-layout says {header})", path.display());
        }
        let index: ImageIndex = serde_json::from_slice(&dir.read(Path::new("index.json"))?)
            .with_context(|| format!("{}/index.json is not an OCI image index", path.display()))?;
        Ok(Layout { dir, index })
    }

    /// The bytes of a blob, checked against its digest.
    pub fn blob(&self, d: &Descriptor) -> Result<Vec<u8>> {
        let hex = d.hex();
        let data = self.dir.read(&blob_path(hex))?;
        let got = sha256_bytes(&data);
        if got != hex || data.len() as u64 != d.size {
            bail!(
                "{}: blob {} holds {} bytes with sha256 {got}, not what its descriptor says ({} bytes)",
                self.dir.path().display(),
                d.digest,
                data.len(),
                d.size
            );
        }
        Ok(data)
    }

    /// Check a blob against its descriptor's digest and size, reading it as a stream (layers
    /// may be large).
    pub fn check_blob(&self, d: &Descriptor) -> Result<()> {
        let hex = d.hex();
        let mut f = self.dir.open_file(&blob_path(hex))?;
        let mut w = HashingWriter::new(std::io::sink());
        std::io::copy(&mut f, &mut w)?;
        let size = w.written;
        let (_, got) = w.finish();
        if got != hex || size != d.size {
            bail!(
                "{}: blob {} holds {size} bytes with sha256 {got}, not what its descriptor says ({} bytes)",
                self.dir.path().display(),
                d.digest,
                d.size
            );
        }
        Ok(())
    }

    /// The manifests of index.json with their tags (`ref.name`, if any).
    pub fn manifests(&self) -> Vec<(Option<String>, Descriptor)> {
        self.index
            .manifests
            .iter()
            .map(|d| (d.annotations.get(REF_NAME).cloned(), d.clone()))
            .collect()
    }

    /// Every blob index.json reaches, each checked: of a manifest its config, layers and
    /// itself; of an image index (a multi-architecture image) every manifest it lists, then
    /// itself. An index inside an index is refused (nothing here writes one).
    pub fn verify(&self) -> Result<Vec<Descriptor>> {
        let mut seen = Vec::new();
        for (_, d) in self.manifests() {
            self.verify_entry(&d, true, &mut seen)?;
        }
        Ok(seen)
    }

    fn verify_entry(&self, d: &Descriptor, top: bool, seen: &mut Vec<Descriptor>) -> Result<()> {
        let bytes = self.blob(d)?;
        if d.media_type == crate::spec::INDEX {
            anyhow::ensure!(top, "image index {} lists another image index", d.digest);
            let index: ImageIndex = serde_json::from_slice(&bytes)
                .with_context(|| format!("{} is not an OCI image index", d.digest))?;
            for m in &index.manifests {
                anyhow::ensure!(
                    m.media_type == crate::spec::MANIFEST,
                    "image index {} lists {} of type {}, not an image manifest",
                    d.digest,
                    m.digest,
                    m.media_type
                );
                self.verify_entry(m, false, seen)?;
            }
        } else {
            let manifest: ImageManifest = serde_json::from_slice(&bytes)
                .with_context(|| format!("manifest {} is not an OCI image manifest", d.digest))?;
            self.check_blob(&manifest.config)?;
            seen.push(manifest.config.clone());
            for l in &manifest.layers {
                self.check_blob(l)?;
                seen.push(l.clone());
            }
        }
        seen.push(d.clone());
        Ok(())
    }

    /// The image manifests an entry of index.json stands for: itself, or those its image
    /// index lists (each with its platform).
    pub fn images_of(&self, d: &Descriptor) -> Result<Vec<Descriptor>> {
        if d.media_type != crate::spec::INDEX {
            return Ok(vec![d.clone()]);
        }
        let index: ImageIndex = serde_json::from_slice(&self.blob(d)?)
            .with_context(|| format!("{} is not an OCI image index", d.digest))?;
        Ok(index.manifests)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::spec;
    use std::collections::HashMap;

    #[test]
    fn canonical_json_sorts_keys_at_every_level() {
        let mut a = HashMap::new();
        for k in ["zeta", "alpha", "mid", "beta", "omega", "gamma"] {
            a.insert(k.to_string(), serde_json::json!({"z": 1, "a": [{"y": 2, "b": 3}]}));
        }
        let once = canonical_json(&a).unwrap();
        assert!(String::from_utf8_lossy(&once)
            .starts_with(r#"{"alpha":{"a":[{"b":3,"y":2}],"z":1},"beta""#));
        for _ in 0..20 {
            let again: HashMap<String, serde_json::Value> = serde_json::from_slice(&once).unwrap();
            assert_eq!(canonical_json(&again).unwrap(), once);
        }
    }

    #[test]
    fn a_layout_round_trips_and_a_changed_blob_is_named() {
        let t = tempfile::tempdir().unwrap();
        let w = LayoutWriter::create(t.path()).unwrap();
        let layer = b"not really a tar";
        let hex = w.blob_bytes(layer).unwrap();
        let layer_d = descriptor(spec::LAYER_TAR, &hex, layer.len() as u64, BTreeMap::new());
        let config = w.blob_json(spec::EMPTY, &serde_json::json!({}), BTreeMap::new()).unwrap();
        let manifest = ImageManifest::new(config, vec![layer_d.clone()]);
        let tag = BTreeMap::from([(REF_NAME.to_string(), "v1".to_string())]);
        let m = w.blob_json(spec::MANIFEST, &manifest, tag).unwrap();
        w.finish(vec![m.clone()]).unwrap();

        let l = Layout::open(t.path()).unwrap();
        assert_eq!(l.manifests(), vec![(Some("v1".to_string()), m)]);
        assert_eq!(l.verify().unwrap().len(), 3);
        std::fs::write(t.path().join("blobs/sha256").join(&hex), b"tampered").unwrap();
        let e = format!("{:#}", l.verify().unwrap_err());
        assert!(e.contains(&format!("blob sha256:{hex} holds 8 bytes")), "{e}");
    }
}
