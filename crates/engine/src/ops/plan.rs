//! `cargo xtask plan TARGET`: the build graph with input hashes and cache state.

use crate::mechanisms::fetch::Fetcher;
use crate::model::graph::Graph;
use crate::model::project::Project;
use crate::model::store::{self, InputHashes};
use crate::ops::context::RunContext;
use crate::steps::toolchain;
use anyhow::Result;
use serde::{Deserialize, Serialize};
use std::fmt::Write;

/// `plan TARGET...`: the graph of every target named (their closures' union, each node once,
/// dependencies first) with input hashes and what is built.
pub fn plan_targets(ctx: &RunContext, targets: &[String]) -> Result<Plan> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let graph = ctx.graph()?;
    let tc = toolchain::identity(project)?;
    let mut order: Vec<String> = Vec::new();
    for t in targets {
        for n in graph.closure(t)? {
            if !order.contains(&n) {
                order.push(n);
            }
        }
    }
    plan_nodes(project, &graph, order, &tc, fetcher)
}

/// `plan --json`.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Plan {
    pub toolchain: String,
    pub nodes: Vec<Node>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Node {
    pub name: String,
    pub version: String,
    pub input_hash: String,
    pub built: bool,
    pub deps: Vec<String>,
    pub sources: Vec<SourceState>,
    pub description: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceState {
    pub file: String,
    pub cached: bool,
}

pub(crate) fn plan(
    project: &Project,
    graph: &Graph,
    target: &str,
    toolchain_id: &str,
    fetcher: &Fetcher,
) -> Result<Plan> {
    plan_nodes(project, graph, graph.closure(target)?, toolchain_id, fetcher)
}

fn plan_nodes(
    project: &Project,
    graph: &Graph,
    order: Vec<String>,
    toolchain_id: &str,
    fetcher: &Fetcher,
) -> Result<Plan> {
    let mut hashes = InputHashes::new(graph, project, toolchain_id)?;
    let mut nodes = Vec::new();
    for name in order {
        let l = graph.get(&name)?;
        let input_hash = hashes.get(&name)?;
        let built = store::lookup(project, &name, &l.recipe.version, &input_hash)?.is_some();
        let sources = l
            .recipe
            .sources
            .iter()
            .map(|s| SourceState {
                file: s.file.clone(),
                cached: fetcher.is_cached(&s.sha256, s.size),
            })
            .collect();
        nodes.push(Node {
            name: name.clone(),
            version: l.recipe.version.clone(),
            input_hash,
            built,
            deps: l.recipe.deps.iter().map(|d| graph.dep_node(&name, d)).collect(),
            sources,
            description: l.recipe.description.clone(),
        });
    }
    Ok(Plan { toolchain: toolchain_id.to_string(), nodes })
}

pub fn render(plan: &Plan) -> String {
    let mut s = String::new();
    let _ = writeln!(s, "toolchain {}", plan.toolchain);
    let width = plan.nodes.iter().map(|n| n.name.len()).max().unwrap_or(0).max(12);
    for n in &plan.nodes {
        let state = if n.built { "cached" } else { "to build" };
        let _ = writeln!(s, "{:<width$} {:<10} {}  [{state}]", n.name, n.version, n.input_hash);
        if !n.description.is_empty() {
            let _ = writeln!(s, "    {}", n.description);
        }
        if !n.deps.is_empty() {
            let _ = writeln!(s, "    deps: {}", n.deps.join(", "));
        }
        for src in &n.sources {
            let _ = writeln!(
                s,
                "    source {} [{}]",
                src.file,
                if src.cached { "in cache" } else { "to fetch" }
            );
        }
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Plan {
        Plan {
            toolchain: "t".repeat(64),
            nodes: vec![
                Node {
                    name: "busybox".into(),
                    version: "1.35.0".into(),
                    input_hash: "a".repeat(64),
                    built: true,
                    deps: vec![],
                    sources: vec![SourceState {
                        file: "busybox-1.35.0.tar.bz2".into(),
                        cached: true,
                    }],
                    description: "BusyBox".into(),
                },
                Node {
                    name: "rootfs".into(),
                    version: "1".into(),
                    input_hash: "b".repeat(64),
                    built: false,
                    deps: vec!["busybox".into()],
                    sources: vec![],
                    description: String::new(),
                },
            ],
        }
    }

    #[test]
    fn rendered_plan() {
        expect_test::expect![[r#"
            toolchain tttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttttt
            busybox      1.35.0     aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa  [cached]
                BusyBox
                source busybox-1.35.0.tar.bz2 [in cache]
            rootfs       1          bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb  [to build]
                deps: busybox
        "#]]
        .assert_eq(&render(&sample()));
    }

    #[test]
    fn plan_json_is_typed_and_round_trips() {
        let p = sample();
        let text = serde_json::to_string(&p).unwrap();
        assert!(
            text.contains("\"sources\":[{\"file\":\"busybox-1.35.0.tar.bz2\",\"cached\":true}]"),
            "{text}"
        );
        assert_eq!(serde_json::from_str::<Plan>(&text).unwrap(), p);
    }
}
