use reprovm::ops::context::RunContext;

#[derive(clap::Args, Debug)]
pub struct MultiarchArgs {
    /// A recipe whose output is an OCI layout, e.g. firecracker-kernel-bin-oci: built for
    /// x86_64 and aarch64 and merged into out/multiarch/oci/TARGET, one image index per tag.
    /// With --matrix there is no TARGET: `multiarch --matrix [REF]`.
    #[arg(value_name = "TARGET", required_unless_present = "matrix")]
    pub target: Option<String>,
    /// Record the indexes' digests in pins/multiarch.toml (otherwise they must match it).
    #[arg(long)]
    pub pin: bool,
    /// Then push the merged layout to REF, `REGISTRY/REPO` (`:TAG` adds one more tag).
    #[arg(value_name = "REF")]
    pub reference: Option<String>,
    /// Every index of the build matrix (`plan --matrix`) instead of one TARGET; REF is then
    /// `REGISTRY/NAMESPACE` and each image goes to `REF/IMAGE` (the recipe's name without
    /// `-oci`: `firecracker-kernel-bin`), a tag per cell (`6.18.15-kvm`).
    #[arg(long)]
    pub matrix: bool,
    /// Speak plain HTTP to the registry (only to 127.0.0.1, ::1 or localhost).
    #[arg(long)]
    pub plain_http: bool,
    /// After the push, sign every pushed tag (each image index) and each platform's image for
    /// cosign (`cosign verify --key`) with this secret key (`cache keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<std::path::PathBuf>,
}

impl MultiarchArgs {
    pub fn run(self, ctx: &mut RunContext) -> anyhow::Result<i32> {
        let (target, reference) = match (self.matrix, self.target, self.reference) {
            (true, Some(_), Some(_)) => {
                anyhow::bail!("multiarch --matrix takes no TARGET, only REF: multiarch --matrix REGISTRY/NAMESPACE")
            }
            (true, reference, None) => (None, reference),
            (false, target, reference) => (target, reference),
            (true, None, Some(_)) => unreachable!("clap fills TARGET first"),
        };
        if self.plain_http && reference.is_none() {
            anyhow::bail!("--plain-http is for the push: give a REF after the target");
        }
        if let Some(reference) = &reference {
            reprovm::ops::publish::check_destination(reference, self.plain_http)?;
        }
        if let Some(key) = &self.sign_key {
            anyhow::ensure!(reference.is_some(), "--sign-key signs what is pushed: give a REF");
            reprovm::ops::cosign::check_sign_key(key)?;
        }
        let Some(target) = target else {
            for index in reprovm::ops::multiarch::write_matrix(ctx, self.pin)? {
                if let Some(reference) = &reference {
                    let to = format!("{}/{}", reference.trim_end_matches('/'), index.repository);
                    let key = self.sign_key.as_deref();
                    reprovm::ops::publish::push_layout(&index.dir, &to, self.plain_http, key)?;
                    println!("{} -> {to}:{}", index.target, index.tags.join(","));
                } else {
                    println!("{}", index.dir.display());
                }
            }
            return Ok(0);
        };
        let dir = reprovm::ops::multiarch::write(ctx, &target, self.pin)?;
        if let Some(reference) = &reference {
            let key = self.sign_key.as_deref();
            reprovm::ops::publish::push_layout(&dir, reference, self.plain_http, key)?;
        }
        println!("{}", dir.display());
        Ok(0)
    }
}
