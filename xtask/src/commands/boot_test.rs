use super::run::BootArgs;
use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct BootTestArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Seconds to wait for the guest to boot and answer SSH.
    #[arg(long, default_value_t = 300)]
    pub timeout: u64,
}

impl BootTestArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::boot::boot_test(ctx, &self.boot.options(), self.timeout)?;
        Ok(0)
    }
}
