use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct PullArgs {
    /// What to pull: `REGISTRY/REPO:TAG` or `REGISTRY/REPO@sha256:...`.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Directory to create as the OCI layout (must not exist; its parent must).
    #[arg(value_name = "DIR")]
    pub dir: PathBuf,
    /// Speak plain HTTP (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
    /// The most the pull may take in all (manifests, configs, layers, referrers), as each
    /// declares it before it is fetched: bytes, or with K, M, G or T.
    #[arg(long, value_name = "SIZE", default_value = "4G", value_parser = super::values::parse_size)]
    pub max_size: u64,
}

impl PullArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        reprovm::ops::publish::pull_reference(
            &self.reference,
            &self.dir,
            self.plain_http,
            self.max_size,
        )?;
        Ok(0)
    }
}
