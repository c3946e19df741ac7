use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct PinArgs {
    #[command(subcommand)]
    pub what: PinWhat,
}

#[derive(clap::Subcommand, Debug)]
pub enum PinWhat {
    /// Record the current outputs of TARGETS (default: every published output) in
    /// pins/outputs.toml.
    Outputs { targets: Vec<String> },
}

impl PinArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        match self.what {
            PinWhat::Outputs { targets } => reprovm::ops::pin::pin_outputs(ctx, &targets)?,
        }
        Ok(0)
    }
}
