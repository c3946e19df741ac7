use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:...`.
    pub reference: String,
    /// Directory to create as the OCI layout (must not exist).
    pub dir: PathBuf,
    /// Speak plain HTTP (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
}

impl PullArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        reprovm::ops::publish::pull_reference(&self.reference, &self.dir, self.plain_http)?;
        Ok(0)
    }
}
