use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    pub target: String,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl PlanArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::plan::print_plan(ctx, &self.target, self.json)?;
        Ok(0)
    }
}
