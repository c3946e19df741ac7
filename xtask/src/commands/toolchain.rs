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
    /// Resolve the package sets (toolchain/*.toml) against the Debian mirror into their locks
    /// (pins/*.lock), every index authenticated through its suite's signed InRelease (or only
    /// the SETs named).
    Lock {
        #[arg(value_parser = values::parser(&PackageSet::VALUES))]
        sets: Vec<PackageSet>,
        /// Verify the archive's InRelease files with this keyring instead of the pinned
        /// debian-archive-keyring (a private or test archive; the first lock of `archive`).
        #[arg(long, value_name = "FILE")]
        keyring: Option<std::path::PathBuf>,
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
            ToolchainAction::Lock { sets, keyring } => {
                let archive =
                    toolchain::archive::Archive::open(project, &ctx.fetcher, keyring.as_deref())?;
                toolchain::lock(
                    project,
                    &archive,
                    if sets.is_empty() { &PackageSet::ALL[..] } else { &sets },
                )?
            }
            ToolchainAction::Materialize => {
                let lock = reprovm::model::store::store_exclusive(&project.out)?;
                println!("{}", toolchain::ensure(project, &ctx.fetcher, &lock)?.root.display());
            }
            ToolchainAction::Show => println!("toolchain {}", toolchain::identity(project)?),
        }
        Ok(0)
    }
}
