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
        let target = self.target.as_deref();
        if self.list {
            let listing = reprovm::ops::fetch::list_sources(ctx, target)?;
            println!("{}", serde_json::to_string_pretty(&listing)?);
            return Ok(0);
        }
        for f in reprovm::ops::fetch::fetch_sources(ctx, target)? {
            println!("{}  {}  {}", f.sha256, f.file, if f.cached { "cached" } else { "fetched" });
        }
        Ok(0)
    }
}
