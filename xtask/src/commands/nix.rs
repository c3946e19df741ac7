use reprovm::ops::context::RunContext;
use reprovm::steps::toolchain::{self, PackageSet};

#[derive(clap::Args, Debug)]
pub struct NixArgs {
    /// The Nix program (nix, nix-build, nix-instantiate, nix-store, ...) and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub argv: Vec<String>,
}

impl NixArgs {
    /// Replace this process with the pinned Nix program.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let project = &ctx.project;
        // Nix runs beside builds: the store lock is taken only to materialise it.
        let tools = toolchain::find_or_ensure_set(project, &ctx.fetcher, PackageSet::Nix)?;
        let mut c = toolchain::nix_command(&tools.root, &self.argv[0])?;
        c.args(&self.argv[1..]);
        super::exec(c)
    }
}
