use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct AttestArgs {
    /// Targets (default: every published output, as `pin outputs`), built first if needed.
    #[arg(value_name = "TARGET")]
    pub targets: Vec<String>,
    /// Sign the provenance and the SBOM into DSSE envelopes with this secret key (written by
    /// `cargo xtask cache keygen`).
    #[arg(long, value_name = "KEY")]
    pub sign_key: Option<PathBuf>,
}

impl AttestArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        reprovm::ops::attest::attest_targets(ctx, &self.targets, self.sign_key.as_deref())?;
        Ok(0)
    }
}

#[derive(clap::Args, Debug)]
pub struct VerifyArgs {
    /// DSSE envelopes (`out/attestations/NODE/*.dsse.json`); none: every attestation that
    /// refers to an image of the OCI layout given with --against (as `pull` fetched them).
    pub envelopes: Vec<PathBuf>,
    /// A public key whose signatures on attestations are trusted (`cargo xtask cache keygen
    /// ci.key` wrote it as ci.pub); repeatable.
    #[arg(long = "trusted-attestation-key", value_name = "FILE", required = true)]
    pub attestation_keys: Vec<PathBuf>,
    /// The outputs the statements are about: an output directory (files by path) or an OCI
    /// layout (manifests by tag).
    #[arg(long, value_name = "DIR", required_unless_present_any = ["signature_only", "image"])]
    pub against: Option<PathBuf>,
    /// Check only who signed the envelopes and that they hold Statements, not their subjects;
    /// with --image, only the image's cosign signature (a multi-architecture tag that
    /// `multiarch --sign-key` signed), not its attestations.
    #[arg(long, conflicts_with = "against")]
    pub signature_only: bool,
    /// Check an image on a registry as cosign does (`REGISTRY/REPO:TAG` or `@sha256:…`;
    /// `http://` for a registry on this machine without TLS): its cosign signature and its
    /// SLSA provenance and CycloneDX attestations, as `push --sign-key` publishes them. Each
    /// check is reported; a refused one fails the command (exit status 2), as any refusal
    /// of `verify` does.
    #[arg(long, value_name = "REF", conflicts_with_all = ["against", "envelopes"])]
    pub image: Option<String>,
    /// Print the accepted envelopes as JSON on stdout; with --image, every check made, accepted
    /// or refused.
    #[arg(long)]
    pub json: bool,
}

impl VerifyArgs {
    pub fn run(self) -> anyhow::Result<i32> {
        if let Some(image) = &self.image {
            let v = reprovm::ops::cosign::verify_image(
                image,
                &self.attestation_keys,
                self.signature_only,
            )?;
            if self.json {
                println!("{}", serde_json::to_string_pretty(&v)?);
            } else {
                for c in &v.checks {
                    match (&c.signer, &c.refused) {
                        (Some(signer), _) => {
                            println!("{}@{}: {}: signed by {signer}", image, v.digest, c.check)
                        }
                        (None, why) => println!(
                            "{}@{}: {}: REFUSED: {}",
                            image,
                            v.digest,
                            c.check,
                            why.as_deref().unwrap_or_default()
                        ),
                    }
                }
            }
            if !v.accepted() {
                let refused = v.checks.iter().filter(|c| c.refused.is_some()).count();
                anyhow::bail!("{image}: {refused} of {} checks refused", v.checks.len());
            }
            return Ok(0);
        }
        let verified = reprovm::ops::attest::verify(&reprovm::ops::attest::VerifyOptions {
            envelopes: self.envelopes,
            trusted_keys: self.attestation_keys,
            against: self.against,
            signature_only: self.signature_only,
        })?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&verified)?);
            return Ok(0);
        }
        for v in verified {
            println!(
                "{}: signed by {}, {} ({}); {}",
                v.name, v.signer, v.predicate_type, v.subjects, v.checked
            );
        }
        Ok(0)
    }
}
