//! Debian packages in an image (`[rootfs] debian`): resolved with their dependency closure
//! into a lock per recipe and architecture (`cargo xtask pin debian`), by the resolver the
//! toolchain's locks use, against the build toolchain's suite, so that the image's one glibc
//! (the toolchain's, taken by the ELF closure) serves them all; fetched by sha256 like every
//! .deb; unpacked into the root file system by the rootfs step. Maintainer scripts are not
//! run (docs/reference/recipes.md says what that leaves out).

use crate::mechanisms::fetch::Want;
use crate::model::arch::Arch;
use crate::model::project::Project;
use crate::model::recipe::Recipe;
use crate::steps::toolchain::archive::Archive;
use crate::steps::toolchain::materialize::deb_want;
use crate::steps::toolchain::resolve::{
    merged_index, resolve_over, LockFile, LockedDeb, PackageSpec,
};
use crate::steps::toolchain::PackageSet;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::path::PathBuf;

/// Dependencies that only matter to an installed, managed system (package management,
/// accounts, services, configuration prompts), never to a program in a reprovm image.
pub(crate) const INSTALL_ONLY: [&str; 16] = [
    "adduser",
    "debconf",
    "debianutils",
    "dpkg",
    "init-system-helpers",
    "libpam-modules",
    "libpam-runtime",
    "lsb-base",
    "passwd",
    "perl-base",
    "sensible-utils",
    "systemd",
    "systemd-sysv",
    "sysvinit-utils",
    "ucf",
    "login",
];

/// `pins/debian/NAME.lock` (x86_64), `pins/debian/NAME-aarch64.lock`.
pub(crate) fn lock_path(project: &Project, recipe: &str, arch: Arch) -> PathBuf {
    crate::model::pins::debian_lock(&project.pins, recipe, arch)
}

/// A recipe's lock: what was asked for, and what resolved.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImageLock {
    /// `[rootfs] debian` and `debian-exclude` when the lock was made: a recipe that asks for
    /// something else needs `pin debian` again.
    pub requested: Vec<String>,
    pub exclude: Vec<String>,
    pub suite: String,
    pub snapshot: Option<String>,
    #[serde(rename = "package")]
    pub packages: Vec<LockedDeb>,
}

impl ImageLock {
    fn as_lock_file(&self) -> LockFile {
        LockFile {
            suite: self.suite.clone(),
            snapshot: self.snapshot.clone(),
            packages: self.packages.clone(),
        }
    }

    /// The .debs to fetch, by sha256, from the mirrors' pools and the snapshot archive.
    pub(crate) fn wants(&self, project: &Project) -> Vec<Want> {
        let lock = self.as_lock_file();
        self.packages.iter().map(|p| deb_want(project, &lock, p)).collect()
    }
}

/// The lock of recipe `r` for `arch`, if it installs Debian packages; a missing lock, or one
/// made for another list, is an error naming the command that makes it.
pub(crate) fn read(project: &Project, r: &Recipe, arch: Arch) -> Result<Option<ImageLock>> {
    let Some(spec) = r.rootfs.as_ref().filter(|s| !s.debian.is_empty()) else {
        return Ok(None);
    };
    let path = lock_path(project, &r.name, arch);
    let fix = format!("run `cargo xtask{} pin debian {}`", arch_flag(arch), r.name);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            anyhow::bail!(
                "{}: no lock of recipes/{}.toml's [rootfs] debian packages: {fix}",
                path.display(),
                r.name
            )
        }
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let lock: ImageLock = toml::from_str(&text)
        .map_err(|e| anyhow::format_err!("{}: {}", path.display(), e.message()))?;
    if lock.requested != spec.debian || lock.exclude != spec.debian_exclude {
        anyhow::bail!(
            "{}: made for debian = {:?} (exclude {:?}), but recipes/{}.toml asks for {:?} (exclude {:?}): {fix}",
            path.display(),
            lock.requested,
            lock.exclude,
            r.name,
            spec.debian,
            spec.debian_exclude
        );
    }
    Ok(Some(lock))
}

fn arch_flag(arch: Arch) -> String {
    if arch.is_default() {
        String::new()
    } else {
        format!(" --arch {}", arch.name())
    }
}

/// The packages the image already has from the toolchain, by name: the build toolchain's
/// (x86_64) or the arm64 set's arm64 packages; their libraries come through the ELF closure.
fn provided(project: &Project, arch: Arch) -> Result<BTreeSet<String>> {
    let set = PackageSet::for_arch(arch);
    let lock = crate::steps::toolchain::read_lock(project, set)?;
    Ok(lock
        .packages
        .into_iter()
        .filter(|p| p.arch == arch.debian() || (arch.is_default() && p.arch == "all"))
        .map(|p| p.name)
        .collect())
}

/// Resolve recipe `r`'s `[rootfs] debian` for `arch` against the archive now: the lock's
/// text (not yet written).
pub(crate) fn resolve(
    project: &Project,
    archive: &Archive,
    r: &Recipe,
    arch: Arch,
) -> Result<ImageLock> {
    let spec = r.rootfs.as_ref().context("no [rootfs]")?;
    let build_spec_path = PackageSet::Build.spec(project);
    let text = std::fs::read_to_string(&build_spec_path)
        .with_context(|| format!("reading {}", build_spec_path.display()))?;
    let build: PackageSpec = toml::from_str(&text)
        .map_err(|e| anyhow::format_err!("{}: {}", build_spec_path.display(), e.message()))?;
    let mut exclude: Vec<String> = INSTALL_ONLY.iter().map(|s| s.to_string()).collect();
    exclude.extend(spec.debian_exclude.iter().cloned());
    let wanted = PackageSpec {
        suite: build.suite.clone(),
        arch: arch.debian().to_string(),
        backports_suite: None,
        updates: build.updates.clone(),
        packages: spec.debian.clone(),
        from_backports: Vec::new(),
        exclude,
        foreign_arch: None,
        foreign_packages: Vec::new(),
    };
    let suites: Vec<String> =
        std::iter::once(wanted.suite.clone()).chain(wanted.updates.iter().cloned()).collect();
    let index = merged_index(archive, &suites, &wanted.arch)?;
    for p in &spec.debian {
        anyhow::ensure!(
            index.iter().any(|s| s.get("Package") == p),
            "recipes/{}.toml: [rootfs] debian: no package `{p}` in {} for {}",
            r.name,
            suites.join(", "),
            wanted.arch
        );
    }
    let provided = provided(project, arch)?;
    let packages = resolve_over(&wanted, &index, &[], &provided)
        .with_context(|| format!("recipes/{}.toml: resolving [rootfs] debian", r.name))?;
    // The same packages keep the snapshot time of the lock that has them (resolving twice
    // gives the same lock); a changed set gets this resolution's.
    let path = lock_path(project, &r.name, arch);
    let old: Option<ImageLock> =
        std::fs::read_to_string(&path).ok().and_then(|t| toml::from_str(&t).ok());
    let snapshot = match old {
        Some(o) if o.packages == packages && o.suite == wanted.suite && o.snapshot.is_some() => {
            o.snapshot
        }
        _ => Some(crate::mechanisms::debian::snapshot_time_now()),
    };
    Ok(ImageLock {
        requested: spec.debian.clone(),
        exclude: spec.debian_exclude.clone(),
        suite: wanted.suite,
        snapshot,
        packages,
    })
}

/// The lock file's text: a header, then TOML.
pub(crate) fn lock_text(r: &Recipe, lock: &ImageLock) -> Result<String> {
    Ok(format!(
        "# Generated by `cargo xtask pin debian {}` from recipes/{}.toml's [rootfs] debian. Do not edit.\n\
# {} packages; every .deb is fetched by sha256.\n{}",
        r.name,
        r.name,
        lock.packages.len(),
        toml::to_string(lock)?
    ))
}
