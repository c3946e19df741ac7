use anyhow::Context;
use reprovm::ops::context::RunContext;
use std::path::PathBuf;

#[derive(clap::Args, Debug)]
pub struct CacheArgs {
    #[command(subcommand)]
    pub what: CacheCommand,
}

#[derive(clap::Subcommand, Debug)]
pub enum CacheCommand {
    /// Push each TARGET's closure and every pinned source and toolchain .deb to REF
    /// (`REGISTRY/REPO`; `http://` for a registry on this machine without TLS).
    #[command(override_usage = "cargo xtask cache push [OPTIONS] <TARGET>... <REF>")]
    Push {
        /// The targets whose closures to push (e.g. hd-image), then REF, the binary cache: a
        /// registry repository. Options may come anywhere.
        #[arg(value_name = "TARGET... REF", required = true, num_args = 1..)]
        targets_then_reference: Vec<String>,
        /// Sign each entry with this secret key (`cache keygen`).
        #[arg(long, value_name = "KEY")]
        sign_key: Option<PathBuf>,
    },
    /// Make an ed25519 key pair in Nix's format: FILE (secret, 0600) and the public key
    /// beside it, FILE with its extension replaced by `.pub` (`ci.key` gives `ci.pub`), and
    /// that public key as cosign reads it, by `.pub.pem` (`ci.pub.pem`).
    Keygen {
        /// Where the secret key goes (e.g. ci.key; the public key beside it, ci.pub).
        #[arg(value_name = "FILE")]
        file: PathBuf,
        /// The key's name, which signatures carry (default: the file's name without its
        /// extension).
        #[arg(long)]
        name: Option<String>,
    },
    /// Print the PEM public key `cosign verify --key` reads, of a key `cache keygen` wrote
    /// (the secret key or the public one).
    CosignKey {
        /// The secret key (ci.key) or public key (ci.pub).
        #[arg(value_name = "FILE")]
        file: PathBuf,
    },
}

impl CacheArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        match self.what {
            CacheCommand::Keygen { file, name } => {
                let name = match name {
                    Some(n) => n,
                    None => file
                        .file_stem()
                        .map(|s| s.to_string_lossy().into_owned())
                        .context("name the key with --name")?,
                };
                let public = reprovm::ops::cache_push::keygen(&name, &file)?;
                println!("{public}");
                reprovm_fs::progress::say(&format!(
                    "secret key {} (keep it), public key {} (give it to --trusted-cache-key and verify --trusted-attestation-key), and {} (give it to cosign verify --key)",
                    file.display(),
                    file.with_extension("pub").display(),
                    file.with_extension("pub.pem").display()
                ));
            }
            CacheCommand::CosignKey { file } => {
                print!("{}", reprovm::ops::cache_push::cosign_key(&file)?);
            }
            CacheCommand::Push { mut targets_then_reference, sign_key } => {
                if targets_then_reference.len() < 2 {
                    anyhow::bail!(
                        "cache push {}: give the targets, then the cache's REF (cache push hd-image REGISTRY/REPO)",
                        targets_then_reference.join(" ")
                    );
                }
                let reference = targets_then_reference.pop().context("cache push needs a REF")?;
                reprovm::ops::cache_push::push(
                    ctx,
                    &reference,
                    &targets_then_reference,
                    sign_key.as_deref(),
                )?;
            }
        }
        Ok(0)
    }
}
