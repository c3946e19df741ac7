//! `fetch [TARGET]`: download and verify every pinned source (or list them with their pins
//! and origins).

use crate::ops::context::RunContext;
use crate::steps::sources::{self, SourceListing};
use anyhow::{Context, Result};
use reprovm_fs::progress;

/// A source fetched (verified in the cache).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Fetched {
    pub sha256: String,
    pub file: String,
    /// It was in the cache already.
    pub cached: bool,
}

/// Fetch the sources of `target`'s closure, or of every recipe.
pub fn fetch_sources(ctx: &RunContext, targets: &[String]) -> Result<Vec<Fetched>> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let graph = ctx.graph()?;
    let mut wants: Vec<crate::mechanisms::fetch::Want> = Vec::new();
    if targets.is_empty() {
        wants = sources::wants(&graph, None, project)?;
    }
    for t in targets {
        for w in sources::wants(&graph, Some(t), project)? {
            if !wants.iter().any(|x| x.sha256 == w.sha256) {
                wants.push(w);
            }
        }
    }
    let timer = progress::Timer::start();
    let mut out = Vec::new();
    for w in &wants {
        let cached = fetcher.is_cached(&w.sha256, w.size);
        fetcher.fetch(w).with_context(|| format!("fetching {}", w.file))?;
        out.push(Fetched { sha256: w.sha256.clone(), file: w.file.clone(), cached });
    }
    progress::say(&format!(
        "{} sources verified ({} from cache) in {}",
        wants.len(),
        out.iter().filter(|f| f.cached).count(),
        timer.elapsed()
    ));
    Ok(out)
}

/// Every source of `target`'s closure (or of every recipe) with its pin and origins.
pub fn list_sources(ctx: &RunContext, targets: &[String]) -> Result<Vec<SourceListing>> {
    let graph = ctx.graph()?;
    if targets.is_empty() {
        return sources::list(&graph, None, &ctx.project);
    }
    let mut out: Vec<SourceListing> = Vec::new();
    for t in targets {
        for l in sources::list(&graph, Some(t), &ctx.project)? {
            if !out.contains(&l) {
                out.push(l);
            }
        }
    }
    Ok(out)
}
