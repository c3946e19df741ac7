use reprovm::ops::build::{build_targets, BuildOptions};
use reprovm::ops::context::RunContext;
use std::num::NonZeroUsize;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct BuildArgs {
    /// What to build: recipes by name (`cargo xtask targets` lists them), `NAME@KEY` at
    /// another version (`hd-image@6.18`); several are built in the order given.
    #[arg(value_name = "TARGET", required = true)]
    pub targets: Vec<String>,
    /// Print what was built as JSON on stdout: each target's store entry, input and output
    /// hash.
    #[arg(long)]
    pub json: bool,
    /// Parallel jobs (`$JOBS` in the sandbox; outputs do not depend on it; default: CPU
    /// count): the total over every node's makes, which share one GNU make jobserver of N
    /// tokens.
    #[arg(long, short, value_name = "N", value_parser = super::values::at_least_one)]
    pub jobs: Option<NonZeroUsize>,
    /// How many nodes may be substituted or built at once: a node starts as soon as its
    /// dependencies are in the store and a slot is free, the one with the most work after it
    /// first (outputs do not depend on it). Their makes share -j's jobs. Default: 1, one after
    /// another.
    #[arg(long, value_name = "N", value_parser = super::values::at_least_one)]
    pub max_nodes: Option<NonZeroUsize>,
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
            max_nodes: self.max_nodes.map_or(defaults.max_nodes, NonZeroUsize::get),
            ..defaults
        };
        let built = build_targets(ctx, &self.targets, &opts)?;
        if self.json {
            let list: Vec<serde_json::Value> = self
                .targets
                .iter()
                .zip(&built)
                .map(|(target, res)| {
                    serde_json::json!({
                        "target": target,
                        "entry": res.entry,
                        "version": res.manifest.version,
                        "input_hash": res.manifest.input_hash,
                        "output_hash": res.manifest.output_hash,
                    })
                })
                .collect();
            println!("{}", serde_json::to_string_pretty(&list)?);
        } else {
            for res in built {
                println!("{}", res.entry.display());
            }
        }
        Ok(0)
    }
}
