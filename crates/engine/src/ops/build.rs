//! Building nodes: prepare the work tree (sources, files, dependencies), run the recipe's
//! phases in the sandbox with the shared steps between them (`steps.rs`), check declared
//! outputs, normalise, write the manifest and move the result into the store atomically.
//! Every failure removes the temp entry and the work tree; a build killed outright leaves them
//! for the next run's sweep (`lock.rs`).

use crate::mechanisms::fetch::Fetcher;
use crate::model::graph::Graph;
use crate::model::manifest::{self, Manifest};
use crate::model::project::Project;
use crate::model::recipe::Loaded;
use crate::model::store::{self, InputHashes, StoreLock};
use crate::ops::context::RunContext;
use crate::ops::schedule;
use crate::steps::results;
use crate::steps::runner::{ScriptRunner, StepPaths};
use crate::steps::sandbox_runner::SandboxRunner;
use crate::steps::sequence;
use crate::steps::sources;
use crate::steps::toolchain::{self, Toolchain};
use anyhow::{bail, Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::progress;
use reprovm_fs::util;
use reprovm_sandbox::{self as sandbox, Bind};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// How to build. The default is valid: the CPU count's jobs, substitution from the run's
/// binary caches, progress shown, the store as the only destination.
#[derive(Debug, Clone)]
pub struct BuildOptions {
    /// Parallel jobs inside the sandbox (`JOBS`; outputs do not depend on it).
    pub jobs: usize,
    /// Take nodes from the run's substituters before building them (an audit does not).
    pub substitute: bool,
    /// Rebuild these nodes even if the store has them, writing to `rebuild_into` instead.
    pub rebuild: Vec<String>,
    /// Where rebuilt nodes go (never the store). Required when `rebuild` is not empty.
    pub rebuild_into: Option<PathBuf>,
    /// Host directory for work trees (default out/work); audits vary it.
    pub work_root: Option<PathBuf>,
    /// Re-create unpacked directories' entries in reverse order (audit variation).
    pub shuffle_dirents: bool,
    pub quiet: bool,
    /// How many nodes may be substituted or built at once (`--max-nodes`): nodes whose
    /// dependencies are in the store start as soon as a slot is free. 1 builds them one after
    /// another, in the closure's order.
    pub max_nodes: usize,
}

impl Default for BuildOptions {
    fn default() -> BuildOptions {
        BuildOptions {
            jobs: util::default_jobs(),
            substitute: true,
            rebuild: Vec::new(),
            rebuild_into: None,
            work_root: None,
            shuffle_dirents: false,
            quiet: false,
            max_nodes: 1,
        }
    }
}

/// `build TARGET`: build it (and its closure), copy its results to `out/` and link its OCI
/// layout unless this is an audit's rebuild.
/// `build TARGET...`: every target named, checked to exist before any is built, in order.
pub fn build_targets(
    ctx: &RunContext,
    targets: &[String],
    opts: &BuildOptions,
) -> Result<Vec<BuildResult>> {
    ctx.graph()?.require_targets(targets)?;
    targets.iter().map(|t| build_target(ctx, t, opts)).collect()
}

pub fn build_target(ctx: &RunContext, target: &str, opts: &BuildOptions) -> Result<BuildResult> {
    let graph = ctx.graph()?;
    let res = build(ctx, &graph, target, opts)?;
    if opts.rebuild.is_empty() {
        // The published targets' results are `out/hd.img`, `out/bzImage`, ...; any other
        // recipe's (`hd-image-net`, a user's own image) go to `out/targets/NAME/`, so that
        // building it never replaces what `run` and `boot-test` boot by default.
        let (recipe, _) = crate::model::recipe::Cell::of(graph.resolve(target));
        let results_dir = if crate::model::pins::DEFAULT_TARGETS.contains(&recipe) {
            ctx.project.results_dir()
        } else {
            ctx.project.results_dir().join("targets").join(recipe)
        };
        // One process at a time writes out/'s results (builds run at once).
        let _results = reprovm_fs::lock::Lock::exclusive(
            &ctx.project.results_dir().join(results::RESULTS_LOCK),
        )?;
        results::link(&results_dir, &res.entry, &res.manifest)?;
        results::link_layout(&ctx.project.results_dir(), target, &res.entry)?;
    }
    Ok(res)
}

pub(crate) use crate::model::store::BuiltNode;

#[derive(Debug, Clone)]
pub struct BuildResult {
    pub entry: PathBuf,
    pub manifest: Manifest,
    /// Every node of the target's closure (the target last), as built or found.
    pub closure: Vec<BuiltNode>,
}

/// Build `target`'s closure: per node, the store, then the substituters, then a local build.
pub(crate) fn build(
    ctx: &RunContext,
    graph: &Graph,
    target: &str,
    opts: &BuildOptions,
) -> Result<BuildResult> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    anyhow::ensure!(opts.jobs > 0, "-j 0: the job count must be at least 1");
    anyhow::ensure!(
        opts.rebuild.is_empty() || opts.rebuild_into.is_some(),
        "--rebuild needs --rebuild-into"
    );
    let order = graph.closure(target)?;
    // The target first: its own reason is the one to read.
    for n in order.iter().rev() {
        let l = graph.get(n)?;
        if let Some(why) = &l.recipe.unavailable {
            let guide = if why.starts_with(crate::model::graph::EXCLUDED) {
                "docs/guide/build-farm.md"
            } else {
                "docs/guide/kernels-and-architectures.md"
            };
            bail!("{}: {n} is not built for {}: {why} ({guide})", l.path.display(), l.arch);
        }
    }
    anyhow::ensure!(opts.max_nodes > 0, "--max-nodes 0: at least one node at a time");
    let lock = crate::model::store::store_shared(&project.out)?;
    // The toolchain's root is made only when a node has to be built here: its identity (for
    // input hashes) comes from the lock.
    let mut tc: Option<Toolchain> = None;
    let tc_id = match toolchain::pinned_identity(project)? {
        Some(id) => id,
        None => tc.insert(toolchain::ensure(project, fetcher, &lock)?).id.clone(),
    };
    let subs = ctx.substituters().filter(|_| opts.substitute);
    let mut hashes = InputHashes::new(graph, project, &tc_id)?;
    let nodes: Vec<(String, String)> =
        order.iter().map(|n| Ok((n.clone(), hashes.get(n)?))).collect::<Result<_>>()?;
    let run = Run {
        ctx,
        graph,
        opts,
        lock: &lock,
        subs,
        tc_id: &tc_id,
        tc: std::sync::Mutex::new(tc),
        stop: std::sync::atomic::AtomicBool::new(false),
        jobserver: sandbox::Jobserver::new(opts.jobs)?,
    };
    let deps: BTreeMap<String, Vec<String>> = order
        .iter()
        .map(|n| {
            let l = graph.get(n)?;
            Ok((n.clone(), l.recipe.deps.iter().map(|d| graph.dep_node(n, d)).collect()))
        })
        .collect::<Result<_>>()?;
    // A node's weight is the size of its pinned sources: the kernel's tarball before the
    // small packages' (known before anything is built, the same on every machine).
    let weights: BTreeMap<&str, u64> = order
        .iter()
        .map(|n| Ok((n.as_str(), graph.get(n)?.recipe.sources.iter().map(|s| s.size).sum())))
        .collect::<Result<_>>()?;
    let slots = schedule::Slots {
        max_nodes: opts.max_nodes,
        stop: &run.stop,
        quiet: opts.quiet,
        priority: schedule::critical_path(&nodes, &deps, |n| weights[n]),
    };
    let mut done = schedule::schedule(&slots, &nodes, &deps, &|name, ih, given| {
        let entries = given.iter().map(|(n, d): (&String, &Done)| (n.clone(), d.entry.clone()));
        realise(&run, name, ih, &entries.collect())
    })?;
    let mut entries: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut closure: Vec<BuiltNode> = Vec::new();
    let (mut cached, mut substituted, mut built) = (0, 0, 0);
    let mut last = None;
    for name in &order {
        let d = done.remove(name).context("a node of the closure was not realised")?;
        match d.how {
            Realised::Cached => cached += 1,
            Realised::Substituted => substituted += 1,
            Realised::Built => built += 1,
        }
        entries.insert(name.clone(), d.entry.clone());
        closure.push(BuiltNode {
            name: name.clone(),
            entry: d.entry.clone(),
            manifest: d.manifest.clone(),
        });
        last = Some((d.entry, d.manifest));
    }
    let (entry, manifest) = last.context("empty build graph")?;
    // Recorded while the store lock is held, so that a gc waiting for it sees this closure.
    if opts.rebuild_into.is_none() {
        let entries = entries
            .values()
            .filter_map(|e| e.file_name().map(|n| n.to_string_lossy().into_owned()))
            .collect();
        crate::model::history::record(
            project,
            &crate::model::history::BuildRecord { target: target.to_string(), entries },
        )?;
    }
    if !opts.quiet && (substituted > 0 || subs.is_some()) {
        progress::say(&format!(
            "{target}: {substituted} substituted, {built} built, {cached} already in the store"
        ));
    }
    Ok(BuildResult { entry, manifest, closure })
}

/// What one build shares with each node it realises (and with the scheduler's threads).
pub(crate) struct Run<'a> {
    pub ctx: &'a RunContext,
    pub graph: &'a Graph,
    pub opts: &'a BuildOptions,
    pub lock: &'a StoreLock,
    pub subs: Option<&'a crate::steps::substitution::Substituters>,
    pub tc_id: &'a str,
    /// The toolchain's root, made by the first node that is built here.
    pub tc: std::sync::Mutex<Option<Toolchain>>,
    /// Set when a node failed: the nodes still running are stopped (`schedule`).
    pub stop: std::sync::atomic::AtomicBool,
    /// The `-j` tokens every node's makes share (decision 0077): one node at a time or
    /// several, each sees the same environment.
    pub jobserver: sandbox::Jobserver,
}

impl Run<'_> {
    /// Stop here when another node failed (`schedule`): no more work for this one.
    pub(crate) fn check_stop(&self) -> Result<()> {
        if self.stop.load(std::sync::atomic::Ordering::SeqCst) {
            return Err(sandbox::Stopped.into());
        }
        Ok(())
    }
}

/// How a node came to be in the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Realised {
    Cached,
    Substituted,
    Built,
}

/// A node realised: its entry (or audit rebuild), manifest, and how.
#[derive(Debug, Clone)]
pub(crate) struct Done {
    pub entry: PathBuf,
    pub manifest: Manifest,
    pub how: Realised,
}

/// Realise one node whose dependencies are `deps` (node name → entry): the store, then the
/// substituters, then a local build.
pub(crate) fn realise(
    run: &Run,
    name: &str,
    ih: &str,
    deps: &BTreeMap<String, PathBuf>,
) -> Result<Done> {
    let (project, fetcher, graph, opts) = (&run.ctx.project, &run.ctx.fetcher, run.graph, run.opts);
    let l = graph.get(name)?;
    run.check_stop()?;
    let rebuild = opts.rebuild.iter().any(|r| r == name)
        || opts.rebuild.iter().any(|r| graph.resolve(r) == name);
    // The entry's lock first: another process may be writing or sealing it right now (wait
    // for it, then find it). Held until this node is committed and sealed, or checked.
    // A wait for another process gives up when a node of this build failed.
    let _entry = match rebuild {
        false => Some(
            store::entry_lock(
                &store::entry_dir(project, name, &l.recipe.version, ih),
                run.lock,
                &|| run.stop.load(std::sync::atomic::Ordering::SeqCst),
            )?
            .ok_or(sandbox::Stopped)?,
        ),
        true => None,
    };
    run.check_stop()?;
    let stored = store::lookup(project, name, &l.recipe.version, ih)?;
    if let (Some(m), false) = (stored, rebuild) {
        let entry = store::entry_dir(project, name, &l.recipe.version, ih);
        // Used only as committed: the check at use (`store::seal`), cheap when nothing
        // touched the entry since its seal.
        let checked = store::seal::check(&entry, &m)
            .with_context(|| format!("{name} {} [{}]", l.recipe.version, &ih[..16]))?;
        if !opts.quiet {
            let note = match checked {
                store::seal::Checked::Sealed => String::new(),
                store::seal::Checked::Resealed { hashed } => {
                    format!(" ({hashed} files touched since its seal hashed: unchanged)")
                }
            };
            progress::say(&format!("cached {name} {} [{}]{note}", l.recipe.version, &ih[..16]));
        }
        return Ok(Done { entry, manifest: m, how: Realised::Cached });
    }
    let dest = match (&opts.rebuild_into, rebuild) {
        (Some(dir), true) => dir.join(format!("{}-{name}", &ih[..16])),
        _ => store::entry_dir(project, name, &l.recipe.version, ih),
    };
    // A rebuild is a build by definition; everything else may come from a cache.
    let from_cache = match (&run.subs, rebuild) {
        (Some(subs), false) => subs.substitute(l, ih, run.tc_id, &dest, run.lock)?,
        _ => None,
    };
    if let Some(m) = from_cache {
        return Ok(Done { entry: dest, manifest: m, how: Realised::Substituted });
    }
    if run.subs.is_some_and(|s| s.only) && !rebuild {
        bail!(
            "{name} [{}]: no substituter has a trusted entry and --substitute-only was given",
            &ih[..16]
        );
    }
    run.check_stop()?;
    // Asked for once the node's inputs are staged: one node making the toolchain's root does
    // not hold back another unpacking its sources (the kernel's takes 12 s on one core).
    let toolchain = || -> Result<Toolchain> {
        let mut tc = run.tc.lock().map_err(|_| anyhow::anyhow!("a node panicked"))?;
        // Another node may have failed (making the root, perhaps) while this one waited.
        run.check_stop()?;
        match &*tc {
            Some(tc) => Ok(tc.clone()),
            None => Ok(tc.insert(toolchain::ensure(project, fetcher, run.lock)?).clone()),
        }
    };
    let deps: BTreeMap<String, PathBuf> = l
        .recipe
        .deps
        .iter()
        .map(|d| {
            let node = graph.dep_node(name, d);
            let entry = deps.get(&node).with_context(|| format!("dependency {node} not built"))?;
            Ok((d.clone(), entry.clone()))
        })
        .collect::<Result<_>>()?;
    let m = build_node(project, fetcher, &toolchain, l, ih, &deps, opts, &dest, run)?;
    Ok(Done { entry: dest, manifest: m, how: Realised::Built })
}

/// Fixed environment plus the recipe's own.
pub(crate) fn env_for(l: &Loaded, jobs: usize) -> Vec<(String, String)> {
    let mut env = sandbox::base_env(l.recipe.source_date_epoch(), jobs);
    for (k, v) in &l.recipe.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    env
}

/// Put a recipe's inputs into the build directory `build`: sources unpacked to `src/` (or
/// copied to `sources/`), declared files to `files/`, an empty `src/` when nothing is unpacked
/// (scripts always start there). Shared by builds, menuconfig and the overhead benchmark.
pub(crate) fn stage_inputs(
    project: &Project,
    fetcher: &Fetcher,
    l: &Loaded,
    build: &Path,
) -> Result<()> {
    let bdir = Dir::create(build)?;
    bdir.create_dir_all(Path::new("src"))?;
    for (s, w) in l.recipe.sources.iter().zip(sources::wants_for(&l.recipe, project)) {
        let blob = fetcher.fetch(&w).with_context(|| format!("fetching {}", s.file))?;
        if s.unpack {
            let t = progress::Timer::start();
            archive::extract(&blob, &bdir.open_dir(Path::new("src"))?, s.strip_components)?;
            progress::say(&format!("  unpacked {} in {}", s.file, t.elapsed()));
        } else {
            let cache = Dir::open(blob.parent().context("cache blob without a directory")?)?;
            let name = blob.file_name().context("cache blob without a name")?;
            copy_file(&cache, Path::new(name), &bdir, &Path::new("sources").join(&s.file))?;
        }
    }
    // `[rootfs] debian`: the locked .debs in `debs/`, for the rootfs step.
    for w in sources::debs_for(l, project)? {
        let blob = fetcher.fetch(&w).with_context(|| format!("fetching {}", w.file))?;
        let cache = Dir::open(blob.parent().context("cache blob without a directory")?)?;
        let name = blob.file_name().context("cache blob without a name")?;
        copy_file(&cache, Path::new(name), &bdir, &Path::new("debs").join(&w.file))?;
    }
    let recipes = Dir::open(&project.recipes)?;
    for f in &l.recipe.files {
        copy_file(&recipes, Path::new(f), &bdir, &Path::new("files").join(f))
            .with_context(|| format!("{}: file `{f}`", l.path.display()))?;
    }
    Ok(())
}

/// Copy the regular file `from` beneath `src` to `to` beneath `dest` (mode 0644 or 0755).
pub(crate) fn copy_file(src: &Dir, from: &Path, dest: &Dir, to: &Path) -> Result<()> {
    let mut r = src.open_file(from)?;
    let exec = src.metadata(from)?.is_some_and(|m| m.mode & 0o111 != 0);
    let mut w = dest.create_file(to, if exec { 0o755 } else { 0o644 })?;
    std::io::copy(&mut r, &mut w)
        .with_context(|| format!("copying {}", src.path().join(from).display()))?;
    Ok(())
}

/// Prepare `work/build` for a node; returns the sandbox binds.
pub(crate) fn prepare(
    project: &Project,
    fetcher: &Fetcher,
    l: &Loaded,
    work: &Path,
    odir: &Path,
    deps: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Bind>> {
    let bdir = work.join("build");
    stage_inputs(project, fetcher, l, &bdir)?;
    let mut binds = vec![
        Bind { src: bdir.clone(), dest: sandbox::BUILD_DIR.into(), rw: true },
        Bind { src: odir.to_path_buf(), dest: "/out".into(), rw: true },
    ];
    let b = Dir::open(&bdir)?;
    for d in &l.recipe.deps {
        let entry = deps.get(d).with_context(|| format!("dependency {d} not built"))?;
        b.create_dir_all(&Path::new("deps").join(d))?;
        binds.push(Bind {
            src: store::out_dir(entry),
            dest: Path::new(sandbox::BUILD_DIR).join("deps").join(d),
            rw: false,
        });
    }
    Ok(binds)
}

/// A temp store entry and its work tree: removed on drop unless committed, so every error
/// path of a build leaves nothing behind.
struct Scratch {
    tmp_entry: PathBuf,
    work: PathBuf,
}

impl Drop for Scratch {
    fn drop(&mut self) {
        for p in [&self.work, &self.tmp_entry] {
            if let (Some(parent), Some(name)) = (p.parent(), p.file_name()) {
                if let Ok(d) = Dir::open(parent) {
                    let _ = d.remove_all(Path::new(name));
                }
            }
        }
    }
}

#[allow(clippy::too_many_arguments)]
fn build_node(
    project: &Project,
    fetcher: &Fetcher,
    toolchain: &dyn Fn() -> Result<Toolchain>,
    l: &Loaded,
    ih: &str,
    deps: &BTreeMap<String, PathBuf>,
    opts: &BuildOptions,
    dest: &Path,
    run: &Run,
) -> Result<Manifest> {
    let r = &l.recipe;
    let work_root = opts.work_root.clone().unwrap_or_else(|| project.work());
    // A rebuild for an audit keeps its logs beside its outputs, away from the store's.
    let logs = match &opts.rebuild_into {
        Some(d) if dest.starts_with(d) => d.join("logs"),
        _ => project.logs(),
    };
    let log = logs.join(format!("{}-{}.log", l.node(), &ih[..16]));
    Dir::create(&logs)?.remove_all(Path::new(log.file_name().context("log name")?))?;
    let timeout = r.timeout()?;
    progress::say(&format!(
        "build {} {} [{}] on toolchain {}; timeout {}; log: {}",
        l.node(),
        r.version,
        &ih[..16],
        toolchain::describe(run.tc_id),
        progress::human_duration(timeout),
        log.display()
    ));
    let timer = progress::Timer::start();
    // Outputs are written straight into a temp entry beside the final one (same file system),
    // so committing is one rename.
    let parent = dest.parent().context("store entry has no parent")?;
    let scratch = Scratch {
        tmp_entry: parent.join(format!(".tmp-{}-{}", l.node(), std::process::id())),
        work: work_root.join(format!("{}-{}-{}", &ih[..16], l.node(), std::process::id())),
    };
    let pdir = Dir::create(parent)?;
    pdir.remove_all(Path::new(scratch.tmp_entry.file_name().context("temp entry name")?))?;
    Dir::create(&work_root)?
        .remove_all(Path::new(scratch.work.file_name().context("work name")?))?;
    let odir = store::out_dir(&scratch.tmp_entry);
    Dir::create(&odir)?;
    // Nodes built at once each say when they start and end; one spinner line cannot show them.
    let spinner = progress::spinner_if(opts.max_nodes == 1, &format!("building {}", l.node()));
    // `-v`: the log's lines as they are written (stopped before the result is reported).
    let follower = progress::verbose().then(|| progress::follow(log.clone(), l.node()));
    let result = (|| -> Result<Manifest> {
        let binds = prepare(project, fetcher, l, &scratch.work, &odir, deps)?;
        let src = scratch.work.join("build/src");
        if opts.shuffle_dirents {
            shuffle_dirents(&Dir::open(&src)?)?;
        }
        run.check_stop()?;
        let tc = &toolchain()?;
        run.check_stop()?;
        let env = env_for(l, opts.jobs);
        let runner = SandboxRunner {
            tc,
            binds: &binds,
            env: &env,
            work: &scratch.work,
            log: &log,
            timeout,
            stop: Some(&run.stop),
            jobserver: Some(&run.jobserver),
        };
        if !r.build.configure.trim().is_empty() {
            runner.run_script("configure", &r.build.configure)?;
        }
        let dep_outs: BTreeMap<String, PathBuf> =
            deps.iter().map(|(n, e)| (n.clone(), store::out_dir(e))).collect();
        let paths = StepPaths {
            recipes: &project.recipes,
            build: &scratch.work.join("build"),
            deps: &dep_outs,
            out: &odir,
            lib_root: &tc.root,
        };
        sequence::run(l, &paths, r.source_date_epoch(), &runner)?;
        if !r.build.script.trim().is_empty() {
            runner.run_script("build", &r.build.script)?;
        }
        check_outputs(l, &odir)?;
        manifest::normalize(&odir, r.source_date_epoch())?;
        let files = manifest::scan(&odir)?;
        Ok(Manifest {
            name: l.node(),
            version: r.version.clone(),
            input_hash: ih.to_string(),
            toolchain: tc.id.clone(),
            output_hash: manifest::output_hash(&files),
            files,
        })
    })();
    spinner.finish_and_clear();
    drop(follower);
    let m = match result {
        Ok(m) => m,
        Err(e) if schedule::is_stopped(&e) => {
            progress::say(&format!("stopped {} after {}", l.node(), timer.elapsed()));
            return Err(e);
        }
        Err(e) => {
            let tail = util::tail_lines(&log, 25);
            if !tail.is_empty() {
                reprovm_fs::progress::say(&format!(
                    "---- last lines of {} ----\n{tail}\n----",
                    log.display()
                ));
            }
            return Err(e.context(format!(
                "build of {} {} failed after {}; log: {}",
                l.node(),
                r.version,
                timer.elapsed(),
                log.display()
            )));
        }
    };
    commit_entry(&scratch.tmp_entry, dest, &m)?;
    // A store entry is sealed read-only; an audit's rebuild (elsewhere) is not.
    if dest.starts_with(project.store()) {
        store::seal::seal(dest)?;
    }
    progress::say(&format!("built {} in {} -> {}", l.node(), timer.elapsed(), dest.display()));
    drop(scratch); // the work tree goes; the temp entry is now `dest`
    Ok(m)
}

/// Every declared output exists under `$OUT`, reached without passing through a symlink, and
/// is a regular file or a directory.
fn check_outputs(l: &Loaded, odir: &Path) -> Result<()> {
    let out = Dir::open(odir)?;
    for o in &l.recipe.build.outputs {
        match out.metadata(Path::new(o)).with_context(|| format!("declared output `{o}`"))? {
            None => bail!("declared output `{o}` was not produced under $OUT"),
            Some(m) if m.kind == Kind::File || m.kind == Kind::Dir => {}
            Some(m) => {
                bail!("declared output `{o}` is a {:?}, not a regular file or directory", m.kind)
            }
        }
    }
    Ok(())
}

/// Write the manifest into the temp entry, fsync, and rename it into place.
fn commit_entry(tmp: &Path, dest: &Path, m: &Manifest) -> Result<()> {
    let t = Dir::open(tmp)?;
    t.write_atomic(Path::new("manifest.json"), &serde_json::to_vec_pretty(m)?, 0o644)?;
    let parent = Dir::open(dest.parent().context("store entry has no parent")?)?;
    let name = Path::new(dest.file_name().context("store entry has no name")?);
    // An audit's rebuild directory may hold an older attempt; the store never does (lookup
    // found nothing), but a stale copy would be replaced here too.
    parent.remove_all(name)?;
    parent.rename(Path::new(tmp.file_name().context("temp entry name")?), name)?;
    std::fs::File::open(parent.path())?.sync_all()?;
    Ok(())
}

/// Re-create every directory's entries in reverse name order, so that readdir order differs
/// from the first build's (reprotest's disorderfs, without FUSE).
pub(crate) fn shuffle_dirents(root: &Dir) -> Result<()> {
    let mut dirs: Vec<PathBuf> = vec![PathBuf::new()];
    dirs.extend(root.walk()?.into_iter().filter(|e| e.kind == Kind::Dir).map(|e| e.path));
    dirs.sort_by(|a, b| b.cmp(a));
    for d in dirs {
        let dir = root.open_dir(&d)?;
        let hold = Path::new(".reprovm-shuffle");
        let names = dir.names()?;
        dir.create_dir_all(hold)?;
        for n in &names {
            dir.rename(Path::new(n), &hold.join(n))?;
        }
        for n in names.iter().rev() {
            dir.rename(&hold.join(n), Path::new(n))?;
        }
        dir.remove_all(hold)?;
    }
    Ok(())
}
