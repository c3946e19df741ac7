use super::values;
use reprovm::ops::context::RunContext;
use reprovm::ops::toolchain::PackageSet;

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
        /// The package sets to lock again (default: all of them).
        #[arg(value_name = "SET", value_parser = values::parser(&PackageSet::VALUES))]
        sets: Vec<PackageSet>,
        /// Verify the archive's InRelease files with this keyring instead of the pinned
        /// debian-archive-keyring (a private or test archive); the verifier is the pinned sqv.
        #[arg(long, value_name = "FILE")]
        keyring: Option<std::path::PathBuf>,
    },
    /// Fetch, verify and extract every locked .deb into the toolchain store entry.
    Materialize,
    /// Print the build toolchain's identity (the hash every input hash includes).
    Show,
}

impl ToolchainArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        match self.action.unwrap_or(ToolchainAction::Materialize) {
            ToolchainAction::Lock { sets, keyring } => {
                reprovm::ops::toolchain::lock(ctx, &sets, keyring.as_deref())?
            }
            ToolchainAction::Materialize => {
                println!("{}", reprovm::ops::toolchain::materialize(ctx)?.display())
            }
            ToolchainAction::Show => {
                println!("toolchain {}", reprovm::ops::toolchain::identity(ctx)?)
            }
        }
        Ok(0)
    }
}
