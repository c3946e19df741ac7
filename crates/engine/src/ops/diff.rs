//! `diff A B`: compare two output trees or files and explain every difference
//! (`steps::explain`); exit status 1 when they differ.

use crate::ops::context::RunContext;
use crate::steps::explain::{diff_paths, render, Sides, Tools};
use crate::steps::toolchain;
use anyhow::Result;
use std::path::Path;

/// Compare `a` and `b`; 0 when identical, 1 when they differ. `host_tools` reads ext4 images
/// with debugfs/dumpe2fs from PATH (inside another builder's sandbox) instead of the toolchain's.
pub fn diff(ctx: &RunContext, a: &Path, b: &Path, json: bool, host_tools: bool) -> Result<i32> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let tc;
    let tools = if host_tools {
        Tools::Path
    } else {
        let lock = crate::model::store::store_exclusive(&project.out)?;
        tc = toolchain::ensure(project, fetcher, &lock)?;
        Tools::Sandbox(&tc.root)
    };
    let (la, lb) = (a.display().to_string(), b.display().to_string());
    let sides = Sides { a: &la, b: &lb };
    let diffs = diff_paths(a, b, &tools, &sides)?;
    if json {
        println!("{}", serde_json::to_string_pretty(&diffs)?);
    } else if diffs.is_empty() {
        println!("{la} and {lb} are identical");
    } else {
        print!("{la} and {lb} differ:\n{}", render(&diffs, &sides));
    }
    Ok(if diffs.is_empty() { 0 } else { 1 })
}
