use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct SandboxExecArgs {
    /// The program and its arguments, run in the sandbox (after `--`).
    #[arg(value_name = "COMMAND", trailing_var_arg = true, required = true)]
    pub cmd: Vec<String>,
}

impl SandboxExecArgs {
    /// Run the command in the sandbox over the toolchain; its exit code is ours.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let ran = reprovm::ops::toolchain::sandbox_exec(ctx, &self.cmd)?;
        print!("{}", ran.output);
        Ok(ran.code)
    }
}
