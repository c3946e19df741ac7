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
    /// Push TARGET's closure (default hd-image) and every pinned source and toolchain .deb to
    /// REPO (`REGISTRY/REPO`; `http://` for a registry on this machine without TLS).
    Push {
        repository: String,
        target: Option<String>,
        /// Sign each entry with this secret key (`cache keygen`).
        #[arg(long)]
        sign_key: Option<PathBuf>,
    },
    /// Make an ed25519 key pair: FILE (secret, 0600) and FILE.pub, in Nix's format.
    Keygen {
        file: PathBuf,
        /// The key's name, which signatures carry (default: the file's name).
        #[arg(long)]
        name: Option<String>,
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
                    "secret key {} (keep it), public key {} (give it to --trusted-key)",
                    file.display(),
                    file.with_extension("pub").display()
                ));
            }
            CacheCommand::Push { repository, target, sign_key } => {
                reprovm::ops::cache_push::push(
                    ctx,
                    &repository,
                    target.as_deref().unwrap_or("hd-image"),
                    sign_key.as_deref(),
                )?;
            }
        }
        Ok(0)
    }
}
