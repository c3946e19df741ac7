//! `cargo xtask plan TARGET`: the build graph with input hashes and cache state.

use crate::fetch::Fetcher;
use crate::graph::Graph;
use crate::project::Project;
use crate::store::{self, InputHashes};
use anyhow::Result;
use std::fmt::Write;

#[derive(Debug, Clone, serde::Serialize)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub input_hash: String,
    pub built: bool,
    pub deps: Vec<String>,
    pub sources: Vec<(String, bool)>,
    pub description: String,
}

pub fn plan(
    project: &Project,
    graph: &Graph,
    target: &str,
    toolchain_id: &str,
    fetcher: &Fetcher,
) -> Result<Vec<Node>> {
    let order = graph.closure(target)?;
    let mut hashes = InputHashes::new(graph, project, toolchain_id);
    let mut nodes = Vec::new();
    for name in order {
        let l = graph.get(&name)?;
        let ih = hashes.get(&name)?;
        let built = store::lookup(project, &name, &l.recipe.version, &ih).is_some();
        let sources = l
            .recipe
            .sources
            .iter()
            .map(|s| (s.file.clone(), fetcher.is_cached(&s.sha256, s.size)))
            .collect();
        nodes.push(Node {
            name: name.clone(),
            version: l.recipe.version.clone(),
            input_hash: ih,
            built,
            deps: l.recipe.deps.clone(),
            sources,
            description: l.recipe.description.clone(),
        });
    }
    Ok(nodes)
}

pub fn render(nodes: &[Node], toolchain_id: &str) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "toolchain {toolchain_id}");
    for n in nodes {
        let state = if n.built { "cached" } else { "to build" };
        let _ = writeln!(s, "{:<12} {:<10} {}  [{state}]", n.name, n.version, n.input_hash);
        if !n.description.is_empty() {
            let _ = writeln!(s, "    {}", n.description);
        }
        if !n.deps.is_empty() {
            let _ = writeln!(s, "    deps: {}", n.deps.join(", "));
        }
        for (file, cached) in &n.sources {
            let _ = writeln!(
                s,
                "    source {file} [{}]",
                if *cached { "in cache" } else { "to fetch" }
            );
        }
    }
    s
}
