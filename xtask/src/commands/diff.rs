use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    pub a: PathBuf,
    pub b: PathBuf,
    /// Print the differences as JSON.
    #[arg(long)]
    pub json: bool,
    /// Read ext4 images with debugfs/dumpe2fs from PATH instead of the pinned toolchain's
    /// (for use inside another sandbox, such as a Nix check).
    #[arg(long)]
    pub host_tools: bool,
}

impl DiffArgs {
    /// Exit code 0 when identical, 1 when they differ.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::diff::diff(ctx, &self.a, &self.b, self.json, self.host_tools)
    }
}
