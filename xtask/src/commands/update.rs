use reprovm::ops::context::RunContext;
use reprovm::ops::update::{SourceState, UpdateOptions, UpdateReport};
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct UpdateArgs {
    /// Exit with status 1 when the archive has a newer file for a source, a pinned source is
    /// no longer in its suites, or a lock would change (2 on an error: a scheduled CI job).
    #[arg(long, conflicts_with = "write")]
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
        Ok(if self.check && report.out_of_date() { 1 } else { 0 })
    }
}

/// One table: a row per pinned source with a Debian origin, then one per lock.
fn render(r: &UpdateReport) -> String {
    let mut rows: Vec<[String; 5]> =
        vec![["NAME".into(), "SUITES".into(), "PINNED".into(), "NEWEST".into(), "STATE".into()]];
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
            SourceState::SameFile => "same upstream file (a Debian revision: no change)".into(),
            SourceState::Newer { file, .. } => format!("NEWER: {file}"),
            SourceState::NotFound { why } => format!("UNKNOWN: {why}"),
        };
        rows.push([
            format!("{} ({})", row.node, row.file),
            suites,
            row.current.clone(),
            newest,
            state,
        ]);
    }
    for l in &r.locks {
        let security = l.changes.iter().filter(|c| c.security).count();
        let down = l.changes.iter().filter(|c| c.downgrade).count();
        let newest = if l.changes.is_empty() {
            "-".to_string()
        } else {
            format!("{} to move ({security} security)", l.changes.len())
        };
        let state = if l.changes.is_empty() {
            "current".to_string()
        } else {
            let list: Vec<String> = l
                .changes
                .iter()
                .map(|c| {
                    format!(
                        "{} {} -> {}{}{}",
                        c.name,
                        c.current.as_deref().unwrap_or("(new)"),
                        c.new.as_deref().unwrap_or("(dropped)"),
                        if c.security { " (security)" } else { "" },
                        if c.downgrade { " (OLDER)" } else { "" }
                    )
                })
                .collect();
            let older =
                if down > 0 { format!("{down} OLDER than the lock: ") } else { String::new() };
            format!("{older}{}", list.join(", "))
        };
        rows.push([
            format!("{} ({})", l.set, l.lock),
            l.suite.clone(),
            format!("{} packages", l.packages),
            newest,
            state,
        ]);
    }
    let width = |i: usize| rows.iter().map(|r| r[i].chars().count()).max().unwrap_or(0);
    let widths = [width(0), width(1), width(2), width(3)];
    let mut s = format!("(indexes verified with the {})\n", r.keyring);
    for row in &rows {
        s.push_str(&format!(
            "{:<w0$}  {:<w1$}  {:<w2$}  {:<w3$}  {}\n",
            row[0],
            row[1],
            row[2],
            row[3],
            row[4],
            w0 = widths[0],
            w1 = widths[1],
            w2 = widths[2],
            w3 = widths[3]
        ));
    }
    match &r.written {
        Some(w) => {
            let files = if w.files.is_empty() { "nothing".to_string() } else { w.files.join(", ") };
            s.push_str(&format!("wrote: {files}\n"));
            if !w.nodes.is_empty() {
                s.push_str(&format!("input hashes changed: {}\n", w.nodes.join(", ")));
            }
            if !w.pins.is_empty() {
                s.push_str(&format!(
                    "published outputs to build and pin again (`cargo xtask build T` then `cargo xtask pin outputs T`): {}\n",
                    w.pins.join(", ")
                ));
            }
            if let Some(note) = &w.note {
                s.push_str(&format!("note: {note}\n"));
            }
        }
        None if r.out_of_date() => s.push_str(
            "update: out of date (`cargo xtask update --write [NAME...]` moves the pins)\n",
        ),
        None => s.push_str("update: every pin is the newest its series and suites carry\n"),
    }
    s
}
