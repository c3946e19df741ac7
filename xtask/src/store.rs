//! The store: input hashes of build nodes (Nix-style input addressing) and the entries
//! `out/store/<hash>-<name>-<version>/` that hold their outputs and manifests.

use crate::graph::Graph;
use crate::hash::{sha256_file, Hasher};
use crate::manifest::{self, Manifest};
use crate::project::Project;
use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// Input hashes of a set of nodes, memoised: each is computed once per run.
pub struct InputHashes<'a> {
    graph: &'a Graph,
    project: &'a Project,
    toolchain_id: String,
    memo: BTreeMap<String, String>,
}

impl<'a> InputHashes<'a> {
    pub fn new(graph: &'a Graph, project: &'a Project, toolchain_id: &str) -> Self {
        InputHashes {
            graph,
            project,
            toolchain_id: toolchain_id.to_string(),
            memo: BTreeMap::new(),
        }
    }

    /// sha256 over: the recipe text, the hash of every declared file and overlay, the pinned
    /// hash of every source, the input hash of every dependency, and the toolchain identity.
    pub fn get(&mut self, name: &str) -> Result<String> {
        if let Some(h) = self.memo.get(name) {
            return Ok(h.clone());
        }
        let l = self.graph.get(name)?;
        let mut h = Hasher::new("reprovm-input-v1");
        h.field("name", name.as_bytes());
        h.field("recipe", l.text.as_bytes());
        for f in &l.recipe.files {
            let p = self.project.recipes.join(f);
            let (sha, _) = sha256_file(&p)
                .with_context(|| format!("recipe {name}: file `{f}` listed in `files`"))?;
            h.field("file", format!("{f} {sha}").as_bytes());
        }
        if let Some(rootfs) = &l.recipe.rootfs {
            for o in &rootfs.overlays {
                let p = resolve_overlay(&self.project.recipes, o);
                h.field(
                    "overlay",
                    format!(
                        "{o} {}",
                        tree_hash(&p).with_context(|| format!("recipe {name}: overlay `{o}`"))?
                    )
                    .as_bytes(),
                );
            }
        }
        for s in &l.recipe.sources {
            h.field("source", format!("{} {} {}", s.file, s.sha256, s.strip_components).as_bytes());
        }
        let deps = l.recipe.deps.clone();
        for d in deps {
            let dh = self.get(self.graph.resolve(&d))?;
            h.field("dep", format!("{d} {dh}").as_bytes());
        }
        h.field("toolchain", self.toolchain_id.as_bytes());
        let out = h.finish();
        self.memo.insert(name.to_string(), out.clone());
        Ok(out)
    }
}

pub fn resolve_overlay(recipes: &Path, o: &str) -> PathBuf {
    if Path::new(o).is_absolute() {
        PathBuf::from(o)
    } else {
        recipes.join(o)
    }
}

/// Content hash of a file or directory tree (types, modes of files, contents, link targets).
pub fn tree_hash(path: &Path) -> Result<String> {
    let meta =
        std::fs::metadata(path).with_context(|| format!("{} does not exist", path.display()))?;
    if meta.is_file() {
        return Ok(sha256_file(path)?.0);
    }
    Ok(manifest::output_hash(&manifest::scan(path)?))
}

/// Store entry directory for a node.
pub fn entry_dir(project: &Project, name: &str, version: &str, input_hash: &str) -> PathBuf {
    project.store().join(format!("{}-{name}-{version}", &input_hash[..32]))
}

/// A complete store entry (its manifest exists: entries appear by atomic rename only).
pub fn lookup(project: &Project, name: &str, version: &str, input_hash: &str) -> Option<Manifest> {
    let dir = entry_dir(project, name, version, input_hash);
    manifest::read(&dir.join("manifest.json")).ok()
}

/// The outputs of a built node.
pub fn out_dir(entry: &Path) -> PathBuf {
    entry.join("out")
}
