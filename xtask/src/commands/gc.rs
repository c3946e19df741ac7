use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// List what would be removed and how much space it takes, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also keep the closures of the last N `build` commands.
    #[arg(long, default_value_t = 3)]
    pub keep_last: usize,
}

impl GcArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::gc::gc(&ctx.project, self.dry_run, self.keep_last)?;
        Ok(0)
    }
}
