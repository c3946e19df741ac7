//! Sigstore cosign's documents for an image signed with a key, offline (no Rekor, no Fulcio:
//! decision 0075), in cosign's tag scheme, which cosign 2.5 verifies with `--key` (its OCI 1.1
//! referrers are experimental there):
//!
//! - the signature is an image manifest tagged `sha256-HEX.sig` beside the image `sha256:HEX`,
//!   one layer per signature: a "simple signing" payload naming the image's repository and
//!   manifest digest, its ed25519 signature (base64) in the layer's annotation;
//! - the attestations are an image manifest tagged `sha256-HEX.att`, one layer per DSSE
//!   envelope (reprovm's own envelopes, byte for byte), each annotated with its predicate type
//!   and an empty signature annotation, as `cosign attest` writes them.
//!
//! Written here rather than with sigstore-rs: the documents are three small JSON shapes, and
//! their bytes must be a function of the image and the key alone (sigstore-rs signs through
//! its own client and adds nothing offline verification needs). Ed25519 is deterministic, so
//! the same image, repository and key give the same signature manifest on every machine.

use super::*;
use crate::model::attestation::DSSE_MEDIA_TYPE;
use reprovm_oci::spec::{Descriptor, ImageManifest};

/// The media type of a signature layer.
pub(crate) const SIMPLE_SIGNING_TYPE: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// The layer annotation holding a signature (base64), empty on an attestation's layer.
pub(crate) const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The layer annotation naming an attestation's predicate type.
pub(crate) const PREDICATE_TYPE_ANNOTATION: &str = "predicateType";
/// The `critical.type` of a simple signing payload.
pub(crate) const SIGNATURE_KIND: &str = "cosign container image signature";
/// The config of both manifests: `{}` as an image config, as cosign reads it.
const CONFIG_TYPE: &str = "application/vnd.oci.image.config.v1+json";
const EMPTY_CONFIG: &[u8] = b"{}";
/// The most a signature payload may be (it names a repository and a digest).
pub(crate) const PAYLOAD_LIMIT: u64 = 64 << 10;

/// The two tags beside an image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CosignTag {
    Signature,
    Attestations,
}

impl CosignTag {
    /// `sha256-HEX.sig` or `sha256-HEX.att` for the image `sha256:HEX`.
    pub(crate) fn of(self, digest: &str) -> String {
        let suffix = match self {
            CosignTag::Signature => "sig",
            CosignTag::Attestations => "att",
        };
        format!("{}.{suffix}", digest.replace(':', "-"))
    }

    /// What the tag holds, in messages.
    pub(crate) fn name(self) -> &'static str {
        match self {
            CosignTag::Signature => "signature",
            CosignTag::Attestations => "attestations",
        }
    }

    /// The media type of this tag's layers.
    pub(crate) fn layer_type(self) -> &'static str {
        match self {
            CosignTag::Signature => SIMPLE_SIGNING_TYPE,
            CosignTag::Attestations => DSSE_MEDIA_TYPE,
        }
    }
}

/// A simple signing payload (containers/image's format, as cosign writes it: Go's field order).
#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct SimpleSigning {
    pub critical: Critical,
    pub optional: Option<BTreeMap<String, serde_json::Value>>,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Critical {
    pub identity: Identity,
    pub image: Image,
    #[serde(rename = "type")]
    pub kind: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Identity {
    #[serde(rename = "docker-reference")]
    pub docker_reference: String,
}

#[derive(Debug, serde::Serialize, serde::Deserialize)]
pub(crate) struct Image {
    #[serde(rename = "docker-manifest-digest")]
    pub docker_manifest_digest: String,
}

/// The payload signing the image `digest` in `repository` (`REGISTRY/REPO`).
pub(crate) fn signature_payload(repository: &str, digest: &str) -> Result<Vec<u8>> {
    Ok(serde_json::to_vec(&SimpleSigning {
        critical: Critical {
            identity: Identity { docker_reference: repository.to_string() },
            image: Image { docker_manifest_digest: digest.to_string() },
            kind: SIGNATURE_KIND.to_string(),
        },
        optional: None,
    })?)
}

/// A blob of a cosign manifest: its descriptor and bytes.
pub(crate) struct Blob {
    pub descriptor: Descriptor,
    pub bytes: Vec<u8>,
}

impl Blob {
    fn new(media_type: &str, bytes: Vec<u8>, annotations: BTreeMap<String, String>) -> Blob {
        let descriptor = Descriptor::new(media_type, &sha256_bytes(&bytes), bytes.len() as u64)
            .with_annotations(annotations);
        Blob { descriptor, bytes }
    }
}

/// The signature layer of `payload` by `key`.
pub(crate) fn signature_layer(key: &SecretKey, payload: Vec<u8>) -> Blob {
    let signature = B64.encode(key.sign_raw(&payload));
    let annotations = BTreeMap::from([(SIGNATURE_ANNOTATION.to_string(), signature)]);
    Blob::new(SIMPLE_SIGNING_TYPE, payload, annotations)
}

/// The attestation layer of a DSSE envelope (its exact bytes).
pub(crate) fn attestation_layer(predicate_type: &str, envelope: Vec<u8>) -> Blob {
    let annotations = BTreeMap::from([
        (PREDICATE_TYPE_ANNOTATION.to_string(), predicate_type.to_string()),
        (SIGNATURE_ANNOTATION.to_string(), String::new()),
    ]);
    Blob::new(DSSE_MEDIA_TYPE, envelope, annotations)
}

/// The config blob both manifests share.
pub(crate) fn config() -> Blob {
    Blob::new(CONFIG_TYPE, EMPTY_CONFIG.to_vec(), BTreeMap::new())
}

/// The manifest (canonical JSON) listing `layers` over the shared config.
pub(crate) fn manifest(layers: Vec<Descriptor>) -> Result<Vec<u8>> {
    reprovm_oci::layout::canonical_json(&ImageManifest::new(config().descriptor, layers))
}

/// Check one signature layer's payload and annotation: signed by a trusted key, of the image
/// `digest`. The key that signed it, or why not.
pub(crate) fn check_signature(
    trusted: &[PublicKey],
    layer: &Descriptor,
    payload: &[u8],
    digest: &str,
) -> Result<keys::Signer, String> {
    let Some(encoded) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
        return Err(format!("layer {} carries no {SIGNATURE_ANNOTATION}", layer.digest));
    };
    let signature = dsse::decode_base64(encoded)
        .map_err(|_| format!("layer {}: its signature is not base64", layer.digest))?;
    let signer = keys::verify_any(trusted, &signature, payload)
        .map_err(|_| format!("layer {}: not signed by a trusted key", layer.digest))?;
    let said: SimpleSigning = serde_json::from_slice(payload)
        .map_err(|e| format!("layer {}: not a simple signing payload: {e}", layer.digest))?;
    if said.critical.kind != SIGNATURE_KIND {
        return Err(format!("layer {}: payload type `{}`", layer.digest, said.critical.kind));
    }
    if said.critical.image.docker_manifest_digest != digest {
        return Err(format!(
            "layer {}: it signs {}, not {digest}",
            layer.digest, said.critical.image.docker_manifest_digest
        ));
    }
    Ok(signer)
}

/// Check one attestation layer as cosign does: a DSSE envelope signed by a trusted key whose
/// Statement names the image `digest` as a subject. The layer's annotations are the
/// registry's word, not the signer's, and are not read (cosign 2.5 reads neither: the full
/// tier relabels one and removes the other). The Statement's predicate type (what `--type`
/// selects) and the signer, or why not.
pub(crate) fn check_attestation(
    trusted: &[PublicKey],
    layer: &Descriptor,
    envelope: &[u8],
    digest: &str,
) -> Result<(String, keys::Signer), String> {
    let v = dsse::open_envelope(trusted, envelope)
        .map_err(|e| format!("layer {}: {e}", layer.digest))?;
    let hex = digest.strip_prefix("sha256:").unwrap_or(digest);
    if !v.statement.subject.iter().any(|s| s.digest.get("sha256").map(String::as_str) == Some(hex))
    {
        return Err(format!("layer {}: the statement does not name {digest}", layer.digest));
    }
    Ok((v.statement.predicate_type, v.key))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_payload_is_cosigns_shape_and_a_signature_checks_its_image() {
        let p = signature_payload("127.0.0.1:5000/reprovm/krata", "sha256:ab").unwrap();
        assert_eq!(
            String::from_utf8(p.clone()).unwrap(),
            r#"{"critical":{"identity":{"docker-reference":"127.0.0.1:5000/reprovm/krata"},"image":{"docker-manifest-digest":"sha256:ab"},"type":"cosign container image signature"},"optional":null}"#
        );
        let t = tempfile::tempdir().unwrap();
        let k = t.path().join("ci.key");
        keys::generate("ci", &k).unwrap();
        let key = SecretKey::load(&k).unwrap();
        let trusted = vec![PublicKey::load(&k.with_extension("pub")).unwrap()];
        let layer = signature_layer(&key, p.clone());
        assert_eq!(signature_layer(&key, p.clone()).descriptor, layer.descriptor, "deterministic");
        let d = &layer.descriptor;
        assert_eq!(check_signature(&trusted, d, &p, "sha256:ab").unwrap().name, "ci");
        let e = check_signature(&trusted, d, &p, "sha256:cd").unwrap_err();
        assert!(e.contains("it signs sha256:ab, not sha256:cd"), "{e}");
        let other = signature_payload("127.0.0.1:5000/reprovm/krata", "sha256:cd").unwrap();
        let e = check_signature(&trusted, d, &other, "sha256:cd").unwrap_err();
        assert!(e.contains("not signed by a trusted key"), "{e}");
        assert_eq!(CosignTag::Signature.of("sha256:ab"), "sha256-ab.sig");
        assert_eq!(CosignTag::Attestations.of("sha256:ab"), "sha256-ab.att");
    }
}
