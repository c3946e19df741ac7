//! What cosign verifies, on a registry: `push --sign-key` publishes each image's signature and
//! attestations in cosign's tag scheme (`steps::attest::cosign`, decision 0075), and
//! `verify --image REF` checks them the way `cosign verify --key` and `cosign
//! verify-attestation --key --type slsaprovenance1|cyclonedx` do, offline, with reprovm's own
//! trusted keys, reporting each of the three checks.

use crate::model::attestation::{CYCLONEDX_PREDICATE, SLSA_PROVENANCE};
use crate::steps::attest::cosign::{self, Blob, CosignTag, PAYLOAD_LIMIT};
use crate::steps::substitution::keys::{self, SecretKey};
use anyhow::{Context, Result};
use reprovm_fs::progress;
use reprovm_oci::client::{Reference, Registry, INDEX_TYPE, MANIFEST_TYPE};
use reprovm_oci::layout::Layout;
use reprovm_oci::spec::{Descriptor, ImageManifest};
use std::path::PathBuf;

/// The most layers a `.sig` or `.att` manifest may have: cosign's own default limit on an
/// image's attachments (`COSIGN_MAX_ATTACHMENTS`).
const MAX_LAYERS: usize = 50;
/// The largest attestation envelope read (an SBOM of a whole image is about 110 KiB here).
const ENVELOPE_LIMIT: u64 = 4 << 20;
/// The most bytes of layers one tag's check reads in all.
const TOTAL_LIMIT: u64 = 32 << 20;

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
pub fn check_sign_key(key: &std::path::Path) -> Result<()> {
    SecretKey::load(key).map(|_| ())
}

/// `multiarch … REF --sign-key KEY` (`publish::push_layout` with a key), once the layout's
/// content is pushed and before its tags move: cosign's signature of every manifest the layout
/// tags (an image index: a multi-architecture tag) and of every image each index lists, so that
/// `cosign verify --key` accepts each tag and each platform's image. Referrers (untagged, or
/// with a `subject`) are not images and are not signed. No attestations: they are a single
/// build's (`push --sign-key`), and an index is the union of two. Returns how many digests
/// were signed.
pub(crate) fn sign_images(
    reg: &Registry,
    reference: &Reference,
    key: &SecretKey,
    layout: &Layout,
) -> Result<usize> {
    let mut signed = std::collections::BTreeSet::new();
    for (tag, d) in layout.manifests() {
        if tag.is_none() {
            continue;
        }
        let mut images = Vec::new();
        if d.media_type == reprovm_oci::spec::INDEX {
            images.push(d.clone());
            images.extend(layout.images_of(&d)?);
        } else {
            let m: ImageManifest = serde_json::from_slice(&layout.blob(&d)?)
                .with_context(|| format!("manifest {} of the layout", d.digest))?;
            if m.subject.is_none() {
                images.push(d.clone());
            }
        }
        for image in images {
            if signed.insert(image.digest.clone()) {
                publish(reg, reference, key, &image, &[])?;
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
    // What is there already (another signer's layers, an earlier push's) is kept whole.
    let mut layers: Vec<Descriptor> = match reg.manifest(&at, &[MANIFEST_TYPE])? {
        Some(f) => {
            let m: ImageManifest = serde_json::from_slice(&f.bytes).with_context(|| {
                format!("{at}: the registry holds something that is not an image manifest (delete the tag to sign again)")
            })?;
            m.layers
        }
        None => Vec::new(),
    };
    let new: Vec<Blob> = blobs.into_iter().filter(|b| !layers.contains(&b.descriptor)).collect();
    anyhow::ensure!(
        layers.len() + new.len() <= MAX_LAYERS,
        "{at} would have {} layers, more than cosign reads ({MAX_LAYERS}); nothing was sent",
        layers.len() + new.len()
    );
    let config = cosign::config();
    let c = &config.descriptor;
    reg.send_blob(reference, &c.digest, c.size, &mut &config.bytes[..])?;
    for b in new {
        let d = &b.descriptor;
        reg.send_blob(reference, &d.digest, d.size, &mut &b.bytes[..])?;
        layers.push(b.descriptor);
    }
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
/// trusted keys. A refused check is data (all three are always reported), and so is a
/// signature or attestation the registry fails to serve; a key file that cannot be loaded, or
/// an image the registry does not have, is an error.
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
    let (shown, plain_http) = reprovm_oci::client::plain(reference, false);
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
    // Each layer opened once: the predicate type and signer it was found to have, or why it
    // was refused.
    let opened: Result<Vec<Opened>, String> = attestations.map(|found| {
        found
            .iter()
            .map(|(layer, envelope)| cosign::check_attestation(&trusted, layer, envelope, &digest))
            .collect()
    });
    for (predicate_type, name) in
        [(SLSA_PROVENANCE, "slsaprovenance1"), (CYCLONEDX_PREDICATE, "cyclonedx")]
    {
        let outcome = match &opened {
            Err(e) => Err(e.clone()),
            Ok(all) => {
                let accepted = all.iter().find_map(|o| match o {
                    Ok((t, signer)) if t == predicate_type => Some(signer.clone()),
                    _ => None,
                });
                accepted.ok_or_else(|| {
                    let mut why = vec![format!("no trusted attestation of {predicate_type}")];
                    why.extend(all.iter().filter_map(|o| o.as_ref().err().cloned()));
                    why.join("; ")
                })
            }
        };
        let cosign = format!("cosign verify-attestation --key --type {name}");
        checks.push(check(predicate_type, &cosign, outcome));
    }
    Ok(ImageVerification { reference: reference.to_string(), digest, checks })
}

/// One attestation layer checked: its Statement's predicate type and signer, or why not.
type Opened = Result<(String, keys::Signer), String>;

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
    // Every declared size is checked before anything is fetched.
    let wanted: Vec<Descriptor> =
        m.layers.into_iter().filter(|l| l.media_type == tag.layer_type()).collect();
    let mut total = 0u64;
    for l in &wanted {
        if l.size > limit {
            return Err(format!(
                "{name}: layer {} declares {} bytes, more than {limit}",
                l.digest, l.size
            ));
        }
        total = total.saturating_add(l.size);
    }
    if total > TOTAL_LIMIT {
        return Err(format!(
            "{name}: its layers declare {total} bytes, more than {TOTAL_LIMIT} in all"
        ));
    }
    let mut out = Vec::new();
    for l in wanted {
        let mut bytes = Vec::new();
        reg.blob_into(reference, &l.digest, l.size, &mut bytes)
            .map_err(|e| format!("{name}: layer {}: {e}", l.digest))?;
        out.push((l, bytes));
    }
    Ok(out)
}
