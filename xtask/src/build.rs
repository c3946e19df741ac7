//! Building nodes: prepare the work tree (sources, files, dependencies), run the recipe's
//! phases in the sandbox, check declared outputs, normalise, write the manifest and move the
//! result into the store atomically. A failed build leaves no store entry.

use crate::fetch::Fetcher;
use crate::graph::Graph;
use crate::lock::StoreLock;
use crate::manifest::{self, Manifest};
use crate::project::Project;
use crate::recipe::Loaded;
use crate::sandbox::{self, Bind, Spec};
use crate::store::{self, InputHashes};
use crate::toolchain::{self, Toolchain};
use crate::{archive, cli, image, kconfig, progress};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::path::{Path, PathBuf};

/// SOURCE_DATE_EPOCH of every build unless a recipe sets its own in `env`
/// (2024-01-01T00:00:00Z; fixed, so that no build depends on when it ran).
pub const DEFAULT_SOURCE_DATE_EPOCH: i64 = 1_704_067_200;

#[derive(Debug, Clone, Default)]
pub struct Options {
    pub jobs: usize,
    /// Rebuild these nodes even if the store has them, writing to `rebuild_into` instead.
    pub rebuild: Vec<String>,
    /// Where rebuilt nodes go (never the store). Required when `rebuild` is not empty.
    pub rebuild_into: Option<PathBuf>,
    /// Host directory for work trees (default out/work); audits vary it.
    pub work_root: Option<PathBuf>,
    /// Re-create unpacked directories' entries in reverse order (audit variation).
    pub shuffle_dirents: bool,
    pub quiet: bool,
}

#[derive(Debug, Clone)]
pub struct BuildResult {
    pub entry: PathBuf,
    pub manifest: Manifest,
}

pub fn build(
    project: &Project,
    graph: &Graph,
    fetcher: &Fetcher,
    target: &str,
    opts: &Options,
) -> Result<BuildResult> {
    let order = graph.closure(target)?;
    let _lock = StoreLock::exclusive(&project.store())?;
    let tc = toolchain::ensure(project, fetcher)?;
    let mut hashes = InputHashes::new(graph, project, &tc.id);
    let mut entries: BTreeMap<String, PathBuf> = BTreeMap::new();
    let mut last = None;
    for name in &order {
        let l = graph.get(name)?;
        let ih = hashes.get(name)?;
        let rebuild = opts.rebuild.contains(name);
        let (entry, m) = match store::lookup(project, name, &l.recipe.version, &ih) {
            Some(m) if !rebuild => {
                if !opts.quiet {
                    progress::say(&format!("cached {name} {} [{}]", l.recipe.version, &ih[..16]));
                }
                (store::entry_dir(project, name, &l.recipe.version, &ih), m)
            }
            _ => {
                let dest = match (&opts.rebuild_into, rebuild) {
                    (Some(dir), true) => dir.join(format!("{}-{name}", &ih[..16])),
                    _ => store::entry_dir(project, name, &l.recipe.version, &ih),
                };
                let node_deps: BTreeMap<String, PathBuf> = l
                    .recipe
                    .deps
                    .iter()
                    .map(|d| (d.clone(), entries[graph.resolve(d)].clone()))
                    .collect();
                let m = build_node(project, fetcher, &tc, l, &ih, &node_deps, opts, &dest)?;
                (dest, m)
            }
        };
        entries.insert(name.clone(), entry.clone());
        last = Some((name.clone(), entry, m));
    }
    let (_, entry, manifest) = last.context("empty build graph")?;
    Ok(BuildResult { entry, manifest })
}

/// Fixed environment plus the recipe's own.
pub fn env_for(l: &Loaded, jobs: usize) -> (Vec<(String, String)>, i64) {
    let sde = l
        .recipe
        .env
        .get("SOURCE_DATE_EPOCH")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
    let mut env = sandbox::base_env(sde, jobs);
    for (k, v) in &l.recipe.env {
        env.retain(|(ek, _)| ek != k);
        env.push((k.clone(), v.clone()));
    }
    (env, sde)
}

/// Put a recipe's inputs into `bdir`: sources unpacked to `src/` (or copied to `sources/`),
/// declared files to `files/`. Shared by builds and the overhead benchmark.
pub fn stage_inputs(project: &Project, fetcher: &Fetcher, l: &Loaded, bdir: &Path) -> Result<()> {
    let wants = cli::wants_for(&l.recipe)?;
    for (s, w) in l.recipe.sources.iter().zip(wants) {
        let blob = fetcher.fetch(&w).with_context(|| format!("fetching {}", s.file))?;
        if s.unpack {
            let t = progress::Timer::start();
            archive::extract(&blob, &bdir.join("src"), s.strip_components)?;
            progress::say(&format!("  unpacked {} in {}", s.file, t.elapsed()));
        } else {
            fs::create_dir_all(bdir.join("sources"))?;
            fs::copy(&blob, bdir.join("sources").join(&s.file))?;
        }
    }
    for f in &l.recipe.files {
        let dest = bdir.join("files").join(f);
        fs::create_dir_all(dest.parent().unwrap_or(bdir))?;
        fs::copy(project.recipes.join(f), &dest).with_context(|| format!("copying recipes/{f}"))?;
    }
    Ok(())
}

/// Prepare `work/build` and `work/out` for a node; returns the sandbox binds.
fn prepare(
    project: &Project,
    fetcher: &Fetcher,
    l: &Loaded,
    work: &Path,
    odir: &Path,
    deps: &BTreeMap<String, PathBuf>,
) -> Result<Vec<Bind>> {
    if work.exists() {
        fs::remove_dir_all(work).with_context(|| format!("clearing {}", work.display()))?;
    }
    let bdir = work.join("build");
    fs::create_dir_all(&bdir)?;
    fs::create_dir_all(odir)?;
    stage_inputs(project, fetcher, l, &bdir)?;
    let mut binds = vec![
        Bind { src: bdir.clone(), dest: "/build".into(), rw: true },
        Bind { src: odir.to_path_buf(), dest: "/out".into(), rw: true },
    ];
    for d in &l.recipe.deps {
        let entry = deps.get(d).with_context(|| format!("dependency {d} not built"))?;
        let mp = bdir.join("deps").join(d);
        fs::create_dir_all(&mp)?;
        binds.push(Bind {
            src: store::out_dir(entry),
            dest: PathBuf::from("/build/deps").join(d),
            rw: false,
        });
    }
    Ok(binds)
}

#[allow(clippy::too_many_arguments)]
fn build_node(
    project: &Project,
    fetcher: &Fetcher,
    tc: &Toolchain,
    l: &Loaded,
    ih: &str,
    deps: &BTreeMap<String, PathBuf>,
    opts: &Options,
    dest: &Path,
) -> Result<Manifest> {
    let r = &l.recipe;
    let work_root = opts.work_root.clone().unwrap_or_else(|| project.work());
    let work = work_root.join(format!("{}-{}", &ih[..16], r.name));
    let logs = match &opts.rebuild_into {
        Some(d) if opts.rebuild.contains(&r.name) => d.join("logs"),
        _ => project.logs(),
    };
    fs::create_dir_all(&logs)?;
    let log = logs.join(format!("{}-{}.log", r.name, &ih[..16]));
    let _ = fs::remove_file(&log);
    progress::say(&format!(
        "build {} {} [{}] on toolchain {}; log: {}",
        r.name,
        r.version,
        &ih[..16],
        tc.label(),
        log.display()
    ));
    let timer = progress::Timer::start();
    // Outputs are written straight into a temp entry beside the final one (same file system),
    // so committing is one rename; a failure removes it.
    let parent = dest.parent().context("store entry has no parent")?;
    fs::create_dir_all(parent)?;
    let tmp_entry = parent.join(format!(".tmp-{}-{}", r.name, std::process::id()));
    if tmp_entry.exists() {
        fs::remove_dir_all(&tmp_entry)?;
    }
    let odir = tmp_entry.join("out");
    fs::create_dir_all(odir.as_path())?;
    let spinner = progress::spinner(&format!("building {}", r.name));
    let result = (|| -> Result<()> {
        let binds = prepare(project, fetcher, l, &work, &odir, deps)?;
        if opts.shuffle_dirents && work.join("build/src").is_dir() {
            shuffle_dirents(&work.join("build/src"))?;
        }
        let (env, sde) = env_for(l, opts.jobs.max(1));
        let ctx = PhaseCtx { tc, binds: &binds, env: &env, work: &work, log: &log };
        if !r.build.configure.trim().is_empty() {
            ctx.run_script("configure", &r.build.configure)?;
        }
        if let Some(k) = &r.kconfig {
            kconfig::check_files(
                &work.join("build").join(k.config.trim_start_matches('/')),
                &k.fragments.iter().map(|f| work.join("build/files").join(f)).collect::<Vec<_>>(),
            )
            .with_context(|| format!("{}: kernel configuration check", l.path.display()))?;
        }
        if let Some(spec) = &r.rootfs {
            let dep_outs = deps.iter().map(|(n, e)| (n.clone(), store::out_dir(e))).collect();
            image::assemble_rootfs(&project.recipes, &tc.root, l, spec, &dep_outs, &odir, sde)?;
        }
        if let Some(spec) = &r.image {
            image::make_ext4(&ctx, l, spec, ih, deps)?;
        }
        if !r.build.script.trim().is_empty() {
            ctx.run_script("build", &r.build.script)?;
        }
        for o in &r.build.outputs {
            let p = odir.join(o);
            if fs::symlink_metadata(&p).is_err() {
                bail!("declared output `{o}` was not produced under /out");
            }
        }
        manifest::normalize(&odir, sde)?;
        Ok(())
    })();
    spinner.finish_and_clear();
    if let Err(e) = result {
        let tail = tail_lines(&log, 25);
        if !tail.is_empty() {
            eprintln!("---- last lines of {} ----\n{tail}\n----", log.display());
        }
        let _ = fs::remove_dir_all(&work);
        let _ = fs::remove_dir_all(&tmp_entry);
        return Err(e.context(format!(
            "build of {} failed after {}; log: {}",
            r.name,
            timer.elapsed(),
            log.display()
        )));
    }
    let files = manifest::scan(&odir)?;
    let m = Manifest {
        name: r.name.clone(),
        version: r.version.clone(),
        input_hash: ih.to_string(),
        toolchain: tc.id.clone(),
        output_hash: manifest::output_hash(&files),
        files,
    };
    commit_entry(&tmp_entry, dest, &m)?;
    let _ = fs::remove_dir_all(&work);
    progress::say(&format!("built {} in {} -> {}", r.name, timer.elapsed(), dest.display()));
    Ok(m)
}

/// Write the manifest into the temp entry, fsync, and rename it into place.
fn commit_entry(tmp: &Path, dest: &Path, m: &Manifest) -> Result<()> {
    let f = fs::File::create(tmp.join("manifest.json"))?;
    serde_json::to_writer_pretty(&f, m)?;
    f.sync_all()?;
    if dest.exists() {
        fs::remove_dir_all(dest)?;
    }
    fs::rename(tmp, dest).with_context(|| format!("moving into {}", dest.display()))?;
    if let Some(parent) = dest.parent() {
        fs::File::open(parent)?.sync_all()?;
    }
    Ok(())
}

pub struct PhaseCtx<'a> {
    pub tc: &'a Toolchain,
    pub binds: &'a [Bind],
    pub env: &'a [(String, String)],
    pub work: &'a Path,
    pub log: &'a Path,
}

impl PhaseCtx<'_> {
    pub fn run_script(&self, phase: &str, script: &str) -> Result<()> {
        let dir = self.work.join("build/.reprovm");
        fs::create_dir_all(&dir)?;
        fs::write(dir.join(format!("{phase}.sh")), script)?;
        self.run(phase, vec!["/bin/sh".into(), "-eu".into(), format!("/build/.reprovm/{phase}.sh")])
    }

    pub fn run(&self, phase: &str, argv: Vec<String>) -> Result<()> {
        use std::io::Write;
        let mut lf = fs::OpenOptions::new().create(true).append(true).open(self.log)?;
        writeln!(lf, "==== reprovm phase {phase}: {}", argv.join(" "))?;
        drop(lf);
        let cwd = if self.work.join("build/src").is_dir() { "/build/src" } else { "/build" };
        let spec = Spec {
            root: self.tc.root.clone(),
            binds: self.binds.to_vec(),
            env: self.env.to_vec(),
            cwd: cwd.into(),
            argv,
            root_rw: false,
        };
        let code = sandbox::run(&spec, &self.work.join(format!("sandbox-{phase}.json")), self.log)?;
        if code != 0 {
            bail!("phase `{phase}` exited with status {code}");
        }
        Ok(())
    }
}

/// Re-create every directory's entries in reverse name order, so that readdir order differs
/// from the first build's (reprotest's disorderfs, without FUSE).
pub fn shuffle_dirents(root: &Path) -> Result<()> {
    let mut dirs: Vec<PathBuf> = walkdir::WalkDir::new(root)
        .into_iter()
        .filter_map(|e| e.ok())
        .filter(|e| e.file_type().is_dir())
        .map(|e| e.into_path())
        .collect();
    dirs.sort_by(|a, b| b.cmp(a));
    for d in dirs {
        let hold = d.join(".reprovm-shuffle");
        fs::create_dir(&hold)?;
        let mut names: Vec<_> = fs::read_dir(&d)?
            .flatten()
            .map(|e| e.file_name())
            .filter(|n| n != ".reprovm-shuffle")
            .collect();
        names.sort();
        for n in &names {
            fs::rename(d.join(n), hold.join(n))?;
        }
        for n in names.iter().rev() {
            fs::rename(hold.join(n), d.join(n))?;
        }
        fs::remove_dir(&hold)?;
    }
    Ok(())
}

pub fn tail_lines(path: &Path, n: usize) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(n)..].join("\n")
}

/// `cargo xtask menuconfig`: configure the kernel recipe, run menuconfig interactively in
/// the sandbox, and write the minimal result (savedefconfig) back to the recipe's base config.
pub fn menuconfig(project: &Project, fetcher: &Fetcher, recipe: &str) -> Result<()> {
    let graph = project.graph()?;
    let l = graph.get(recipe)?;
    let k = l
        .recipe
        .kconfig
        .as_ref()
        .with_context(|| format!("{}: not a kernel recipe (no [kconfig])", l.path.display()))?;
    let tc = toolchain::ensure(project, fetcher)?;
    let work = project.work().join(format!("menuconfig-{recipe}"));
    let odir = work.join("out");
    let binds = prepare(project, fetcher, l, &work, &odir, &BTreeMap::new())?;
    let (env, _) = env_for(l, cli::default_jobs());
    let log = work.join("menuconfig.log");
    let ctx = PhaseCtx { tc: &tc, binds: &binds, env: &env, work: &work, log: &log };
    ctx.run_script("configure", &l.recipe.build.configure)?;
    let config = work.join("build").join(k.config.trim_start_matches('/'));
    let before =
        fs::read_to_string(&config).with_context(|| format!("reading {}", config.display()))?;
    let objdir = format!(
        "/build/{}",
        Path::new(&k.config).parent().map(|p| p.display().to_string()).unwrap_or_default()
    );
    // The terminal is the host's: give menuconfig the host's terminfo entry for it.
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
    let first = term.chars().next().unwrap_or('x').to_string();
    for dir in ["/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo", "/usr/lib/terminfo"] {
        let src = Path::new(dir).join(&first).join(&term);
        if src.is_file() {
            let dest = work.join("build/.terminfo").join(&first);
            fs::create_dir_all(&dest)?;
            fs::copy(&src, dest.join(&term))?;
            break;
        }
    }
    let spec = Spec {
        root: tc.root.clone(),
        binds: binds.clone(),
        env: env
            .iter()
            .filter(|(k, _)| k != "TERM")
            .cloned()
            .chain([
                ("TERM".to_string(), term),
                ("TERMINFO".to_string(), "/build/.terminfo".to_string()),
            ])
            .collect(),
        cwd: "/build/src".into(),
        argv: vec![
            "/bin/sh".into(),
            "-c".into(),
            format!("make O={objdir} ARCH=x86_64 menuconfig"),
        ],
        root_rw: false,
    };
    let code = sandbox::run_interactive(&spec, &work.join("sandbox-menuconfig.json"))?;
    anyhow::ensure!(code == 0, "menuconfig exited with status {code}");
    let after = fs::read_to_string(&config)?;
    // Record what changed as explicit lines in the recipe's last fragment: merged onto the same
    // base and run through olddefconfig, the fragments then reproduce this exact .config, and
    // the fragment check keeps guarding every changed option.
    let changed = kconfig::changed_lines(&kconfig::parse(&before), &kconfig::parse(&after));
    if changed.is_empty() {
        progress::say("menuconfig: no change");
        let _ = fs::remove_dir_all(&work);
        return Ok(());
    }
    let frag = k.fragments.last().context("kernel recipe has no fragments")?;
    let dest = project.recipes.join(frag);
    let text = fs::read_to_string(&dest).unwrap_or_default();
    toolchain::write_atomic(&dest, kconfig::apply_to_fragment(&text, &changed).as_bytes())?;
    progress::say(&format!(
        "menuconfig: {} options changed, recorded in {}; rebuild with `cargo xtask build {recipe}`",
        changed.len(),
        dest.display()
    ));
    let _ = fs::remove_dir_all(&work);
    Ok(())
}
