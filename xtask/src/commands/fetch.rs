use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Only the sources of TARGET and its dependencies (default: every recipe's).
    pub target: Option<String>,
    /// Print every source with its pin and origins as JSON instead of fetching.
    #[arg(long)]
    pub list: bool,
}

impl FetchArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::fetch::fetch_sources(ctx, self.target.as_deref(), self.list)?;
        Ok(0)
    }
}
