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
        let plan = reprovm::ops::plan::plan_target(ctx, &self.target)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", reprovm::ops::plan::render(&plan));
        }
        Ok(0)
    }
}
