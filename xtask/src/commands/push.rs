use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct PushArgs {
    /// A recipe whose output is an OCI layout (built first if needed), e.g. krata-kernel-oci.
    pub target: String,
    /// Destination repository, `REGISTRY/REPO` or `REGISTRY/REPO:TAG`. Every tag of the
    /// layout is pushed; `:TAG` adds one for its main manifest.
    #[arg(value_name = "REF")]
    pub reference: String,
    /// Speak plain HTTP (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
    /// Attach the target's provenance and SBOM, signed with this key (`cache keygen`), as
    /// OCI 1.1 referrers of each image (listed in the referrers tag `sha256-<hex>`).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<std::path::PathBuf>,
}

impl PushArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::publish::push_target(
            ctx,
            &self.target,
            &self.reference,
            self.plain_http,
            self.sign_key.as_deref(),
        )?;
        Ok(0)
    }
}
