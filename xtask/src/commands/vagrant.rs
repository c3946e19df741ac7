use reprovm::ops::context::RunContext;
use reprovm::steps::toolchain::{self, PackageSet};
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
        let project = &ctx.project;
        let root = toolchain::find_or_ensure_set(project, &ctx.fetcher, PackageSet::Vagrant)?.root;
        let dir = match self.dir {
            Some(d) => d,
            None => std::env::current_dir()?,
        };
        let home = self.home.unwrap_or_else(|| project.out.join("vagrant.d"));
        std::fs::create_dir_all(&home)?;
        let env = [
            ("VAGRANT_HOME", "/out"),
            ("HOME", "/out"),
            // No network in the sandbox: no version checks, no plugin index.
            ("VAGRANT_CHECKPOINT_DISABLE", "1"),
            ("VAGRANT_DISABLE_VBOXSYMLINKCREATE", "1"),
        ]
        .map(|(k, v)| (k.to_string(), v.to_string()));
        let cmd: Vec<String> =
            std::iter::once("/usr/bin/vagrant".to_string()).chain(self.argv).collect();
        reprovm_sandbox::exec_in(
            &root,
            (&dir, &home),
            &env,
            &cmd,
            reprovm::model::recipe::DEFAULT_SOURCE_DATE_EPOCH,
        )
    }
}
