use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct DiffArgs {
    /// One side: an output tree (a store entry's `out/`, a rebuild) or a file.
    #[arg(value_name = "A")]
    pub a: PathBuf,
    /// The other side, of the same kind.
    #[arg(value_name = "B")]
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
        let diffs = reprovm::ops::diff::diff(ctx, &self.a, &self.b, self.host_tools)?;
        let (a, b) = (self.a.display().to_string(), self.b.display().to_string());
        if self.json {
            println!("{}", serde_json::to_string_pretty(&diffs)?);
        } else if diffs.is_empty() {
            println!("{a} and {b} are identical");
        } else {
            let sides = reprovm::ops::diff::Sides { a: &a, b: &b };
            print!("{a} and {b} differ:\n{}", reprovm::ops::diff::render(&diffs, &sides));
        }
        Ok(if diffs.is_empty() { 0 } else { 1 })
    }
}
