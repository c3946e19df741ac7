//! The steps a builder runs between a recipe's `configure` and `script`, in one function for
//! every builder: the `[kconfig]` check, the `[rootfs]` tar, the `[image]` (mke2fs), the boot
//! media (`[initramfs]`, `[uefi]`, `[iso]`), then the `[oci]` layout. The
//! xtask runs them around its sandbox phases (`build.rs`); Nix runs them through the hidden
//! `xtask assemble` inside its own sandbox (`assemble.rs`, nix/package.nix). Only how a shell
//! step is run differs, through [`ScriptRunner`].

use crate::mechanisms::kconfig;
use crate::model::recipe::Loaded;
use crate::steps::image;
use crate::steps::rootfs;
use crate::steps::runner::{ScriptRunner, StepPaths};
use anyhow::{Context, Result};
use std::path::PathBuf;

/// Run every step the recipe declares, in order.
pub(crate) fn run(
    l: &Loaded,
    paths: &StepPaths,
    source_date_epoch: i64,
    runner: &dyn ScriptRunner,
) -> Result<()> {
    let r = &l.recipe;
    if let Some(k) = &r.kconfig {
        let fragments: Vec<PathBuf> =
            k.fragments.iter().map(|f| paths.build.join("files").join(f)).collect();
        kconfig::check_files(&paths.build.join(&k.config), &fragments).with_context(|| {
            format!(
                "{}: kernel configuration check of {} for {} at version {}",
                l.path.display(),
                l.node(),
                l.arch,
                r.version
            )
        })?;
    }
    if let Some(spec) = &r.rootfs {
        rootfs::write_rootfs(paths, l, spec, source_date_epoch)?;
    }
    if let Some(spec) = &r.image {
        // The rootfs tar comes from a dependency, or from this recipe's own [rootfs] step.
        let (rootfs_out, rootfs_in_script) = if spec.rootfs == r.name {
            (paths.out.to_path_buf(), "$OUT/rootfs.tar".to_string())
        } else {
            let dep = paths.deps.get(&spec.rootfs).with_context(|| {
                format!("{}: image rootfs `{}` is not a dependency", l.path.display(), spec.rootfs)
            })?;
            let in_script = runner.build_dir().join("deps").join(&spec.rootfs).join("rootfs.tar");
            (dep.clone(), in_script.display().to_string())
        };
        let content_bytes = rootfs::content_bytes(&rootfs_out)?;
        let script = image::mke2fs_script(
            l,
            spec,
            paths.build,
            &rootfs_out.join("rootfs.tar"),
            &rootfs_in_script,
            content_bytes,
            runner.build_dir(),
        )?;
        runner.run_script("mke2fs", &script)?;
    }
    crate::steps::media::write_media(l, paths, source_date_epoch, runner)?;
    if let Some(spec) = &r.oci {
        // The graph of the recipes this builder sees (all of recipes/, or Nix's slice of it):
        // the revision covers the same closure in both.
        let graph = crate::model::graph::Graph::load_for(paths.recipes, l.arch)?;
        let inputs = crate::steps::oci_layout::OciInputs {
            recipe: l,
            spec,
            build: paths.build,
            deps: paths.deps,
            source_date_epoch,
            revision: crate::steps::oci_layout::recipes_digest(paths.recipes, &graph, &r.name)?,
        };
        crate::steps::oci_layout::write_layout(&inputs, paths.out)
            .with_context(|| format!("{}: writing the OCI layout", l.path.display()))?;
    }
    Ok(())
}
