use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct TargetsArgs {
    /// Print the list as JSON on stdout (every output file of each target).
    #[arg(long)]
    pub json: bool,
}

impl TargetsArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let targets = reprovm::ops::targets::targets(ctx)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&targets)?);
        } else {
            print!("{}", reprovm::ops::targets::render(&targets));
        }
        Ok(0)
    }
}
