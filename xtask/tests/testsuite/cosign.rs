//! Full tier: what `push --sign-key` publishes is what Sigstore's cosign verifies. The pinned
//! cosign (pins/cosign.lock, Debian trixie's 2.5) checks a kernel image (krata's) and the
//! hd-image image pushed to Debian's docker-registry on 127.0.0.1, offline and with a key
//! (`cosign verify --key`, `cosign verify-attestation --key --type slsaprovenance1|cyclonedx`),
//! and `xtask verify --image` agrees with it on every case: the right key, another key, an
//! altered attestation, a tag moved to other bytes, and a signature copied beside them.

use crate::support::{self, host_tools, repo, xtask_in_repo, xtask_ok as ok};
use base64::Engine;
use std::path::Path;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;
const MANIFEST: &str = "application/vnd.oci.image.manifest.v1+json";
/// The three checks, in the order `verify --image` reports them.
const CHECKS: [&str; 3] =
    ["signature", "https://slsa.dev/provenance/v1", "https://cyclonedx.org/bom"];

/// What cosign says when it refuses a signature or attestation.
const REFUSALS: [&str; 6] = [
    "no signatures found",
    "no matching signatures",
    "no matching attestations",
    "no matching subject digest found",
    "none of the attestations matched",
    "accepted signatures do not match threshold",
];

/// What cosign says of each check (true: accepted).
fn cosign_verdicts(reference: &str, pem: &Path) -> [bool; 3] {
    let key = pem.to_str().unwrap();
    let common = ["--key", key, "--insecure-ignore-tlog", "--allow-http-registry"];
    let run = |args: Vec<&str>| {
        let o = support::tool("cosign").args(&args).output().unwrap();
        let text = String::from_utf8_lossy(&o.stderr).into_owned();
        // A refusal is cosign's verdict about the signatures; cosign failing to reach the
        // registry or to read its key is not.
        assert!(
            o.status.success() || REFUSALS.iter().any(|r| text.contains(r)),
            "cosign {args:?} failed, not as a refusal: {text}"
        );
        if !o.status.success() {
            eprintln!("cosign {args:?}: {}", text.lines().last().unwrap_or_default());
        }
        o.status.success()
    };
    let mut verify = vec!["verify"];
    verify.extend(common);
    verify.push(reference);
    let mut out = [run(verify), false, false];
    for (i, kind) in [(1, "slsaprovenance1"), (2, "cyclonedx")] {
        let mut args = vec!["verify-attestation", "--type", kind];
        args.extend(common);
        args.push(reference);
        out[i] = run(args);
    }
    out
}

/// What `xtask verify --image` says of each check, with its exit status.
fn xtask_verdicts(reference: &str, public: &Path) -> ([bool; 3], bool) {
    let o = xtask_in_repo(&[
        "verify",
        "--image",
        &format!("http://{reference}"),
        "--trusted-attestation-key",
        public.to_str().unwrap(),
        "--json",
    ]);
    let v: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("verify --image {reference}: {e}: {}", support::stderr(&o)));
    let checks = v["checks"].as_array().unwrap();
    assert_eq!(checks.len(), 3, "{v}");
    let mut out = [false; 3];
    for (i, want) in CHECKS.iter().enumerate() {
        assert_eq!(checks[i]["check"], *want, "{v}");
        out[i] = checks[i]["refused"].is_null();
        assert_eq!(out[i], !checks[i]["signer"].is_null(), "{v}");
    }
    (out, o.status.success())
}

/// A small client for what the test does to the registry behind reprovm's back.
struct Raw {
    base: String,
}

impl Raw {
    fn manifest(&self, repo: &str, reference: &str) -> (Vec<u8>, String) {
        let r = ureq::get(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .set("Accept", MANIFEST)
            .call()
            .unwrap_or_else(|e| panic!("{repo}:{reference}: {e}"));
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
        let digest = format!("sha256:{}", support::registry::sha256_hex(&bytes));
        (bytes, digest)
    }

    fn put_manifest(&self, repo: &str, reference: &str, bytes: &[u8]) -> String {
        ureq::put(&format!("{}/v2/{repo}/manifests/{reference}", self.base))
            .set("Content-Type", MANIFEST)
            .send_bytes(bytes)
            .unwrap_or_else(|e| panic!("putting {repo}:{reference}: {e}"));
        format!("sha256:{}", support::registry::sha256_hex(bytes))
    }

    fn blob(&self, repo: &str, digest: &str) -> Vec<u8> {
        let r = ureq::get(&format!("{}/v2/{repo}/blobs/{digest}", self.base)).call().unwrap();
        let mut bytes = Vec::new();
        std::io::Read::read_to_end(&mut r.into_reader(), &mut bytes).unwrap();
        bytes
    }

    fn put_blob(&self, repo: &str, bytes: &[u8]) -> String {
        let digest = format!("sha256:{}", support::registry::sha256_hex(bytes));
        let r = ureq::post(&format!("{}/v2/{repo}/blobs/uploads/", self.base)).call().unwrap();
        let location = r.header("Location").unwrap().to_string();
        let location = match location.starts_with('/') {
            true => format!("{}{location}", self.base),
            false => location,
        };
        let sep = if location.contains('?') { '&' } else { '?' };
        ureq::put(&format!("{location}{sep}digest={digest}"))
            .set("Content-Type", "application/octet-stream")
            .send_bytes(bytes)
            .unwrap();
        digest
    }
}

fn json(bytes: &[u8]) -> serde_json::Value {
    serde_json::from_slice(bytes).unwrap()
}

#[test]
#[ignore = "full tier: cosign verifies what push --sign-key publishes, and verify --image agrees"]
fn cosign_verifies_pushed_images_and_attestations_and_verify_agrees() {
    let _full = support::full_tier();
    host_tools("docker-registry, cosign");
    support::run_tool("cosign", &["version"]);
    let w = tempfile::tempdir().unwrap();
    let (key, other) = (w.path().join("ci.key"), w.path().join("other.key"));
    ok(&["cache", "keygen", key.to_str().unwrap()]);
    ok(&["cache", "keygen", other.to_str().unwrap()]);
    let (pem, public) = (w.path().join("ci.pub.pem"), w.path().join("ci.pub"));
    let (other_pem, other_public) = (w.path().join("other.pub.pem"), w.path().join("other.pub"));
    // The exported PEM is the one keygen wrote, from either half.
    for from in [&key, &public] {
        let exported = ok(&["cache", "cosign-key", from.to_str().unwrap()]);
        assert_eq!(exported, std::fs::read_to_string(&pem).unwrap());
    }

    let registry = support::LocalRegistry::start();
    let raw = Raw { base: format!("http://{}", registry.addr) };
    let pins: toml::Table =
        toml::from_str(&std::fs::read_to_string(repo().join("pins/outputs.toml")).unwrap())
            .unwrap();
    let mut images = Vec::new();
    for (target, repository) in
        [("krata-kernel-oci", "reprovm/krata"), ("hd-image-oci", "reprovm/hd")]
    {
        let destination = format!("http://{}/{repository}", registry.addr);
        ok(&["push", target, &destination, "--sign-key", key.to_str().unwrap()]);
        let pinned = pins[target]["oci_manifests"].as_table().unwrap();
        let (tag, digest) = pinned.iter().find(|(k, _)| !k.starts_with("referrer")).unwrap();
        let digest = digest.as_str().unwrap().to_string();
        images.push((target, repository, tag.clone(), digest));
    }

    let mut table = Vec::new();
    let mut case = |name: &str, reference: &str, pem: &Path, public: &Path, want: [bool; 3]| {
        let by_cosign = cosign_verdicts(reference, pem);
        let (by_xtask, status) = xtask_verdicts(reference, public);
        table.push(format!("{name:<44} cosign {by_cosign:?}  xtask {by_xtask:?}"));
        assert_eq!(by_cosign, want, "{name}: cosign");
        assert_eq!(by_xtask, by_cosign, "{name}: xtask verify --image disagrees with cosign");
        assert_eq!(status, want.iter().all(|v| *v), "{name}: verify's exit status");
    };

    for (target, repository, tag, digest) in &images {
        let reference = format!("{}/{repository}:{tag}", registry.addr);
        // The pushed image is the pinned one, and what signs it is a function of it.
        let (_, found) = raw.manifest(repository, tag);
        assert_eq!(&found, digest, "{target}: the pushed image is the pinned one");
        let hex = digest.trim_start_matches("sha256:");
        let (sig, sig_digest) = raw.manifest(repository, &format!("sha256-{hex}.sig"));
        let sig = json(&sig);
        let payload = raw.blob(repository, sig["layers"][0]["digest"].as_str().unwrap());
        let expected = format!(
            r#"{{"critical":{{"identity":{{"docker-reference":"{}/{repository}"}},"image":{{"docker-manifest-digest":"{digest}"}},"type":"cosign container image signature"}},"optional":null}}"#,
            registry.addr
        );
        assert_eq!(String::from_utf8(payload).unwrap(), expected, "{target}");
        let (att, att_digest) = raw.manifest(repository, &format!("sha256-{hex}.att"));
        let att = json(&att);
        let provenance = att["layers"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["annotations"]["predicateType"] == CHECKS[1])
            .expect("a provenance layer");
        let envelope = json(&raw.blob(repository, provenance["digest"].as_str().unwrap()));
        let statement = B64.decode(envelope["payload"].as_str().unwrap()).unwrap();
        assert_eq!(
            pins[*target]["provenance"].as_str(),
            Some(support::registry::sha256_hex(&statement).as_str()),
            "{target}: the attested provenance is the pinned one"
        );
        // A second push adds nothing: the same signature and attestations, byte for byte.
        let destination = format!("http://{}/{repository}", registry.addr);
        ok(&["push", target, &destination, "--sign-key", key.to_str().unwrap()]);
        assert_eq!(raw.manifest(repository, &format!("sha256-{hex}.sig")).1, sig_digest);
        assert_eq!(raw.manifest(repository, &format!("sha256-{hex}.att")).1, att_digest);

        case(&format!("{target}: the key"), &reference, &pem, &public, [true; 3]);
        case(&format!("{target}: another key"), &reference, &other_pem, &other_public, [false; 3]);
    }

    // An attestation whose payload was altered after signing: the SBOM's statement gains a
    // component; the provenance beside it is untouched.
    let (_, repository, tag, digest) = &images[0];
    let att_tag = format!("{}.att", digest.replace(':', "-"));
    let mut att = json(&raw.manifest(repository, &att_tag).0);
    for layer in att["layers"].as_array_mut().unwrap() {
        if layer["annotations"]["predicateType"] != CHECKS[2] {
            continue;
        }
        let mut envelope = json(&raw.blob(repository, layer["digest"].as_str().unwrap()));
        let mut statement = json(&B64.decode(envelope["payload"].as_str().unwrap()).unwrap());
        statement["predicate"]["components"]
            .as_array_mut()
            .unwrap()
            .push(serde_json::json!({"type": "library", "name": "not-in-the-image"}));
        envelope["payload"] = B64.encode(serde_json::to_vec(&statement).unwrap()).into();
        let bytes = serde_json::to_vec(&envelope).unwrap();
        layer["digest"] = raw.put_blob(repository, &bytes).into();
        layer["size"] = bytes.len().into();
    }
    raw.put_manifest(repository, &att_tag, &serde_json::to_vec(&att).unwrap());
    let reference = format!("{}/{repository}:{tag}", registry.addr);
    case("krata: SBOM attestation altered", &reference, &pem, &public, [true, true, false]);

    // The hd-image tag moved to other bytes (the same layers, one more annotation): nothing
    // signs them. Then the original image's signature and attestations copied beside them.
    let (_, repository, tag, digest) = &images[1];
    let mut moved = json(&raw.manifest(repository, tag).0);
    moved["annotations"] = serde_json::json!({"org.example.moved": "yes"});
    let moved_digest = raw.put_manifest(repository, tag, &serde_json::to_vec(&moved).unwrap());
    let reference = format!("{}/{repository}:{tag}", registry.addr);
    case("hd-image: tag moved to other bytes", &reference, &pem, &public, [false; 3]);
    for suffix in ["sig", "att"] {
        let (bytes, _) =
            raw.manifest(repository, &format!("{}.{suffix}", digest.replace(':', "-")));
        raw.put_manifest(
            repository,
            &format!("{}.{suffix}", moved_digest.replace(':', "-")),
            &bytes,
        );
    }
    case("hd-image: moved, signatures copied beside", &reference, &pem, &public, [false; 3]);

    eprintln!(
        "{:<44} each: [verify, verify-attestation slsaprovenance1, cyclonedx]\n{}",
        "case",
        table.join("\n")
    );
}
