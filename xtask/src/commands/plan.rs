use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The targets whose graph to show (their closures' union, each node once).
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl PlanArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let plan = reprovm::ops::plan::plan_targets(ctx, &self.targets)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", reprovm::ops::plan::render(&plan));
        }
        Ok(0)
    }
}
