//! `cargo xtask plan --matrix`: the build matrix of the recipes with `[versions]` or
//! `[flavours]` (the kernel), as the jobs of a CI matrix: one job per cell (a version × an
//! architecture × a flavour), each building the cell's node and the published OCI images over
//! it, on any runner, sharing nothing but a registry; then the multi-architecture indexes a last
//! job makes from what the jobs pushed (docs/guide/build-farm.md).
//!
//! Read from the recipes and the pins, nothing built or fetched: each cell's input hash is
//! compared with its pin here, which is the cheap check CI makes for every cell it does not
//! build (decision 0073).

use crate::model::arch::Arch;
use crate::model::graph::{is_base, Graph};
use crate::model::pins::{read_pins, DEFAULT_TARGETS};
use crate::model::project::Project;
use crate::model::recipe::{Cell, DEFAULT_FLAVOUR};
use crate::model::store::InputHashes;
use crate::ops::context::RunContext;
use crate::steps::toolchain;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

/// `plan --matrix`: GitHub Actions' `strategy.matrix` shape (`include`), with what was left
/// out and the indexes the last job makes.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Matrix {
    /// One job per cell.
    pub include: Vec<Job>,
    /// The cells `[matrix] exclude` (or an architecture's `unavailable`) leaves out.
    pub excluded: Vec<Excluded>,
    /// The multi-architecture layouts over the cells: one per OCI target, version and flavour
    /// whose every architecture is a job.
    pub indexes: Vec<Index>,
    /// Each recipe's flavours and what they are for, by `RECIPE+FLAVOUR`.
    pub flavours: BTreeMap<String, String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Job {
    /// A name for the job: `kernel@6.18+kvm aarch64`.
    pub name: String,
    /// The cell's node: `kernel@6.18+kvm`.
    pub node: String,
    pub recipe: String,
    /// The version the cell builds (`6.18.15`).
    pub version: String,
    /// The flavour, `default` for none.
    pub flavour: String,
    /// The `--arch` value.
    pub arch: String,
    /// What the job builds and pushes: the node, then the published OCI images over it.
    pub targets: Vec<String>,
    /// Nodes the targets depend on that the job does not build (substituted or built first).
    pub needs: Vec<String>,
    /// Each target's input hash, and whether its pin (pins/outputs*.toml) has that input hash.
    pub input_hashes: BTreeMap<String, String>,
    pub pinned: BTreeMap<String, bool>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Excluded {
    pub node: String,
    pub arch: String,
    pub reason: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Index {
    /// `multiarch TARGET`: `firecracker-kernel-bin-oci@6.18+kvm`.
    pub target: String,
    /// Its tags (x86_64's layout's; every architecture's are the same).
    pub tags: Vec<String>,
    /// Whether pins/multiarch.toml has an index for each of its tags, and for no other.
    pub pinned: bool,
}

/// The matrix of `recipes` (none: every recipe with `[versions]` or `[flavours]`).
pub fn matrix(ctx: &RunContext, recipes: &[String]) -> Result<Matrix> {
    let mut graphs = Vec::new();
    for (arch, _, _) in Arch::VALUES {
        let mut project = ctx.project.clone();
        project.arch = arch;
        let graph = project.graph()?;
        graphs.push((arch, project, graph));
    }
    let (_, _, default) = &graphs[0];
    default.require_targets(recipes)?;
    let names: Vec<String> = if recipes.is_empty() {
        default
            .recipes
            .iter()
            .filter(|(n, l)| {
                is_base(n) && (!l.template.versions.is_empty() || !l.template.flavours.is_empty())
            })
            .map(|(n, _)| n.clone())
            .collect()
    } else {
        for r in recipes {
            anyhow::ensure!(
                is_base(r),
                "plan --matrix {r}: name a recipe (the matrix is its cells), e.g. kernel"
            );
        }
        recipes.to_vec()
    };
    let mut out = Matrix {
        include: Vec::new(),
        excluded: Vec::new(),
        indexes: Vec::new(),
        flavours: BTreeMap::new(),
    };
    for name in &names {
        for (f, fl) in &default.get(name)?.template.flavours {
            out.flavours.insert(format!("{name}+{f}"), fl.description.clone());
        }
    }
    for (arch, project, graph) in &graphs {
        let tc = toolchain::identity(project)?;
        let mut hashes = InputHashes::new(graph, project, &tc)?;
        let pins = read_pins(project)?;
        for name in &names {
            for cell in cells(graph, name) {
                let node = format!("{name}{}", cell.suffix());
                let Some(l) = graph.recipes.get(&node) else { continue };
                if let Some(why) = &l.recipe.unavailable {
                    out.excluded.push(Excluded {
                        node,
                        arch: arch.to_string(),
                        reason: why.clone(),
                    });
                    continue;
                }
                let targets = job_targets(graph, name, &cell);
                let mut needs = Vec::new();
                for t in &targets {
                    for n in graph.closure(t)? {
                        if !targets.contains(&n) && !needs.contains(&n) {
                            needs.push(n);
                        }
                    }
                }
                let mut input_hashes = BTreeMap::new();
                let mut pinned = BTreeMap::new();
                for t in &targets {
                    let h = hashes.get(t)?;
                    pinned.insert(t.clone(), pins.get(t).is_some_and(|p| p.input_hash == h));
                    input_hashes.insert(t.clone(), h);
                }
                out.include.push(Job {
                    name: format!("{node} {arch}"),
                    version: l.recipe.version.clone(),
                    flavour: cell.flavour.clone().unwrap_or_else(|| DEFAULT_FLAVOUR.into()),
                    node,
                    recipe: name.clone(),
                    arch: arch.to_string(),
                    targets,
                    needs,
                    input_hashes,
                    pinned,
                });
            }
        }
    }
    out.indexes = indexes(&ctx.project, &graphs, &out.include)?;
    Ok(out)
}

/// The recipe's cells: the default, each version, each flavour, each version in each flavour.
fn cells(graph: &Graph, name: &str) -> Vec<Cell> {
    let t = &graph.recipes[name].template;
    let mut out = Vec::new();
    for v in std::iter::once(None).chain(t.versions.keys().map(Some)) {
        for f in std::iter::once(None).chain(t.flavours.keys().map(Some)) {
            out.push(Cell { version: v.cloned(), flavour: f.cloned() });
        }
    }
    out
}

/// The cell's node and the published OCI images directly over the recipe, at the cell.
fn job_targets(graph: &Graph, name: &str, cell: &Cell) -> Vec<String> {
    let suffix = cell.suffix();
    let mut out = vec![format!("{name}{suffix}")];
    for base in DEFAULT_TARGETS {
        let node = format!("{base}{suffix}");
        let Some(l) = graph.recipes.get(&node) else { continue };
        if l.recipe.oci.is_some()
            && l.recipe.unavailable.is_none()
            && l.template.deps.iter().any(|d| d == name)
        {
            out.push(node);
        }
    }
    out
}

/// The multi-architecture layouts: every OCI target that is a job's on every architecture.
fn indexes(
    project: &Project,
    graphs: &[(Arch, Project, Graph)],
    jobs: &[Job],
) -> Result<Vec<Index>> {
    let pins = crate::model::pins::read_multiarch_pins(&project.pins.join("multiarch.toml"))?;
    let mut out = Vec::new();
    let (_, _, default) = &graphs[0];
    for job in jobs.iter().filter(|j| j.arch == Arch::X86_64.name()) {
        for t in job.targets.iter().filter(|t| default.recipes[*t].recipe.oci.is_some()) {
            let everywhere = graphs.iter().all(|(arch, _, _)| {
                jobs.iter().any(|j| j.arch == arch.name() && j.targets.contains(t))
            });
            if everywhere {
                let tags = default.recipes[t].recipe.oci.as_ref().unwrap().tags.clone();
                // Pinned: pins/multiarch.toml has an index for each of its tags, and no other.
                let pinned = pins.get(t).is_some_and(|p| {
                    p.keys().collect::<std::collections::BTreeSet<_>>()
                        == tags.iter().collect::<std::collections::BTreeSet<_>>()
                });
                out.push(Index { target: t.clone(), tags, pinned });
            }
        }
    }
    Ok(out)
}

/// `plan --matrix` for people: one line per job, then what is left out and the indexes.
pub fn render(m: &Matrix) -> String {
    use std::fmt::Write;
    let mut s = String::new();
    let width = m.include.iter().map(|j| j.name.len()).max().unwrap_or(3).max(3);
    let _ = writeln!(s, "{:width$}  {:8}  {:8}  TARGETS", "JOB", "VERSION", "FLAVOUR");
    for j in &m.include {
        let unpinned: Vec<&str> =
            j.pinned.iter().filter(|(_, p)| !**p).map(|(t, _)| t.as_str()).collect();
        let _ = writeln!(
            s,
            "{:width$}  {:8}  {:8}  {}{}",
            j.name,
            j.version,
            j.flavour,
            j.targets.join(" "),
            if unpinned.is_empty() {
                String::new()
            } else {
                format!("  (input hash not pinned: {})", unpinned.join(", "))
            }
        );
    }
    for (f, what) in &m.flavours {
        let _ = writeln!(s, "flavour: {f}: {what}");
    }
    for e in &m.excluded {
        let _ = writeln!(s, "excluded: {} {}: {}", e.node, e.arch, e.reason);
    }
    for i in &m.indexes {
        let _ = writeln!(
            s,
            "index: {} ({}){}",
            i.target,
            i.tags.join(", "),
            if i.pinned { "" } else { " (not in pins/multiarch.toml)" }
        );
    }
    s
}
