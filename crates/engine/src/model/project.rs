//! Where things live: the repository, recipes, pins, the output tree and the download cache.

use std::path::{Path, PathBuf};

/// Where a project lives and how it is configured: its recipes, pins and output directory,
/// the download cache, the Debian mirrors, and the choices of this run (`--use`, the
/// development root of host programs). Built once from the command line's global options.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub recipes: PathBuf,
    pub pins: PathBuf,
    pub out: PathBuf,
    /// The download cache (`--cache`, `out/cache`): sources and .debs by sha256. Not the
    /// binary cache, which is a registry (`steps::substitution`).
    pub downloads: PathBuf,
    /// Development mode: the sandbox root is made of host programs (named in every output).
    pub host_toolchain: bool,
    /// Dependency substitutions from `--use DEP=RECIPE`.
    pub uses: Vec<String>,
    /// The architecture built for (`--arch`; default x86_64).
    pub arch: crate::model::arch::Arch,
    /// Debian mirror base URLs (`REPROVM_DEBIAN_MIRROR` or the host's apt sources).
    pub debian_mirrors: Vec<String>,
    /// Debian snapshot-archive base URLs (`REPROVM_DEBIAN_SNAPSHOT` or the public one).
    pub debian_snapshots: Vec<String>,
}

impl Project {
    pub fn new(
        recipes: Option<PathBuf>,
        out: Option<PathBuf>,
        downloads: Option<PathBuf>,
    ) -> Project {
        let root = repo_root();
        let recipes = recipes.unwrap_or_else(|| root.join("recipes"));
        let out = out.unwrap_or_else(|| root.join("out"));
        let downloads = downloads.unwrap_or_else(|| out.join("cache"));
        Project {
            pins: root.join("pins"),
            root,
            recipes,
            out,
            downloads,
            host_toolchain: false,
            uses: Vec::new(),
            arch: crate::model::arch::Arch::X86_64,
            debian_mirrors: crate::mechanisms::debian::mirrors(),
            debian_snapshots: crate::mechanisms::debian::snapshots(),
        }
    }

    /// The recipe graph with this run's substitutions applied.
    pub(crate) fn graph(&self) -> anyhow::Result<crate::model::graph::Graph> {
        crate::model::graph::Graph::load_for(&self.recipes, self.arch)?.with_aliases(&self.uses)
    }

    /// Where a build's well-known results are copied (`out/hd.img`): `out/` for x86_64,
    /// `out/ARCH/` for another architecture, so neither overwrites the other's.
    pub(crate) fn results_dir(&self) -> PathBuf {
        if self.arch.is_default() {
            self.out.clone()
        } else {
            self.out.join(self.arch.name())
        }
    }

    pub(crate) fn store(&self) -> PathBuf {
        self.out.join("store")
    }
    pub(crate) fn logs(&self) -> PathBuf {
        self.out.join("logs")
    }
    pub(crate) fn work(&self) -> PathBuf {
        self.out.join("work")
    }
    pub(crate) fn toolchain_lock(&self) -> PathBuf {
        self.pins.join("toolchain.lock")
    }
    /// Expected output hashes: `pins/outputs.toml` for x86_64, `pins/outputs-ARCH.toml` for
    /// another architecture.
    pub(crate) fn outputs_pin(&self) -> PathBuf {
        if self.arch.is_default() {
            self.pins.join("outputs.toml")
        } else {
            self.pins.join(format!("outputs-{}.toml", self.arch))
        }
    }
}

/// Environment variable naming the project root (recipes/, pins/, toolchain/); checked first.
pub(crate) const ROOT_ENV: &str = "REPROVM_ROOT";
/// The root used when no checkout is found: the Nix app sets it to the flake's own copy of
/// recipes/, pins/ and toolchain/ (so `nix run github:...` works from any directory).
pub(crate) const DEFAULT_ROOT_ENV: &str = "REPROVM_DEFAULT_ROOT";

/// The project root, in this order: `$REPROVM_ROOT`; the checkout the running xtask belongs to
/// (`cargo xtask`: the parent of the xtask crate, at run or build time); the nearest ancestor
/// of the current directory that is a reprovm checkout (like cargo finding `Cargo.toml`);
/// `$REPROVM_DEFAULT_ROOT`; else the current directory (commands then name what is missing).
pub(crate) fn repo_root() -> PathBuf {
    let env = |k: &str| std::env::var_os(k).filter(|v| !v.is_empty()).map(PathBuf::from);
    let crate_dirs = [env("CARGO_MANIFEST_DIR"), Some(PathBuf::from(env!("CARGO_MANIFEST_DIR")))];
    find_root(
        env(ROOT_ENV),
        &crate_dirs.into_iter().flatten().collect::<Vec<_>>(),
        std::env::current_dir().ok().as_deref(),
        env(DEFAULT_ROOT_ENV),
    )
}

/// [`repo_root`]'s search, on explicit inputs.
fn find_root(
    root_env: Option<PathBuf>,
    crate_dirs: &[PathBuf],
    cwd: Option<&Path>,
    default_env: Option<PathBuf>,
) -> PathBuf {
    if let Some(dir) = root_env {
        return dir;
    }
    // A crate of the checkout is one or two levels below it (`xtask/`, `crates/engine/`).
    crate_dirs
        .iter()
        .flat_map(|d| d.ancestors().skip(1).take(2))
        .chain(cwd.into_iter().flat_map(Path::ancestors))
        .find(|d| is_project_root(d))
        .map(Path::to_path_buf)
        .or(default_env)
        .or_else(|| cwd.map(Path::to_path_buf))
        .unwrap_or_else(|| PathBuf::from("."))
}

/// A directory holding a reprovm project: recipes and the toolchain lock.
pub(crate) fn is_project_root(dir: &Path) -> bool {
    dir.join("recipes").is_dir() && dir.join("pins").join("toolchain.lock").is_file()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn root_search_order() {
        let t = tempfile::tempdir().unwrap();
        let checkout = t.path().join("checkout");
        std::fs::create_dir_all(checkout.join("recipes")).unwrap();
        std::fs::create_dir_all(checkout.join("pins")).unwrap();
        std::fs::write(checkout.join("pins/toolchain.lock"), "").unwrap();
        let deep = checkout.join("recipes/kernel");
        std::fs::create_dir_all(&deep).unwrap();
        let elsewhere = t.path().join("elsewhere");
        std::fs::create_dir_all(&elsewhere).unwrap();
        let gone_crate = [PathBuf::from("/build/source/xtask")];
        let store = PathBuf::from("/nix/store/x-reprovm-project");

        // REPROVM_ROOT wins over everything.
        assert_eq!(find_root(Some(elsewhere.clone()), &[], Some(&deep), None), elsewhere);
        // The checkout the xtask was built in (the command line's crate, or the engine's:
        // `env!` in the engine names crates/engine).
        assert_eq!(find_root(None, &[checkout.join("xtask")], Some(&elsewhere), None), checkout);
        let engine = [checkout.join("crates/engine")];
        assert_eq!(find_root(None, &engine, Some(&elsewhere), None), checkout);
        // A Nix-built xtask (its build directory is gone) run inside a checkout finds it
        // from the current directory, before the flake's own copy.
        assert_eq!(find_root(None, &gone_crate, Some(&deep), Some(store.clone())), checkout);
        // Outside any checkout: the flake's copy, else the current directory.
        assert_eq!(find_root(None, &gone_crate, Some(&elsewhere), Some(store.clone())), store);
        assert_eq!(find_root(None, &gone_crate, Some(&elsewhere), None), elsewhere);
    }
}
