use super::values;
use reprovm::ops::context::RunContext;
use reprovm::steps::toolchain::{self, PackageSet};

#[derive(clap::Args, Debug)]
pub struct ToolchainArgs {
    #[command(subcommand)]
    pub action: Option<ToolchainAction>,
}

#[derive(clap::Subcommand, Debug, Clone)]
pub enum ToolchainAction {
    /// Resolve toolchain/packages.toml, nix.toml and tools.toml against the Debian mirror into
    /// pins/toolchain.lock, nix.lock and tools.lock (or only the SETs named).
    Lock {
        #[arg(value_parser = values::parser(&PackageSet::VALUES))]
        sets: Vec<PackageSet>,
    },
    /// Fetch, verify and extract every locked .deb into the toolchain store entry.
    Materialize,
    /// Print the toolchain identity and root.
    Show,
}

impl ToolchainArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let project = &ctx.project;
        match self.action.unwrap_or(ToolchainAction::Materialize) {
            ToolchainAction::Lock { sets } => toolchain::lock(
                project,
                if sets.is_empty() { &PackageSet::ALL[..] } else { &sets },
            )?,
            ToolchainAction::Materialize => {
                let lock = reprovm::model::store::store_exclusive(&project.out)?;
                println!("{}", toolchain::ensure(project, &ctx.fetcher, &lock)?.root.display());
            }
            ToolchainAction::Show => println!("toolchain {}", toolchain::identity(project)?),
        }
        Ok(0)
    }
}
