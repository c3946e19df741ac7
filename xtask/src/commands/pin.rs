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
    /// Resolve the Debian packages of recipes' `[rootfs] debian` with their dependency
    /// closure into pins/debian/NAME.lock (and NAME-aarch64.lock), every index authenticated.
    Debian {
        /// The recipes to lock (default: every recipe with `[rootfs] debian`).
        #[arg(value_name = "RECIPE")]
        names: Vec<String>,
        /// Verify the archive with this keyring instead of the pinned one.
        #[arg(long, value_name = "FILE")]
        keyring: Option<std::path::PathBuf>,
    },
}

impl PinArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let targets = match self.what {
            PinWhat::Outputs { targets } => targets,
            PinWhat::Debian { names, keyring } => {
                for l in reprovm::ops::pin::pin_debian(ctx, &names, keyring.as_deref())? {
                    println!(
                        "{}: {} {} packages for {}",
                        l.lock.display(),
                        if l.changed { "wrote" } else { "unchanged," },
                        l.packages,
                        l.architecture
                    );
                }
                return Ok(0);
            }
        };
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
