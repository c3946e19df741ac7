//! `diff A B`: compare two output trees or files and explain every difference
//! (`steps::explain`).

use crate::ops::context::RunContext;
use crate::steps::explain::{diff_paths, Tools};
use crate::steps::toolchain;
use anyhow::{bail, Result};
use std::path::Path;

pub use crate::steps::explain::{render, FileDiff, Sides};

/// Compare `a` and `b`: every difference, explained (none: identical). `host_tools` reads
/// ext4 images with debugfs/dumpe2fs from PATH (inside another builder's sandbox) instead of
/// the toolchain's.
pub fn diff(ctx: &RunContext, a: &Path, b: &Path, host_tools: bool) -> Result<Vec<FileDiff>> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    for side in [a, b] {
        // Before the toolchain is materialised: a wrong path is a typing error, not work.
        if let Err(e) = std::fs::symlink_metadata(side) {
            bail!("{}: {e} (give two output trees or two files)", side.display());
        }
    }
    if a.is_dir() != b.is_dir() {
        let (dir, file) = if a.is_dir() { (a, b) } else { (b, a) };
        bail!(
            "{} is a directory and {} is not: give two output trees or two files",
            dir.display(),
            file.display()
        );
    }
    // The toolchain (its debugfs and dumpe2fs) is materialised only if an ext4 image is read.
    let root = std::cell::OnceCell::new();
    let materialise = || -> Result<std::path::PathBuf> {
        if let Some(r) = root.get() {
            return Ok(std::path::PathBuf::clone(r));
        }
        let lock = crate::model::store::store_shared(&project.out)?;
        let tc = toolchain::ensure(project, fetcher, &lock)?;
        Ok(root.get_or_init(|| tc.root.clone()).clone())
    };
    let tools = if host_tools { Tools::Path } else { Tools::Later(&materialise) };
    let (la, lb) = (a.display().to_string(), b.display().to_string());
    let sides = Sides { a: &la, b: &lb };
    diff_paths(a, b, &tools, &sides)
}
