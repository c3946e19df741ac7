//! Command line: clap definitions and dispatch. Each command's work lives in its own module.

use crate::explain::{self, Tools};
use crate::fetch::{Fetcher, Want};
use crate::graph::Graph;
use crate::project::Project;
use crate::{audit, build, debian, image, plan, progress, qemu, toolchain};
use anyhow::{Context, Result};
use clap::{CommandFactory, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Parser, Debug)]
#[command(
    name = "cargo xtask",
    bin_name = "cargo xtask",
    about = "reprovm: bit-for-bit reproducible Linux kernels and disk images from hash-pinned recipes",
    long_about = "reprovm builds a Linux kernel (bzImage + modules) and a bootable ext4 hd.img holding busybox, dropbear and iproute2, \
from recipes in recipes/*.toml whose every input is pinned by sha256. Builds run in a hermetic namespace sandbox over a pinned Debian toolchain.\n\n\
First steps:\n  cargo xtask fetch              download and verify every pinned source\n  cargo xtask plan hd-image      show the build graph and input hashes\n  cargo xtask build hd-image     build out/hd.img and out/bzImage\n  cargo xtask run                boot it in QEMU",
    version
)]
pub struct Cli {
    /// Recipe directory (default: recipes/ in the repository).
    #[arg(long, global = true, env = "REPROVM_RECIPES", value_name = "DIR")]
    pub recipes: Option<PathBuf>,
    /// Output directory holding store, cache, logs and links (default: out/).
    #[arg(long, global = true, env = "REPROVM_OUT", value_name = "DIR")]
    pub out: Option<PathBuf>,
    /// Download cache (default: OUT/cache); blobs are stored by sha256.
    #[arg(long, global = true, env = "REPROVM_CACHE", value_name = "DIR")]
    pub cache: Option<PathBuf>,
    /// Local mirror directory tried before the network (files by name or sha256/<hash>); repeatable.
    #[arg(long, global = true, value_name = "DIR")]
    pub mirror: Vec<PathBuf>,
    /// Use only the cache and --mirror directories; never touch the network.
    #[arg(long, global = true)]
    pub offline: bool,
    /// Substitute a dependency: `--use kernel=kernel-krata` builds every `kernel` dependency
    /// (the image's modules and bzImage) from recipes/kernel-krata.toml. Repeatable.
    #[arg(long = "use", global = true, value_name = "DEP=RECIPE")]
    pub uses: Vec<String>,
    /// Development only: build over a root made of host programs instead of the pinned
    /// toolchain. Outputs are marked HOST TOOLCHAIN and are not reproducible across hosts.
    #[arg(long, global = true)]
    pub host_toolchain: bool,
    #[command(subcommand)]
    pub command: Command,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Download and verify every pinned source (or those of TARGET and its dependencies).
    Fetch {
        target: Option<String>,
        /// Print every source with its pin and origins as JSON instead of fetching.
        #[arg(long)]
        list: bool,
    },
    /// Print the build graph of TARGET with input hashes and cached/not-cached state.
    Plan {
        target: String,
        /// Machine-readable output.
        #[arg(long)]
        json: bool,
    },
    /// Build TARGET and its dependencies in the sandbox (kernel, busybox, dropbear, iproute2, hd-image, ...).
    Build {
        target: String,
        /// Parallel jobs inside the sandbox (outputs do not depend on it; default: CPU count).
        #[arg(long, short)]
        jobs: Option<usize>,
        /// Audit internals: rebuild NODE even if stored, into --rebuild-into (never the store).
        #[arg(long, hide = true)]
        rebuild: Vec<String>,
        #[arg(long, hide = true)]
        rebuild_into: Option<PathBuf>,
        /// Host directory for work trees (default OUT/work).
        #[arg(long, hide = true)]
        work_root: Option<PathBuf>,
        /// Audit internals: re-create every unpacked directory's entries in reverse order.
        #[arg(long, hide = true)]
        shuffle_dirents: bool,
    },
    /// The pinned Debian toolchain: `lock` resolves it, `materialize` (default) builds its root.
    Toolchain {
        #[command(subcommand)]
        action: Option<ToolchainAction>,
    },
    /// Run menuconfig for a kernel recipe in the sandbox and write the result back to its config.
    Menuconfig {
        #[arg(default_value = "kernel")]
        recipe: String,
    },
    /// Boot out/bzImage with out/hd.img under QEMU (serial console here, SSH on 127.0.0.1:PORT).
    Run(qemu::RunArgs),
    /// Boot the image, log in over SSH with a fresh key, check uname/ip/modules/modprobe, power off.
    BootTest(qemu::BootTestArgs),
    /// Rebuild targets from scratch under varied conditions and explain any difference.
    Audit(audit::AuditArgs),
    /// Compare two output trees (or two files) and explain every difference: ELF sections,
    /// bzImage payload, ext4 superblock and files, text diffs. Exit code 1 if they differ.
    Diff {
        a: PathBuf,
        b: PathBuf,
        /// Print the differences as JSON.
        #[arg(long)]
        json: bool,
        /// Read ext4 images with debugfs/dumpe2fs from PATH instead of the pinned toolchain's
        /// (for use inside another sandbox, such as a Nix check).
        #[arg(long)]
        host_tools: bool,
    },
    /// Nix and other builders: run the xtask's own steps of a [kconfig]/[rootfs]/[image] recipe.
    #[command(hide = true)]
    Assemble(crate::assemble::AssembleArgs),
    /// Record expected output hashes in pins/.
    Pin {
        #[command(subcommand)]
        what: PinWhat,
    },
    /// Run a command in the build sandbox over the pinned toolchain (empty /build and /out).
    SandboxExec {
        #[arg(trailing_var_arg = true, required = true)]
        cmd: Vec<String>,
    },
    /// Measure: `plan` on a cached graph, warm toolchain materialisation, sandbox overhead.
    Bench(crate::bench::BenchArgs),
    /// Print shell completions.
    Completions { shell: clap_complete::Shell },
}

#[derive(Subcommand, Debug)]
pub enum ToolchainAction {
    /// Resolve toolchain/packages.toml against the Debian mirror into pins/toolchain.lock.
    Lock,
    /// Fetch, verify and extract every locked .deb into the toolchain store entry.
    Materialize,
    /// Print the toolchain identity and root.
    Show,
}

#[derive(Subcommand, Debug)]
pub enum PinWhat {
    /// Record the current outputs of TARGETS (default: kernel busybox dropbear iproute2 rootfs hd-image) in pins/outputs.toml.
    Outputs { targets: Vec<String> },
}

pub fn run() -> Result<()> {
    let cli = Cli::parse();
    let mut project = Project::new(cli.recipes.clone(), cli.out.clone(), cli.cache.clone());
    project.host_toolchain = cli.host_toolchain;
    project.uses = cli.uses.clone();
    let fetcher = Fetcher::new(&project.cache, cli.mirror.clone(), cli.offline);
    match cli.command {
        Command::Fetch { target, list: true } => {
            let graph = project.graph()?;
            let mut out = Vec::new();
            for (name, l) in &graph.recipes {
                if target
                    .as_deref()
                    .is_some_and(|t| !graph.closure(t).map(|c| c.contains(name)).unwrap_or(false))
                {
                    continue;
                }
                for w in wants_for(&l.recipe)? {
                    out.push(serde_json::json!({ "recipe": name, "file": w.file, "sha256": w.sha256, "size": w.size, "urls": w.urls }));
                }
            }
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
        Command::Fetch { target, list: false } => fetch(&project, &fetcher, target.as_deref()),
        Command::Plan { target, json } => {
            let graph = project.graph()?;
            let tc = toolchain::identity(&project)?;
            let nodes = plan::plan(&project, &graph, &target, &tc, &fetcher)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&nodes)?);
            } else {
                print!("{}", plan::render(&nodes, &tc));
            }
            Ok(())
        }
        Command::Build { target, jobs, rebuild, rebuild_into, work_root, shuffle_dirents } => {
            let graph = project.graph()?;
            anyhow::ensure!(
                rebuild.is_empty() || rebuild_into.is_some(),
                "--rebuild needs --rebuild-into"
            );
            let audit_mode = !rebuild.is_empty();
            let opts = build::Options {
                jobs: jobs.unwrap_or_else(default_jobs),
                rebuild,
                rebuild_into,
                work_root,
                shuffle_dirents,
                quiet: false,
            };
            let res = build::build(&project, &graph, &fetcher, &target, &opts)?;
            if !audit_mode {
                image::link_results(&project, &graph, &target, &res)?;
            }
            println!("{}", res.entry.display());
            Ok(())
        }
        Command::Toolchain { action } => match action.unwrap_or(ToolchainAction::Materialize) {
            ToolchainAction::Lock => toolchain::lock(&project, &fetcher),
            ToolchainAction::Materialize => {
                let tc = toolchain::ensure(&project, &fetcher)?;
                println!("{}", tc.root.display());
                Ok(())
            }
            ToolchainAction::Show => {
                println!("toolchain {}", toolchain::identity(&project)?);
                Ok(())
            }
        },
        Command::Menuconfig { recipe } => build::menuconfig(&project, &fetcher, &recipe),
        Command::Run(args) => qemu::run(&project, &args),
        Command::BootTest(args) => qemu::boot_test(&project, &args),
        Command::Audit(args) => audit::run(&project, &fetcher, &args),
        Command::Pin { what: PinWhat::Outputs { targets } } => {
            audit::pin_outputs(&project, &fetcher, &targets)
        }
        Command::SandboxExec { cmd } => {
            let tc = toolchain::ensure(&project, &fetcher)?;
            let code = crate::sandbox::exec_capture(&tc.root, &cmd)?;
            std::process::exit(code);
        }
        Command::Diff { a, b, json, host_tools } => {
            let tc;
            let tools = if host_tools {
                Tools::Path
            } else {
                tc = toolchain::ensure(&project, &fetcher)?;
                Tools::Sandbox(&tc.root)
            };
            let diffs = explain::diff_paths(&a, &b, &tools)?;
            if json {
                println!("{}", serde_json::to_string_pretty(&diffs)?);
            } else if diffs.is_empty() {
                println!("{} and {} are identical", a.display(), b.display());
            } else {
                print!("{} and {} differ:\n{}", a.display(), b.display(), explain::render(&diffs));
            }
            std::process::exit(if diffs.is_empty() { 0 } else { 1 });
        }
        Command::Assemble(args) => crate::assemble::run(&project, &args),
        Command::Bench(args) => crate::bench::run(&project, &fetcher, &args),
        Command::Completions { shell } => {
            clap_complete::generate(
                shell,
                &mut Cli::command(),
                "cargo-xtask",
                &mut std::io::stdout(),
            );
            Ok(())
        }
    }
}

pub fn default_jobs() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Every source pin of the graph (or of a target's closure) as fetch requests.
pub fn wants(graph: &Graph, target: Option<&str>) -> Result<Vec<Want>> {
    let names = match target {
        Some(t) => graph.closure(t)?,
        None => graph.recipes.keys().cloned().collect(),
    };
    let mut out: Vec<Want> = Vec::new();
    for n in names {
        for w in wants_for(&graph.get(&n)?.recipe)? {
            // Several recipes may pin the same bytes (kernel recipes sharing a tarball).
            if !out.iter().any(|o| o.sha256 == w.sha256) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// Fetch requests for one recipe's sources: upstream URLs first, then the Debian archive.
pub fn wants_for(recipe: &crate::recipe::Recipe) -> Result<Vec<Want>> {
    let mirrors = debian::mirrors();
    let mut out = Vec::new();
    for s in &recipe.sources {
        let mut urls = s.urls.clone();
        let mut aliases = Vec::new();
        if let Some(d) = &s.debian {
            urls.extend(debian::source_urls(&mirrors, &d.package, &d.file));
            aliases.push(d.file.clone());
        }
        out.push(Want {
            file: s.file.clone(),
            sha256: s.sha256.clone(),
            size: s.size,
            urls,
            aliases,
        });
    }
    Ok(out)
}

fn fetch(project: &Project, fetcher: &Fetcher, target: Option<&str>) -> Result<()> {
    let graph = project.graph()?;
    let wants = wants(&graph, target)?;
    let timer = progress::Timer::start();
    let mut hits = 0;
    for w in &wants {
        let hit = fetcher.is_cached(&w.sha256, w.size);
        let p = fetcher.fetch(w).with_context(|| format!("fetching {}", w.file))?;
        if hit {
            hits += 1;
        }
        println!("{}  {}  {}", w.sha256, w.file, if hit { "cached" } else { "fetched" });
        let _ = p;
    }
    progress::say(&format!(
        "{} sources verified ({hits} from cache) in {}",
        wants.len(),
        timer.elapsed()
    ));
    Ok(())
}
