use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct ToolArgs {
    /// List the programs of the pinned host tools.
    #[arg(long, conflicts_with = "argv")]
    pub list: bool,
    /// The program (qemu-system-x86_64, qemu-img, ssh, skopeo, umoci, unsquashfs, sgdisk, ...,
    /// sqv and sq of pins/archive.lock, cosign of pins/cosign.lock) and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required_unless_present = "list")]
    pub argv: Vec<String>,
}

impl ToolArgs {
    /// Replace this process with the program (its exit status is ours), or list them.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        use reprovm::ops::toolchain::{host_tool, host_tool_programs};
        if self.list {
            for p in host_tool_programs(ctx)? {
                println!("{p}");
            }
            return Ok(0);
        }
        super::exec(host_tool(ctx, &self.argv[0], &self.argv[1..])?)
    }
}
