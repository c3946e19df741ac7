//! The SLSA Provenance v1 predicate of a built node: what was built from what, by which
//! builder, with every resolved dependency named by its pin.

use super::*;

pub(super) fn provenance(inputs: &Inputs) -> Result<Provenance> {
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
    // The Debian packages a root file system of the closure installs (`[rootfs] debian`).
    for (node, p) in image_debs(inputs)? {
        deps.push(deb_descriptor(&p, "installedBy", &node));
    }
    if let ToolchainPackages::Pinned { locks, .. } = inputs.toolchain {
        for (_, p) in packages_of(locks) {
            deps.push(deb_descriptor(p, "toolchain", "build"));
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

/// A .deb as a resolved dependency: its purl, its hash, its pool file and what it is for.
fn deb_descriptor(
    p: &crate::steps::toolchain::resolve::LockedDeb,
    role: &str,
    value: &str,
) -> ResourceDescriptor {
    ResourceDescriptor {
        name: Some(p.name.clone()),
        uri: Some(deb_purl(&p.name, &p.version, &p.arch, &p.suite)),
        digest: BTreeMap::from([("sha256".into(), p.sha256.clone())]),
        annotations: BTreeMap::from([
            ("filename".into(), p.filename.clone().into()),
            (role.into(), value.into()),
        ]),
        ..Default::default()
    }
}

pub(super) fn recipe_descriptor(project: &Project, l: &Loaded) -> Result<ResourceDescriptor> {
    let rel = l.path.strip_prefix(&project.recipes).with_context(|| {
        format!("{} is not under {}", l.path.display(), project.recipes.display())
    })?;
    Ok(ResourceDescriptor {
        name: Some(format!("recipes/{}", rel.display())),
        digest: BTreeMap::from([("sha256".into(), sha256_bytes(l.text.as_bytes()))]),
        ..Default::default()
    })
}

pub(super) fn source_descriptor(
    node: &str,
    s: &crate::model::recipe::SourcePin,
) -> ResourceDescriptor {
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
