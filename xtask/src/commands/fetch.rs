use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Only the sources of these targets and their dependencies (default: every recipe's).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Print every source with its pin and origins as JSON instead of fetching.
    #[arg(long)]
    pub list: bool,
}

impl FetchArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        if self.list {
            let listing = reprovm::ops::fetch::list_sources(ctx, &self.targets)?;
            println!("{}", serde_json::to_string_pretty(&listing)?);
            return Ok(0);
        }
        for f in reprovm::ops::fetch::fetch_sources(ctx, &self.targets)? {
            println!("{}  {}  {}", f.sha256, f.file, if f.cached { "cached" } else { "fetched" });
        }
        Ok(0)
    }
}
