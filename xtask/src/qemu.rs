//! Booting images under QEMU (issue 5).
use crate::project::Project;
use anyhow::{bail, Result};

#[derive(clap::Args, Debug)]
pub struct RunArgs {
    /// Extra kernel command line.
    #[arg(long)]
    pub append: Option<String>,
}

pub fn run(_p: &Project, _a: &RunArgs) -> Result<()> {
    bail!("run is not implemented yet (issue 5)")
}
