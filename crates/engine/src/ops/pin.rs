//! `pin outputs`: build (or reuse) every published output and record its hashes in
//! `pins/outputs.toml` (`model::pins`), saying what changed.

use crate::model::pins::{changes, pin_of, read_pins, targets_or_default, write_pins};
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::RunContext;
use anyhow::Result;

/// What `pin outputs` changed.
#[derive(Debug, Clone)]
pub struct PinReport {
    pub file: std::path::PathBuf,
    /// One line per changed output hash, file or attestation (`model::pins::changes`).
    pub changes: Vec<String>,
    /// Targets whose input hash changed (their outputs may be the same bytes).
    pub new_inputs: Vec<String>,
}

/// `cargo xtask pin outputs [TARGETS]`: build (or reuse) and record; what changed.
pub fn pin_outputs(ctx: &RunContext, targets: &[String]) -> Result<PinReport> {
    let project = &ctx.project;
    let graph = ctx.graph()?;
    graph.require_targets(targets)?;
    let mut pins = read_pins(project)?;
    let old = pins.clone();
    for t in targets_or_default(&graph, targets) {
        let res = build::build(ctx, &graph, &t, &BuildOptions::default())?;
        // What becomes a pin is read in full first: a damaged entry is never pinned.
        crate::model::store::seal::verify_or_refuse(&res.entry, &res.manifest)?;
        let out = crate::model::store::out_dir(&res.entry);
        let mut pin = pin_of(&res.manifest, &out)?;
        let a = crate::ops::attest::attest_closure(ctx, &graph, &res.closure, &out)?;
        pin.provenance = Some(reprovm_fs::hash::sha256_bytes(&a.provenance));
        pin.sbom = Some(reprovm_fs::hash::sha256_bytes(&a.sbom));
        pins.insert(t, pin);
    }
    // A pin whose recipe is gone would be audited forever as missing: drop it, and say so.
    pins.retain(|name, _| graph.get(name).is_ok());
    write_pins(project, &pins)?;
    let new_inputs = pins
        .iter()
        .filter(|(n, p)| old.get(*n).is_some_and(|o| o.input_hash != p.input_hash))
        .map(|(n, _)| n.clone())
        .collect();
    Ok(PinReport { file: project.outputs_pin(), changes: changes(&old, &pins), new_inputs })
}

/// One recipe's Debian packages, locked for one architecture.
#[derive(Debug, Clone, serde::Serialize)]
pub struct DebianLocked {
    pub recipe: String,
    pub architecture: String,
    pub lock: std::path::PathBuf,
    pub packages: usize,
    pub changed: bool,
}

/// `cargo xtask pin debian [RECIPES]`: resolve each recipe's `[rootfs] debian` (default:
/// every recipe that has one) for every architecture it builds for whose toolchain is locked,
/// against the archive now (every index authenticated), into `pins/debian/`.
pub fn pin_debian(
    ctx: &RunContext,
    recipes: &[String],
    keyring: Option<&std::path::Path>,
) -> Result<Vec<DebianLocked>> {
    use crate::model::arch::Arch;
    use crate::steps::debian_packages;
    let project = &ctx.project;
    let mut work = Vec::new();
    for (arch, _, _) in Arch::VALUES {
        let graph = crate::model::graph::Graph::load_for(&project.recipes, arch)?;
        if !recipes.is_empty() {
            graph.require_targets(recipes)?;
        }
        for (name, l) in graph.recipes.iter().filter(|(n, _)| crate::model::graph::is_base(n)) {
            let wanted = recipes.is_empty() || recipes.contains(name);
            let has = l.recipe.rootfs.as_ref().is_some_and(|r| !r.debian.is_empty());
            if !wanted || !has || l.recipe.unavailable.is_some() {
                continue;
            }
            let set = crate::steps::toolchain::PackageSet::for_arch(arch);
            if !set.lock(project).is_file() {
                continue;
            }
            work.push((arch, l.recipe.clone()));
        }
    }
    for name in recipes {
        anyhow::ensure!(
            work.iter().any(|(_, r)| &r.name == name),
            "recipes/{name}.toml has no [rootfs] debian packages to lock"
        );
    }
    if work.is_empty() {
        return Ok(Vec::new());
    }
    let archive = crate::steps::toolchain::archive::Archive::open(project, &ctx.fetcher, keyring)?;
    let mut out = Vec::new();
    for (arch, recipe) in work {
        let lock = debian_packages::resolve(project, &archive, &recipe, arch)?;
        let text = debian_packages::lock_text(&recipe, &lock)?;
        let path = debian_packages::lock_path(project, &recipe.name, arch);
        let changed = std::fs::read(&path).map_or(true, |t| t != text.as_bytes());
        if changed {
            if let Some(dir) = path.parent() {
                std::fs::create_dir_all(dir)?;
            }
            reprovm_fs::util::write_atomic(&path, text.as_bytes())?;
        }
        out.push(DebianLocked {
            recipe: recipe.name.clone(),
            architecture: arch.name().to_string(),
            lock: path,
            packages: lock.packages.len(),
            changed,
        });
    }
    Ok(out)
}
