use super::run::BootArgs;
use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct BootTestArgs {
    #[command(flatten)]
    pub boot: BootArgs,
    /// Seconds to wait for the guest to boot and answer SSH.
    #[arg(long, value_name = "SECONDS", default_value = "300", value_parser = super::values::seconds)]
    pub timeout: u64,
    /// A command to run in the guest after the built-in checks, as root over SSH (repeatable):
    /// it must exit 0, and its output is in the report, e.g. `--check 'modprobe nbd && test -b /dev/nbd0'`.
    #[arg(long = "check", value_name = "COMMAND")]
    pub checks: Vec<String>,
    /// Print what the test saw (each command in the guest and its output) as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl BootTestArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let report =
            reprovm::ops::boot::boot_test(ctx, &self.boot.options(), self.timeout, &self.checks)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            println!(
                "boot-test: {} passed ({}, {}): userspace after {:.1}s, powered off after {:.1}s",
                report.target,
                report.architecture,
                report.accelerator,
                report.userspace_seconds,
                report.total_seconds
            );
        }
        Ok(0)
    }
}
