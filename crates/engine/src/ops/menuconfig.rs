//! `cargo xtask menuconfig`: configure a kernel recipe in the sandbox, run menuconfig on the
//! caller's terminal, and record every option that changed at the end of the recipe's last
//! fragment. (savedefconfig is relative to Kconfig's defaults, not to the recipe's base such
//! as tinyconfig, so it would not be a correct fragment.)

use crate::mechanisms::kconfig;
use crate::ops::build;
use crate::ops::context::RunContext;
use crate::steps::runner::ScriptRunner;
use crate::steps::sandbox_runner::SandboxRunner;
use crate::steps::toolchain;
use anyhow::{Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::progress;
use reprovm_fs::util;
use reprovm_sandbox::BUILD_DIR;
use reprovm_sandbox::{self as sandbox, Spec};
use std::collections::BTreeMap;
use std::path::Path;

/// `menuconfig [RECIPE]`: configure in the sandbox, run menuconfig on this terminal, and record
/// every changed option at the end of the recipe's last fragment.
pub fn menuconfig(ctx: &RunContext, recipe: &str) -> Result<()> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let graph = project.graph()?;
    let l = graph.get(recipe)?;
    let k = l
        .recipe
        .kconfig
        .as_ref()
        .with_context(|| format!("{}: not a kernel recipe (no [kconfig])", l.path.display()))?;
    let frag = k.fragments.last().context("kernel recipe has no fragments")?;
    let recipes = Dir::open(&project.recipes)?;
    let fragment_text = String::from_utf8(recipes.read(Path::new(frag))?)?;
    let lock = crate::model::store::store_shared(&project.out)?;
    let tc = toolchain::ensure(project, fetcher, &lock)?;
    // Per process: two sessions of one recipe do not share a work tree.
    let work_name = format!("menuconfig-{recipe}-{}", std::process::id());
    let work = project.work().join(&work_name);
    let odir = work.join("out");
    std::fs::create_dir_all(&odir)?;
    let binds = build::prepare(project, fetcher, l, &work, &odir, &BTreeMap::new())?;
    let env = build::env_for(l, util::default_jobs());
    let log = work.join("menuconfig.log");
    let runner = SandboxRunner {
        tc: &tc,
        binds: &binds,
        env: &env,
        work: &work,
        log: &log,
        timeout: l.recipe.timeout()?,
        stop: None,
        jobserver: None,
    };
    runner.run_script("configure", &l.recipe.build.configure)?;
    let wdir = Dir::open(&work.join("build"))?;
    let before = String::from_utf8(wdir.read(Path::new(&k.config))?)?;
    let objdir = Path::new(BUILD_DIR).join(Path::new(&k.config).parent().unwrap_or(Path::new("")));
    // The terminal is the host's: give menuconfig the host's terminfo entry for it.
    let term = std::env::var("TERM").unwrap_or_else(|_| "xterm".into());
    let first = term.chars().next().unwrap_or('x').to_string();
    for dir in ["/etc/terminfo", "/lib/terminfo", "/usr/share/terminfo", "/usr/lib/terminfo"] {
        let src = Path::new(dir).join(&first).join(&term);
        if let Ok(data) = std::fs::read(&src) {
            wdir.write_atomic(&Path::new(".terminfo").join(&first).join(&term), &data, 0o644)?;
            break;
        }
    }
    let mut env: Vec<(String, String)> = env.into_iter().filter(|(k, _)| k != "TERM").collect();
    env.extend([
        ("TERM".to_string(), term),
        ("TERMINFO".to_string(), format!("{BUILD_DIR}/.terminfo")),
    ]);
    let spec = Spec {
        root: tc.root.clone(),
        binds,
        env,
        cwd: Path::new(BUILD_DIR).join("src"),
        argv: vec![
            "/usr/bin/make".into(),
            format!("O={}", objdir.display()),
            "ARCH=x86_64".into(),
            "menuconfig".into(),
        ],
        root_rw: false,
    };
    let code = sandbox::run_interactive(&spec, &work.join("sandbox-menuconfig.json"))?;
    anyhow::ensure!(code == 0, "menuconfig exited with status {code}");
    let after = String::from_utf8(wdir.read(Path::new(&k.config))?)?;
    // The changes as explicit lines of the last fragment: merged onto the same base and run
    // through olddefconfig, the fragments reproduce this exact .config, and the fragment
    // check keeps guarding every changed option.
    let changed = kconfig::changed_lines(&kconfig::parse(&before), &kconfig::parse(&after));
    Dir::open(&project.work())?.remove_all(Path::new(&work_name))?;
    if changed.is_empty() {
        progress::say("menuconfig: no change");
        return Ok(());
    }
    recipes.write_atomic(
        Path::new(frag),
        kconfig::apply_to_fragment(&fragment_text, &changed).as_bytes(),
        0o644,
    )?;
    progress::say(&format!(
        "menuconfig: {} options changed, recorded in {}; rebuild with `cargo xtask build {recipe}`",
        changed.len(),
        project.recipes.join(frag).display()
    ));
    Ok(())
}
