use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct MenuconfigArgs {
    /// The kernel recipe whose last `[kconfig] fragments` file records the changes.
    #[arg(value_name = "RECIPE", default_value = "kernel")]
    pub recipe: String,
}

impl MenuconfigArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::menuconfig::menuconfig(ctx, &self.recipe)?;
        Ok(0)
    }
}
