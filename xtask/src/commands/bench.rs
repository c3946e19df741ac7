use reprovm::ops::bench;
use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Bench,
}

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// `plan TARGET` on the current graph, repeated: median time in-process.
    Plan {
        /// The target whose graph is planned.
        #[arg(default_value = "hd-image")]
        target: String,
        #[arg(long, value_name = "N", default_value = "20", value_parser = super::values::at_least_one)]
        runs: std::num::NonZeroUsize,
    },
    /// Materialise the toolchain into a fresh directory from a warm cache.
    Toolchain,
    /// Fetch (from the cache) and unpack TARGET's sources into a fresh directory.
    Unpack {
        /// The target whose sources are unpacked.
        #[arg(default_value = "kernel")]
        target: String,
    },
    /// Read and hash every file of TARGET's output tree (built first if needed), repeated.
    Hash {
        /// The target whose output tree is hashed.
        #[arg(default_value = "kernel")]
        target: String,
        #[arg(long, value_name = "N", default_value = "5", value_parser = super::values::at_least_one)]
        runs: std::num::NonZeroUsize,
    },
    /// TARGET built cold (a fresh out dir, sources and .debs from the download cache)
    /// --max-nodes N at once, then one node at a time: wall, CPU and wall ÷ (CPU ÷ cores).
    Schedule {
        /// The target built both ways.
        #[arg(default_value = "hd-image")]
        target: String,
        /// How many nodes at once in the concurrent build.
        #[arg(long, value_name = "N", default_value = "2", value_parser = super::values::at_least_one)]
        max_nodes: std::num::NonZeroUsize,
    },
    /// TARGET built in the sandbox, then with the host's tools on the same tree: the ratio.
    /// The bare half needs root (bind mounts) and the host's build tools.
    Overhead {
        /// The target built both ways.
        #[arg(default_value = "busybox")]
        target: String,
    },
    /// TARGET built from scratch in a fresh out dir (toolchain materialisation included, the
    /// download cache shared), pushed to REPO signed with a key made for the run, then built
    /// in another fresh out dir and download cache with REPO as the only substituter: the
    /// ratio of the two wall times. REPO is a repository you own (`http://` for loopback).
    /// (`--registry`, not `--cache`: that is the global download-cache directory.)
    Substitute {
        #[arg(long, value_name = "REF")]
        registry: String,
        /// The target built, pushed and substituted.
        #[arg(default_value = "hd-image")]
        target: String,
    },
}

impl BenchArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let figures = match self.what {
            Bench::Plan { target, runs } => bench::plan_median(ctx, &target, runs.get())?,
            Bench::Toolchain => bench::toolchain_from_warm_cache(ctx)?,
            Bench::Hash { target, runs } => bench::hash_tree(ctx, &target, runs.get())?,
            Bench::Unpack { target } => bench::unpack_sources(ctx, &target)?,
            Bench::Overhead { target } => bench::overhead(ctx, &target)?,
            Bench::Schedule { target, max_nodes } => {
                bench::schedule(ctx, &target, max_nodes.get())?
            }
            Bench::Substitute { registry, target } => bench::substitute(ctx, &registry, &target)?,
        };
        for line in figures {
            println!("{line}");
        }
        Ok(0)
    }
}
