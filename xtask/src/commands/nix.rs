use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct NixArgs {
    /// The Nix program (nix, nix-build, nix-instantiate, nix-store, ...) and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub argv: Vec<String>,
}

impl NixArgs {
    /// Replace this process with the pinned Nix program.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        super::exec(reprovm::ops::toolchain::nix(ctx, &self.argv[0], &self.argv[1..])?)
    }
}
