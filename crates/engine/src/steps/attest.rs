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
pub const FORMAT_VERSION: &str = "1";
/// `builder.id` of builds over `--host-toolchain` (not pinned; never equal to a pinned build).
pub const BUILDER_ID_HOST_TOOLCHAIN: &str = "urn:reprovm:builder:xtask-host-toolchain:v1";

/// The architecture every output is built for (the kernel's name).
pub const ARCHITECTURE: &str = "x86_64";
/// The Debian architecture of the pinned toolchain's packages.
const DEB_ARCH: &str = "amd64";

/// What the build toolchain is, as far as an attestation can say: the pinned packages and
/// their materialised root (for the copyright files), or a host root nobody pinned.
pub enum ToolchainPackages<'a> {
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
    pub fn of(project: &Project, root: &'a Path, fetcher: &'a Fetcher) -> Result<Self> {
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
pub struct Attestations {
    /// The in-toto Statement (SLSA Provenance v1), canonical JSON.
    pub provenance: Vec<u8>,
    /// The CycloneDX 1.6 BOM, canonical JSON.
    pub sbom: Vec<u8>,
    /// The Statement carrying the BOM (predicate type CycloneDX), as a DSSE envelope signs it.
    pub sbom_statement: Vec<u8>,
}

/// Everything a node's attestations are made of.
pub struct Inputs<'a> {
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

/// Make the provenance and the SBOM of `inputs.target`.
pub fn attest(inputs: &Inputs) -> Result<Attestations> {
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
pub fn subjects(target: &BuiltNode, out: &Path) -> Result<Vec<ResourceDescriptor>> {
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

fn provenance(inputs: &Inputs) -> Result<Provenance> {
    let l = inputs.graph.get(inputs.target)?;
    let target = inputs.closure.last().context("empty closure")?;
    let mut deps = Vec::new();
    for node in inputs.closure {
        let nl = inputs.graph.get(&node.name)?;
        for s in &nl.recipe.sources {
            deps.push(source_descriptor(&node.name, s));
        }
    }
    for node in &inputs.closure[..inputs.closure.len() - 1] {
        deps.push(ResourceDescriptor {
            name: Some(node.name.clone()),
            uri: Some(format!("urn:reprovm:output:{}", node.name)),
            digest: BTreeMap::from([("sha256".into(), node.manifest.output_hash.clone())]),
            annotations: BTreeMap::from([
                ("digestOf".into(), "reprovm output manifest (output_hash)".into()),
                ("inputHash".into(), node.manifest.input_hash.clone().into()),
                ("version".into(), node.manifest.version.clone().into()),
            ]),
            ..Default::default()
        });
    }
    if let ToolchainPackages::Pinned { locks, .. } = inputs.toolchain {
        for (_, p) in packages_of(locks) {
            deps.push(ResourceDescriptor {
                name: Some(p.name.clone()),
                uri: Some(deb_purl(&p.name, &p.version, &p.arch, &p.suite)),
                digest: BTreeMap::from([("sha256".into(), p.sha256.clone())]),
                annotations: BTreeMap::from([
                    ("filename".into(), p.filename.clone().into()),
                    ("toolchain".into(), "build".into()),
                ]),
                ..Default::default()
            });
        }
    }
    Ok(Provenance {
        build_definition: BuildDefinition {
            build_type: BUILD_TYPE.into(),
            external_parameters: ExternalParameters {
                target: inputs.target.to_string(),
                architecture: ARCHITECTURE.into(),
                uses: inputs.project.uses.clone(),
                recipe: recipe_descriptor(inputs.project, l)?,
            },
            internal_parameters: InternalParameters {
                input_hash: target.manifest.input_hash.clone(),
                toolchain: inputs.toolchain_id.to_string(),
                source_date_epoch: l.recipe.source_date_epoch(),
            },
            resolved_dependencies: deps,
        },
        run_details: RunDetails {
            builder: Builder {
                id: match inputs.toolchain {
                    ToolchainPackages::Pinned { .. } => BUILDER_ID.into(),
                    ToolchainPackages::Host => BUILDER_ID_HOST_TOOLCHAIN.into(),
                },
            },
        },
    })
}

fn recipe_descriptor(project: &Project, l: &Loaded) -> Result<ResourceDescriptor> {
    let rel = l.path.strip_prefix(&project.recipes).with_context(|| {
        format!("{} is not under {}", l.path.display(), project.recipes.display())
    })?;
    Ok(ResourceDescriptor {
        name: Some(format!("recipes/{}", rel.display())),
        digest: BTreeMap::from([("sha256".into(), sha256_bytes(l.text.as_bytes()))]),
        ..Default::default()
    })
}

fn source_descriptor(node: &str, s: &crate::model::recipe::SourcePin) -> ResourceDescriptor {
    let mut annotations: BTreeMap<String, serde_json::Value> = BTreeMap::from([
        ("recipe".into(), node.into()),
        ("size".into(), s.size.into()),
        ("urls".into(), s.urls.clone().into()),
    ]);
    if let Some(d) = &s.debian {
        annotations.insert("debianSource".into(), source_purl(&d.package, &d.version).into());
        annotations.insert("debianFile".into(), d.file.clone().into());
        if let Some(t) = &d.snapshot {
            annotations.insert("debianSnapshot".into(), t.clone().into());
        }
    }
    ResourceDescriptor {
        name: Some(s.file.clone()),
        uri: s.urls.first().cloned(),
        digest: BTreeMap::from([("sha256".into(), s.sha256.clone())]),
        annotations,
        ..Default::default()
    }
}

fn bom(inputs: &Inputs) -> Result<Bom> {
    let l = inputs.graph.get(inputs.target)?;
    let target = inputs.closure.last().context("empty closure")?;
    let epoch = u64::try_from(l.recipe.source_date_epoch())
        .with_context(|| format!("{}: SOURCE_DATE_EPOCH before 1970", l.path.display()))?;
    let mut components = Vec::new();
    let mut required = Vec::new();
    // What was built from pinned sources or carries a license of its own: linux, busybox,
    // dropbear, iproute2, grow-rootfs.
    for node in inputs.closure {
        let nl = inputs.graph.get(&node.name)?;
        if nl.recipe.sources.is_empty() && nl.recipe.license.is_none() {
            continue;
        }
        let c = built_component(node, nl)?;
        required.push(c.bom_ref.clone().unwrap_or_default());
        components.push(c);
    }
    // The libraries the image carries, by the toolchain package that ships each file.
    let libraries = image_libraries(inputs)?;
    let mut in_image = BTreeSet::new();
    for (package, files) in &libraries {
        let c = library_component(inputs.toolchain, package, files)?;
        in_image.insert(package.clone());
        required.push(c.bom_ref.clone().unwrap_or_default());
        components.push(c);
    }
    // The toolchain: used to build, not shipped.
    if let ToolchainPackages::Pinned { locks, .. } = inputs.toolchain {
        for (_, p) in packages_of(locks).filter(|(_, p)| !in_image.contains(&owner_key(p))) {
            let purl = deb_purl(&p.name, &p.version, &p.arch, &p.suite);
            components.push(Component {
                component_type: "library".into(),
                bom_ref: Some(purl.clone()),
                name: p.name.clone(),
                version: Some(p.version.clone()),
                scope: Some("excluded".into()),
                hashes: vec![sha256_hash(&p.sha256)],
                purl: Some(purl),
                properties: vec![property("reprovm:toolchain", "build")],
                ..Default::default()
            });
        }
    }
    let target_ref = format!("reprovm:{}", inputs.target);
    let metadata_component = Component {
        component_type: if inputs.target_out.join("oci-layout").is_file() {
            "container".into()
        } else {
            "file".into()
        },
        bom_ref: Some(target_ref.clone()),
        name: inputs.target.to_string(),
        version: Some(target.manifest.version.clone()),
        description: (!l.recipe.description.is_empty()).then(|| l.recipe.description.clone()),
        properties: vec![
            property("reprovm:input-hash", &target.manifest.input_hash),
            property("reprovm:output-hash", &target.manifest.output_hash),
        ],
        ..Default::default()
    };
    let mut dependencies = vec![Dependency { reference: target_ref, depends_on: required.clone() }];
    dependencies
        .extend(required.iter().map(|r| Dependency { reference: r.clone(), depends_on: vec![] }));
    let mut bom = Bom {
        bom_format: "CycloneDX".into(),
        spec_version: "1.6".into(),
        serial_number: String::new(),
        version: 1,
        metadata: BomMetadata {
            timestamp: UtcTime::from_unix(epoch).rfc3339(),
            tools: Tools {
                components: vec![Component {
                    component_type: "application".into(),
                    name: "reprovm".into(),
                    version: Some(FORMAT_VERSION.into()),
                    properties: vec![property("reprovm:build-type", BUILD_TYPE)],
                    ..Default::default()
                }],
            },
            component: metadata_component,
        },
        components,
        dependencies,
    };
    let mut refs = BTreeSet::new();
    for c in &bom.components {
        let r = c.bom_ref.as_deref().unwrap_or_default();
        anyhow::ensure!(
            refs.insert(r.to_string()),
            "{}: two SBOM components are {r}",
            inputs.target
        );
    }
    // The serial number is a function of everything else the BOM says.
    let digest = sha256_bytes(&reprovm_oci::layout::canonical_json(&bom)?);
    bom.serial_number = uuid_urn_from(&digest);
    Ok(bom)
}

fn built_component(node: &BuiltNode, l: &Loaded) -> Result<Component> {
    let kernel = l.recipe.kconfig.is_some();
    let upstream = l
        .recipe
        .sources
        .iter()
        .find_map(|s| s.debian.as_ref().map(|d| d.package.clone()))
        .unwrap_or_else(|| l.recipe.name.clone());
    let purl = format!("pkg:generic/{}@{}", purl_escape(&upstream), purl_escape(&l.recipe.version));
    let mut properties = vec![
        property("reprovm:node", &node.name),
        property("reprovm:output-hash", &node.manifest.output_hash),
    ];
    if kernel {
        // The kernel's enabled configuration, by its digest (the file is in the output).
        let config = node.manifest.files.iter().find(|f| f.path == "config");
        if let Some(sha) = config.and_then(|f| f.sha256.as_deref()) {
            properties.push(property("reprovm:kernel-config-sha256", sha));
        }
    }
    let mut refs = Vec::new();
    for s in &l.recipe.sources {
        if let Some(d) = &s.debian {
            properties
                .push(property("reprovm:debian-source", &source_purl(&d.package, &d.version)));
        }
        for u in &s.urls {
            refs.push(ExternalReference {
                reference_type: "distribution".into(),
                url: u.clone(),
                hashes: vec![sha256_hash(&s.sha256)],
            });
        }
    }
    Ok(Component {
        component_type: if kernel { "operating-system".into() } else { "application".into() },
        bom_ref: Some(purl.clone()),
        name: upstream,
        version: Some(l.recipe.version.clone()),
        description: (!l.recipe.description.is_empty()).then(|| l.recipe.description.clone()),
        scope: Some("required".into()),
        licenses: l
            .recipe
            .license
            .iter()
            .map(|e| License::Expression { expression: e.clone() })
            .collect(),
        purl: Some(purl),
        external_references: refs,
        properties,
        ..Default::default()
    })
}

/// The shared libraries of the image in the target's closure (the files under its rootfs
/// recipe's `library-path`), grouped by the toolchain package that ships the same bytes; with
/// the host toolchain, by the file itself (no package can be named).
fn image_libraries(inputs: &Inputs) -> Result<BTreeMap<String, Vec<(String, String)>>> {
    let mut out: BTreeMap<String, Vec<(String, String)>> = BTreeMap::new();
    let mut found = None;
    for n in inputs.closure {
        if let Some(r) = &inputs.graph.get(&n.name)?.recipe.rootfs {
            found = Some((n, r));
            break;
        }
    }
    let Some((node, spec)) = found else {
        return Ok(out);
    };
    let list = Dir::open(&store::out_dir(&node.entry))?.read(Path::new("rootfs.list"))?;
    let list = String::from_utf8(list).context("rootfs.list is not UTF-8")?;
    // Where the rootfs step puts libraries: the recipe's library path (or the default one, as
    // `steps::rootfs` uses it), and the interpreter's own directory.
    let mut dirs: Vec<String> = if spec.library_path.is_empty() {
        reprovm_fs::elf::DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.library_path.clone()
    };
    dirs.push("/lib64".into());
    let mut files = Vec::new();
    for (n, line) in list.lines().enumerate() {
        let fields: Vec<&str> = line.split(' ').collect();
        if fields.first() != Some(&"f") {
            continue;
        }
        let ["f", _mode, path, _size, sha] = fields[..] else {
            anyhow::bail!(
                "{}'s rootfs.list line {}: not `f MODE PATH SIZE SHA256`",
                node.name,
                n + 1
            );
        };
        let under = |d: &String| path.strip_prefix(d.as_str()).is_some_and(|r| r.starts_with('/'));
        if dirs.iter().any(under) {
            files.push((path.to_string(), sha.to_string()));
        }
    }
    if files.is_empty() {
        return Ok(out);
    }
    let owners = match inputs.toolchain {
        ToolchainPackages::Pinned { locks, fetcher, .. } => {
            library_owners(inputs.project, locks, fetcher)?
        }
        ToolchainPackages::Host => BTreeMap::new(),
    };
    for (path, sha) in files {
        let owner = match (inputs.toolchain, owners.get(&sha)) {
            (_, Some(p)) => p.clone(),
            (ToolchainPackages::Host, None) => format!("file:{path}"),
            (ToolchainPackages::Pinned { .. }, None) => anyhow::bail!(
                "{path} in {}'s rootfs.list (sha256 {sha}) is in no package of the toolchain's locks: \
                 the SBOM cannot name its package",
                node.name
            ),
        };
        out.entry(owner).or_default().push((path, sha));
    }
    Ok(out)
}

/// sha256 of each shared-library file shipped by a `lib*`/`zlib*` package of the locks ->
/// that package's [`owner_key`].
fn library_owners(
    project: &Project,
    locks: &[LockFile],
    fetcher: &Fetcher,
) -> Result<BTreeMap<String, String>> {
    // Reading ~110 .debs takes a second or two: once per lock and process (`pin outputs` and
    // `audit` attest every target, twice for an audit).
    static SEEN: std::sync::Mutex<Option<(String, BTreeMap<String, String>)>> =
        std::sync::Mutex::new(None);
    let key: String =
        packages_of(locks).map(|(_, p)| format!("{} {}\n", p.name, p.sha256)).collect();
    if let Some((k, owners)) = SEEN.lock().map_err(|_| anyhow::anyhow!("poisoned"))?.as_ref() {
        if *k == key {
            return Ok(owners.clone());
        }
    }
    let owners = read_library_owners(project, locks, fetcher)?;
    *SEEN.lock().map_err(|_| anyhow::anyhow!("poisoned"))? = Some((key, owners.clone()));
    Ok(owners)
}

fn read_library_owners(
    project: &Project,
    locks: &[LockFile],
    fetcher: &Fetcher,
) -> Result<BTreeMap<String, String>> {
    let mut owners = BTreeMap::new();
    for (lock, p) in
        packages_of(locks).filter(|(_, p)| p.name.starts_with("lib") || p.name.starts_with("zlib"))
    {
        let want = toolchain::materialize::deb_want(project, lock, p);
        let deb =
            fetcher.fetch(&want).with_context(|| format!("package {} {}", p.name, p.version))?;
        for (path, sha) in toolchain::materialize::deb_files(&deb)? {
            if path.contains(".so") {
                owners.entry(sha).or_insert_with(|| owner_key(p));
            }
        }
    }
    Ok(owners)
}

fn library_component(
    tc: &ToolchainPackages,
    package: &str,
    files: &[(String, String)],
) -> Result<Component> {
    let mut properties: Vec<Property> =
        files.iter().map(|(p, s)| property("reprovm:file", &format!("{p} sha256:{s}"))).collect();
    let ToolchainPackages::Pinned { locks, root, .. } = tc else {
        let (path, sha) = &files[0];
        return Ok(Component {
            component_type: "file".into(),
            bom_ref: Some(package.to_string()),
            name: path.clone(),
            scope: Some("required".into()),
            hashes: vec![sha256_hash(sha)],
            properties: vec![property("reprovm:toolchain", "host (not pinned)")],
            ..Default::default()
        });
    };
    let (_, p) = packages_of(locks)
        .find(|(_, p)| owner_key(p) == package)
        .with_context(|| format!("{package} is not in the toolchain's locks"))?;
    let purl = deb_purl(&p.name, &p.version, &p.arch, &p.suite);
    let licenses = copyright_licenses(root, &p.name)?;
    if licenses.is_empty() {
        properties.push(property(
            "reprovm:copyright",
            &format!("/usr/share/doc/{}/copyright (not machine-readable)", p.name),
        ));
    }
    Ok(Component {
        component_type: "library".into(),
        bom_ref: Some(purl.clone()),
        name: p.name.clone(),
        version: Some(p.version.clone()),
        scope: Some("required".into()),
        hashes: vec![sha256_hash(&p.sha256)],
        licenses: licenses
            .into_iter()
            .map(|name| License::Named { license: NamedLicense { name } })
            .collect(),
        purl: Some(purl),
        properties,
        ..Default::default()
    })
}

/// The license names of a package's machine-readable copyright file (DEP-5): the `License:`
/// of each `Files:` paragraph, as Debian writes them (`GPL-2+`, not SPDX identifiers).
fn copyright_licenses(root: &Path, package: &str) -> Result<Vec<String>> {
    let root = Dir::open(root)?;
    let rel = Path::new("usr/share/doc").join(package).join("copyright");
    let text = match root.resolve_in_root(&rel, true).and_then(|real| root.read(&real)) {
        Ok(text) => text,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(vec![]),
        Err(e) => {
            return Err(anyhow::Error::new(e).context(format!("reading {package}'s copyright file")))
        }
    };
    let text = String::from_utf8_lossy(&text);
    let paragraphs = deb822::paragraphs(&text);
    if !paragraphs.first().is_some_and(|p| p.get("Format").contains("copyright-format")) {
        return Ok(vec![]);
    }
    let names: BTreeSet<String> = paragraphs
        .iter()
        .filter(|p| !p.get("Files").is_empty())
        .filter_map(|p| p.get("License").lines().next().map(|l| l.trim().to_string()))
        .filter(|l| !l.is_empty())
        .collect();
    Ok(names.into_iter().collect())
}

fn property(name: &str, value: &str) -> Property {
    Property { name: name.into(), value: value.into() }
}

fn sha256_hash(hex: &str) -> Hash {
    Hash { alg: "SHA-256".into(), content: hex.into() }
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`: the release as OSV and Syft
/// name it (a package from bookworm-backports is a Debian 12 package too).
pub fn deb_purl(name: &str, version: &str, arch: &str, suite: &str) -> String {
    let release = suite.strip_suffix("-backports").unwrap_or(suite);
    let release = match release {
        "bookworm" => "12",
        "trixie" => "13",
        "forky" => "14",
        other => other,
    };
    format!(
        "pkg:deb/debian/{}@{}?arch={}&distro=debian-{}",
        purl_escape(name),
        purl_escape(version),
        purl_escape(if arch.is_empty() { DEB_ARCH } else { arch }),
        purl_escape(release)
    )
}

/// A Debian source package: `pkg:deb/debian/NAME@VERSION?arch=source`.
pub fn source_purl(name: &str, version: &str) -> String {
    format!("pkg:deb/debian/{}@{}?arch=source", purl_escape(name), purl_escape(version))
}

/// Percent-encode what a purl segment may not hold literally. The purl specification keeps
/// `:` (Debian epochs: `1:1.35.0`) and `~` as they are; `+` is encoded (`%2B`), as it would
/// read as a space in a query.
fn purl_escape(s: &str) -> String {
    let mut out = String::new();
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:".contains(&b) {
            out.push(b as char);
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// Sign a Statement (its exact bytes) into a DSSE envelope with a cache key (`cache keygen`).
/// Ed25519 is deterministic: the same Statement and key give the same envelope.
pub fn sign_envelope(key: &SecretKey, statement: &[u8]) -> Envelope {
    let sig = key.sign_raw(&pae(IN_TOTO_PAYLOAD, statement));
    Envelope {
        payload_type: IN_TOTO_PAYLOAD.into(),
        payload: B64.encode(statement),
        signatures: vec![Signature { keyid: key.name.clone(), sig: B64.encode(sig) }],
    }
}

/// Why `verify` refuses an envelope: one line each.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("not a DSSE envelope: {0}")]
    NotAnEnvelope(String),
    #[error("payload type `{0}`, not {IN_TOTO_PAYLOAD}")]
    PayloadType(String),
    #[error("the envelope carries no signature by a trusted key: {0}")]
    Untrusted(String),
    #[error("the payload is not an in-toto Statement v1: {0}")]
    NotAStatement(String),
    #[error("{what} in {dir} is not a subject of the statement")]
    NotASubject { what: String, dir: String },
    #[error("subject {name}: not in {dir}")]
    SubjectMissing { name: String, dir: String },
    #[error("subject {name}: the statement says sha256 {statement}, {dir} has {found}")]
    SubjectDiffers { name: String, statement: String, found: String, dir: String },
}

/// A verified envelope: who signed it and what it says.
#[derive(Debug)]
pub struct Verified {
    pub key: keys::Signer,
    pub statement: Statement<serde_json::Value>,
}

/// Check an envelope's signatures against the trusted keys (one that verifies is enough) and
/// read its Statement, which must name at least one subject, each once, by name and sha256.
/// A signature without a `keyid` (optional in DSSE) is tried against every trusted key;
/// base64 may be standard or URL-safe (DSSE allows both).
pub fn open_envelope(trusted: &[PublicKey], bytes: &[u8]) -> Result<Verified, Refusal> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| Refusal::NotAnEnvelope(e.to_string()))?;
    if env.payload_type != IN_TOTO_PAYLOAD {
        return Err(Refusal::PayloadType(env.payload_type));
    }
    let payload =
        decode_base64(&env.payload).map_err(|e| Refusal::NotAnEnvelope(format!("payload: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let mut why = vec![];
    let mut key = None;
    'signatures: for s in &env.signatures {
        let Ok(sig) = decode_base64(&s.sig) else {
            why.push(keys::Untrusted::Malformed.to_string());
            continue;
        };
        let sig = B64.encode(sig);
        let names: Vec<&str> = if s.keyid.is_empty() {
            trusted.iter().map(|k| k.name.as_str()).collect()
        } else {
            vec![s.keyid.as_str()]
        };
        for name in names {
            match keys::verify(trusted, Some(&format!("{name}:{sig}")), &message) {
                Ok(k) => {
                    key = Some(k);
                    break 'signatures;
                }
                Err(e) => why.push(e.to_string()),
            }
        }
    }
    let Some(key) = key else {
        if why.is_empty() {
            why.push(keys::Untrusted::Unsigned.to_string());
        }
        why.dedup();
        return Err(Refusal::Untrusted(why.join("; ")));
    };
    let statement: Statement<serde_json::Value> =
        serde_json::from_slice(&payload).map_err(|e| Refusal::NotAStatement(e.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(Refusal::NotAStatement(format!("_type {}", statement.statement_type)));
    }
    if statement.subject.is_empty() {
        return Err(Refusal::NotAStatement("it names no subject".into()));
    }
    let mut names = BTreeSet::new();
    for s in &statement.subject {
        let name = s.name.as_deref().unwrap_or_default();
        let sha = s.digest.get("sha256").map(String::as_str).unwrap_or_default();
        if name.is_empty() || !reprovm_fs::hash::is_sha256_hex(sha) {
            return Err(Refusal::NotAStatement(format!(
                "subject `{name}` lacks a name or a sha256 digest"
            )));
        }
        if !names.insert(name) {
            return Err(Refusal::NotAStatement(format!("subject `{name}` is named twice")));
        }
    }
    Ok(Verified { key, statement })
}

fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(s).or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
}

/// Check a Statement's subjects against `dir`.
///
/// An output directory: every regular file in it must be a subject, and every subject a
/// regular file with the digest the Statement names (read beneath `dir`; a symlink, a device,
/// a FIFO or a path out of `dir` is refused, never followed or opened).
///
/// An OCI layout (as `pull` writes one: some of the tags, the referrers, its own index.json):
/// the layout must verify, and every image in it must be a subject by digest. Only an untagged
/// manifest whose `subject` is another manifest of the layout counts as a referrer and is left
/// out; a tagged manifest is always an image to check. Returns how many were checked.
pub fn check_subjects(statement: &Statement<serde_json::Value>, dir: &Path) -> Result<usize> {
    let shown = dir.display().to_string();
    if dir.join("oci-layout").is_file() {
        let layout = reprovm_oci::layout::Layout::open(dir)?;
        layout.verify().with_context(|| format!("{shown}: the layout does not verify"))?;
        let manifests = layout.manifests();
        let in_layout: BTreeSet<String> = manifests.iter().map(|(_, d)| d.digest.clone()).collect();
        let mut checked = 0;
        for (tag, d) in &manifests {
            let m: reprovm_oci::spec::ImageManifest = serde_json::from_slice(&layout.blob(d)?)
                .with_context(|| format!("{}: manifest {}", shown, d.digest))?;
            let referrer =
                tag.is_none() && m.subject.as_ref().is_some_and(|s| in_layout.contains(&s.digest));
            if referrer {
                continue;
            }
            let named = statement.subject.iter().any(|s| {
                s.name.as_deref().is_some_and(|n| n.starts_with("oci-manifest:"))
                    && s.digest.get("sha256").map(String::as_str) == Some(d.hex())
            });
            if !named {
                let what = format!(
                    "image {} ({})",
                    d.digest,
                    tag.clone().unwrap_or_else(|| "untagged".into())
                );
                return Err(Refusal::NotASubject { what, dir: shown }.into());
            }
            checked += 1;
        }
        anyhow::ensure!(checked > 0, "{shown}: the layout holds no image to check");
        return Ok(checked);
    }
    let root = Dir::open(dir)?;
    let mut named = BTreeSet::new();
    for s in &statement.subject {
        let name = s.name.clone().unwrap_or_default();
        named.insert(PathBuf::from(&name));
        let want = s.digest.get("sha256").cloned().unwrap_or_default();
        let rel = Path::new(&name);
        let meta = match root.metadata(rel) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("subject {name}"))),
        };
        match meta.map(|m| m.kind) {
            None => return Err(Refusal::SubjectMissing { name, dir: shown }.into()),
            Some(Kind::File) => {}
            Some(k) => anyhow::bail!("subject {name}: a {k:?} in {shown}, not a regular file"),
        }
        let mut f = root.open_file(rel).with_context(|| format!("subject {name}"))?;
        let found = reprovm_fs::hash::sha256_reader(&mut f)?.0;
        if found != want {
            return Err(Refusal::SubjectDiffers { name, statement: want, found, dir: shown }.into());
        }
    }
    for e in root.walk()? {
        if e.kind == Kind::File && !named.contains(&e.path) {
            let what = format!("file {}", e.path.display());
            return Err(Refusal::NotASubject { what, dir: shown }.into());
        }
    }
    Ok(statement.subject.len())
}

#[cfg(test)]
mod tests {
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
