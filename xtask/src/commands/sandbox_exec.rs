use reprovm::ops::context::RunContext;
use reprovm::steps::toolchain;

#[derive(clap::Args, Debug)]
pub struct SandboxExecArgs {
    #[arg(trailing_var_arg = true, required = true)]
    pub cmd: Vec<String>,
}

impl SandboxExecArgs {
    /// Run the command in the sandbox over the toolchain; its exit code is ours.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let tc = {
            let lock = reprovm::model::store::store_exclusive(&ctx.project.out)?;
            toolchain::ensure(&ctx.project, &ctx.fetcher, &lock)?
        };
        reprovm_sandbox::exec_capture(
            &tc.root,
            &self.cmd,
            reprovm::model::recipe::DEFAULT_SOURCE_DATE_EPOCH,
        )
    }
}
