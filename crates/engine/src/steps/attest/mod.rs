//! Provenance and SBOM of a built node: an in-toto Statement with the SLSA Provenance v1
//! predicate, and a CycloneDX 1.6 BOM, both functions of what is pinned (the recipes, their
//! sources, the toolchain lock, the outputs' bytes) and nothing else: no clock, no host, no
//! invocation id. The same closure gives the same bytes on every machine, so they are pinned
//! and audited like the outputs (`model::pins`).
//!
//! Written as canonical JSON (keys sorted, no spaces: `reprovm_oci::layout::canonical_json`).

use crate::mechanisms::deb822;
use crate::mechanisms::fetch::Fetcher;
use crate::model::attestation::*;
use crate::model::graph::Graph;
use crate::model::manifest::FileKind;
use crate::model::project::Project;
use crate::model::recipe::Loaded;
use crate::model::store::{self, BuiltNode};
use crate::steps::substitution::keys::{self, PublicKey, SecretKey};
use crate::steps::toolchain::{self, LockFile, LockedDeb, PackageSet};
use anyhow::{Context, Result};
use base64::Engine;
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::hash::sha256_bytes;
use reprovm_fs::util::UtcTime;
use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// The version of what reprovm writes in attestations (the SBOM's tool version): bumped when
/// the documents change shape, not with the crate, so that the bytes stay a function of the
/// pinned inputs.
pub(crate) const FORMAT_VERSION: &str = "1";
/// `builder.id` of builds over `--host-toolchain` (not pinned; never equal to a pinned build).
pub(crate) const BUILDER_ID_HOST_TOOLCHAIN: &str = "urn:reprovm:builder:xtask-host-toolchain:v1";

/// The architecture every output is built for (the kernel's name).
pub(crate) const ARCHITECTURE: &str = "x86_64";
/// The Debian architecture of the pinned toolchain's packages.
const DEB_ARCH: &str = "amd64";

/// What the build toolchain is, as far as an attestation can say: the pinned packages and
/// their materialised root (for the copyright files), or a host root nobody pinned.
pub(crate) enum ToolchainPackages<'a> {
    /// The locks of the set that builds for the project's architecture (a layered set's
    /// base first), each package fetched with its own lock's snapshot time.
    Pinned {
        locks: Vec<LockFile>,
        root: &'a Path,
        fetcher: &'a Fetcher,
    },
    Host,
}

impl<'a> ToolchainPackages<'a> {
    /// The toolchain a project builds with (`root` is its materialised root).
    pub(crate) fn of(project: &Project, root: &'a Path, fetcher: &'a Fetcher) -> Result<Self> {
        if project.host_toolchain {
            return Ok(ToolchainPackages::Host);
        }
        let locks = toolchain::read_locks(project, PackageSet::for_arch(project.arch))?;
        Ok(ToolchainPackages::Pinned { locks, root, fetcher })
    }
}

/// Every package of the locks, with its lock.
fn packages_of(locks: &[LockFile]) -> impl Iterator<Item = (&LockFile, &LockedDeb)> {
    locks.iter().flat_map(|l| l.packages.iter().map(move |p| (l, p)))
}

/// How the SBOM names a package that owns image files: its name, qualified with its
/// architecture when that is not the build machine's (`libc6:arm64`, as dpkg spells it), so
/// that an arm64 library is never taken for its amd64 twin.
fn owner_key(p: &LockedDeb) -> String {
    if p.arch == "amd64" || p.arch == "all" {
        p.name.clone()
    } else {
        format!("{}:{}", p.name, p.arch)
    }
}

/// A node's provenance and SBOM, as the bytes that are pinned.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Attestations {
    /// The in-toto Statement (SLSA Provenance v1), canonical JSON.
    pub provenance: Vec<u8>,
    /// The CycloneDX 1.6 BOM, canonical JSON.
    pub sbom: Vec<u8>,
    /// The Statement carrying the BOM (predicate type CycloneDX), as a DSSE envelope signs it.
    pub sbom_statement: Vec<u8>,
}

/// Everything a node's attestations are made of.
pub(crate) struct Inputs<'a> {
    pub project: &'a Project,
    pub graph: &'a Graph,
    /// The node, as named in the graph (`hd-image`, `kernel@6.18`).
    pub target: &'a str,
    /// Its closure, the target last (`ops::build::BuildResult::closure`).
    pub closure: &'a [BuiltNode],
    /// Where the target's outputs are (its store entry's `out`, or an audit's rebuild).
    pub target_out: &'a Path,
    pub toolchain_id: &'a str,
    pub toolchain: &'a ToolchainPackages<'a>,
}

/// Every .deb a root file system of the closure installs (`[rootfs] debian`), with the node
/// that installs it.
pub(super) fn image_debs(
    inputs: &Inputs,
) -> Result<Vec<(String, crate::steps::toolchain::resolve::LockedDeb)>> {
    let mut out = Vec::new();
    for node in inputs.closure {
        let l = inputs.graph.get(&node.name)?;
        if let Some(lock) = crate::steps::debian_packages::read(inputs.project, &l.recipe, l.arch)?
        {
            out.extend(lock.packages.into_iter().map(|p| (node.name.clone(), p)));
        }
    }
    Ok(out)
}

/// Make the provenance and the SBOM of `inputs.target`.
pub(crate) fn attest(inputs: &Inputs) -> Result<Attestations> {
    let target = inputs.closure.last().context("attest: empty closure")?;
    anyhow::ensure!(
        target.name == inputs.target,
        "attest: the closure ends at {}, not {}",
        target.name,
        inputs.target
    );
    let subjects = subjects(target, inputs.target_out)?;
    let provenance = Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: subjects.clone(),
        predicate_type: SLSA_PROVENANCE.into(),
        predicate: provenance(inputs)?,
    };
    let bom = bom(inputs)?;
    let sbom_statement = Statement {
        statement_type: STATEMENT_TYPE.into(),
        subject: subjects,
        predicate_type: CYCLONEDX_PREDICATE.into(),
        predicate: bom.clone(),
    };
    Ok(Attestations {
        provenance: reprovm_oci::layout::canonical_json(&provenance)?,
        sbom: reprovm_oci::layout::canonical_json(&bom)?,
        sbom_statement: reprovm_oci::layout::canonical_json(&sbom_statement)?,
    })
}

/// Every regular file of the output by path, and every manifest of an OCI layout by tag (or
/// referrer type): what a registry, `skopeo inspect` and `verify` see.
pub(crate) fn subjects(target: &BuiltNode, out: &Path) -> Result<Vec<ResourceDescriptor>> {
    let mut out_subjects = Vec::new();
    for f in &target.manifest.files {
        if let (FileKind::File, Some(sha)) = (f.kind, &f.sha256) {
            out_subjects.push(ResourceDescriptor {
                name: Some(f.path.clone()),
                digest: BTreeMap::from([("sha256".to_string(), sha.clone())]),
                ..Default::default()
            });
        }
    }
    for (key, digest) in crate::model::pins::oci_manifests(out)? {
        let hex = digest.strip_prefix("sha256:").with_context(|| {
            format!("{}: manifest {key} is {digest}, not sha256", out.display())
        })?;
        out_subjects.push(ResourceDescriptor {
            name: Some(format!("oci-manifest:{key}")),
            digest: BTreeMap::from([("sha256".to_string(), hex.to_string())]),
            ..Default::default()
        });
    }
    anyhow::ensure!(
        !out_subjects.is_empty(),
        "{}: no regular file to name as a subject (an in-toto Statement needs one)",
        target.name
    );
    Ok(out_subjects)
}

pub(crate) mod cosign;
mod dsse;
mod provenance;
mod sbom;

pub(crate) use dsse::{check_subjects, open_envelope, sign_envelope};
use provenance::*;
use sbom::*;
pub(crate) use sbom::{deb_purl, source_purl};

#[cfg(test)]
mod tests {
    use super::dsse::Refusal;
    use super::*;

    #[test]
    fn purls_escape_epochs_and_plus() {
        assert_eq!(
            deb_purl("busybox", "1:1.35.0-4+deb12u1", "amd64", "bookworm"),
            "pkg:deb/debian/busybox@1:1.35.0-4%2Bdeb12u1?arch=amd64&distro=debian-12"
        );
        assert_eq!(source_purl("linux", "6.1.176-1"), "pkg:deb/debian/linux@6.1.176-1?arch=source");
        assert_eq!(
            deb_purl("e2fsprogs", "1.47.2-3~bpo12+1", "amd64", "bookworm-backports"),
            "pkg:deb/debian/e2fsprogs@1.47.2-3~bpo12%2B1?arch=amd64&distro=debian-12"
        );
    }

    #[test]
    fn dep5_license_names() {
        let t = tempfile::tempdir().unwrap();
        let doc = t.path().join("usr/share/doc");
        std::fs::create_dir_all(doc.join("a")).unwrap();
        std::fs::create_dir_all(doc.join("c")).unwrap();
        std::fs::write(
            doc.join("a/copyright"),
            "Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/\n\n\
             Files: *\nCopyright: x\nLicense: GPL-2+\n\nFiles: lib/*\nLicense: BSD-3-clause or GPL-2\n\n\
             License: GPL-2+\n text\n",
        )
        .unwrap();
        std::os::unix::fs::symlink("a", doc.join("b")).unwrap();
        std::fs::write(doc.join("c/copyright"), "This is free software.\n").unwrap();
        assert_eq!(copyright_licenses(t.path(), "a").unwrap(), ["BSD-3-clause or GPL-2", "GPL-2+"]);
        assert_eq!(copyright_licenses(t.path(), "b").unwrap(), ["BSD-3-clause or GPL-2", "GPL-2+"]);
        assert!(copyright_licenses(t.path(), "c").unwrap().is_empty());
        assert!(copyright_licenses(t.path(), "missing").unwrap().is_empty());
    }

    #[test]
    fn envelopes_verify_and_every_refusal_has_its_reason() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a.key"), t.path().join("b.key"));
        keys::generate("ci", &a).unwrap();
        keys::generate("other", &b).unwrap();
        let key = SecretKey::load(&a).unwrap();
        let trusted = vec![PublicKey::load(&a.with_extension("pub")).unwrap()];
        std::fs::create_dir(t.path().join("out")).unwrap();
        std::fs::write(t.path().join("out/hd.img"), b"image").unwrap();
        let statement = format!(
            r#"{{"_type":"{STATEMENT_TYPE}","predicate":{{}},"predicateType":"x","subject":[{{"digest":{{"sha256":"{}"}},"name":"hd.img"}}]}}"#,
            sha256_bytes(b"image")
        );
        let env = serde_json::to_vec(&sign_envelope(&key, statement.as_bytes())).unwrap();
        assert_eq!(env, serde_json::to_vec(&sign_envelope(&key, statement.as_bytes())).unwrap());
        let v = open_envelope(&trusted, &env).unwrap();
        assert_eq!(v.key.name, "ci");
        assert_eq!(check_subjects(&v.statement, &t.path().join("out")).unwrap(), 1);
        // The subject's bytes changed.
        std::fs::write(t.path().join("out/hd.img"), b"other").unwrap();
        let e = check_subjects(&v.statement, &t.path().join("out")).unwrap_err().to_string();
        assert!(e.starts_with("subject hd.img: the statement says sha256"), "{e}");
        std::fs::remove_file(t.path().join("out/hd.img")).unwrap();
        let e = check_subjects(&v.statement, &t.path().join("out")).unwrap_err().to_string();
        assert!(e.starts_with("subject hd.img: not in"), "{e}");
        // A tampered payload.
        let mut tampered: Envelope = serde_json::from_slice(&env).unwrap();
        tampered.payload = B64.encode(statement.replace("hd.img", "hd.im2"));
        let e = open_envelope(&trusted, &serde_json::to_vec(&tampered).unwrap()).unwrap_err();
        assert!(e.to_string().contains("does not verify"), "{e}");
        // Signed by a key nobody trusts.
        let other = SecretKey::load(&b).unwrap();
        let env = serde_json::to_vec(&sign_envelope(&other, statement.as_bytes())).unwrap();
        let e = open_envelope(&trusted, &env).unwrap_err().to_string();
        assert!(e.contains("`other`, which is not a trusted key"), "{e}");
        // Not signed at all, and not an envelope.
        let mut unsigned: Envelope = serde_json::from_slice(&env).unwrap();
        unsigned.signatures.clear();
        let e = open_envelope(&trusted, &serde_json::to_vec(&unsigned).unwrap()).unwrap_err();
        assert!(e.to_string().contains("not signed"), "{e}");
        assert!(matches!(open_envelope(&trusted, b"{}"), Err(Refusal::NotAnEnvelope(_))));
    }

    /// A statement over `subjects` (name, sha256 hex).
    fn statement(subjects: &[(&str, String)]) -> Statement<serde_json::Value> {
        Statement {
            statement_type: STATEMENT_TYPE.into(),
            subject: subjects
                .iter()
                .map(|(n, h)| ResourceDescriptor {
                    name: Some(n.to_string()),
                    digest: BTreeMap::from([("sha256".to_string(), h.clone())]),
                    ..Default::default()
                })
                .collect(),
            predicate_type: "x".into(),
            predicate: serde_json::json!({}),
        }
    }

    #[test]
    fn statements_must_name_each_subject_once_with_a_digest() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.key");
        keys::generate("ci", &a).unwrap();
        let key = SecretKey::load(&a).unwrap();
        let trusted = vec![PublicKey::load(&a.with_extension("pub")).unwrap()];
        let open = |s: &Statement<serde_json::Value>| {
            let env = sign_envelope(&key, &serde_json::to_vec(s).unwrap());
            open_envelope(&trusted, &serde_json::to_vec(&env).unwrap()).map(|_| ())
        };
        let h = sha256_bytes(b"x");
        assert!(open(&statement(&[("a", h.clone())])).is_ok());
        let e = open(&statement(&[])).unwrap_err().to_string();
        assert!(e.contains("names no subject"), "{e}");
        let e = open(&statement(&[("a", h.clone()), ("a", h.clone())])).unwrap_err().to_string();
        assert!(e.contains("named twice"), "{e}");
        let e = open(&statement(&[("a", "12".into())])).unwrap_err().to_string();
        assert!(e.contains("lacks a name or a sha256"), "{e}");
        // Another payload type; a signature without keyid (tried against every trusted key);
        // an untrusted signature beside a good one.
        let body = serde_json::to_vec(&statement(&[("a", h)])).unwrap();
        let mut env = sign_envelope(&key, &body);
        env.payload_type = "text/plain".into();
        let e = open_envelope(&trusted, &serde_json::to_vec(&env).unwrap()).unwrap_err();
        assert!(matches!(e, Refusal::PayloadType(_)), "{e}");
        let mut env = sign_envelope(&key, &body);
        env.signatures[0].keyid.clear();
        assert_eq!(
            open_envelope(&trusted, &serde_json::to_vec(&env).unwrap()).unwrap().key.name,
            "ci"
        );
        let mut env = sign_envelope(&key, &body);
        env.signatures.insert(0, Signature { keyid: "ci".into(), sig: B64.encode([0u8; 64]) });
        assert!(open_envelope(&trusted, &serde_json::to_vec(&env).unwrap()).is_ok());
        let mut env = sign_envelope(&key, &body);
        env.payload = B64.encode(b"{}");
        let e = open_envelope(&trusted, &serde_json::to_vec(&env).unwrap()).unwrap_err();
        assert!(matches!(e, Refusal::Untrusted(_)), "{e}");
    }

    #[test]
    fn an_output_directory_holds_exactly_the_subjects_as_regular_files() {
        let t = tempfile::tempdir().unwrap();
        let out = t.path().join("out");
        std::fs::create_dir_all(out.join("d")).unwrap();
        std::fs::write(out.join("d/f"), b"f").unwrap();
        let ok = statement(&[("d/f", sha256_bytes(b"f"))]);
        assert_eq!(check_subjects(&ok, &out).unwrap(), 1);
        std::fs::write(out.join("extra"), b"e").unwrap();
        let e = check_subjects(&ok, &out).unwrap_err().to_string();
        assert!(e.contains("file extra in") && e.contains("is not a subject"), "{e}");
        std::fs::remove_file(out.join("extra")).unwrap();
        // A symlink, a FIFO, a path out of the directory: refused, never followed or opened.
        std::os::unix::fs::symlink("d/f", out.join("link")).unwrap();
        let e = check_subjects(&statement(&[("link", sha256_bytes(b"f"))]), &out).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e:#}");
        std::fs::remove_file(out.join("link")).unwrap();
        let fifo = std::ffi::CString::new(out.join("fifo").to_str().unwrap()).unwrap();
        // SAFETY: a valid C string; mkfifo has no other precondition.
        assert_eq!(unsafe { libc::mkfifo(fifo.as_ptr(), 0o600) }, 0);
        let e = check_subjects(&statement(&[("fifo", sha256_bytes(b""))]), &out).unwrap_err();
        assert!(e.to_string().contains("not a regular file"), "{e:#}");
        std::fs::remove_file(out.join("fifo")).unwrap();
        std::fs::write(t.path().join("outside"), b"o").unwrap();
        assert!(check_subjects(&statement(&[("../outside", sha256_bytes(b"o"))]), &out).is_err());
        assert!(check_subjects(&statement(&[("/etc/hostname", sha256_bytes(b"o"))]), &out).is_err());
    }

    #[test]
    fn every_image_of_a_layout_must_be_a_subject_tagged_or_not() {
        use reprovm_oci::layout::{LayoutWriter, REF_NAME};
        use reprovm_oci::spec::{self, Descriptor, ImageManifest};
        let t = tempfile::tempdir().unwrap();
        let make = |dir: &Path, evil_subject: bool| -> (String, String) {
            let w = LayoutWriter::create(dir).unwrap();
            let empty = w.blob_bytes(b"{}").unwrap();
            let config = Descriptor::new(spec::EMPTY, &empty, 2);
            let image = ImageManifest::new(config.clone(), vec![]);
            let image_d = w.blob_json(spec::MANIFEST, &image, BTreeMap::new()).unwrap();
            // A referrer of the image (untagged, its subject in the layout)...
            let mut referrer = ImageManifest::new(config.clone(), vec![]);
            referrer.subject = Some(image_d.clone());
            referrer.artifact_type = Some("application/x-test".into());
            let referrer_d = w.blob_json(spec::MANIFEST, &referrer, BTreeMap::new()).unwrap();
            // ... and, in the evil layout, a tagged image that carries a `subject` too.
            let mut other = ImageManifest::new(config, vec![]);
            other.annotations.insert("x".into(), "y".into());
            if evil_subject {
                other.subject = Some(image_d.clone());
            }
            let other_d = w.blob_json(spec::MANIFEST, &other, BTreeMap::new()).unwrap();
            let tagged = |d: &Descriptor, tag: &str| {
                let mut d = d.clone();
                d.annotations.insert(REF_NAME.into(), tag.into());
                d
            };
            let mut list = vec![image_d.clone(), referrer_d];
            if evil_subject {
                list.push(tagged(&other_d, "latest"));
            }
            w.finish(list).unwrap();
            (image_d.hex().to_string(), other_d.hex().to_string())
        };
        let honest = t.path().join("honest");
        let (image, _) = make(&honest, false);
        let says = statement(&[("oci-manifest:1.0", image.clone())]);
        assert_eq!(check_subjects(&says, &honest).unwrap(), 1);
        let evil = t.path().join("evil");
        let (image, other) = make(&evil, true);
        let says = statement(&[("oci-manifest:1.0", image)]);
        let e = check_subjects(&says, &evil).unwrap_err().to_string();
        assert!(
            e.contains(&other) && e.contains("(latest)") && e.contains("is not a subject"),
            "{e}"
        );
    }
}
