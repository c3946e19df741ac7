//! The build history (`out/builds.jsonl`): one line per `build` command with the store
//! entries of its closure. `build` appends to it; `gc` keeps the last closures it lists.

use crate::model::project::Project;
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};

/// The record of builds whose closures `gc` keeps.
const HISTORY: &str = "builds.jsonl";

/// One `build` command, as the history records it.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct BuildRecord {
    pub target: String,
    /// Store entry directory names of its closure.
    pub entries: Vec<String>,
}

/// Append a build to the history (called by `build`, under the store lock it still holds or
/// just released: the file is appended to with one write).
pub(crate) fn record(project: &Project, record: &BuildRecord) -> Result<()> {
    use std::io::Write;
    let path = project.out.join(HISTORY);
    let mut line = serde_json::to_vec(record)?;
    line.push(b'\n');
    let mut f = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&path)
        .with_context(|| format!("opening {}", path.display()))?;
    f.write_all(&line)?;
    Ok(())
}

/// The recorded builds, oldest first; a damaged line is an error naming the file.
pub(crate) fn read(project: &Project) -> Result<Vec<BuildRecord>> {
    let path = project.out.join(HISTORY);
    let text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Vec::new()),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    text.lines()
        .filter(|l| !l.trim().is_empty())
        .enumerate()
        .map(|(i, l)| {
            serde_json::from_str(l).with_context(|| {
                format!("{}:{}: not a build record; remove the line", path.display(), i + 1)
            })
        })
        .collect()
}
