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
