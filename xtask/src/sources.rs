//! Recipe sources as fetch requests (every origin of one pinned hash), and the `fetch` command.

use crate::debian;
use crate::fetch::{Fetcher, Want};
use crate::graph::Graph;
use crate::progress;
use crate::project::Project;
use crate::recipe::Recipe;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

#[derive(clap::Args, Debug)]
pub struct FetchArgs {
    /// Only the sources of TARGET and its dependencies (default: every recipe's).
    pub target: Option<String>,
    /// Print every source with its pin and origins as JSON instead of fetching.
    #[arg(long)]
    pub list: bool,
}

/// One line of `fetch --list`: a source pin and every origin it is looked for at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceListing {
    pub recipe: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub urls: Vec<String>,
}

impl FetchArgs {
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<()> {
        let graph = project.graph()?;
        if self.list {
            let listing = list(&graph, self.target.as_deref(), &project.debian_mirrors)?;
            println!("{}", serde_json::to_string_pretty(&listing)?);
            return Ok(());
        }
        let wants = wants(&graph, self.target.as_deref(), &project.debian_mirrors)?;
        let timer = progress::Timer::start();
        let mut hits = 0;
        for w in &wants {
            let hit = fetcher.is_cached(&w.sha256, w.size);
            fetcher.fetch(w).with_context(|| format!("fetching {}", w.file))?;
            hits += usize::from(hit);
            println!("{}  {}  {}", w.sha256, w.file, if hit { "cached" } else { "fetched" });
        }
        progress::say(&format!(
            "{} sources verified ({hits} from cache) in {}",
            wants.len(),
            timer.elapsed()
        ));
        Ok(())
    }
}

/// The recipes whose sources a command is about: TARGET's closure, or every recipe.
fn recipe_names(graph: &Graph, target: Option<&str>) -> Result<Vec<String>> {
    match target {
        Some(t) => graph.closure(t),
        None => Ok(graph.recipes.keys().cloned().collect()),
    }
}

/// Every source pin of the graph (or of a target's closure), one request per distinct hash
/// (kernel recipes share a tarball).
pub fn wants(graph: &Graph, target: Option<&str>, mirrors: &[String]) -> Result<Vec<Want>> {
    let mut out: Vec<Want> = Vec::new();
    for name in recipe_names(graph, target)? {
        for w in wants_for(&graph.get(&name)?.recipe, mirrors) {
            if !out.iter().any(|o| o.sha256 == w.sha256) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// `fetch --list`: one entry per recipe and source.
pub fn list(graph: &Graph, target: Option<&str>, mirrors: &[String]) -> Result<Vec<SourceListing>> {
    let mut out = Vec::new();
    for name in recipe_names(graph, target)? {
        for w in wants_for(&graph.get(&name)?.recipe, mirrors) {
            out.push(SourceListing {
                recipe: name.clone(),
                file: w.file,
                sha256: w.sha256,
                size: w.size,
                urls: w.urls,
            });
        }
    }
    Ok(out)
}

/// Fetch requests for one recipe's sources: upstream URLs first, then the Debian archive.
pub fn wants_for(recipe: &Recipe, mirrors: &[String]) -> Vec<Want> {
    recipe
        .sources
        .iter()
        .map(|s| {
            let mut urls = s.urls.clone();
            let mut aliases = Vec::new();
            if let Some(d) = &s.debian {
                urls.extend(debian::source_urls(mirrors, &d.package, &d.file));
                aliases.push(d.file.clone());
            }
            Want { file: s.file.clone(), sha256: s.sha256.clone(), size: s.size, urls, aliases }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn listing_round_trips_and_refuses_unknown_fields() {
        let l = SourceListing {
            recipe: "busybox".into(),
            file: "busybox-1.35.0.tar.bz2".into(),
            sha256: "a".repeat(64),
            size: 3,
            urls: vec!["http://x/y".into()],
        };
        let text = serde_json::to_string(&vec![l.clone()]).unwrap();
        assert_eq!(serde_json::from_str::<Vec<SourceListing>>(&text).unwrap(), vec![l]);
        let extra = text.replace("\"size\"", "\"extra\":1,\"size\"");
        assert!(serde_json::from_str::<Vec<SourceListing>>(&extra).is_err());
    }
}
