//! The recipe format: one TOML file per package or image in `recipes/`.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error is one line naming the file, the
//! line and column, and what was expected.

use crate::hash::is_sha256_hex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Recipe {
    pub name: String,
    pub version: String,
    /// One line for humans (shown by `plan`).
    #[serde(default)]
    pub description: String,
    /// Other recipes whose outputs this one reads (mounted read-only at /build/deps/NAME).
    #[serde(default)]
    pub deps: Vec<String>,
    /// Pinned inputs, fetched by sha256 from any of their origins.
    #[serde(default, rename = "source")]
    pub sources: Vec<SourcePin>,
    /// Files from `recipes/` (configs, scripts) copied to /build/files; part of the input hash.
    #[serde(default)]
    pub files: Vec<String>,
    /// Environment added to the sandbox's fixed environment.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    pub build: Build,
    /// Kernel recipes: config base and fragments, checked after olddefconfig.
    pub kconfig: Option<Kconfig>,
    /// Root file system assembly (done by the engine, deterministically, in Rust).
    pub rootfs: Option<RootfsSpec>,
    /// ext4 image parameters.
    pub image: Option<ImageSpec>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct SourcePin {
    /// File name of the archive (used for messages, mirror look-ups and type detection).
    pub file: String,
    pub sha256: String,
    pub size: u64,
    /// Upstream URLs, tried in order.
    #[serde(default)]
    pub urls: Vec<String>,
    /// The same bytes in a Debian source package, resolved against the configured mirror.
    pub debian: Option<DebianFile>,
    /// Unpack into /build/src (default) or keep the archive as /build/sources/FILE.
    #[serde(default = "default_true")]
    pub unpack: bool,
    /// Leading path components to drop when unpacking (default 1, like `tar --strip 1`).
    #[serde(default = "default_strip")]
    pub strip_components: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct DebianFile {
    pub package: String,
    /// The Debian source version holding this file (documentation; the pool path needs only
    /// the package and file name).
    #[allow(dead_code)]
    pub version: String,
    pub file: String,
}

#[derive(Debug, Clone, Deserialize, Default)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Build {
    /// Shell script run by /bin/sh -eu before the configuration check (kernel recipes).
    #[serde(default)]
    pub configure: String,
    /// Shell script run by /bin/sh -eu in /build/src inside the sandbox.
    #[serde(default)]
    pub script: String,
    /// Paths that must exist under /out when the script ends.
    #[serde(default)]
    pub outputs: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct Kconfig {
    /// The .config the configure script leaves, relative to /build.
    pub config: String,
    /// Fragment files (in `files`) whose every option must hold in the final .config.
    pub fragments: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct RootfsSpec {
    /// Dependency outputs to copy: "DEP:SRC -> DEST" (SRC relative to the dep's output).
    #[serde(default)]
    pub install: Vec<String>,
    /// Symlinks to create: "LINK -> TARGET".
    #[serde(default)]
    pub symlinks: Vec<String>,
    /// Directories to create (mode 0755 unless "PATH:MODE").
    #[serde(default)]
    pub dirs: Vec<String>,
    /// Device nodes: "PATH c|b MAJOR MINOR MODE".
    #[serde(default)]
    pub devices: Vec<String>,
    /// Overlays applied in order: directories or tarballs relative to `recipes/`, or absolute.
    #[serde(default)]
    pub overlays: Vec<String>,
    /// File in a dependency's output listing busybox applet links (one path per line).
    pub applet_links: Option<String>,
    /// Toolchain library directories searched for DT_NEEDED of dynamic binaries.
    #[serde(default)]
    pub library_path: Vec<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct ImageSpec {
    /// Dependency that produced rootfs.tar.
    pub rootfs: String,
    pub label: String,
    /// Size in MiB; computed from the tree with headroom when absent.
    pub size_mib: Option<u64>,
    /// Extra free space in percent when the size is computed (default 50).
    pub headroom_percent: Option<u64>,
    /// Also produce hd.qcow2 via `qemu-img convert`.
    #[serde(default)]
    pub qcow2: bool,
}

fn default_true() -> bool {
    true
}
fn default_strip() -> usize {
    1
}

/// A parse or validation error, rendered as one line `FILE:LINE:COL: message`.
#[derive(Debug, thiserror::Error)]
#[error("{file}:{line}:{col}: {msg}")]
pub struct RecipeError {
    pub file: String,
    pub line: usize,
    pub col: usize,
    pub msg: String,
}

/// 1-based line and column of a byte offset.
pub fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = &text[..offset];
    let line = before.matches('\n').count() + 1;
    let col = before.rfind('\n').map(|i| offset - i).unwrap_or(offset + 1);
    (line, col)
}

/// Find where `needle` (a key or value) first appears, for validation errors.
fn locate(text: &str, needle: &str) -> (usize, usize) {
    text.find(needle).map(|o| line_col(text, o)).unwrap_or((1, 1))
}

pub fn parse(path: &Path, text: &str, display: &str) -> Result<Recipe, RecipeError> {
    let recipe: Recipe = toml::from_str(text).map_err(|e| {
        let (line, col) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
        let msg = e.message().replace('\n', " ").trim().to_string();
        RecipeError { file: display.to_string(), line, col, msg }
    })?;
    validate(path, text, display, &recipe)?;
    Ok(recipe)
}

fn validate(path: &Path, text: &str, display: &str, r: &Recipe) -> Result<(), RecipeError> {
    let err = |needle: &str, msg: String| {
        let (line, col) = locate(text, needle);
        RecipeError { file: display.to_string(), line, col, msg }
    };
    let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("");
    if r.name != stem {
        return Err(err(
            "name",
            format!("recipe name `{}` must match the file name `{stem}.toml`", r.name),
        ));
    }
    if r.name.is_empty()
        || !r.name.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_' || b == b'.')
    {
        return Err(err(
            "name",
            format!("recipe name `{}` may only use letters, digits, '-', '_' and '.'", r.name),
        ));
    }
    for s in &r.sources {
        if !is_sha256_hex(&s.sha256) {
            return Err(err(
                &s.sha256,
                format!("source `{}`: sha256 must be 64 lowercase hex digits", s.file),
            ));
        }
        if s.urls.is_empty() && s.debian.is_none() {
            // Still fetchable from --mirror and the cache; allowed but say nothing.
        }
        if s.file.contains('/') || s.file.is_empty() {
            return Err(err(
                &s.file,
                format!("source file name `{}` must be a plain file name", s.file),
            ));
        }
    }
    for f in r.files.iter().chain(r.kconfig.iter().flat_map(|k| k.fragments.iter())) {
        if f.starts_with('/') || f.split('/').any(|c| c == "..") {
            return Err(err(f, format!("file `{f}` must be a relative path inside recipes/")));
        }
    }
    if let Some(k) = &r.kconfig {
        for frag in &k.fragments {
            if !r.files.contains(frag) {
                return Err(err(
                    frag,
                    format!("kconfig fragment `{frag}` must also be listed in `files`"),
                ));
            }
        }
    }
    if r.rootfs.is_none() && r.image.is_none() && r.build.script.trim().is_empty() {
        return Err(err(
            "[build]",
            "[build] needs a `script` (or the recipe needs [rootfs] or [image])".into(),
        ));
    }
    Ok(())
}

/// A recipe together with where it came from.
#[derive(Debug, Clone)]
pub struct Loaded {
    pub recipe: Recipe,
    pub path: PathBuf,
    pub text: String,
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse_str(text: &str) -> Result<Recipe, RecipeError> {
        parse(Path::new("recipes/t.toml"), text, "recipes/t.toml")
    }

    const OK: &str = r#"
name = "t"
version = "1"
[[source]]
file = "t.tar.gz"
sha256 = "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
size = 3
[build]
script = "true"
"#;

    #[test]
    fn parses_a_minimal_recipe() {
        let r = parse_str(OK).unwrap();
        assert_eq!(r.sources[0].strip_components, 1);
        assert!(r.sources[0].unpack);
    }

    #[test]
    fn syntax_error_names_file_line_col() {
        let e = parse_str("name = \"t\"\nversion = \n").unwrap_err().to_string();
        assert!(e.starts_with("recipes/t.toml:2:"), "{e}");
        assert!(!e.contains('\n'));
    }

    #[test]
    fn unknown_key_is_refused() {
        let e = parse_str(&OK.replace("version = \"1\"", "version = \"1\"\nflavour = \"x\""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("recipes/t.toml:4:"), "{e}");
        assert!(e.contains("unknown field `flavour`"), "{e}");
    }

    #[test]
    fn missing_sha256_is_refused() {
        let text = OK.replace(
            "sha256 = \"ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad\"\n",
            "",
        );
        let e = parse_str(&text).unwrap_err().to_string();
        assert!(e.contains("missing field `sha256`"), "{e}");
        assert!(e.starts_with("recipes/t.toml:"), "{e}");
    }

    #[test]
    fn bad_hash_and_name_mismatch() {
        let e = parse_str(&OK.replace("ba7816bf", "zz7816bf")).unwrap_err().to_string();
        assert!(e.contains("64 lowercase hex"), "{e}");
        let e = parse_str(&OK.replace("name = \"t\"", "name = \"u\"")).unwrap_err().to_string();
        assert!(e.contains("must match the file name"), "{e}");
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
