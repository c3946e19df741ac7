//! Full tier: the provenance and SBOM of real outputs (hd-image, the kernel, krata's OCI
//! image) are the pinned bytes, are accepted by third-party readers (CycloneDX's Python
//! library, in-toto's own Statement and SLSA Provenance messages, and check-jsonschema over
//! the schemas in tests/schemas), verify against the outputs, and travel with an image as
//! OCI 1.1 referrers through a real registry (Debian's docker-registry) and back by `pull`,
//! leaving the image's digests alone. Runs after full.rs and oci.rs have built what it needs.

use crate::support;

use crate::support::{host_tools, repo, run_tool, validators, xtask_ok as ok};
use std::path::{Path, PathBuf};
use std::process::Command;

/// Run a reader; true when it accepts.
fn reader(venv: &Path, program: &str, args: &[&str]) -> (bool, String) {
    let o = if program == "validate.py" {
        Command::new(venv.join("bin/python"))
            .arg(repo().join("tests/python/validate.py"))
            .args(args)
            .output()
            .unwrap()
    } else {
        Command::new(venv.join("bin").join(program)).args(args).output().unwrap()
    };
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

fn pins() -> toml::Table {
    toml::from_str(&std::fs::read_to_string(repo().join("pins/outputs.toml")).unwrap()).unwrap()
}

fn sha256_file(p: &Path) -> String {
    support::registry::sha256_hex(&std::fs::read(p).unwrap())
}

fn json(p: &Path) -> serde_json::Value {
    serde_json::from_slice(&std::fs::read(p).unwrap()).unwrap()
}

#[test]
#[ignore = "full tier: provenance and SBOM: pins, third-party readers, verify, registry referrers"]
fn attestations_are_pinned_read_by_others_verified_and_pushed_as_referrers() {
    let _full = support::full_tier();
    host_tools("skopeo, docker-registry");
    let w = tempfile::tempdir().unwrap();
    let key = w.path().join("ci.key");
    ok(&["cache", "keygen", key.to_str().unwrap(), "--name", "ci"]);
    let public = key.with_extension("pub");
    let targets = ["hd-image", "kernel", "krata-kernel-oci"];
    let mut args = vec!["attest"];
    args.extend(targets);
    args.extend(["--sign-key", key.to_str().unwrap()]);
    ok(&args);
    let venv = validators();
    let pins = pins();
    for t in targets {
        let dir = repo().join("out/attestations").join(t);
        let (provenance, sbom) = (dir.join("provenance.json"), dir.join("sbom.cdx.json"));
        // 1. The pinned bytes (pinned on another machine: pins/outputs.toml).
        assert_eq!(pins[t]["provenance"].as_str(), Some(sha256_file(&provenance).as_str()), "{t}");
        assert_eq!(pins[t]["sbom"].as_str(), Some(sha256_file(&sbom).as_str()), "{t}");
        // 2. Third-party readers.
        let p = provenance.to_str().unwrap();
        for (program, args) in [
            ("validate.py", vec!["cyclonedx", sbom.to_str().unwrap()]),
            ("validate.py", vec!["slsa", p]),
        ] {
            let (good, text) = reader(&venv, program, &args);
            assert!(good, "{t}: {program} {args:?}: {text}");
        }
        let predicate = w.path().join(format!("{t}.predicate.json"));
        std::fs::write(&predicate, serde_json::to_vec(&json(&provenance)["predicate"]).unwrap())
            .unwrap();
        for (schema, doc) in [
            ("in-toto-statement-v1.schema.json", provenance.as_path()),
            ("slsa-provenance-v1.schema.json", predicate.as_path()),
        ] {
            let schema = repo().join("tests/schemas").join(schema);
            let (good, text) = reader(
                &venv,
                "check-jsonschema",
                &["--schemafile", schema.to_str().unwrap(), doc.to_str().unwrap()],
            );
            assert!(good, "{t}: check-jsonschema {}: {text}", schema.display());
        }
        // 3. The envelopes verify against the outputs they name.
        let out = PathBuf::from(ok(&["build", t]).lines().last().unwrap()).join("out");
        for env in ["provenance.dsse.json", "sbom.dsse.json"] {
            let o = ok(&[
                "verify",
                dir.join(env).to_str().unwrap(),
                "--trusted-attestation-key",
                public.to_str().unwrap(),
                "--against",
                out.to_str().unwrap(),
            ]);
            assert!(o.contains("signed by `ci`"), "{o}");
        }
    }
    // The readers refuse what they should (they are not rubber stamps).
    let bom = json(&repo().join("out/attestations/hd-image/sbom.cdx.json"));
    let mut bad = bom.clone();
    bad["components"][0]["scope"] = "sometimes".into();
    let bad_path = w.path().join("bad.cdx.json");
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(!reader(&venv, "validate.py", &["cyclonedx", bad_path.to_str().unwrap()]).0);
    let mut bad = json(&repo().join("out/attestations/hd-image/provenance.json"));
    bad["predicate"]["buildDefinition"]["startedOn"] = "2024-01-01T00:00:00Z".into();
    std::fs::write(&bad_path, serde_json::to_vec(&bad).unwrap()).unwrap();
    assert!(!reader(&venv, "validate.py", &["slsa", bad_path.to_str().unwrap()]).0);
    // What the SBOM says of the image: the programs built from pinned sources with their
    // licenses, the libraries by Debian package, the kernel's configuration by digest.
    let components = bom["components"].as_array().unwrap();
    let named = |n: &str| components.iter().find(|c| c["name"] == n);
    for (name, license) in [
        ("linux", "GPL-2.0-only"),
        ("busybox", "GPL-2.0-only"),
        ("dropbear", "MIT"),
        ("iproute2", "GPL-2.0-or-later"),
    ] {
        let c = named(name).unwrap_or_else(|| panic!("no {name} in the SBOM"));
        assert_eq!(c["licenses"][0]["expression"], license, "{name}");
        assert_eq!(c["scope"], "required");
    }
    let libc = named("libc6").expect("libc6 in the SBOM");
    assert!(libc["purl"].as_str().unwrap().starts_with("pkg:deb/debian/libc6@"), "{libc}");
    assert_eq!(libc["scope"], "required");
    let linux = named("linux").unwrap();
    assert!(
        linux["properties"]
            .as_array()
            .unwrap()
            .iter()
            .any(|p| p["name"] == "reprovm:kernel-config-sha256"),
        "{linux}"
    );
    assert!(
        named("gcc-12").is_some_and(|c| c["scope"] == "excluded"),
        "the toolchain is listed as excluded"
    );

    // 4. Push krata's image with its attestations; the registry's referrers tag lists them.
    let registry = support::LocalRegistry::start();
    let repo_ref = format!("{}/reprovm/krata", registry.addr);
    ok(&[
        "push",
        "krata-kernel-oci",
        &repo_ref,
        "--plain-http",
        "--sign-key",
        key.to_str().unwrap(),
    ]);
    let krata_pin = pins["krata-kernel-oci"]["oci_manifests"].as_table().unwrap();
    let (tag, image) = krata_pin.iter().find(|(k, _)| !k.starts_with("referrer")).unwrap();
    let image = image.as_str().unwrap();
    let referrers_tag = image.replace(':', "-");
    let tags: serde_json::Value = serde_json::from_str(&run_tool(
        "skopeo",
        &["list-tags", "--tls-verify=false", &format!("docker://{repo_ref}")],
    ))
    .unwrap();
    let tags: Vec<&str> =
        tags["Tags"].as_array().unwrap().iter().map(|t| t.as_str().unwrap()).collect();
    assert!(tags.contains(&referrers_tag.as_str()), "{tags:?}");
    let index: serde_json::Value = serde_json::from_str(&run_tool(
        "skopeo",
        &[
            "inspect",
            "--raw",
            "--tls-verify=false",
            &format!("docker://{repo_ref}:{referrers_tag}"),
        ],
    ))
    .unwrap();
    let types: Vec<&str> = index["manifests"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|m| m["artifactType"].as_str())
        .collect();
    for want in
        ["application/vnd.in-toto.slsa-provenance+dsse", "application/vnd.in-toto.cyclonedx+dsse"]
    {
        assert!(types.contains(&want), "{want} not among the referrers {types:?}");
    }
    // The image itself is the pinned one.
    let inspect: serde_json::Value = serde_json::from_str(&run_tool(
        "skopeo",
        &["inspect", "--tls-verify=false", &format!("docker://{repo_ref}:{tag}")],
    ))
    .unwrap();
    assert_eq!(inspect["Digest"], image);

    // 5. pull brings them back; verify checks both against the pulled layout.
    let pulled = w.path().join("pulled");
    ok(&["pull", &format!("{repo_ref}:{tag}"), pulled.to_str().unwrap(), "--plain-http"]);
    let o = ok(&[
        "verify",
        "--trusted-attestation-key",
        public.to_str().unwrap(),
        "--against",
        pulled.to_str().unwrap(),
    ]);
    assert_eq!(o.matches("signed by `ci`").count(), 2, "{o}");
    assert!(o.contains("subjects match"), "{o}");
}
