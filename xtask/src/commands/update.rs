use reprovm::ops::context::RunContext;
use reprovm::ops::update::{SourceState, UpdateOptions, UpdateReport};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Exit with status 1 when the archive has a newer file for a source or a lock would
    /// change (for a scheduled CI job).
    #[arg(long)]
    pub check: bool,
    /// Move the pins forward: download every new file (checked against the index), edit the
    /// recipes in place, write the locks; then say which nodes and published outputs changed.
    #[arg(long)]
    pub write: bool,
    /// With --write: only these source nodes (kernel, kernel@6.18, busybox, ...) and package
    /// sets (build, tools, ...); default everything out of date.
    #[arg(requires = "write", value_name = "NAME")]
    pub names: Vec<String>,
    /// Verify the archive's InRelease files with this keyring instead of the pinned
    /// debian-archive-keyring (a private or stand-in archive).
    #[arg(long, value_name = "FILE")]
    pub keyring: Option<PathBuf>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl UpdateArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let opts = UpdateOptions {
            write: self.write.then(|| self.names.clone()),
            keyring: self.keyring.clone(),
        };
        let report = reprovm::ops::update::update(ctx, &opts)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", render(&report));
        }
        Ok(if self.check && report.out_of_date() && !self.write { 1 } else { 0 })
    }
}

fn render(r: &UpdateReport) -> String {
    let mut s = String::new();
    s.push_str(&format!("(indexes verified with the {})\n", r.keyring));
    s.push_str(&format!(
        "{:<18} {:<24} {:<32} {:<32} {}\n",
        "SOURCE", "SUITES", "PINNED", "NEWEST IN SERIES", "STATE"
    ));
    for row in &r.sources {
        let suites = match row.suites.first() {
            Some(first) if row.suites.len() > 1 => format!("{first} (+{})", row.suites.len() - 1),
            Some(first) => first.clone(),
            None => "-".into(),
        };
        let newest = match (&row.newest, &row.newest_suite) {
            (Some(v), Some(suite)) if row.security => format!("{v} ({suite}, security)"),
            (Some(v), _) => v.clone(),
            _ => "-".into(),
        };
        let state = match &row.state {
            SourceState::Current => "current".to_string(),
            SourceState::SameFile => {
                "same upstream file (a Debian revision; no change here)".to_string()
            }
            SourceState::Newer { file, .. } => format!("NEWER: {file}"),
            SourceState::NotFound { why } => format!("not found: {why}"),
        };
        s.push_str(&format!(
            "{:<18} {:<24} {:<32} {:<32} {state}\n",
            row.node, suites, row.current, newest
        ));
    }
    s.push_str(&format!("{:<18} {:<24} {:<8} {}\n", "LOCK", "SUITE", "PACKAGES", "CHANGES"));
    for l in &r.locks {
        let security = l.changes.iter().filter(|c| c.security).count();
        let changes = if l.changes.is_empty() {
            "current".to_string()
        } else {
            let list: Vec<String> = l
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{} {} -> {}{}",
                        c.name,
                        c.current.as_deref().unwrap_or("(new)"),
                        c.new.as_deref().unwrap_or("(dropped)"),
                        if c.security { " (security)" } else { "" }
                    )
                })
                .collect();
            format!("{} to move ({security} security): {}", l.changes.len(), list.join(", "))
        };
        s.push_str(&format!("{:<18} {:<24} {:<8} {changes}\n", l.set, l.suite, l.packages));
    }
    match &r.written {
        Some(w) => {
            s.push_str(&format!(
                "wrote: {}\n",
                if w.files.is_empty() { "nothing".to_string() } else { w.files.join(", ") }
            ));
            if !w.nodes.is_empty() {
                s.push_str(&format!("input hashes changed: {}\n", w.nodes.join(", ")));
            }
            if !w.pins.is_empty() {
                s.push_str(&format!(
                    "published outputs to build and pin again (`cargo xtask build T` then `cargo xtask pin outputs T`): {}\n",
                    w.pins.join(", ")
                ));
            }
        }
        None if r.out_of_date() => s.push_str(
            "update: out of date (`cargo xtask update --write [NAME...]` moves the pins)\n",
        ),
        None => s.push_str("update: every pin is the newest its series and suites carry\n"),
    }
    s
}
