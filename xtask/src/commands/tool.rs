use reprovm::ops::context::RunContext;
use reprovm::steps::host_tools::HostTools;

#[derive(clap::Args, Debug)]
pub struct ToolArgs {
    /// List the programs of the pinned host tools.
    #[arg(long, conflicts_with = "argv")]
    pub list: bool,
    /// The program (qemu-system-x86_64, qemu-img, ssh, skopeo, umoci, unsquashfs, sgdisk, ...,
    /// and sqv and sq of pins/archive.lock) and its arguments.
    #[arg(trailing_var_arg = true, allow_hyphen_values = true, required_unless_present = "list")]
    pub argv: Vec<String>,
}

impl ToolArgs {
    /// Replace this process with the program (its exit status is ours), or list them.
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let tools = HostTools::get(&ctx.project, &ctx.fetcher)?;
        if self.list {
            for p in tools.programs()? {
                println!("{p}");
            }
            return Ok(0);
        }
        // The archive's verifier and sq (pins/archive.lock) are host tools of their own set.
        let tools = match tools.has(&self.argv[0]) {
            true => tools,
            false => match HostTools::archive(&ctx.project, &ctx.fetcher)? {
                archive if archive.has(&self.argv[0]) => archive,
                _ => tools,
            },
        };
        super::exec(tools.command_with_args(&self.argv[0], &self.argv[1..])?)
    }
}
