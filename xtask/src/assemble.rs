//! `assemble RECIPE`: the steps the xtask performs itself between a recipe's `configure` and
//! `script` (the `[kconfig]` check, the deterministic rootfs tar, the mke2fs invocation), run
//! inside someone else's build sandbox. Nix's derivations call this (nix/package.nix), so both
//! builders share one implementation. It follows the recipe conventions: the build directory
//! /build, dependencies at /build/deps/NAME, recipe files at /build/files, outputs to $OUT.

use crate::build::DEFAULT_SOURCE_DATE_EPOCH;
use crate::project::Project;
use crate::{image, kconfig};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct AssembleArgs {
    /// The `[rootfs]` or `[image]` recipe to assemble.
    pub recipe: String,
    /// Seeds the image's file system UUID and hash seed (the xtask uses the input hash; Nix
    /// passes a hash of the dependencies' store paths).
    #[arg(long, default_value = "")]
    pub id: String,
    /// The recipe's build directory (holding files/ and deps/NAME).
    #[arg(long, default_value = "/build")]
    pub build_dir: PathBuf,
    /// Root in which the shared libraries of installed programs are looked up (`/` in Nix:
    /// programs there find theirs through RUNPATH into /nix/store).
    #[arg(long, default_value = "/")]
    pub sysroot: PathBuf,
    /// Output directory (default: $OUT).
    #[arg(long, env = "OUT")]
    pub out: PathBuf,
}

pub fn run(project: &Project, a: &AssembleArgs) -> Result<()> {
    let graph = project.graph()?;
    let l = graph.get(&a.recipe)?;
    let r = &l.recipe;
    let deps: BTreeMap<String, PathBuf> =
        r.deps.iter().map(|d| (d.clone(), a.build_dir.join("deps").join(d))).collect();
    for (d, p) in &deps {
        if !p.is_dir() {
            bail!(
                "{}: dependency `{d}` is missing: expected its output at {}",
                l.path.display(),
                p.display()
            );
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let sde = r
        .env
        .get("SOURCE_DATE_EPOCH")
        .and_then(|v| v.parse().ok())
        .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
    if let Some(k) = &r.kconfig {
        let fragments: Vec<PathBuf> =
            k.fragments.iter().map(|f| a.build_dir.join("files").join(f)).collect();
        kconfig::check_files(&a.build_dir.join(k.config.trim_start_matches('/')), &fragments)
            .with_context(|| format!("{}: kernel configuration check", l.path.display()))?;
    }
    match (&r.rootfs, &r.image) {
        (Some(spec), _) => image::assemble_rootfs(&project.recipes, &a.sysroot, l, spec, &deps, &a.out, sde),
        (None, Some(spec)) => {
            let rootfs = deps.get(&spec.rootfs).with_context(|| format!("{}: image rootfs `{}` is not a dependency", l.path.display(), spec.rootfs))?;
            let script = image::mke2fs_script(l, spec, &a.id, image::rootfs_content_bytes(rootfs), &a.build_dir)?;
            run_sh(&script, &a.out)
        }
        (None, None) if r.kconfig.is_some() => Ok(()),
        (None, None) => bail!("{}: `assemble` is for [kconfig], [rootfs] and [image] recipes; this one is a plain script", l.path.display()),
    }
}

/// Run a recipe script with the tools on PATH (the caller's sandbox provides them).
fn run_sh(script: &str, out: &Path) -> Result<()> {
    let st = std::process::Command::new("sh")
        .arg("-euc")
        .arg(script)
        .env("OUT", out)
        .status()
        .context("running sh")?;
    if !st.success() {
        bail!("image script failed ({st}):\n{script}");
    }
    Ok(())
}
