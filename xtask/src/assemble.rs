//! `assemble RECIPE`: the steps the xtask performs itself for `[rootfs]` and `[image]` recipes
//! (the deterministic rootfs tar, the mke2fs invocation), run inside someone else's build
//! sandbox. Nix's derivations for rootfs and hd-image call this (nix/package.nix), so both
//! builders share one implementation. It follows the recipe conventions: dependencies at
//! DEPS/NAME, recipe files at /build/files, outputs to $OUT.

use crate::build::DEFAULT_SOURCE_DATE_EPOCH;
use crate::image;
use crate::project::Project;
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(clap::Args, Debug)]
pub struct AssembleArgs {
    /// The `[rootfs]` or `[image]` recipe to assemble.
    pub recipe: String,
    /// Seeds the image's file system UUID and hash seed (the xtask uses the input hash; Nix
    /// passes a hash of the dependencies' store paths).
    #[arg(long)]
    pub id: String,
    /// Directory holding each dependency's output as DEPS/NAME.
    #[arg(long, default_value = "/build/deps")]
    pub deps: PathBuf,
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
    let deps: BTreeMap<String, PathBuf> = r.deps.iter().map(|d| (d.clone(), a.deps.join(d))).collect();
    for (d, p) in &deps {
        if !p.is_dir() {
            bail!("{}: dependency `{d}` is missing: expected its output at {}", l.path.display(), p.display());
        }
    }
    std::fs::create_dir_all(&a.out).with_context(|| format!("creating {}", a.out.display()))?;
    let sde = r.env.get("SOURCE_DATE_EPOCH").and_then(|v| v.parse().ok()).unwrap_or(DEFAULT_SOURCE_DATE_EPOCH);
    match (&r.rootfs, &r.image) {
        (Some(spec), _) => image::assemble_rootfs(&project.recipes, &a.sysroot, l, spec, &deps, &a.out, sde),
        (None, Some(spec)) => {
            let rootfs = deps.get(&spec.rootfs).with_context(|| format!("{}: image rootfs `{}` is not a dependency", l.path.display(), spec.rootfs))?;
            let script = image::mke2fs_script(l, spec, &a.id, image::rootfs_content_bytes(rootfs))?;
            run_sh(&script, &a.out)
        }
        (None, None) => bail!("{}: `assemble` is for [rootfs] and [image] recipes; this one is a plain script", l.path.display()),
    }
}

/// Run a recipe script with the tools on PATH (the caller's sandbox provides them).
fn run_sh(script: &str, out: &Path) -> Result<()> {
    let st = std::process::Command::new("sh").arg("-euc").arg(script).env("OUT", out).status().context("running sh")?;
    if !st.success() {
        bail!("image script failed ({st}):\n{script}");
    }
    Ok(())
}
