//! `fetch [TARGET]`: download and verify every pinned source (or list them with their pins
//! and origins).

use crate::ops::context::RunContext;
use crate::steps::sources::{list as list_sources, wants};
use anyhow::{Context, Result};
use reprovm_fs::progress;

/// Fetch (or, with `list`, print as JSON) the sources of `target`'s closure, or of every recipe.
pub fn fetch_sources(ctx: &RunContext, target: Option<&str>, list: bool) -> Result<()> {
    let (project, fetcher) = (&ctx.project, &ctx.fetcher);
    let graph = ctx.graph()?;
    if list {
        let listing = list_sources(&graph, target, project)?;
        println!("{}", serde_json::to_string_pretty(&listing)?);
        return Ok(());
    }
    let wants = wants(&graph, target, project)?;
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
