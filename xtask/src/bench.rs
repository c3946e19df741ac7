//! Benchmarks, reported as figures and ratios measured in one run (never timed tests):
//! `plan` on a cached graph, toolchain materialisation from a warm cache, and the sandbox's
//! overhead against a bare host `make` of the same tree and configuration.

use crate::build::{self, Options};
use crate::fetch::Fetcher;
use crate::project::Project;
use crate::{plan, progress, toolchain};
use anyhow::{Context, Result};
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    /// plan | toolchain | overhead
    #[arg(default_value = "plan")]
    pub what: String,
    /// Target for `plan` and `overhead`.
    #[arg(long, default_value = "hd-image")]
    pub target: String,
    /// Repetitions for `plan`.
    #[arg(long, default_value_t = 20)]
    pub runs: usize,
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

pub fn run(project: &Project, fetcher: &Fetcher, a: &BenchArgs) -> Result<()> {
    match a.what.as_str() {
        "plan" => {
            let mut times = Vec::new();
            let mut cached = 0;
            for _ in 0..a.runs {
                let t = Instant::now();
                let graph = project.graph()?;
                let tc = toolchain::identity(project)?;
                let nodes = plan::plan(project, &graph, &a.target, &tc, fetcher)?;
                times.push(t.elapsed());
                cached = nodes.iter().filter(|n| n.built).count();
            }
            let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
            println!(
                "plan {}: median {:.1} ms over {} runs ({profile} build; {cached} of the nodes cached)",
                a.target,
                median(times).as_secs_f64() * 1e3,
                a.runs
            );
        }
        "toolchain" => {
            let t = tempfile::tempdir_in(&project.out)?;
            let mut p = project.clone();
            p.out = t.path().to_path_buf();
            toolchain::ensure(project, fetcher)?; // warm the cache first
            let start = Instant::now();
            toolchain::ensure(&p, fetcher)?;
            println!(
                "toolchain materialisation from a warm cache: {:.1} s",
                start.elapsed().as_secs_f64()
            );
        }
        "overhead" => overhead(project, fetcher, &a.target)?,
        other => anyhow::bail!("unknown benchmark `{other}` (plan, toolchain, overhead)"),
    }
    Ok(())
}

/// Build TARGET in the sandbox, then run the same configure and build scripts on the same
/// tree with the host's tools (only a mount namespace to provide /build and /out), and
/// report the ratio of wall times.
fn overhead(project: &Project, fetcher: &Fetcher, target: &str) -> Result<()> {
    let graph = project.graph()?;
    let l = graph.get(target)?;
    let jobs = crate::cli::default_jobs();
    let into = tempfile::tempdir_in(&project.out)?;
    build::build(
        project,
        &graph,
        fetcher,
        target,
        &Options { jobs, quiet: true, ..Default::default() },
    )?;
    let start = Instant::now();
    build::build(
        project,
        &graph,
        fetcher,
        target,
        &Options {
            jobs,
            rebuild: vec![target.into()],
            rebuild_into: Some(into.path().to_path_buf()),
            quiet: true,
            ..Default::default()
        },
    )?;
    let sandboxed = start.elapsed();

    // Bare: same sources, same scripts, host tools, no sandbox beyond a mount namespace.
    let work = tempfile::tempdir_in(&project.out)?;
    let b = work.path().join("build");
    let o = work.path().join("out");
    std::fs::create_dir_all(&o)?;
    // Both timings include unpacking the sources, as the sandboxed build does.
    progress::say("bench: bare host build (host tools) ...");
    let start = Instant::now();
    build::stage_inputs(project, fetcher, l, &b)?;
    std::fs::write(work.path().join("configure.sh"), &l.recipe.build.configure)?;
    std::fs::write(work.path().join("build.sh"), &l.recipe.build.script)?;
    let (env, _) = build::env_for(l, jobs);
    let inner = format!(
        "mkdir -p /build /out && mount --bind {b} /build && mount --bind {o} /out && cd /build/src && sh -eu {w}/configure.sh && sh -eu {w}/build.sh",
        b = b.display(),
        o = o.display(),
        w = work.path().display()
    );
    let mut c = Command::new("unshare");
    c.args(["-m", "--propagation", "private", "sh", "-c", &inner]);
    for (k, v) in env.iter().filter(|(k, _)| k != "PATH") {
        c.env(k, v);
    }
    let log = work.path().join("bare.log");
    c.stdout(std::fs::File::create(&log)?)
        .stderr(std::fs::File::create(work.path().join("bare.err"))?);
    let st = c.status().context("running unshare (needs root for the bare build's bind mounts)")?;
    let bare = start.elapsed();
    anyhow::ensure!(
        st.success(),
        "the bare host build failed; see {} (host needs the build tools: make gcc bc bison flex libelf-dev libssl-dev)",
        work.path().join("bare.err").display()
    );
    let (s, h) = (sandboxed.as_secs_f64(), bare.as_secs_f64());
    println!("overhead {target} -j{jobs}: sandboxed {s:.1} s, bare host make {h:.1} s, ratio {:.3} ({:+.1}%)", s / h, (s / h - 1.0) * 100.0);
    Ok(())
}
