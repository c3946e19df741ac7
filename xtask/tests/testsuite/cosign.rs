//! What `push --sign-key` publishes is what Sigstore's cosign verifies. The pinned
//! cosign (pins/cosign.lock, Debian trixie's 2.5) checks a kernel image (krata's) and the
//! hd-image image pushed to Debian's docker-registry on 127.0.0.1, offline and with a key
//! (`cosign verify --key`, `cosign verify-attestation --key --type slsaprovenance1|cyclonedx`),
//! and `xtask verify --image` agrees with it on every case: the right key, another key, an
//! altered attestation, a tag moved to other bytes, and a signature copied beside them (full
//! tier). The fast tier holds `verify --image` to its bounds against a hostile registry.

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
    // What the registry says of a layer is not what the signer said, and neither reads it: the
    // provenance layer's predicateType annotation relabelled, then its (empty) signature
    // annotation removed, change nothing.
    let edit = |what: &dyn Fn(&mut serde_json::Value)| {
        let mut att = json(&raw.manifest(repository, &att_tag).0);
        for layer in att["layers"].as_array_mut().unwrap() {
            if layer["annotations"]["predicateType"] == CHECKS[1] {
                what(layer);
            }
        }
        raw.put_manifest(repository, &att_tag, &serde_json::to_vec(&att).unwrap());
    };
    edit(&|l| l["annotations"]["predicateType"] = CHECKS[2].into());
    case("krata: provenance layer relabelled", &reference, &pem, &public, [true, true, false]);
    edit(&|l| {
        l["annotations"]["predicateType"] = CHECKS[1].into();
        l["annotations"].as_object_mut().unwrap().remove("dev.cosignproject.cosign/signature");
    });
    case("krata: its signature annotation removed", &reference, &pem, &public, [true, true, false]);

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

/// Fast tier: `verify --image` against a hostile registry. Every refusal is reported as a
/// check, the command fails, and nothing it was told is too large is fetched.
#[test]
fn verify_image_bounds_what_a_hostile_registry_serves() {
    use crate::support::registry::{FakeRegistry, Response};
    let t = tempfile::tempdir().unwrap();
    let key = t.path().join("ci.key");
    ok(&["cache", "keygen", key.to_str().unwrap()]);
    let public = key.with_extension("pub");
    let reg = FakeRegistry::start();
    let layer = |digest: &str, size: u64| {
        serde_json::json!({
            "mediaType": "application/vnd.dev.cosign.simplesigning.v1+json",
            "digest": digest, "size": size,
            "annotations": {"dev.cosignproject.cosign/signature": "AAAA"}
        })
    };
    let manifest = |layers: Vec<serde_json::Value>| {
        serde_json::to_vec(&serde_json::json!({
            "schemaVersion": 2, "mediaType": MANIFEST,
            "config": {"mediaType": "application/vnd.oci.image.config.v1+json",
                       "digest": format!("sha256:{}", support::registry::sha256_hex(b"{}")), "size": 2},
            "layers": layers
        }))
        .unwrap()
    };
    let (image, huge, lying) = {
        let mut s = reg.state.lock().unwrap();
        let image = s.put_manifest("r", "1", manifest(vec![]));
        let hex = image.trim_start_matches("sha256:").to_string();
        // The signature tag: one layer declaring 1 GiB. The attestations tag: 51 layers.
        let huge = format!("sha256:{}", "1".repeat(64));
        s.put_manifest("r", &format!("sha256-{hex}.sig"), manifest(vec![layer(&huge, 1 << 30)]));
        let many = (0..51).map(|i| layer(&format!("sha256:{:064x}", i), 10)).collect();
        s.put_manifest("r", &format!("sha256-{hex}.att"), manifest(many));
        let lying = s.put_blob(b"a payload".to_vec());
        (image, huge, lying)
    };
    let verify = |reference: &str, extra: &[&str]| {
        let mut args = vec!["verify", "--image", reference, "--trusted-attestation-key"];
        args.push(public.to_str().unwrap());
        args.extend(["--json"]);
        args.extend(extra);
        let o = xtask_in_repo(&args);
        assert_eq!(o.status.code(), Some(2), "{}", support::stderr(&o));
        let v: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
        v["checks"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c["refused"].as_str().unwrap_or("ACCEPTED").to_string())
            .collect::<Vec<String>>()
    };
    let reference = format!("http://{}/r:1", reg.addr);
    let why = verify(&reference, &[]);
    assert!(why[0].contains("declares 1073741824 bytes, more than 65536"), "{why:?}");
    assert!(why[1].contains("51 layers, more than 50"), "{why:?}");
    assert!(why[2].contains("51 layers, more than 50"), "{why:?}");
    assert!(reg.requests_to(&huge).is_empty(), "the 1 GiB layer was fetched");
    assert!(reg.requests_to("sha256:0000").is_empty(), "a layer of the 51 was fetched");
    // Nine attestations of 4 MiB each: each within its limit, more than 32 MiB in all.
    let hex = image.trim_start_matches("sha256:").to_string();
    let dsse = |i: u64| {
        let mut l = layer(&format!("sha256:{i:064x}"), 4 << 20);
        l["mediaType"] = "application/vnd.dsse.envelope.v1+json".into();
        l
    };
    let large = (0..9).map(dsse).collect();
    reg.state.lock().unwrap().put_manifest("r", &format!("sha256-{hex}.att"), manifest(large));
    let why = verify(&reference, &[]);
    assert!(why[1].contains("37748736 bytes, more than 33554432 in all"), "{why:?}");
    assert!(reg.requests_to("sha256:0000").is_empty(), "a layer of the nine was fetched");

    // A layer whose bytes are not its digest: cut off and refused; the signature check alone.
    reg.state.lock().unwrap().put_manifest(
        "r",
        &format!("sha256-{hex}.sig"),
        manifest(vec![layer(&lying, 9)]),
    );
    let lying_path = format!("/v2/r/blobs/{lying}");
    reg.hostile(move |req, _| {
        (req.path() == lying_path).then(|| Response::new(200, b"other byt".to_vec()))
    });
    let why = verify(&reference, &["--signature-only"]);
    assert_eq!(why.len(), 1, "{why:?}");
    assert!(why[0].contains(&lying), "{why:?}");
    // No image at all: an error, not a report.
    reg.honest();
    let o = support::xtask()
        .args(["verify", "--image", &format!("http://{}/r:2", reg.addr)])
        .arg("--trusted-attestation-key")
        .arg(&public)
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(2));
    assert!(
        support::stderr(&o).contains("the registry has no such image"),
        "{}",
        support::stderr(&o)
    );
}
