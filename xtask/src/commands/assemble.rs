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
    /// The directory holding systemd's UEFI stubs (linuxx64.efi.stub, linuxaa64.efi.stub),
    /// when the builder has them elsewhere than the toolchain's /usr/lib/systemd/boot/efi
    /// (the flake over nixpkgs: the pinned systemd-boot-efi .deb, unpacked in the store).
    #[arg(long, value_name = "DIR")]
    pub efi_stubs: Option<PathBuf>,
}

impl AssembleArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let opts = AssembleOptions {
            recipe: self.recipe,
            build_dir: self.build_dir,
            sysroot: self.sysroot,
            out: self.out,
            // Scripts run in the build directory: a relative path means where we were.
            efi_stubs: self.efi_stubs.map(std::path::absolute).transpose()?,
        };
        opts.run(&ctx.project)?;
        Ok(0)
    }
}
