use reprovm::ops::audit::{audit, AuditOptions};
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AuditArgs {
    /// Targets to rebuild and compare (default: every published output, as `pin outputs`).
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Print the report as JSON on stdout.
    #[arg(long)]
    pub json: bool,
    /// Write a deterministic zip with the report, both manifests and the logs.
    #[arg(long, value_name = "FILE.zip")]
    pub bundle: Option<PathBuf>,
    /// Parallel jobs of the rebuild (default: one more than the CPU count a build uses, so
    /// that make schedules differently without the rebuild running serially).
    #[arg(long, value_name = "N", value_parser = super::values::at_least_one)]
    pub rebuild_jobs: Option<std::num::NonZeroUsize>,
    /// Keep the rebuilt outputs even when they match.
    #[arg(long)]
    pub keep: bool,
    /// Also compare each rebuild with what this binary cache (`REGISTRY/REPO`) holds for the
    /// same inputs, as Debian's rebuilders check the archive.
    #[arg(long, value_name = "REF")]
    pub against: Option<String>,
}

impl AuditArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let opts = AuditOptions {
            targets: self.targets,
            bundle: self.bundle,
            rebuild_jobs: self.rebuild_jobs,
            keep: self.keep,
            against: self.against,
        };
        let report = audit(ctx, &opts)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&report)?);
        } else {
            print!("{}", reprovm::ops::audit::render(&report));
        }
        if !report.ok {
            eprintln!("error: audit found differences (see the report above)");
            return Ok(1);
        }
        Ok(0)
    }
}
