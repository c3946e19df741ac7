use reprovm::ops::context::RunContext;
use reprovm::ops::store::{Repair, VerifyOptions, VerifyReport};

#[derive(clap::Args, Debug)]
pub struct StoreArgs {
    #[command(subcommand)]
    pub what: StoreCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum StoreCommand {
    /// Hash every store entry's files against its manifest.json and name every file that
    /// differs (exit status 1 when one does). Builds check the entries they use cheaply;
    /// this reads every byte.
    Verify {
        /// Remove each damaged entry and substitute or build its node again, then compare the
        /// new bytes with what the entry recorded.
        #[arg(long)]
        repair: bool,
        /// Print the report as JSON on stdout.
        #[arg(long)]
        json: bool,
    },
}

impl StoreArgs {
    pub fn run(self, ctx: &mut RunContext) -> anyhow::Result<i32> {
        match self.what {
            StoreCommand::Verify { repair, json } => {
                let report = reprovm::ops::store::verify(ctx, &VerifyOptions { repair })?;
                if json {
                    println!("{}", serde_json::to_string_pretty(&report)?);
                } else {
                    print!("{}", render(&report));
                }
                Ok(if report.ok() { 0 } else { 1 })
            }
        }
    }
}

fn render(r: &VerifyReport) -> String {
    let mut s = String::new();
    for d in &r.damaged {
        s.push_str(&format!("DAMAGED {}\n", d.entry));
        for p in &d.problems {
            s.push_str(&format!("  {p}\n"));
        }
        match &d.repair {
            None => {}
            Some(Repair::Restored { node, arch }) => s.push_str(&format!(
                "  repaired: {node} ({arch}) made again, to the bytes its manifest recorded\n"
            )),
            Some(Repair::OtherBytes { node, arch, recorded, rebuilt }) => s.push_str(&format!(
                "  made again: {node} ({arch}), but to other bytes: recorded {recorded}, now {rebuilt} (`cargo xtask audit {node}` explains)\n"
            )),
            Some(Repair::Removed) => s.push_str(
                "  removed: no recipe of this checkout builds it, for any architecture whose toolchain is locked (it was left by other recipes)\n",
            ),
            Some(Repair::AlreadyReplaced) => {
                s.push_str("  already replaced or removed by another command meanwhile\n")
            }
            Some(Repair::Failed { node, arch, error }) => {
                s.push_str(&format!("  removed; building {node} ({arch}) again failed: {error}\n"))
            }
        }
    }
    let verdict = if r.damaged.is_empty() {
        "all intact".to_string()
    } else if r.ok() {
        format!("{} damaged, all repaired", r.damaged.len())
    } else if r.damaged.iter().all(|d| d.repair.is_none()) {
        format!(
            "{} DAMAGED (`cargo xtask store verify --repair` makes them again)",
            r.damaged.len()
        )
    } else {
        format!("{} DAMAGED, not all repaired to their recorded bytes", r.damaged.len())
    };
    s.push_str(&format!(
        "store verify: {} entries, {} files, {}: {verdict}\n",
        r.entries,
        r.files,
        reprovm_fs::progress::human_bytes(r.bytes)
    ));
    s
}
