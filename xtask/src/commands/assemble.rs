use reprovm::ops::assemble::AssembleOptions;
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AssembleArgs {
    /// The recipe with engine steps ([kconfig], [rootfs], [image], media, [oci]) to assemble.
    pub recipe: String,
    /// The recipe's build directory (holding files/ and deps/NAME): `$REPROVM_BUILD`, which
    /// both builders set.
    #[arg(long, env = "REPROVM_BUILD", default_value = reprovm_sandbox::BUILD_DIR)]
    pub build_dir: PathBuf,
    /// Root in which the shared libraries of installed programs are looked up (`/` in Nix:
    /// programs there find theirs through RUNPATH into /nix/store).
    #[arg(long, default_value = "/")]
    pub sysroot: PathBuf,
    /// Output directory (default: $OUT).
    #[arg(long, env = "OUT")]
    pub out: PathBuf,
}

impl AssembleArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let opts = AssembleOptions {
            recipe: self.recipe,
            build_dir: self.build_dir,
            sysroot: self.sysroot,
            out: self.out,
        };
        opts.run(&ctx.project)?;
        Ok(0)
    }
}
