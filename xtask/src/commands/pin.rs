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
    Outputs {
        /// The targets to pin (default: every published output).
        #[arg(value_name = "TARGET")]
        targets: Vec<String>,
    },
}

impl PinArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let PinWhat::Outputs { targets } = self.what;
        let r = reprovm::ops::pin::pin_outputs(ctx, &targets)?;
        let file = r.file.display();
        if r.changes.is_empty() && r.new_inputs.is_empty() {
            println!("{file}: unchanged");
        } else if r.changes.is_empty() {
            println!(
                "{file}: outputs unchanged (the same bytes); new input hashes for {}",
                r.new_inputs.join(" ")
            );
        } else {
            println!("{file}:");
            for c in &r.changes {
                println!("{c}");
            }
        }
        Ok(0)
    }
}
