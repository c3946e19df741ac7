//! The OCI image-spec documents reprovm writes and reads: descriptors, image manifests, image
//! indexes and the image config, as serde types.
//!
//! Written here rather than taken from the `oci-spec` crate, for two reasons: determinism (its
//! types keep annotations in `HashMap`s, whose order changes from run to run, so every
//! document had to be re-sorted before hashing; these use `BTreeMap`s, and `layout::
//! canonical_json` still sorts every key) and the build (its builders derive through
//! derive_builder, darling, getset and strum, and its digests through regex: a third of the
//! dependency graph's compile time, for six structs). Unknown fields of documents read from
//! elsewhere are ignored, as the spec asks; digests are checked where they are used
//! (`client::check_digest`, `layout::Layout::blob`).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

pub const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
pub const INDEX: &str = "application/vnd.oci.image.index.v1+json";
pub const CONFIG: &str = "application/vnd.oci.image.config.v1+json";
pub const LAYER_TAR: &str = "application/vnd.oci.image.layer.v1.tar";
pub const LAYER_GZIP: &str = "application/vnd.oci.image.layer.v1.tar+gzip";
pub const LAYER_ZSTD: &str = "application/vnd.oci.image.layer.v1.tar+zstd";
/// The empty JSON document `{}` (a config for artifacts).
pub const EMPTY: &str = "application/vnd.oci.empty.v1+json";

fn is_zero(n: &u32) -> bool {
    *n == 0
}

/// A content descriptor: what a document points at, by digest and size.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Descriptor {
    pub media_type: String,
    /// `sha256:<hex>`.
    pub digest: String,
    pub size: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub platform: Option<Platform>,
}

impl Descriptor {
    /// A descriptor of `size` bytes with digest `sha256:hex`.
    pub fn new(media_type: &str, hex: &str, size: u64) -> Descriptor {
        Descriptor {
            media_type: media_type.to_string(),
            digest: format!("sha256:{hex}"),
            size,
            artifact_type: None,
            annotations: BTreeMap::new(),
            platform: None,
        }
    }

    /// The same, with these annotations.
    pub fn with_annotations(mut self, annotations: BTreeMap<String, String>) -> Descriptor {
        self.annotations = annotations;
        self
    }

    /// The hex part of the digest (what a layout names the blob file).
    pub fn hex(&self) -> &str {
        self.digest.strip_prefix("sha256:").unwrap_or(&self.digest)
    }
}

/// Where an image runs: `linux`/`amd64`, `linux`/`arm64`/`v8`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Platform {
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
}

/// An image manifest (or an artifact manifest: with `artifactType`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageManifest {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub config: Descriptor,
    pub layers: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageManifest {
    /// A manifest of schema 2 with this config and these layers.
    pub fn new(config: Descriptor, layers: Vec<Descriptor>) -> ImageManifest {
        ImageManifest {
            schema_version: 2,
            media_type: Some(MANIFEST.to_string()),
            artifact_type: None,
            config,
            layers,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// An image index: a list of manifests (tags of a layout, referrers, platforms).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct ImageIndex {
    #[serde(default, skip_serializing_if = "is_zero")]
    pub schema_version: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub artifact_type: Option<String>,
    pub manifests: Vec<Descriptor>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<Descriptor>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, String>,
}

impl ImageIndex {
    /// An index of schema 2 listing `manifests`.
    pub fn new(manifests: Vec<Descriptor>) -> ImageIndex {
        ImageIndex {
            schema_version: 2,
            media_type: Some(INDEX.to_string()),
            artifact_type: None,
            manifests,
            subject: None,
            annotations: BTreeMap::new(),
        }
    }
}

/// The image config of a one-layer image: no command, no environment (the images are files
/// for a VMM, not containers).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageConfig {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub created: Option<String>,
    pub architecture: String,
    pub os: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub variant: Option<String>,
    /// The execution parameters: always `{}` here.
    #[serde(default)]
    pub config: BTreeMap<String, serde_json::Value>,
    pub rootfs: RootFs,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RootFs {
    #[serde(rename = "type")]
    pub typ: String,
    pub diff_ids: Vec<String>,
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The documents reprovm has always written (by oci-spec's types, then canonical JSON)
    /// round-trip through these types to the same bytes.
    #[test]
    fn documents_round_trip_to_the_same_canonical_bytes() {
        let docs = [
            r#"{"annotations":{"org.opencontainers.image.created":"2024-01-01T00:00:00Z"},"artifactType":"application/vnd.reprovm.kernel.config.v1","config":{"digest":"sha256:44136fa355b3678a1146ad16f7e8649e94fb4fc21fe77e8310c060f61caaff8a","mediaType":"application/vnd.oci.empty.v1+json","size":2},"layers":[{"annotations":{"org.opencontainers.image.title":"config"},"digest":"sha256:3b671474fee1b965ae49e2842426e60a84e94a1f969b4aa13fde1d1825d47934","mediaType":"text/plain","size":79863}],"mediaType":"application/vnd.oci.image.manifest.v1+json","schemaVersion":2,"subject":{"digest":"sha256:2b2500493d03e667e32153010ebe8b0405ad4ef95f271c0fa58d69ccc91416cb","mediaType":"application/vnd.oci.image.manifest.v1+json","size":876}}"#,
        ];
        for d in docs {
            let m: ImageManifest = serde_json::from_str(d).unwrap();
            assert_eq!(String::from_utf8(crate::layout::canonical_json(&m).unwrap()).unwrap(), d);
        }
        let index = r#"{"manifests":[{"annotations":{"org.opencontainers.image.ref.name":"6.1.176"},"digest":"sha256:2b2500493d03e667e32153010ebe8b0405ad4ef95f271c0fa58d69ccc91416cb","mediaType":"application/vnd.oci.image.manifest.v1+json","size":876},{"artifactType":"application/vnd.reprovm.kernel.config.v1","digest":"sha256:780497e6e0a59ca07bd8ec66ae123aa77cf915cc6b3f83a4f08c3b99e40ddf53","mediaType":"application/vnd.oci.image.manifest.v1+json","size":714}],"mediaType":"application/vnd.oci.image.index.v1+json","schemaVersion":2}"#;
        let i: ImageIndex = serde_json::from_str(index).unwrap();
        assert_eq!(String::from_utf8(crate::layout::canonical_json(&i).unwrap()).unwrap(), index);
        let config = r#"{"architecture":"amd64","config":{},"created":"2024-01-01T00:00:00Z","os":"linux","rootfs":{"diff_ids":["sha256:441d1a06bc4e4af4292b2325ddc67fe161e3a2e0b9f0485bbd7a01d16a92cd17"],"type":"layers"}}"#;
        let c: ImageConfig = serde_json::from_str(config).unwrap();
        assert_eq!(String::from_utf8(crate::layout::canonical_json(&c).unwrap()).unwrap(), config);
    }
}
