//! Benchmarks, returned as figures and ratios measured in one run (never timed tests):
//! `plan` on a cached graph, toolchain materialisation from a warm cache, the sandbox's
//! overhead against a bare host `make` of the same tree and configuration, and a build on a
//! fresh machine from a binary cache against the same build done locally.

use crate::mechanisms::fetch::Fetcher;
use crate::ops::build::{self, BuildOptions};
use crate::ops::context::{RunContext, SubstitutionSettings};
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

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

/// `bench plan`: `plan TARGET` on the current graph `runs` times; the median in-process.
pub fn plan_median(ctx: &RunContext, target: &str, runs: usize) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let mut times = Vec::new();
    let mut cached = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let graph = project.graph()?;
        let tc = toolchain::identity(project)?;
        let p = plan::plan(project, &graph, target, &tc, fetcher)?;
        times.push(t.elapsed());
        cached = p.nodes.iter().filter(|n| n.built).count();
    }
    let profile = if cfg!(debug_assertions) { "debug" } else { "release" };
    let plan_time = median(times);
    figures.push(format!(
            "plan {target}: median {:.1} ms over {runs} runs ({profile} build; {cached} of the nodes cached)",
            plan_time.as_secs_f64() * 1e3
        ));
    // What a build adds for the entries it finds in the store: the check at use of each
    // (`store::seal::check`), compared with the plan itself.
    let graph = project.graph()?;
    let tc = toolchain::identity(project)?;
    let p = plan::plan(project, &graph, target, &tc, fetcher)?;
    let mut entries = Vec::new();
    for n in p.nodes.iter().filter(|n| n.built) {
        let m = crate::model::store::lookup(project, &n.name, &n.version, &n.input_hash)?
            .context("a built node vanished")?;
        entries
            .push((crate::model::store::entry_dir(project, &n.name, &n.version, &n.input_hash), m));
    }
    let files: usize = entries.iter().map(|(_, m)| m.files.len()).sum();
    let _lock = crate::model::store::store_exclusive(&project.out)?;
    let mut times = Vec::new();
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        for (entry, m) in &entries {
            crate::model::store::seal::check(entry, m)?;
        }
        times.push(t.elapsed());
    }
    let check_time = median(times);
    figures.push(format!(
        "check at use of {target}'s {} stored entries ({files} paths): median {:.1} ms over {runs} runs, {:.2} of a plan",
        entries.len(),
        check_time.as_secs_f64() * 1e3,
        check_time.as_secs_f64() / plan_time.as_secs_f64().max(1e-9)
    ));
    Ok(figures)
}

/// `bench toolchain`: materialise the toolchain into a fresh directory from a warm cache, its
/// packages decompressed and written one after another on one thread (as before they were
/// decompressed ahead), then decompressed on one thread per core: both times, their ratio,
/// and the two roots' tree hashes, which must be equal.
pub fn toolchain_from_warm_cache(ctx: &RunContext) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    std::fs::create_dir_all(&project.out)?;
    {
        let lock = crate::model::store::store_exclusive(&project.out)?;
        toolchain::ensure(project, fetcher, &lock)?; // warm the cache first
    }
    let set = toolchain::PackageSet::for_arch(project.arch);
    let cores = util::default_jobs();
    let mut times = Vec::new();
    let mut trees = Vec::new();
    for workers in [0, cores] {
        let t = tempfile::tempdir_in(&project.out)?;
        let mut p = project.clone();
        p.out = t.path().to_path_buf();
        let lock = crate::model::store::store_exclusive(&p.out)?;
        let start = Instant::now();
        let made = toolchain::ensure_set_with(&p, fetcher, set, &lock, workers)?;
        times.push(start.elapsed().as_secs_f64());
        let dir = made.root.parent().context("a toolchain root without a parent")?;
        trees.push(toolchain::read_manifest(dir)?.tree_hash);
        drop(lock);
        crate::ops::gc::remove_path(t.path())?;
    }
    anyhow::ensure!(
        trees[0] == trees[1],
        "the toolchain's root differs with {cores} threads: {} against {}",
        trees[1],
        trees[0]
    );
    figures.push(format!(
        "toolchain materialisation from a warm cache: {:.1} s one package after another, {:.1} s decompressed on {cores} threads ahead of the writer: {:.2} of the time; the same tree {}",
        times[0],
        times[1],
        times[1] / times[0],
        &trees[0][..16]
    ));
    Ok(figures)
}

/// `bench hash TARGET`: read and hash every file of TARGET's store entry (what a build's
/// manifest, an audit and a substitution do to an output tree), `runs` times; the median
/// and the throughput.
pub fn hash_tree(ctx: &RunContext, target: &str, runs: usize) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let res = build::build(
        ctx,
        &ctx.graph()?,
        target,
        &BuildOptions { quiet: true, ..Default::default() },
    )?;
    let out = crate::model::store::out_dir(&res.entry);
    let mut times = Vec::new();
    let mut bytes = 0;
    for _ in 0..runs.max(1) {
        let t = Instant::now();
        let files = crate::model::manifest::scan(&out)?;
        std::hint::black_box(crate::model::manifest::output_hash(&files));
        times.push(t.elapsed());
        bytes = files.iter().filter_map(|f| f.size).sum::<u64>();
    }
    let m = median(times);
    figures.push(format!(
        "hash {target}: median {:.0} ms over {runs} runs for {} ({}/s)",
        m.as_secs_f64() * 1e3,
        progress::human_bytes(bytes),
        progress::human_bytes((bytes as f64 / m.as_secs_f64().max(1e-6)) as u64)
    ));
    Ok(figures)
}

/// `bench unpack TARGET`: fetch TARGET's sources (cached) and unpack them into a fresh
/// directory, as a build does (decompression, tar, extraction beneath a directory handle).
/// The directory is on tmpfs (/dev/shm) when there is one: the figure is the CPU's, not the
/// disk's (a virtual disk's throughput here varied fivefold between runs).
pub fn unpack_sources(ctx: &RunContext, target: &str) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let graph = ctx.graph()?;
    let l = graph.get(target)?;
    let shm = Path::new("/dev/shm");
    let work = if shm.is_dir() {
        tempfile::tempdir_in(shm)?
    } else {
        tempfile::tempdir_in(&ctx.project.out)?
    };
    let start = Instant::now();
    build::stage_inputs(&ctx.project, &ctx.fetcher, l, work.path())?;
    let bytes: u64 = l.recipe.sources.iter().map(|s| s.size).sum();
    figures.push(format!(
        "unpack {target}: {:.1} s for {} of sources",
        start.elapsed().as_secs_f64(),
        progress::human_bytes(bytes)
    ));
    Ok(figures)
}

/// `bench substitute`: a local build from scratch, a push, a substituted build on a fresh
/// machine: the ratio.
pub fn substitute(ctx: &RunContext, cache: &str, target: &str) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let project = &ctx.project;
    // The registry reference and the target, before anything is built.
    crate::steps::substitution::Cache::connect(cache)?;
    ctx.graph()?.require_targets(&[target.to_string()])?;
    std::fs::create_dir_all(&project.out)
        .with_context(|| format!("creating {}", project.out.display()))?;
    let work = tempfile::tempdir_in(&project.out)?;
    let opts = BuildOptions { quiet: true, ..Default::default() };
    let mut local_project = project.clone();
    local_project.out = work.path().join("local");
    let mut local = RunContext::plain(local_project);
    local.fetcher = Fetcher::new(&project.downloads, Vec::new(), false);
    progress::say(&format!(
        "bench: building {target} from scratch in {}",
        local.project.out.display()
    ));
    let start = Instant::now();
    build::build(&local, &local.graph()?, target, &opts)?;
    let built = start.elapsed();

    let key = work.path().join("bench.key");
    crate::ops::cache_push::keygen("reprovm-bench", &key)?;
    crate::ops::cache_push::push(&local, cache, &[target.to_string()], Some(&key))?;

    let mut fresh_project = project.clone();
    fresh_project.out = work.path().join("fresh");
    fresh_project.downloads = fresh_project.out.join("cache");
    let settings = SubstitutionSettings {
        repositories: vec![cache.to_string()],
        trusted_keys: vec![key.with_extension("pub")],
        only: true,
    };
    let fresh = RunContext::new(fresh_project, Vec::new(), false, settings)?;
    progress::say(&format!("bench: building {target} on a fresh out dir from {cache} only"));
    let start = Instant::now();
    build::build(&fresh, &fresh.graph()?, target, &opts)?;
    let substituted = start.elapsed();
    let materialised = fresh.project.out.join("toolchain").exists();
    // The stores made here are sealed read-only: removed beneath their handle, which grants
    // itself the permissions it needs (a TempDir's own removal would leave them).
    crate::ops::gc::remove_path(work.path())?;
    let (s, b) = (substituted.as_secs_f64(), built.as_secs_f64());
    figures.push(format!(
        "substitute {target}: from the cache {s:.1} s, built locally {b:.1} s, ratio {:.3} (toolchain materialised on the fresh machine: {})",
        s / b,
        if materialised { "yes" } else { "no" }
    ));
    Ok(figures)
}

/// CPU seconds of this process's waited-for children (the sandboxes and everything in them).
fn children_cpu() -> f64 {
    // SAFETY: getrusage fills the struct it is given.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    // getrusage cannot fail with a valid `who` and pointer.
    unsafe { libc::getrusage(libc::RUSAGE_CHILDREN, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// CPU seconds of this process itself (its threads: unpacking, hashing, materialising).
fn own_cpu() -> f64 {
    // SAFETY: as above.
    let mut u: libc::rusage = unsafe { std::mem::zeroed() };
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut u) };
    let secs = |t: libc::timeval| t.tv_sec as f64 + t.tv_usec as f64 / 1e6;
    secs(u.ru_utime) + secs(u.ru_stime)
}

/// `bench schedule TARGET --max-nodes N`: TARGET built cold (a fresh out dir: the toolchain
/// materialised, every node built; sources and .debs from the download cache, filled first),
/// `max_nodes` at once and then one node at a time, in one run: wall time, CPU time, and wall ÷
/// (CPU ÷ cores), which is 1 when every core was busy all along; the two outputs' hashes must
/// be equal.
pub fn schedule(ctx: &RunContext, target: &str, max_nodes: usize) -> Result<Vec<String>> {
    let project = &ctx.project;
    let graph = ctx.graph()?;
    graph.require_targets(&[target.to_string()])?;
    std::fs::create_dir_all(&project.out)
        .with_context(|| format!("creating {}", project.out.display()))?;
    progress::say(&format!("bench: fetching {target}'s sources and toolchain into the cache"));
    crate::ops::fetch::fetch_sources(ctx, &[target.to_string()])?;
    {
        let lock = crate::model::store::store_shared(&project.out)?;
        toolchain::ensure(project, &ctx.fetcher, &lock)?; // its .debs into the cache
    }
    let work = tempfile::tempdir_in(&project.out)?;
    let cores = util::default_jobs();
    let mut figures = Vec::new();
    let mut outputs = Vec::new();
    // At once first: what the page cache warms (the .debs, the sources) favours the second
    // run, so the comparison leans against the schedule being measured.
    for (label, nodes) in [("at once", max_nodes), ("one node at a time", 1)] {
        let mut p = project.clone();
        p.out = work.path().join(format!("nodes-{nodes}"));
        let mut cold = RunContext::plain(p);
        cold.fetcher = Fetcher::new(&project.downloads, Vec::new(), false);
        let opts = BuildOptions { quiet: true, max_nodes: nodes, ..Default::default() };
        progress::say(&format!(
            "bench: building {target} cold in {}, --max-nodes {nodes}",
            cold.project.out.display()
        ));
        let (cpu0, own0, start) = (children_cpu(), own_cpu(), Instant::now());
        let res = build::build(&cold, &cold.graph()?, target, &opts)?;
        let wall = start.elapsed().as_secs_f64();
        let cpu = children_cpu() - cpu0 + own_cpu() - own0;
        outputs.push(res.manifest.output_hash.clone());
        figures.push(format!(
            "{target} cold, {label} (--max-nodes {nodes}): wall {wall:.1} s, CPU {cpu:.1} s, wall ÷ (CPU ÷ {cores} cores) = {:.2}",
            wall / (cpu / cores as f64)
        ));
    }
    crate::ops::gc::remove_path(work.path())?;
    anyhow::ensure!(
        outputs[0] == outputs[1],
        "{target}: the schedule changed the output ({} against {})",
        outputs[0],
        outputs[1]
    );
    figures.push(format!("the same output both ways: {}", outputs[0]));
    Ok(figures)
}

/// Build TARGET in the sandbox, then run the same configure and build scripts on the same
/// tree with the host's tools (only a mount namespace to provide /build and /out), and report
/// the ratio of wall times. Both timings include unpacking the sources.
pub fn overhead(ctx: &RunContext, target: &str) -> Result<Vec<String>> {
    let mut figures = Vec::new();
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let graph = ctx.graph()?;
    let l = graph.get(target)?;
    let jobs = util::default_jobs();
    let into = tempfile::tempdir_in(&project.out)?;
    build::build(ctx, &graph, target, &BuildOptions { jobs, quiet: true, ..Default::default() })?;
    let start = Instant::now();
    let opts = BuildOptions {
        jobs,
        rebuild: vec![target.into()],
        rebuild_into: Some(into.path().to_path_buf()),
        quiet: true,
        ..Default::default()
    };
    build::build(ctx, &graph, target, &opts)?;
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
    figures.push(format!("overhead {target} -j{jobs}: sandboxed {s:.1} s, bare host make {h:.1} s, ratio {:.3} ({:+.1}%)", s / h, (s / h - 1.0) * 100.0));
    Ok(figures)
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
