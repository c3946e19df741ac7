//! Root file system assembly and ext4 images.

use crate::build::{BuildResult, PhaseCtx};
use crate::graph::Graph;
use crate::project::Project;
use crate::recipe::{ImageSpec, Loaded, RootfsSpec};
use crate::toolchain::Toolchain;
use anyhow::{bail, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

pub fn assemble_rootfs(_p: &Project, _tc: &Toolchain, _l: &Loaded, _s: &RootfsSpec, _deps: &BTreeMap<String, PathBuf>, _out: &Path, _sde: i64) -> Result<()> {
    bail!("rootfs assembly is not implemented yet (issue 5)")
}

pub fn make_ext4(_ctx: &PhaseCtx, _l: &Loaded, _s: &ImageSpec, _ih: &str, _deps: &BTreeMap<String, PathBuf>) -> Result<()> {
    bail!("ext4 images are not implemented yet (issue 5)")
}

/// After a build, point out/<file> at well-known outputs (out/bzImage, out/hd.img).
pub fn link_results(_p: &Project, _g: &Graph, _target: &str, _r: &BuildResult) -> Result<()> {
    Ok(())
}
