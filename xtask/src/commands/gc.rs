use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct GcArgs {
    /// List what would be removed and how much space it takes, remove nothing.
    #[arg(long)]
    pub dry_run: bool,
    /// Also keep the closures of the last N `build` commands.
    #[arg(long, value_name = "N", default_value_t = 3)]
    pub keep_last: usize,
    /// Print what was removed as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl GcArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let r = reprovm::ops::gc::gc(&ctx.project, self.dry_run, self.keep_last)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&r)?);
            return Ok(0);
        }
        let human = reprovm_fs::progress::human_bytes;
        for x in &r.removed {
            let verb = if r.dry_run { "would remove" } else { "removed" };
            println!("{verb} {} {} ({})", x.kind, x.name, human(x.bytes));
        }
        println!(
            "{} {} store entries, {} cache files, {} toolchains, {} audit trees: {}",
            if r.dry_run { "would free" } else { "freed" },
            r.count("store entry"),
            r.count("cache file"),
            r.count("toolchain"),
            r.count("audit tree"),
            human(r.bytes())
        );
        Ok(0)
    }
}
