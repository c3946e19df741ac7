use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct VagrantArgs {
    /// The directory vagrant works in, at /build in the sandbox (default: the current one);
    /// paths in ARGS are relative to it.
    #[arg(long, value_name = "DIR")]
    pub dir: Option<PathBuf>,
    /// Vagrant's home (its boxes), at /out in the sandbox (default: OUT/vagrant.d).
    #[arg(long, value_name = "DIR")]
    pub home: Option<PathBuf>,
    /// Vagrant's arguments, e.g. `box add --name reprovm reprovm.box`.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required = true)]
    pub argv: Vec<String>,
}

impl VagrantArgs {
    /// Run the pinned vagrant in the build sandbox over its root; its exit code is ours.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let ran = reprovm::ops::toolchain::vagrant(
            ctx,
            self.dir.as_deref(),
            self.home.as_deref(),
            &self.argv,
        )?;
        print!("{}", ran.output);
        Ok(ran.code)
    }
}
