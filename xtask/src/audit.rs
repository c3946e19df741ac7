//! Reproducibility audits (issue 6).
use crate::fetch::Fetcher;
use crate::project::Project;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    pub targets: Vec<String>,
}

pub fn run(_p: &Project, _f: &Fetcher, _a: &AuditArgs) -> Result<()> {
    bail!("audit is not implemented yet (issue 6)")
}

pub fn pin_outputs(_p: &Project, _f: &Fetcher, _t: &[String]) -> Result<()> {
    bail!("pin outputs is not implemented yet (issue 6)")
}
