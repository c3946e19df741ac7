//! Where things live: the repository, recipes, pins, the output tree and the download cache.

use std::path::{Path, PathBuf};

/// All paths the engine reads or writes. Built once from the CLI's global options.
#[derive(Debug, Clone)]
pub struct Project {
    pub root: PathBuf,
    pub recipes: PathBuf,
    pub pins: PathBuf,
    pub out: PathBuf,
    pub cache: PathBuf,
    /// Development mode: the sandbox root is made of host programs (named in every output).
    pub host_toolchain: bool,
    /// Dependency substitutions from `--use DEP=RECIPE`.
    pub uses: Vec<String>,
    /// Debian mirror base URLs (`REPROVM_DEBIAN_MIRROR` or the host's apt sources).
    pub debian_mirrors: Vec<String>,
}

impl Project {
    pub fn new(recipes: Option<PathBuf>, out: Option<PathBuf>, cache: Option<PathBuf>) -> Project {
        let root = repo_root();
        let recipes = recipes.unwrap_or_else(|| root.join("recipes"));
        let out = out.unwrap_or_else(|| root.join("out"));
        let cache = cache.unwrap_or_else(|| out.join("cache"));
        Project {
            pins: root.join("pins"),
            root,
            recipes,
            out,
            cache,
            host_toolchain: false,
            uses: Vec::new(),
            debian_mirrors: crate::debian::mirrors(),
        }
    }

    /// The recipe graph with this run's substitutions applied.
    pub fn graph(&self) -> anyhow::Result<crate::graph::Graph> {
        crate::graph::Graph::load(&self.recipes)?.with_aliases(&self.uses)
    }

    pub fn store(&self) -> PathBuf {
        self.out.join("store")
    }
    pub fn logs(&self) -> PathBuf {
        self.out.join("logs")
    }
    pub fn work(&self) -> PathBuf {
        self.out.join("work")
    }
    pub fn toolchain_lock(&self) -> PathBuf {
        self.pins.join("toolchain.lock")
    }
    pub fn outputs_pin(&self) -> PathBuf {
        self.pins.join("outputs.toml")
    }
    pub fn toolchain_spec(&self) -> PathBuf {
        self.root.join("toolchain").join("packages.toml")
    }
}

/// The repository root: the parent of the xtask crate (works from any cwd, like cargo does).
pub fn repo_root() -> PathBuf {
    if let Ok(dir) = std::env::var("REPROVM_ROOT") {
        return PathBuf::from(dir);
    }
    let manifest = std::env::var("CARGO_MANIFEST_DIR")
        .unwrap_or_else(|_| env!("CARGO_MANIFEST_DIR").to_string());
    Path::new(&manifest).parent().map(Path::to_path_buf).unwrap_or_else(|| PathBuf::from("."))
}

/// Path relative to `base` for messages, falling back to the full path.
pub fn display_rel(path: &Path, base: &Path) -> String {
    path.strip_prefix(base).unwrap_or(path).display().to_string()
}
