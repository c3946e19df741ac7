//! `cargo xtask new NAME --url URL | --debian PACKAGE[=VERSION]`: a source recipe in one
//! command, as `nix-prefetch-url` and `nix-init` make a derivation's skeleton. The source is
//! fetched once (bounded, hashed while it streams, kept in the download cache by its sha256),
//! its pin recorded with every origin it has (the URL; for a Debian source package the pool
//! and a snapshot time), its build system read from the tarball's names, and
//! `recipes/NAME.toml` written (atomically; a name that exists is refused) with a build
//! script the user then edits.

use crate::mechanisms::debian;
use crate::mechanisms::debian_version as dv;
use crate::mechanisms::fetch::Want;
use crate::mechanisms::http::Client;
use crate::ops::context::RunContext;
use crate::steps::toolchain::archive::Archive;
use crate::steps::toolchain::resolve::PackageSpec;
use crate::steps::toolchain::PackageSet;
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::HashingWriter;
use std::path::{Path, PathBuf};

/// The largest source `new` downloads.
const MAX_SOURCE: u64 = 2 << 30;

/// Where the source comes from.
#[derive(Debug, Clone)]
pub enum Origin {
    /// An upstream tarball's URL (http or https).
    Url(String),
    /// A Debian source package in the build toolchain's suite (or `suite`): its newest
    /// version there, or `version`.
    Debian { package: String, version: Option<String>, suite: Option<String> },
}

/// What `new` wrote.
#[derive(Debug, Clone, serde::Serialize)]
pub struct NewRecipe {
    pub recipe: PathBuf,
    pub version: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// `autotools`, `cmake`, `meson`, `make` or `unknown`.
    pub build_system: &'static str,
    pub urls: Vec<String>,
}

/// `NAME`: what a recipe's name may be (and a file name).
fn check_name(name: &str) -> Result<()> {
    let ok = !name.is_empty()
        && name.len() <= 64
        && name.as_bytes()[0].is_ascii_alphanumeric()
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-');
    anyhow::ensure!(
        ok,
        "`{name}`: a recipe name is lowercase letters, digits and `-` (e.g. socat)"
    );
    Ok(())
}

/// The version in an upstream file name: `socat-1.7.4.4.tar.gz` -> `1.7.4.4`.
fn version_of(file: &str) -> Option<String> {
    let stem = file
        .strip_suffix(".tar.gz")
        .or_else(|| file.strip_suffix(".tar.xz"))
        .or_else(|| file.strip_suffix(".tar.bz2"))
        .or_else(|| file.strip_suffix(".tar.zst"))
        .or_else(|| file.strip_suffix(".tgz"))?;
    // Debian's name for an upstream tarball: `NAME_VERSION.orig.tar.*`.
    let stem = stem.strip_suffix(".orig").unwrap_or(stem);
    let (_, v) = stem.rsplit_once(['-', '_'])?;
    v.starts_with(|c: char| c.is_ascii_digit()).then(|| v.to_string())
}

/// Download `url` into the download cache: hashed while it streams, at most [`MAX_SOURCE`].
fn download(ctx: &RunContext, url: &str) -> Result<(String, u64)> {
    let cache = &ctx.project.downloads;
    std::fs::create_dir_all(cache).with_context(|| format!("creating {}", cache.display()))?;
    let tmp = tempfile::NamedTempFile::new_in(cache)?;
    // The client's reader gives at most MAX_SOURCE + 1 bytes: one more is a refusal.
    let mut body =
        Client::new().get(url, MAX_SOURCE).map_err(|e| anyhow::format_err!("{url}: {e}"))?;
    let mut w = HashingWriter::new(tmp);
    std::io::copy(&mut body, &mut w).with_context(|| format!("reading {url}"))?;
    let size = w.written;
    anyhow::ensure!(size <= MAX_SOURCE, "{url}: more than {MAX_SOURCE} bytes; refused");
    let (tmp, sha256) = w.finish();
    tmp.as_file().sync_all()?;
    let dest = ctx.fetcher.cache_path(&sha256);
    if let Some(parent) = dest.parent() {
        std::fs::create_dir_all(parent)?;
    }
    tmp.persist(&dest).with_context(|| format!("keeping {}", dest.display()))?;
    Ok((sha256, size))
}

/// The source package's paragraph in `suite`'s Sources: `version`, or the newest.
fn debian_source(
    ctx: &RunContext,
    package: &str,
    version: Option<&str>,
    suite: &str,
) -> Result<(String, String, String, u64)> {
    let archive = Archive::open(&ctx.project, &ctx.fetcher, None)?;
    let release = archive.release(suite)?;
    let paragraphs = archive.paragraphs(&release, "main/source/Sources")?;
    let candidates = paragraphs.iter().filter(|p| p.get("Package") == package);
    let chosen = match version {
        Some(v) => candidates.into_iter().find(|p| p.get("Version") == v),
        None => candidates.max_by(|a, b| dv::compare(a.get("Version"), b.get("Version"))),
    }
    .with_context(|| {
        format!(
            "{suite}'s Sources has no source package `{package}`{}",
            version.map(|v| format!(" at {v}")).unwrap_or_default()
        )
    })?;
    let full = chosen.get("Version").to_string();
    let upstream = dv::parse(&full).upstream.to_string();
    // The upstream tarball: `.orig.tar.*`, or a native package's own `.tar.*`.
    let files: Vec<(String, u64, String)> = chosen
        .get("Checksums-Sha256")
        .lines()
        .filter_map(|l| {
            let mut w = l.split_whitespace();
            Some((w.next()?.to_string(), w.next()?.parse().ok()?, w.next()?.to_string()))
        })
        .collect();
    let orig = format!("{package}_{upstream}.orig.tar.");
    let (sha256, size, file) = files
        .iter()
        .find(|(_, _, n)| n.starts_with(&orig))
        .or_else(|| files.iter().find(|(_, _, n)| n.contains(".tar.") && !n.contains(".debian.")))
        .cloned()
        .with_context(|| format!("{package} {full}: no upstream tarball in {suite}'s Sources"))?;
    Ok((full, file, sha256, size))
}

/// The build system a source tree's names show, from its top directory.
fn build_system(names: &[PathBuf]) -> &'static str {
    let has = |f: &str| names.iter().any(|n| n == Path::new(f));
    if has("configure") {
        "autotools"
    } else if has("CMakeLists.txt") {
        "cmake"
    } else if has("meson.build") {
        "meson"
    } else if has("Makefile") || has("GNUmakefile") || has("makefile") {
        "make"
    } else {
        "unknown"
    }
}

/// The tarball's entry names with `strip` leading components dropped; the strip is 1 when
/// every entry is under one top directory (the usual `NAME-VERSION/`), else 0.
fn top_level_names(path: &Path) -> Result<(Vec<PathBuf>, usize)> {
    let f = std::fs::File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let stream = reprovm_fs::archive::tar_stream(f)?;
    let mut archive = tar::Archive::new(stream);
    let mut names = Vec::new();
    for (i, e) in archive.entries()?.enumerate() {
        anyhow::ensure!(i < 1_000_000, "{}: more than a million entries", path.display());
        names.push(e?.path()?.into_owned());
    }
    let tops: std::collections::BTreeSet<_> = names
        .iter()
        .filter_map(|n| n.components().next())
        .map(|c| c.as_os_str().to_owned())
        .collect();
    let strip = usize::from(tops.len() == 1 && names.iter().any(|n| n.components().count() > 1));
    let stripped = names
        .iter()
        .filter_map(|n| {
            let p: PathBuf = n.components().skip(strip).collect();
            (!p.as_os_str().is_empty()).then_some(p)
        })
        .collect();
    Ok((stripped, strip))
}

/// The build script for `system`: configure for /usr, build with `$JOBS`, install into
/// `$OUT`.
fn script(system: &str) -> &'static str {
    match system {
        "autotools" => {
            "./configure --prefix=/usr --sysconfdir=/etc --disable-dependency-tracking\nmake -j\"$JOBS\"\nmake install DESTDIR=\"$OUT\"\n"
        }
        "cmake" => {
            "cmake -S . -B build -DCMAKE_INSTALL_PREFIX=/usr -DCMAKE_BUILD_TYPE=Release\ncmake --build build -j \"$JOBS\"\nDESTDIR=\"$OUT\" cmake --install build\n"
        }
        "meson" => {
            "meson setup build --prefix=/usr --buildtype=release\nmeson compile -C build -j \"$JOBS\"\nDESTDIR=\"$OUT\" meson install -C build\n"
        }
        "make" => "make -j\"$JOBS\"\nmake install DESTDIR=\"$OUT\" PREFIX=/usr\n",
        _ => "# No build system found in the tarball: write the commands that build it and\n# install into \"$OUT\".\nexit 1\n",
    }
}

/// The recipe's text.
fn recipe_text(
    name: &str,
    n: &NewRecipe,
    debian: Option<(&str, &str, &str)>,
    strip: usize,
) -> String {
    let q = |s: &str| toml::Value::String(s.to_string()).to_string();
    let mut t = format!(
        "# Written by `cargo xtask new`: check the description, the license and the build\n\
# script, then list in `outputs` the files the build must make (docs/reference/recipes.md).\n\
name = {}\nversion = {}\ndescription = {}\n# license = \"SPDX expression, e.g. GPL-2.0-only\"\n\n\
[[source]]\nfile = {}\nsha256 = {}\nsize = {}\n",
        q(name),
        q(&n.version),
        q(&format!("{name} {} (from {})", n.version, n.file)),
        q(&n.file),
        q(&n.sha256),
        n.size
    );
    if !n.urls.is_empty() {
        let urls: Vec<String> = n.urls.iter().map(|u| q(u)).collect();
        t.push_str(&format!("urls = [{}]\n", urls.join(", ")));
    }
    if strip != 1 {
        t.push_str(&format!("strip-components = {strip}\n"));
    }
    if let Some((package, version, snapshot)) = debian {
        t.push_str(&format!(
            "\n[source.debian]\npackage = {}\nversion = {}\nfile = {}\nsnapshot = {}\n",
            q(package),
            q(version),
            q(&n.file),
            q(snapshot)
        ));
    }
    t.push_str(&format!(
        "\n[build]\n# Build system: {} (the tree is /build/src).\nscript = \"\"\"\n{}\"\"\"\noutputs = []\n",
        n.build_system,
        script(n.build_system)
    ));
    t
}

/// Fetch the source, pin it, and write `recipes/NAME.toml`.
pub fn new_recipe(ctx: &RunContext, name: &str, origin: &Origin) -> Result<NewRecipe> {
    check_name(name)?;
    let recipes = &ctx.project.recipes;
    let file_name = format!("{name}.toml");
    let path = recipes.join(&file_name);
    anyhow::ensure!(
        !path.exists(),
        "{} exists: `new` never replaces a recipe (pick another name or edit that one)",
        path.display()
    );
    if let Origin::Url(url) = origin {
        anyhow::ensure!(
            url.starts_with("https://") || url.starts_with("http://"),
            "--url {url}: give an http or https URL of a tarball"
        );
    }
    let (version, file, sha256, size, urls, debian) = match origin {
        Origin::Url(url) => {
            let file = url.rsplit('/').next().unwrap_or_default().to_string();
            let version = version_of(&file).with_context(|| {
                format!("{file}: not a NAME-VERSION.tar.* file name (a tarball is what a recipe unpacks)")
            })?;
            let (sha256, size) = match mirror_copy(ctx, &file)? {
                Some(found) => found,
                None if ctx.fetcher.is_offline() => {
                    bail!("{file}: not in a --mirror directory and --offline was given")
                }
                None => download(ctx, url)?,
            };
            (version, file, sha256, size, vec![url.clone()], None)
        }
        Origin::Debian { package, version, suite } => {
            let suite = match suite {
                Some(s) => s.clone(),
                None => {
                    let spec = PackageSet::Build.spec(&ctx.project);
                    let text = std::fs::read_to_string(&spec)
                        .with_context(|| format!("reading {}", spec.display()))?;
                    toml::from_str::<PackageSpec>(&text)
                        .map_err(|e| anyhow::format_err!("{}: {}", spec.display(), e.message()))?
                        .suite
                }
            };
            let (full, file, sha256, size) =
                debian_source(ctx, package, version.as_deref(), &suite)?;
            let want = Want {
                file: file.clone(),
                sha256: sha256.clone(),
                size,
                urls: debian::source_urls(&ctx.project.debian_mirrors, package, &file),
                aliases: Vec::new(),
            };
            ctx.fetcher.fetch(&want)?;
            let upstream = dv::parse(&full).upstream.to_string();
            let snapshot = debian::snapshot_time_now();
            (upstream, file, sha256, size, Vec::new(), Some((package.clone(), full, snapshot)))
        }
    };
    let cached = ctx.fetcher.cache_path(&sha256);
    let (names, strip) =
        top_level_names(&cached).with_context(|| format!("{file}: reading it as a tarball"))?;
    let mut made = NewRecipe {
        recipe: path.clone(),
        version,
        file,
        sha256,
        size,
        build_system: build_system(&names),
        urls,
    };
    let text = recipe_text(
        name,
        &made,
        debian.as_ref().map(|(p, v, s)| (p.as_str(), v.as_str(), s.as_str())),
        strip,
    );
    Dir::open(recipes)?.write_atomic(Path::new(&file_name), text.as_bytes(), 0o644)?;
    made.recipe = path;
    Ok(made)
}

/// The file in a `--mirror` directory by its name: hashed into the download cache.
fn mirror_copy(ctx: &RunContext, file: &str) -> Result<Option<(String, u64)>> {
    for m in ctx.fetcher.mirror_dirs() {
        let p = m.join(file);
        if p.is_file() {
            let (sha256, size) = reprovm_fs::hash::sha256_file(&p)?;
            let dest = ctx.fetcher.cache_path(&sha256);
            if !dest.is_file() {
                if let Some(parent) = dest.parent() {
                    std::fs::create_dir_all(parent)?;
                }
                let tmp = dest.with_extension("tmp");
                std::fs::copy(&p, &tmp).with_context(|| format!("copying {}", p.display()))?;
                std::fs::rename(&tmp, &dest)?;
            }
            return Ok(Some((sha256, size)));
        }
    }
    Ok(None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn versions_and_build_systems_come_from_names() {
        assert_eq!(version_of("socat-1.7.4.4.tar.gz").as_deref(), Some("1.7.4.4"));
        assert_eq!(version_of("socat_1.7.4.4.orig.tar.gz").as_deref(), Some("1.7.4.4"));
        assert_eq!(version_of("iperf-3.12.tar.xz").as_deref(), Some("3.12"));
        assert_eq!(version_of("README"), None);
        let names = |l: &[&str]| l.iter().map(PathBuf::from).collect::<Vec<_>>();
        assert_eq!(build_system(&names(&["configure", "Makefile.in"])), "autotools");
        assert_eq!(build_system(&names(&["CMakeLists.txt"])), "cmake");
        assert_eq!(build_system(&names(&["src/meson.build", "Makefile"])), "make");
        assert_eq!(build_system(&names(&["README"])), "unknown");
        assert!(check_name("socat").is_ok() && check_name("Socat").is_err());
        assert!(check_name("../x").is_err() && check_name("").is_err());
    }
}
