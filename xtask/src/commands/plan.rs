use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct PlanArgs {
    /// The targets whose graph to show (their closures' union, each node once); with
    /// --matrix, the recipes whose matrix to show (default: every recipe with [versions] or
    /// [flavours]).
    #[arg(value_name = "TARGET", required_unless_present = "matrix")]
    pub targets: Vec<String>,
    /// The build matrix instead: one job per cell (version × architecture × flavour) with the
    /// targets it builds, what it needs, and whether its input hashes are pinned; the cells
    /// left out; the multi-architecture indexes. With `--json`, its `include` key is a CI
    /// matrix (GitHub Actions' shape).
    #[arg(long)]
    pub matrix: bool,
    /// Machine-readable output.
    #[arg(long)]
    pub json: bool,
}

impl PlanArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        if self.matrix {
            let m = reprovm::ops::matrix::matrix(ctx, &self.targets)?;
            if self.json {
                println!("{}", serde_json::to_string(&m)?);
            } else {
                print!("{}", reprovm::ops::matrix::render(&m));
            }
            return Ok(0);
        }
        let plan = reprovm::ops::plan::plan_targets(ctx, &self.targets)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&plan)?);
        } else {
            print!("{}", reprovm::ops::plan::render(&plan));
        }
        Ok(0)
    }
}
