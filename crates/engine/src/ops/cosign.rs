//! What cosign verifies, on a registry: `push --sign-key` publishes each image's signature and
//! attestations in cosign's tag scheme (`steps::attest::cosign`, decision 0075), and
//! `verify --image REF` checks them the way `cosign verify --key` and `cosign
//! verify-attestation --key --type slsaprovenance1|cyclonedx` do, offline, with reprovm's own
//! trusted keys, reporting each of the three checks.

use crate::model::attestation::{CYCLONEDX_PREDICATE, SLSA_PROVENANCE};
use crate::steps::attest::cosign::{
    self, Blob, CosignTag, PAYLOAD_LIMIT, PREDICATE_TYPE_ANNOTATION,
};
use crate::steps::substitution::keys::{self, SecretKey};
use anyhow::{Context, Result};
use reprovm_fs::progress;
use reprovm_oci::client::{Reference, Registry, INDEX_TYPE, MANIFEST_TYPE};
use reprovm_oci::layout::Layout;
use reprovm_oci::spec::{Descriptor, ImageManifest};
use std::path::{Path, PathBuf};

/// The most layers a `.sig` or `.att` manifest may have (signers and attestations: a few).
const MAX_LAYERS: usize = 16;
/// The largest attestation envelope read (an SBOM of a whole image is a few hundred KiB).
const ENVELOPE_LIMIT: u64 = 16 << 20;

/// Sign the image `image` (pushed to `reference`'s repository) with `key` and attest it with
/// `envelopes` (predicate type, DSSE envelope bytes), in cosign's tag scheme. Layers another
/// signer put under the same tags are kept (as `cosign sign` appends); one equal to ours is
/// not added twice, so a second push changes nothing.
pub(crate) fn publish(
    reg: &Registry,
    reference: &Reference,
    key: &SecretKey,
    image: &Descriptor,
    envelopes: &[(&str, Vec<u8>)],
) -> Result<()> {
    let repository = format!("{}/{}", reference.registry(), reference.repository());
    let payload = cosign::signature_payload(&repository, &image.digest)?;
    let signature = vec![cosign::signature_layer(key, payload)];
    put(reg, reference, image, CosignTag::Signature, signature)?;
    if envelopes.is_empty() {
        return Ok(());
    }
    let attestations = envelopes
        .iter()
        .map(|(predicate_type, env)| cosign::attestation_layer(predicate_type, env.clone()))
        .collect();
    put(reg, reference, image, CosignTag::Attestations, attestations)
}

/// Check a signing key before any work (`multiarch --sign-key`): one line naming the file.
pub fn check_sign_key(key: &Path) -> Result<()> {
    SecretKey::load(key).map(|_| ())
}

/// `multiarch … REF --sign-key KEY`, after the push of the layout at `dir` to `reference`:
/// cosign's signature of every manifest the layout tags (an image index: a multi-architecture
/// tag) and of every image each lists, so that `cosign verify --key` accepts each tag and each
/// platform's image. No attestations: they are a single build's (`push --sign-key`), and an
/// index is the union of two. Returns how many digests were signed.
pub fn sign_layout(dir: &Path, reference: &str, plain_http: bool, key: &Path) -> Result<usize> {
    let key = SecretKey::load(key)?;
    let (reference, plain_http) = match reference.strip_prefix("http://") {
        Some(rest) => (rest, true),
        None => (reference, plain_http),
    };
    let parsed = Reference::parse(reference)?;
    let reg = Registry::connect(&parsed, plain_http)?;
    let layout = Layout::open(dir)?;
    let mut signed = std::collections::BTreeSet::new();
    for (_, d) in layout.manifests() {
        let mut digests = vec![d.clone()];
        if d.media_type == reprovm_oci::spec::INDEX {
            digests.extend(layout.images_of(&d)?);
        }
        for image in digests {
            if signed.insert(image.digest.clone()) {
                publish(&reg, &parsed, &key, &image, &[])?;
            }
        }
    }
    Ok(signed.len())
}

/// Add `blobs` as layers of the manifest under `tag` of `image` (made if missing).
fn put(
    reg: &Registry,
    reference: &Reference,
    image: &Descriptor,
    tag: CosignTag,
    blobs: Vec<Blob>,
) -> Result<()> {
    let at = reference.at_tag(&tag.of(&image.digest));
    let mut layers = match reg.manifest(&at, &[MANIFEST_TYPE])? {
        Some(f) => {
            let m: ImageManifest = serde_json::from_slice(&f.bytes)
                .with_context(|| format!("{at}: the registry holds something that is not an image manifest (delete the tag to sign again)"))?;
            m.layers.into_iter().filter(|l| l.media_type == tag.layer_type()).collect()
        }
        None => Vec::new(),
    };
    let config = cosign::config();
    reg.send_blob(
        reference,
        &config.descriptor.digest,
        config.descriptor.size,
        &mut &config.bytes[..],
    )?;
    for b in blobs {
        if layers.iter().any(|l: &Descriptor| l == &b.descriptor) {
            continue;
        }
        let d = &b.descriptor;
        reg.send_blob(reference, &d.digest, d.size, &mut &b.bytes[..])?;
        layers.push(b.descriptor);
    }
    anyhow::ensure!(
        layers.len() <= MAX_LAYERS,
        "{at} would have {} layers, more than {MAX_LAYERS}: delete the tag's older signatures first",
        layers.len()
    );
    let bytes = cosign::manifest(layers)?;
    reg.put_manifest(&at, &bytes, MANIFEST_TYPE)?;
    progress::say(&format!(
        "  cosign {} of {} as {}",
        tag.name(),
        image.digest,
        tag.of(&image.digest)
    ));
    Ok(())
}

/// One of the checks `verify --image` makes, as cosign names it.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageCheck {
    /// `signature`, or the predicate type of the attestation checked.
    pub check: String,
    /// The cosign command making the same check.
    pub cosign: String,
    /// Who signed it (`ci` (key sha256:…)), when accepted.
    pub signer: Option<String>,
    /// Why it was refused, when refused.
    pub refused: Option<String>,
}

/// What `verify --image` found.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize)]
pub struct ImageVerification {
    pub reference: String,
    pub digest: String,
    pub checks: Vec<ImageCheck>,
}

impl ImageVerification {
    /// Whether every check accepted.
    pub fn accepted(&self) -> bool {
        self.checks.iter().all(|c| c.refused.is_none())
    }
}

/// `verify --image REF --trusted-attestation-key FILE...`: resolve REF (a tag or digest;
/// `http://` for a registry on this machine over plain HTTP), then check its cosign signature
/// and (unless `signature_only`: a multi-architecture index, which `multiarch --sign-key`
/// signs without attestations) its SLSA provenance and CycloneDX attestations against the
/// trusted keys. A refused
/// check is data (all three are always reported); a registry that cannot be read, a key
/// file that cannot be loaded, are errors.
pub fn verify_image(
    reference: &str,
    trusted_keys: &[PathBuf],
    signature_only: bool,
) -> Result<ImageVerification> {
    anyhow::ensure!(
        !trusted_keys.is_empty(),
        "verify --image needs --trusted-attestation-key FILE (a public key written by `cargo xtask cache keygen`)"
    );
    let trusted = keys::load_trusted(trusted_keys)?;
    let (shown, plain_http) = match reference.strip_prefix("http://") {
        Some(rest) => (rest, true),
        None => (reference, false),
    };
    let parsed = Reference::parse(shown)?;
    let reg = Registry::connect(&parsed, plain_http)?;
    let image = reg
        .manifest(&parsed, &[MANIFEST_TYPE, INDEX_TYPE])?
        .with_context(|| format!("{shown}: the registry has no such image"))?;
    let digest = image.digest;
    let mut checks = Vec::new();
    let signature =
        layers(&reg, &parsed, &digest, CosignTag::Signature, PAYLOAD_LIMIT).and_then(|found| {
            let mut why = Vec::new();
            for (layer, payload) in &found {
                match cosign::check_signature(&trusted, layer, payload, &digest) {
                    Ok(signer) => return Ok(signer),
                    Err(e) => why.push(e),
                }
            }
            if why.is_empty() {
                why.push("no signature layer".into());
            }
            Err(why.join("; "))
        });
    checks.push(check("signature", "cosign verify --key", signature));
    if signature_only {
        return Ok(ImageVerification { reference: reference.to_string(), digest, checks });
    }
    let attestations = layers(&reg, &parsed, &digest, CosignTag::Attestations, ENVELOPE_LIMIT);
    for (predicate_type, name) in
        [(SLSA_PROVENANCE, "slsaprovenance1"), (CYCLONEDX_PREDICATE, "cyclonedx")]
    {
        let outcome = attestations.clone().and_then(|found| {
            let mut why = Vec::new();
            for (layer, envelope) in &found {
                match cosign::check_attestation(&trusted, layer, envelope, &digest) {
                    Ok((t, signer)) if t == predicate_type => return Ok(signer),
                    Ok(_) => {}
                    // Only what was said to be of this type explains its refusal.
                    Err(e)
                        if layer.annotations.get(PREDICATE_TYPE_ANNOTATION).map(String::as_str)
                            == Some(predicate_type) =>
                    {
                        why.push(e)
                    }
                    Err(_) => {}
                }
            }
            why.insert(0, format!("no trusted attestation of {predicate_type}"));
            Err(why.join("; "))
        });
        let cosign = format!("cosign verify-attestation --key --type {name}");
        checks.push(check(predicate_type, &cosign, outcome));
    }
    Ok(ImageVerification { reference: reference.to_string(), digest, checks })
}

fn check(what: &str, cosign: &str, outcome: Result<keys::Signer, String>) -> ImageCheck {
    let (signer, refused) = match outcome {
        Ok(s) => (Some(s.to_string()), None),
        Err(e) => (None, Some(e)),
    };
    ImageCheck { check: what.to_string(), cosign: cosign.to_string(), signer, refused }
}

/// The layers (descriptor and bytes, each at most `limit`) of the tag `tag` beside the image
/// `digest`, or why there are none to check. A missing tag is a refusal; so is a manifest
/// with more than [`MAX_LAYERS`] layers or a layer over `limit`.
fn layers(
    reg: &Registry,
    reference: &Reference,
    digest: &str,
    tag: CosignTag,
    limit: u64,
) -> Result<Vec<(Descriptor, Vec<u8>)>, String> {
    let name = tag.of(digest);
    let at = reference.at_tag(&name);
    let fetched = reg
        .manifest(&at, &[MANIFEST_TYPE])
        .map_err(|e| format!("reading {name}: {e}"))?
        .ok_or_else(|| format!("no {} (no tag {name})", tag.name()))?;
    let m: ImageManifest = serde_json::from_slice(&fetched.bytes)
        .map_err(|e| format!("{name} is not an image manifest: {e}"))?;
    if m.layers.len() > MAX_LAYERS {
        return Err(format!("{name} has {} layers, more than {MAX_LAYERS}", m.layers.len()));
    }
    let mut out = Vec::new();
    for l in m.layers.into_iter().filter(|l| l.media_type == tag.layer_type()) {
        if l.size > limit {
            return Err(format!(
                "{name}: layer {} declares {} bytes, more than {limit}",
                l.digest, l.size
            ));
        }
        let mut bytes = Vec::new();
        reg.blob_into(reference, &l.digest, l.size, &mut bytes)
            .map_err(|e| format!("{name}: layer {}: {e}", l.digest))?;
        out.push((l, bytes));
    }
    Ok(out)
}
