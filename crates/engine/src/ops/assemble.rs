//! `assemble RECIPE`: the steps a builder runs between a recipe's `configure` and `script`
//! (`steps.rs`: the `[kconfig]` check, the rootfs tar, the mke2fs image), run inside someone
//! else's build sandbox with the tools on its PATH. Nix's derivations call this
//! (nix/package.nix), so both builders run one implementation.

use crate::model::project::Project;
use crate::steps::runner::{ScriptRunner, StepPaths, EFI_STUB_DIR};
use crate::steps::sequence;
use anyhow::{bail, Context, Result};
use reprovm_fs::util;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Where `assemble` runs a recipe's steps.
#[derive(Debug, Clone)]
pub struct AssembleOptions {
    /// The recipe with engine steps to assemble.
    pub recipe: String,
    /// The recipe's build directory (holding files/ and deps/NAME): `$REPROVM_BUILD`.
    pub build_dir: PathBuf,
    /// Root in which the shared libraries of installed programs are looked up.
    pub sysroot: PathBuf,
    /// Output directory.
    pub out: PathBuf,
    /// Where systemd's UEFI stubs are, when not at the toolchain's path
    /// (`steps::runner::EFI_STUB_DIR`): a Nix build over nixpkgs has the pinned stubs in the
    /// store.
    pub efi_stubs: Option<PathBuf>,
}

/// Shell steps with `sh` from PATH, in the caller's environment plus `$OUT`.
struct HostSh<'a> {
    build_dir: &'a Path,
    out: &'a Path,
    efi_stubs: Option<&'a Path>,
}

impl ScriptRunner for HostSh<'_> {
    fn build_dir(&self) -> &Path {
        self.build_dir
    }

    fn run_script(&self, phase: &str, script: &str) -> Result<()> {
        util::run_checked(
            Command::new("sh")
                .arg("-euc")
                .arg(script)
                .arg(phase)
                .env("OUT", self.out)
                .current_dir(self.build_dir),
        )
        .with_context(|| format!("phase `{phase}`"))
    }

    fn efi_stub_dir(&self) -> &Path {
        self.efi_stubs.unwrap_or(Path::new(EFI_STUB_DIR))
    }
}

impl AssembleOptions {
    /// Run the recipe's steps (`steps::sequence`) inside another builder's sandbox.
    pub fn run(&self, project: &Project) -> Result<()> {
        let graph = project.graph()?;
        let l = graph.get(&self.recipe)?;
        let r = &l.recipe;
        if crate::model::step_versions::of(r).is_empty() && r.kconfig.is_none() {
            bail!("{}: `assemble` is for recipes with engine steps ([kconfig], [rootfs], [image], [initramfs], [uefi], [iso], [oci]); this one is a plain script", l.path.display());
        }
        if let Some(dir) = &self.efi_stubs {
            let stub = crate::steps::media::efi_stub(dir, project.arch);
            if !stub.is_file() {
                bail!(
                    "--efi-stubs {}: no {} there; name the directory holding systemd-boot-efi's stubs (usr/lib/systemd/boot/efi of its .deb for {})",
                    dir.display(),
                    stub.file_name().unwrap_or_default().to_string_lossy(),
                    project.arch.name()
                );
            }
        }
        let deps: BTreeMap<String, PathBuf> =
            r.deps.iter().map(|d| (d.clone(), self.build_dir.join("deps").join(d))).collect();
        for (d, p) in &deps {
            if !p.is_dir() {
                bail!(
                    "{}: dependency `{d}` is missing: expected its output at {}",
                    l.path.display(),
                    p.display()
                );
            }
        }
        std::fs::create_dir_all(&self.out)
            .with_context(|| format!("creating {}", self.out.display()))?;
        let paths = StepPaths {
            recipes: &project.recipes,
            build: &self.build_dir,
            deps: &deps,
            out: &self.out,
            lib_root: &self.sysroot,
        };
        sequence::run(
            l,
            &paths,
            r.source_date_epoch(),
            &HostSh {
                build_dir: &self.build_dir,
                out: &self.out,
                efi_stubs: self.efi_stubs.as_deref(),
            },
        )
    }
}
