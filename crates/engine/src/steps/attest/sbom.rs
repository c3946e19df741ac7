//! The CycloneDX 1.6 BOM of a built node: its components (built nodes, sources, the image's
//! libraries attributed to pinned .debs by content, with their licenses from DEP-5
//! copyright files) and their package URLs.

use super::*;

pub(super) fn bom(inputs: &Inputs) -> Result<Bom> {
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
    // The Debian packages installed as they are (`[rootfs] debian`), by their .deb's hash.
    for (node, p) in image_debs(inputs)? {
        let purl = deb_purl(&p.name, &p.version, &p.arch, &p.suite);
        required.push(purl.clone());
        components.push(Component {
            component_type: "library".into(),
            bom_ref: Some(purl.clone()),
            name: p.name.clone(),
            version: Some(p.version.clone()),
            hashes: vec![sha256_hash(&p.sha256)],
            purl: Some(purl),
            properties: vec![property("reprovm:installed-by", &node)],
            ..Default::default()
        });
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

pub(super) fn built_component(node: &BuiltNode, l: &Loaded) -> Result<Component> {
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
pub(super) fn image_libraries(inputs: &Inputs) -> Result<BTreeMap<String, Vec<(String, String)>>> {
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
    // Files of the Debian packages the image installs as they are (`[rootfs] debian`) are
    // those packages' components, by the .deb's hash: not toolchain libraries.
    let mut from_debs = BTreeSet::new();
    for (_, p) in image_debs(inputs)? {
        let deb = inputs.project.downloads.join("sha256").join(&p.sha256);
        for (_, sha) in crate::steps::toolchain::materialize::deb_files(&deb)
            .with_context(|| format!("reading {} ({})", p.filename, deb.display()))?
        {
            from_debs.insert(sha);
        }
    }
    files.retain(|(_, sha)| !from_debs.contains(sha));
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
pub(super) fn library_owners(
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

pub(super) fn read_library_owners(
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

pub(super) fn library_component(
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
pub(super) fn copyright_licenses(root: &Path, package: &str) -> Result<Vec<String>> {
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

pub(super) fn property(name: &str, value: &str) -> Property {
    Property { name: name.into(), value: value.into() }
}

pub(super) fn sha256_hash(hex: &str) -> Hash {
    Hash { alg: "SHA-256".into(), content: hex.into() }
}

/// `pkg:deb/debian/NAME@VERSION?arch=ARCH&distro=debian-12`: the release as OSV and Syft
/// name it (a package from bookworm-backports is a Debian 12 package too).
pub(crate) fn deb_purl(name: &str, version: &str, arch: &str, suite: &str) -> String {
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
pub(crate) fn source_purl(name: &str, version: &str) -> String {
    format!("pkg:deb/debian/{}@{}?arch=source", purl_escape(name), purl_escape(version))
}

/// Percent-encode what a purl segment may not hold literally. The purl specification keeps
/// `:` (Debian epochs: `1:1.35.0`) and `~` as they are; `+` is encoded (`%2B`), as it would
/// read as a space in a query.
pub(super) fn purl_escape(s: &str) -> String {
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
