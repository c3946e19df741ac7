use reprovm::ops::build::{build_target, BuildOptions};
use reprovm::ops::context::RunContext;
use std::num::NonZeroUsize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    pub target: String,
    /// Parallel jobs inside the sandbox (outputs do not depend on it; default: CPU count).
    #[arg(long, short)]
    pub jobs: Option<NonZeroUsize>,
    /// Audit internals: rebuild NODE even if stored, into --rebuild-into (never the store).
    #[arg(long, hide = true, requires = "rebuild_into")]
    pub rebuild: Vec<String>,
    #[arg(long, hide = true)]
    pub rebuild_into: Option<PathBuf>,
    /// Host directory for work trees (default OUT/work).
    #[arg(long, hide = true)]
    pub work_root: Option<PathBuf>,
    /// Audit internals: re-create every unpacked directory's entries in reverse order.
    #[arg(long, hide = true)]
    pub shuffle_dirents: bool,
}

impl BuildArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let defaults = BuildOptions::default();
        let opts = BuildOptions {
            jobs: self.jobs.map_or(defaults.jobs, NonZeroUsize::get),
            rebuild: self.rebuild,
            rebuild_into: self.rebuild_into,
            work_root: self.work_root,
            shuffle_dirents: self.shuffle_dirents,
            ..defaults
        };
        let res = build_target(ctx, &self.target, &opts)?;
        println!("{}", res.entry.display());
        Ok(0)
    }
}
