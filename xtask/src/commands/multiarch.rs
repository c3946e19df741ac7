use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct MultiarchArgs {
    /// A recipe whose output is an OCI layout, e.g. firecracker-kernel-bin-oci: built for
    /// x86_64 and aarch64 and merged into out/multiarch/oci/TARGET, one image index per tag.
    pub target: String,
    /// Record the indexes' digests in pins/multiarch.toml (otherwise they must match it).
    #[arg(long)]
    pub pin: bool,
    /// Then push the merged layout to REF, `REGISTRY/REPO` (`:TAG` adds one more tag).
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
    /// Speak plain HTTP to the registry (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
}

impl MultiarchArgs {
    pub fn run(self, ctx: &mut RunContext) -> anyhow::Result<i32> {
        if self.plain_http && self.reference.is_none() {
            anyhow::bail!("--plain-http is for the push: give a REF after the target");
        }
        if let Some(reference) = &self.reference {
            reprovm::ops::publish::check_destination(reference, self.plain_http)?;
        }
        let dir = reprovm::ops::multiarch::write(ctx, &self.target, self.pin)?;
        if let Some(reference) = &self.reference {
            reprovm::ops::publish::push_layout(&dir, reference, self.plain_http)?;
        }
        println!("{}", dir.display());
        Ok(0)
    }
}
