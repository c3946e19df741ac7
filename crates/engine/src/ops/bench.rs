//! Benchmarks, reported as figures and ratios measured in one run (never timed tests):
//! `plan` on a cached graph, toolchain materialisation from a warm cache, the sandbox's
//! overhead against a bare host `make` of the same tree and configuration, and a build on a
//! fresh machine from a binary cache against the same build done locally.

use crate::mechanisms::fetch::Fetcher;
use crate::model::project::Project;
use crate::ops::build::{self, Options};
use crate::ops::plan;
use crate::steps::toolchain;
use anyhow::{Context, Result};
use reprovm_fs::progress;
use reprovm_fs::util;
use reprovm_sandbox::BUILD_DIR;
use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::process::CommandExt;
use std::path::Path;
use std::process::Command;
use std::time::{Duration, Instant};

#[derive(clap::Args, Debug)]
pub struct BenchArgs {
    #[command(subcommand)]
    pub what: Bench,
}

#[derive(clap::Subcommand, Debug)]
pub enum Bench {
    /// `plan TARGET` on the current graph, repeated: median time in-process.
    Plan {
        #[arg(default_value = "hd-image")]
        target: String,
        #[arg(long, default_value_t = 20)]
        runs: usize,
    },
    /// Materialise the toolchain into a fresh directory from a warm cache.
    Toolchain,
    /// TARGET built in the sandbox, then with the host's tools on the same tree: the ratio.
    /// The bare half needs root (bind mounts) and the host's build tools.
    Overhead {
        #[arg(default_value = "busybox")]
        target: String,
    },
    /// TARGET built from scratch in a fresh out dir (toolchain materialisation included, the
    /// download cache shared), pushed to CACHE signed with a key made for the run, then built
    /// in another fresh out dir and download cache with CACHE as the only substituter: the
    /// ratio of the two wall times. REPO is a repository you own (`http://` for loopback).
    /// (`--registry`, not `--cache`: that is the global download-cache directory.)
    Substitute {
        #[arg(long, value_name = "REPO")]
        registry: String,
        #[arg(default_value = "hd-image")]
        target: String,
    },
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

impl BenchArgs {
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<()> {
        match &self.what {
            Bench::Plan { target, runs } => {
                let mut times = Vec::new();
                let mut cached = 0;
                for _ in 0..(*runs).max(1) {
                    let t = Instant::now();
                    let graph = project.graph()?;
                    let tc = toolchain::identity(project)?;
                    let p = plan::plan(project, &graph, target, &tc, fetcher)?;
                    times.push(t.elapsed());
                    cached = p.nodes.iter().filter(|n| n.built).count();
                }
                let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
                println!(
                    "plan {target}: median {:.1} ms over {runs} runs ({profile} build; {cached} of the nodes cached)",
                    median(times).as_secs_f64() * 1e3
                );
            }
            Bench::Toolchain => {
                let t = tempfile::tempdir_in(&project.out)?;
                let mut p = project.clone();
                p.out = t.path().to_path_buf();
                {
                    let _lock = crate::model::store::store_exclusive(&project.out)?;
                    toolchain::ensure(project, fetcher)?; // warm the cache first
                }
                let _lock = crate::model::store::store_exclusive(&p.out)?;
                let start = Instant::now();
                toolchain::ensure(&p, fetcher)?;
                println!(
                    "toolchain materialisation from a warm cache: {:.1} s",
                    start.elapsed().as_secs_f64()
                );
            }
            Bench::Overhead { target } => overhead(project, fetcher, target)?,
            Bench::Substitute { registry, target } => {
                substitute(project, fetcher, registry, target)?
            }
        }
        Ok(())
    }
}

/// Local build from scratch, push, substituted build on a fresh machine: the ratio.
fn substitute(project: &Project, fetcher: &Fetcher, cache: &str, target: &str) -> Result<()> {
    let work = tempfile::tempdir_in(&project.out)?;
    let opts = Options { jobs: util::default_jobs(), quiet: true, ..Default::default() };
    let mut local = project.clone();
    local.out = work.path().join("local");
    local.set_substituters(Vec::new(), Vec::new(), false);
    progress::say(&format!("bench: building {target} from scratch in {}", local.out.display()));
    let start = Instant::now();
    build::build(&local, &local.graph()?, fetcher, target, &opts)?;
    let built = start.elapsed();

    let key = work.path().join("bench.key");
    crate::steps::substitution::keys::generate("reprovm-bench", &key)?;
    let secret = crate::steps::substitution::keys::SecretKey::load(&key)?;
    crate::steps::substitution::push(&local, fetcher, cache, target, Some(&secret))?;

    let mut fresh = project.clone();
    fresh.out = work.path().join("fresh");
    fresh.cache = fresh.out.join("cache");
    fresh.set_substituters(vec![cache.to_string()], vec![key.with_extension("pub")], true);
    let mut fresh_fetcher = Fetcher::new(&fresh.cache, Vec::new(), false);
    for m in fresh.substitution()?.source_mirrors() {
        fresh_fetcher.add_blob_source(m);
    }
    progress::say(&format!("bench: building {target} on a fresh out dir from {cache} only"));
    let start = Instant::now();
    build::build(&fresh, &fresh.graph()?, &fresh_fetcher, target, &opts)?;
    let substituted = start.elapsed();
    let materialised = fresh.out.join("toolchain").exists();
    let (s, b) = (substituted.as_secs_f64(), built.as_secs_f64());
    println!(
        "substitute {target}: from the cache {s:.1} s, built locally {b:.1} s, ratio {:.3} (toolchain materialised on the fresh machine: {})",
        s / b,
        if materialised { "yes" } else { "no" }
    );
    Ok(())
}

/// Build TARGET in the sandbox, then run the same configure and build scripts on the same
/// tree with the host's tools (only a mount namespace to provide /build and /out), and report
/// the ratio of wall times. Both timings include unpacking the sources.
fn overhead(project: &Project, fetcher: &Fetcher, target: &str) -> Result<()> {
    let graph = project.graph()?;
    let l = graph.get(target)?;
    let jobs = util::default_jobs();
    let into = tempfile::tempdir_in(&project.out)?;
    build::build(
        project,
        &graph,
        fetcher,
        target,
        &Options { jobs, quiet: true, ..Default::default() },
    )?;
    let start = Instant::now();
    let opts = Options {
        jobs,
        rebuild: vec![target.into()],
        rebuild_into: Some(into.path().to_path_buf()),
        quiet: true,
        ..Default::default()
    };
    build::build(project, &graph, fetcher, target, &opts)?;
    let sandboxed = start.elapsed();

    // Bare: same sources, same scripts, host tools, no sandbox beyond a mount namespace.
    let work = tempfile::tempdir_in(&project.out)?;
    let (b, o) = (work.path().join("build"), work.path().join("out"));
    std::fs::create_dir_all(&o)?;
    progress::say("bench: bare host build (host tools) ...");
    let start = Instant::now();
    build::stage_inputs(project, fetcher, l, &b)?;
    let env = build::env_for(l, jobs);
    for (phase, script) in
        [("configure", &l.recipe.build.configure), ("build", &l.recipe.build.script)]
    {
        let file = work.path().join(format!("{phase}.sh"));
        std::fs::write(&file, script)?;
        let mut c = Command::new("sh");
        c.arg("-eu").arg(&file).env_clear().envs(env.iter().filter(|(k, _)| k != "PATH").cloned());
        c.env("PATH", std::env::var_os("PATH").unwrap_or_default());
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(work.path().join("bare.log"))?;
        c.stdout(log.try_clone()?).stderr(log);
        bind_build_dirs(&mut c, &b, &o)?;
        util::run_checked(&mut c).with_context(|| {
            format!(
                "the bare host build failed; see {} (it needs root and the host's build tools: make gcc bc bison flex libelf-dev libssl-dev)",
                work.path().join("bare.log").display()
            )
        })?;
    }
    let bare = start.elapsed();
    let (s, h) = (sandboxed.as_secs_f64(), bare.as_secs_f64());
    println!("overhead {target} -j{jobs}: sandboxed {s:.1} s, bare host make {h:.1} s, ratio {:.3} ({:+.1}%)", s / h, (s / h - 1.0) * 100.0);
    Ok(())
}

/// In the child: a private mount namespace with `build` at /build and `out` at /out, then
/// start in /build/src, as the sandbox does.
fn bind_build_dirs(c: &mut Command, build: &Path, out: &Path) -> Result<()> {
    let cstr = |p: &Path| CString::new(p.as_os_str().as_bytes()).context("path with a NUL byte");
    let (b, o) = (cstr(build)?, cstr(out)?);
    let (build_mp, out_mp) = (cstr(Path::new(BUILD_DIR))?, cstr(Path::new("/out"))?);
    let src = cstr(&Path::new(BUILD_DIR).join("src"))?;
    let root = cstr(Path::new("/"))?;
    // SAFETY: only async-signal-safe system calls between fork and exec; all strings were
    // allocated before.
    unsafe {
        c.pre_exec(move || {
            let check =
                |r: libc::c_int| if r == 0 { Ok(()) } else { Err(std::io::Error::last_os_error()) };
            check(libc::unshare(libc::CLONE_NEWNS))?;
            check(libc::mount(
                std::ptr::null(),
                root.as_ptr(),
                std::ptr::null(),
                libc::MS_REC | libc::MS_PRIVATE,
                std::ptr::null(),
            ))?;
            for (from, to) in [(&b, &build_mp), (&o, &out_mp)] {
                let _ = libc::mkdir(to.as_ptr(), 0o755);
                check(libc::mount(
                    from.as_ptr(),
                    to.as_ptr(),
                    std::ptr::null(),
                    libc::MS_BIND,
                    std::ptr::null(),
                ))?;
            }
            check(libc::chdir(src.as_ptr()))
        });
    }
    Ok(())
}
