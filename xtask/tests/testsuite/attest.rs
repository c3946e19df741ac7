//! Provenance and SBOM (fast tier, tiny recipes over host programs): the same bytes from two
//! roots under different conditions, signed envelopes that `verify` accepts, and each way
//! `verify` refuses (a tampered SBOM, a subject whose bytes changed, an untrusted key), with
//! its one-line reason; `diff` explains two provenances by field; `audit` regenerates them.

use crate::support;

use std::path::{Path, PathBuf};
use std::process::Command;

struct Fixture {
    tiny: support::Tiny,
}

impl Fixture {
    fn new() -> Fixture {
        let f = Fixture { tiny: support::Tiny::new("cache") };
        for k in ["ci", "other"] {
            let key = f.path(&format!("{k}.key"));
            f.ok("a", &["cache", "keygen", key.to_str().unwrap(), "--name", k]);
        }
        f
    }

    fn path(&self, p: &str) -> PathBuf {
        self.tiny.path(p)
    }

    fn command(&self, out: &str, args: &[&str]) -> Command {
        self.tiny.command(out, args)
    }

    fn x(&self, c: &mut Command) -> (bool, String) {
        support::captured(c)
    }

    fn ok(&self, out: &str, args: &[&str]) -> String {
        let (good, text) = self.x(&mut self.command(out, args));
        assert!(good, "xtask {} failed:\n{text}", args.join(" "));
        text
    }

    fn key(&self, name: &str) -> String {
        self.path(name).to_str().unwrap().to_string()
    }

    fn attestation(&self, out: &str, file: &str) -> Vec<u8> {
        std::fs::read(self.path(out).join("attestations/top").join(file)).unwrap()
    }
}

#[test]
fn attestations_are_reproducible_signed_and_verified() {
    let f = Fixture::new();
    // Two roots, different conditions: another out dir, cache, umask, time zone, jobs.
    f.ok("a", &["attest", "top", "--sign-key", &f.key("ci.key")]);
    let mut c = f.command("b", &["--cache", f.key("other-cache").as_str()]);
    c.args(["attest", "top", "--sign-key", &f.key("ci.key")])
        .env("TZ", "Pacific/Kiritimati")
        .env("LC_ALL", "C.UTF-8");
    let (good, text) = f.x(&mut c);
    assert!(good, "{text}");
    for file in ["provenance.json", "sbom.cdx.json", "provenance.dsse.json", "sbom.dsse.json"] {
        assert_eq!(
            f.attestation("a", file),
            f.attestation("b", file),
            "{file} differs between roots"
        );
    }

    // What they say.
    let p: serde_json::Value =
        serde_json::from_slice(&f.attestation("a", "provenance.json")).unwrap();
    assert_eq!(p["_type"], "https://in-toto.io/Statement/v1");
    assert_eq!(p["predicateType"], "https://slsa.dev/provenance/v1");
    let top = std::fs::read(support::store_out(&f.path("a"), "top").join("out/top")).unwrap();
    assert_eq!(p["subject"][0]["name"], "top");
    assert_eq!(p["subject"][0]["digest"]["sha256"], support::registry::sha256_hex(&top));
    let bd = &p["predicate"]["buildDefinition"];
    assert_eq!(bd["buildType"], "urn:reprovm:recipe-build:v1");
    assert_eq!(bd["externalParameters"]["target"], "top");
    assert_eq!(bd["externalParameters"]["recipe"]["name"], "recipes/top.toml");
    let deps = bd["resolvedDependencies"].as_array().unwrap();
    assert!(deps.iter().any(|d| d["name"] == "base"), "{deps:?}");
    assert!(p["predicate"].get("runDetails").unwrap().get("metadata").is_none());
    let bom: serde_json::Value =
        serde_json::from_slice(&f.attestation("a", "sbom.cdx.json")).unwrap();
    assert_eq!(bom["bomFormat"], "CycloneDX");
    assert_eq!(bom["specVersion"], "1.6");
    assert_eq!(bom["metadata"]["component"]["name"], "top");
    assert!(bom["serialNumber"].as_str().unwrap().starts_with("urn:uuid:"));

    // verify: accepted against the outputs.
    let store_top = support::store_out(&f.path("a"), "top").join("out");
    let envelope = f.path("a/attestations/top/provenance.dsse.json");
    let sbom_envelope = f.path("a/attestations/top/sbom.dsse.json");
    let verify = |env: &Path, key: &str, against: &Path| {
        let mut c = support::xtask();
        c.args(["verify", env.to_str().unwrap(), "--trusted-attestation-key", &f.key(key)])
            .arg("--against")
            .arg(against);
        f.x(&mut c)
    };
    let (good, text) = verify(&envelope, "ci.pub", &store_top);
    assert!(good, "{text}");
    assert!(text.contains("signed by `ci`") && text.contains("1 subjects match"), "{text}");
    assert!(verify(&sbom_envelope, "ci.pub", &store_top).0);

    // A tampered SBOM: one component's version changed inside the signed payload.
    let mut env: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&sbom_envelope).unwrap()).unwrap();
    use base64::Engine;
    let b64 = base64::engine::general_purpose::STANDARD;
    let payload = b64.decode(env["payload"].as_str().unwrap()).unwrap();
    let payload =
        String::from_utf8(payload).unwrap().replacen("\"version\":\"1\"", "\"version\":\"2\"", 1);
    env["payload"] = b64.encode(payload).into();
    let tampered = f.path("tampered.dsse.json");
    std::fs::write(&tampered, serde_json::to_vec(&env).unwrap()).unwrap();
    let (good, text) = verify(&tampered, "ci.pub", &store_top);
    assert!(!good && text.contains("signature by `ci` does not verify"), "{text}");
    assert_eq!(text.trim().lines().count(), 1, "one line: {text}");

    // A subject whose bytes are not those the provenance names.
    let copy = f.path("copy");
    std::fs::create_dir(&copy).unwrap();
    std::fs::write(copy.join("top"), b"not the output\n").unwrap();
    let (good, text) = verify(&envelope, "ci.pub", &copy);
    assert!(!good && text.contains("subject top: the statement says sha256"), "{text}");

    // An envelope signed by a key nobody trusts.
    f.ok("c", &["attest", "top", "--sign-key", &f.key("other.key")]);
    let (good, text) =
        verify(&f.path("c/attestations/top/provenance.dsse.json"), "ci.pub", &store_top);
    assert!(!good && text.contains("`other`, which is not a trusted key"), "{text}");
}

#[test]
fn a_changed_dependency_is_explained_by_field_and_audits_regenerate() {
    let f = Fixture::new();
    f.ok("a", &["attest", "top"]);
    let old = f.path("old-provenance.json");
    std::fs::write(&old, f.attestation("a", "provenance.json")).unwrap();
    let base = f.tiny.recipes.join("base.toml");
    let text = std::fs::read_to_string(&base).unwrap().replace("base 1", "base 2");
    std::fs::write(&base, text).unwrap();
    f.ok("a", &["attest", "top"]);
    let new = f.path("a/attestations/top/provenance.json");
    let mut c = support::xtask();
    c.arg("diff").arg(&old).arg(&new);
    let (good, text) = f.x(&mut c);
    assert!(!good, "the provenances differ:\n{text}");
    assert!(text.contains("resolvedDependencies[base].digest.sha256"), "{text}");
    assert!(text.contains("resolvedDependencies[base].annotations.inputHash"), "{text}");

    // audit rebuilds and regenerates: the same provenance and SBOM over the rebuild.
    let o = f.command("a", &["audit", "top", "--json"]).output().unwrap();
    let report: serde_json::Value = serde_json::from_slice(&o.stdout)
        .unwrap_or_else(|e| panic!("{e}: {}", String::from_utf8_lossy(&o.stderr)));
    let t = &report["targets"][0];
    assert_eq!(t["matches_store"], true, "{report:#}");
    let want = support::registry::sha256_hex(&std::fs::read(&new).unwrap());
    assert_eq!(t["provenance"], want.as_str());

    // Pinned (in a project root of its own), then a pin that names another provenance: the
    // audit says which document differs and how to see why.
    let root = f.path("root");
    std::fs::create_dir_all(root.join("pins")).unwrap();
    let mut pin = f.command("a", &["pin", "outputs", "top"]);
    pin.env("REPROVM_ROOT", &root);
    let (good, text) = f.x(&mut pin);
    assert!(good, "{text}");
    let pins_file = root.join("pins/outputs.toml");
    let pins = std::fs::read_to_string(&pins_file).unwrap();
    assert!(pins.contains(&format!("provenance = \"{want}\"")), "{pins}");
    std::fs::write(&pins_file, pins.replace(&want, &"0".repeat(64))).unwrap();
    let mut audit = f.command("a", &["audit", "top", "--json"]);
    audit.env("REPROVM_ROOT", &root);
    let o = audit.output().unwrap();
    assert!(!o.status.success(), "an audit against a wrong provenance pin passed");
    let report: serde_json::Value = serde_json::from_slice(&o.stdout).unwrap();
    let t = &report["targets"][0];
    assert_eq!(
        (t["matches_store"].as_bool(), t["matches_pin"].as_bool()),
        (Some(true), Some(false))
    );
    let d = t["differences"].as_array().unwrap();
    assert!(d.iter().any(|d| d["path"] == "(provenance)" && d["kind"] == "pin"), "{report:#}");
}
