//! `cargo xtask targets`: every target of the recipes, what kind of thing it makes, for which
//! architectures and versions, and which files: read from the recipes and the pins, nothing
//! built or fetched.

use crate::model::arch::Arch;
use crate::model::graph::Graph;
use crate::model::pins::{read_pins, DEFAULT_TARGETS};
use crate::ops::context::RunContext;
use anyhow::Result;
use serde::Serialize;
use std::fmt::Write;

/// One target (a recipe; `NAME@KEY` names it at another of its versions).
#[derive(Debug, Clone, Serialize, PartialEq, Eq)]
pub struct TargetInfo {
    pub name: String,
    /// What it makes: `kernel`, `package`, `rootfs`, `disk-image`, `initramfs`, `uefi-disk`,
    /// `iso`, `oci-image` or `oci-artifact`.
    pub kind: &'static str,
    pub description: String,
    /// The architectures it builds for (an `[arch.NAME] unavailable` leaves one out).
    pub architectures: Vec<String>,
    /// Its default version first, then the keys of its other versions (`build NAME@KEY`).
    pub versions: Vec<String>,
    /// Its flavours (`build NAME+FLAVOUR`).
    pub flavours: Vec<String>,
    /// Published by default (`audit`, `pin outputs` and `attest` with no target).
    pub published: bool,
    /// The files it makes: its pinned output files where it has a pin (x86_64; an OCI
    /// layout's blobs left out), else what its recipe's `[build] outputs` promises.
    pub outputs: Vec<String>,
    /// An OCI layout's pinned tags (and artifact types of untagged referrers).
    pub tags: Vec<String>,
}

/// Every target, by name.
pub fn targets(ctx: &RunContext) -> Result<Vec<TargetInfo>> {
    let graphs: Vec<(Arch, Graph)> = Arch::VALUES
        .iter()
        .map(|(arch, _, _)| Ok((*arch, Graph::load_for(&ctx.project.recipes, *arch)?)))
        .collect::<Result<_>>()?;
    let pins = read_pins(&ctx.project)?;
    let (_, default) = &graphs[0];
    let mut out = Vec::new();
    for (name, l) in default.recipes.iter().filter(|(n, _)| crate::model::graph::is_base(n)) {
        let architectures = graphs
            .iter()
            .filter(|(_, g)| g.recipes.get(name).is_some_and(|l| l.recipe.unavailable.is_none()))
            .map(|(arch, _)| arch.to_string())
            .collect();
        let mut versions = vec![l.recipe.version.clone()];
        versions.extend(l.template.versions.keys().cloned());
        let (outputs, tags) = match pins.get(name) {
            Some(pin) => (
                pin.files.keys().filter(|f| !f.starts_with("blobs/")).cloned().collect(),
                pin.oci_manifests.keys().cloned().collect(),
            ),
            None => (l.recipe.build.outputs.clone(), Vec::new()),
        };
        out.push(TargetInfo {
            name: name.clone(),
            kind: l.recipe.kind(),
            description: l.recipe.description.clone(),
            architectures,
            versions,
            flavours: l.template.flavours.keys().cloned().collect(),
            published: DEFAULT_TARGETS.contains(&name.as_str()),
            outputs,
            tags,
        });
    }
    Ok(out)
}

/// The table `targets` prints.
pub fn render(targets: &[TargetInfo]) -> String {
    let mut s = String::new();
    let width = targets.iter().map(|t| t.name.len()).max().unwrap_or(4).max(6);
    let _ =
        writeln!(s, "{:width$}  {:12}  {:14}  {:16}  WHAT", "TARGET", "KIND", "ARCH", "VERSIONS");
    for t in targets {
        let _ = writeln!(
            s,
            "{:width$}  {:12}  {:14}  {:16}  {}{}",
            t.name,
            t.kind,
            t.architectures.join(","),
            t.versions.join(","),
            t.description,
            if t.published { "" } else { " (not published)" }
        );
        if !t.flavours.is_empty() {
            let _ = writeln!(s, "{:width$}  flavours {}", "", t.flavours.join(", "));
        }
        let shown: Vec<&str> = t.outputs.iter().take(4).map(String::as_str).collect();
        let more = t.outputs.len().saturating_sub(shown.len());
        let _ = writeln!(
            s,
            "{:width$}  makes {}{}{}",
            "",
            shown.join(", "),
            if more > 0 { format!(" and {more} more") } else { String::new() },
            if t.tags.is_empty() { String::new() } else { format!("; tags {}", t.tags.join(", ")) }
        );
    }
    s
}
