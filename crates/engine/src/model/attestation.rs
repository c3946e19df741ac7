//! What reprovm says about an output, in the formats other tools read: in-toto Statement v1
//! with the SLSA Provenance v1 predicate, CycloneDX 1.6 BOMs (also as the predicate of a
//! Statement, as `cosign attest --type cyclonedx` makes them), and DSSE envelopes around
//! Statements.
//!
//! Our own serde types, for the reason `reprovm_oci::spec` gives: the documents are pinned
//! and compared byte for byte, so every map is ordered and every field we write is one we
//! chose; the Rust CycloneDX crate writes 1.3–1.5 only. What we read back (a Statement in an
//! envelope, at `verify`) is read strictly. Third-party readers check the shape in the full
//! tier (the CycloneDX Python library's schema validation, in-toto's own Statement and
//! Provenance messages).

use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `_type` of an in-toto Statement v1.
pub(crate) const STATEMENT_TYPE: &str = "https://in-toto.io/Statement/v1";
/// The SLSA Provenance v1 predicate.
pub(crate) const SLSA_PROVENANCE: &str = "https://slsa.dev/provenance/v1";
/// The predicate type of a CycloneDX BOM in a Statement.
pub(crate) const CYCLONEDX_PREDICATE: &str = "https://cyclonedx.org/bom";
/// What a provenance's `buildType` names: a reprovm recipe (this format, version 1), built by
/// the steps of `steps::sequence` in the sandbox over the pinned toolchain.
pub(crate) const BUILD_TYPE: &str = "urn:reprovm:recipe-build:v1";
/// `builder.id`: the xtask's build engine (the Nix builder runs the same steps, and gives the
/// same bytes; it is the same builder for this purpose).
pub(crate) const BUILDER_ID: &str = "urn:reprovm:builder:xtask:v1";
/// DSSE's payload type for in-toto Statements.
pub(crate) const IN_TOTO_PAYLOAD: &str = "application/vnd.in-toto+json";
/// Media types of the OCI referrers that carry envelopes.
pub(crate) const DSSE_MEDIA_TYPE: &str = "application/vnd.dsse.envelope.v1+json";
/// `artifactType` of a referrer carrying a signed provenance, and of one carrying a signed
/// SBOM (both DSSE envelopes around in-toto Statements; the layer says the predicate type in
/// its `in-toto.io/predicate-type` annotation).
pub(crate) const PROVENANCE_ARTIFACT: &str = "application/vnd.in-toto.slsa-provenance+dsse";
pub(crate) const SBOM_ARTIFACT: &str = "application/vnd.in-toto.cyclonedx+dsse";

/// in-toto's ResourceDescriptor: a subject, or a dependency of a build.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ResourceDescriptor {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub name: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uri: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub digest: BTreeMap<String, String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media_type: Option<String>,
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub annotations: BTreeMap<String, serde_json::Value>,
}

/// An in-toto Statement v1 about `subject`, with predicate `P`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Statement<P> {
    #[serde(rename = "_type")]
    pub statement_type: String,
    pub subject: Vec<ResourceDescriptor>,
    pub predicate_type: String,
    pub predicate: P,
}

/// SLSA Provenance v1.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Provenance {
    pub build_definition: BuildDefinition,
    pub run_details: RunDetails,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BuildDefinition {
    pub build_type: String,
    pub external_parameters: ExternalParameters,
    pub internal_parameters: InternalParameters,
    pub resolved_dependencies: Vec<ResourceDescriptor>,
}

/// What the person building chose.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct ExternalParameters {
    /// The node built: `hd-image`, `kernel@6.18`.
    pub target: String,
    /// The architecture it is built for (the kernel's name for it: x86_64).
    pub architecture: String,
    /// `--use DEP=NODE` substitutions, in the order given.
    #[serde(default)]
    pub uses: Vec<String>,
    /// The target's recipe file (`recipes/NAME.toml`) and its sha256; the recipes below it
    /// are in `resolvedDependencies` through their outputs and the input hash.
    pub recipe: ResourceDescriptor,
}

/// What the build system fixed.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct InternalParameters {
    /// The store's input hash of the target.
    pub input_hash: String,
    /// The pinned toolchain's identity (pins/toolchain.lock).
    pub toolchain: String,
    pub source_date_epoch: i64,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct RunDetails {
    pub builder: Builder,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Builder {
    pub id: String,
}

/// A CycloneDX 1.6 BOM (the part of the format reprovm writes).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Bom {
    pub bom_format: String,
    pub spec_version: String,
    pub serial_number: String,
    pub version: u32,
    pub metadata: BomMetadata,
    pub components: Vec<Component>,
    pub dependencies: Vec<Dependency>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct BomMetadata {
    pub timestamp: String,
    pub tools: Tools,
    pub component: Component,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Tools {
    pub components: Vec<Component>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Default)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Component {
    #[serde(rename = "type")]
    pub component_type: String,
    #[serde(rename = "bom-ref", default, skip_serializing_if = "Option::is_none")]
    pub bom_ref: Option<String>,
    pub name: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// `required` (in the output), `excluded` (used to build it, not in it).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub scope: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub licenses: Vec<License>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub purl: Option<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub external_references: Vec<ExternalReference>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub properties: Vec<Property>,
}

/// Where a component's bytes come from (`distribution`: a pinned source archive).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExternalReference {
    #[serde(rename = "type")]
    pub reference_type: String,
    pub url: String,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hashes: Vec<Hash>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Hash {
    pub alg: String,
    pub content: String,
}

/// A license choice: an SPDX expression, or a license named as its package names it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(untagged)]
pub(crate) enum License {
    Expression { expression: String },
    Named { license: NamedLicense },
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct NamedLicense {
    pub name: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Property {
    pub name: String,
    pub value: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Dependency {
    #[serde(rename = "ref")]
    pub reference: String,
    #[serde(default)]
    pub depends_on: Vec<String>,
}

/// A DSSE envelope (payload and signatures base64, standard alphabet with padding).
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, rename_all = "camelCase")]
pub(crate) struct Envelope {
    pub payload_type: String,
    pub payload: String,
    pub signatures: Vec<Signature>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct Signature {
    /// The signing key's name (`cache keygen --name`); optional in DSSE.
    #[serde(default, skip_serializing_if = "String::is_empty")]
    pub keyid: String,
    pub sig: String,
}

/// DSSE's pre-authentication encoding: what is signed.
/// `"DSSEv1" SP LEN(type) SP type SP LEN(body) SP body`, lengths in ASCII decimal.
pub(crate) fn pae(payload_type: &str, payload: &[u8]) -> Vec<u8> {
    let mut out =
        format!("DSSEv1 {} {} {} ", payload_type.len(), payload_type, payload.len()).into_bytes();
    out.extend_from_slice(payload);
    out
}

/// A `urn:uuid:` made from a digest (the BOM's content), with the version bits of RFC 9562's
/// version 8 (custom: a SHA-256, not the SHA-1 of version 5) and the variant bits set, so
/// that a BOM's serial number is a function of what it says.
pub(crate) fn uuid_urn_from(sha256_hex: &str) -> String {
    let h = sha256_hex.as_bytes();
    let mut hex: Vec<u8> = h[..32].to_vec();
    hex[12] = b'8';
    hex[16] = b"89ab"[(hex[16] as char).to_digit(16).unwrap_or(0) as usize % 4];
    let s = String::from_utf8(hex).unwrap_or_default();
    format!("urn:uuid:{}-{}-{}-{}-{}", &s[..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}

/// Whether a JSON document is one of ours to explain by field: an in-toto Statement or a
/// CycloneDX BOM.
pub(crate) fn is_attestation(v: &serde_json::Value) -> bool {
    v.get("_type").and_then(|t| t.as_str()) == Some(STATEMENT_TYPE)
        || v.get("bomFormat").and_then(|t| t.as_str()) == Some("CycloneDX")
}

/// How two documents differ, field by field (`predicate.buildDefinition.resolvedDependencies
/// [linux-6.1.176.tar.xz].digest.sha256: a -> b`). Arrays of objects that carry a `name`,
/// `bom-ref` or `ref` are matched by it, so an added dependency is one line, not a shifted list.
pub(crate) fn field_differences(a: &serde_json::Value, b: &serde_json::Value) -> Vec<String> {
    let mut out = Vec::new();
    diff_values("", a, b, &mut out);
    out
}

fn short(v: &serde_json::Value) -> String {
    let s = v.to_string();
    if s.chars().count() > 100 {
        format!("{}...", s.chars().take(100).collect::<String>())
    } else {
        s
    }
}

fn key_of(v: &serde_json::Value) -> Option<String> {
    ["bom-ref", "ref", "name"]
        .iter()
        .find_map(|k| v.get(*k).and_then(|x| x.as_str()).map(str::to_string))
}

fn diff_values(path: &str, a: &serde_json::Value, b: &serde_json::Value, out: &mut Vec<String>) {
    use serde_json::Value;
    let at = |k: &str| if path.is_empty() { k.to_string() } else { format!("{path}.{k}") };
    match (a, b) {
        _ if a == b => {}
        (Value::Object(x), Value::Object(y)) => {
            for (k, va) in x {
                match y.get(k) {
                    Some(vb) => diff_values(&at(k), va, vb, out),
                    None => out.push(format!("- {}: {}", at(k), short(va))),
                }
            }
            for (k, vb) in y.iter().filter(|(k, _)| !x.contains_key(*k)) {
                out.push(format!("+ {}: {}", at(k), short(vb)));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.iter().chain(y).all(|v| key_of(v).is_some()) => {
            let keyed = |v: &Vec<Value>| -> BTreeMap<String, Value> {
                v.iter().map(|e| (key_of(e).unwrap_or_default(), e.clone())).collect()
            };
            let (kx, ky) = (keyed(x), keyed(y));
            for (k, va) in &kx {
                match ky.get(k) {
                    Some(vb) => diff_values(&format!("{path}[{k}]"), va, vb, out),
                    None => out.push(format!("- {path}[{k}]")),
                }
            }
            for k in ky.keys().filter(|k| !kx.contains_key(*k)) {
                out.push(format!("+ {path}[{k}]"));
            }
        }
        (Value::Array(x), Value::Array(y)) if x.len() == y.len() => {
            for (i, (va, vb)) in x.iter().zip(y).enumerate() {
                diff_values(&format!("{path}[{i}]"), va, vb, out);
            }
        }
        _ => out.push(format!("~ {path}: {} -> {}", short(a), short(b))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pae_is_dsse_v1() {
        // The DSSE specification's example.
        assert_eq!(
            pae("http://example.com/HelloWorld", b"hello world"),
            b"DSSEv1 29 http://example.com/HelloWorld 11 hello world".to_vec()
        );
    }

    #[test]
    fn serial_numbers_are_uuids_of_the_content() {
        let u = uuid_urn_from(&"f".repeat(64));
        assert_eq!(u, "urn:uuid:ffffffff-ffff-8fff-bfff-ffffffffffff");
        let u = uuid_urn_from(&"0".repeat(64));
        assert_eq!(u, "urn:uuid:00000000-0000-8000-8000-000000000000");
    }

    #[test]
    fn documents_round_trip_and_refuse_unknown_fields() {
        let s = Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: vec![ResourceDescriptor {
                name: Some("hd.img".into()),
                digest: BTreeMap::from([("sha256".into(), "ab".repeat(32))]),
                ..Default::default()
            }],
            predicate_type: SLSA_PROVENANCE.into(),
            predicate: Provenance {
                build_definition: BuildDefinition {
                    build_type: BUILD_TYPE.into(),
                    external_parameters: ExternalParameters {
                        target: "hd-image".into(),
                        architecture: "x86_64".into(),
                        uses: vec![],
                        recipe: ResourceDescriptor::default(),
                    },
                    internal_parameters: InternalParameters {
                        input_hash: "11".into(),
                        toolchain: "22".into(),
                        source_date_epoch: 1,
                    },
                    resolved_dependencies: vec![],
                },
                run_details: RunDetails { builder: Builder { id: BUILDER_ID.into() } },
            },
        };
        let text = serde_json::to_string(&s).unwrap();
        assert!(text.starts_with(r#"{"_type":"https://in-toto.io/Statement/v1","subject":"#));
        assert!(text.contains(r#""buildDefinition":{"buildType":"urn:reprovm:recipe-build:v1""#));
        assert_eq!(serde_json::from_str::<Statement<Provenance>>(&text).unwrap(), s);
        let extra = text.replacen("\"subject\"", "\"extra\":1,\"subject\"", 1);
        assert!(serde_json::from_str::<Statement<Provenance>>(&extra).is_err());
        let licenses = vec![
            License::Expression { expression: "GPL-2.0-only".into() },
            License::Named { license: NamedLicense { name: "GPL-2+".into() } },
        ];
        let text = serde_json::to_string(&licenses).unwrap();
        assert_eq!(text, r#"[{"expression":"GPL-2.0-only"},{"license":{"name":"GPL-2+"}}]"#);
        assert_eq!(serde_json::from_str::<Vec<License>>(&text).unwrap(), licenses);
    }

    #[test]
    fn differences_are_named_by_field_and_by_dependency() {
        let a = serde_json::json!({"_type": STATEMENT_TYPE, "predicate": {"deps": [
            {"name": "linux.tar.xz", "digest": {"sha256": "aa"}},
            {"name": "gone", "digest": {}}],
            "epoch": 1}});
        let b = serde_json::json!({"_type": STATEMENT_TYPE, "predicate": {"deps": [
            {"name": "new", "digest": {}},
            {"name": "linux.tar.xz", "digest": {"sha256": "bb"}}],
            "epoch": 2, "extra": true}});
        assert!(is_attestation(&a));
        assert_eq!(
            field_differences(&a, &b),
            [
                "- predicate.deps[gone]",
                "~ predicate.deps[linux.tar.xz].digest.sha256: \"aa\" -> \"bb\"",
                "+ predicate.deps[new]",
                "~ predicate.epoch: 1 -> 2",
                "+ predicate.extra: true",
            ]
        );
        assert!(field_differences(&a, &a).is_empty());
    }
}
