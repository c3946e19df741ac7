use reprovm::ops::context::RunContext;
use reprovm::ops::new_recipe::{new_recipe, Origin};

#[derive(clap::Args, Debug)]
pub struct NewArgs {
    /// The recipe's name: lowercase letters, digits and `-` (recipes/NAME.toml, which must
    /// not exist).
    #[arg(value_name = "NAME")]
    pub name: String,
    /// An upstream tarball's URL (NAME-VERSION.tar.*); with --offline, found by its file
    /// name in a --mirror directory.
    #[arg(long, value_name = "URL", required_unless_present = "debian", conflicts_with = "debian")]
    pub url: Option<String>,
    /// A Debian source package, `PACKAGE` (its newest version in the suite) or
    /// `PACKAGE=VERSION`: its upstream tarball from the pool, recorded with its Debian origin.
    #[arg(long, value_name = "PACKAGE")]
    pub debian: Option<String>,
    /// The Debian suite to look in (default: the build toolchain's, toolchain/packages.toml).
    #[arg(long, value_name = "SUITE", requires = "debian")]
    pub suite: Option<String>,
    /// Print what was written as JSON on stdout.
    #[arg(long)]
    pub json: bool,
}

impl NewArgs {
    pub fn run(self, ctx: &RunContext) -> anyhow::Result<i32> {
        let origin = match (self.url, self.debian) {
            (Some(url), _) => Origin::Url(url),
            (None, Some(d)) => {
                let (package, version) = match d.split_once('=') {
                    Some((p, v)) => (p.to_string(), Some(v.to_string())),
                    None => (d, None),
                };
                Origin::Debian { package, version, suite: self.suite }
            }
            (None, None) => anyhow::bail!("give --url URL or --debian PACKAGE"),
        };
        let made = new_recipe(ctx, &self.name, &origin)?;
        if self.json {
            println!("{}", serde_json::to_string_pretty(&made)?);
        } else {
            println!(
                "{}: {} {} ({} bytes, sha256 {}), build system {}; edit its build script and outputs, then `cargo xtask build {}`",
                made.recipe.display(),
                made.file,
                made.version,
                made.size,
                made.sha256,
                made.build_system,
                self.name
            );
        }
        Ok(0)
    }
}
