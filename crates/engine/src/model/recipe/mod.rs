//! The recipe format: one TOML file per package or image in `recipes/`.
//!
//! Parsing is strict (`deny_unknown_fields`) and every error is one line naming the file, the
//! line and column, and what was expected.

use reprovm_fs::hash::is_sha256_hex;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// How long a build may run when its recipe names no `timeout`.
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(4 * 3600);

/// SOURCE_DATE_EPOCH of every build unless a recipe sets its own in `env`
/// (2024-01-01T00:00:00Z; fixed, so that no build depends on when it ran).
pub const DEFAULT_SOURCE_DATE_EPOCH: i64 = 1_704_067_200;

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
    /// An OCI image layout made of files the configure script prepared (written to `$OUT`).
    pub oci: Option<OciSpec>,
    /// A dependency's root file system as `initramfs.cpio.gz`.
    pub initramfs: Option<InitramfsSpec>,
    /// A UEFI-bootable GPT disk (`efi.img`) and its VHD/VMDK/OVA/qcow2 forms.
    pub uefi: Option<UefiSpec>,
    /// A hybrid ISO 9660 image booting a live system through UEFI (El Torito).
    pub iso: Option<IsoSpec>,
    /// Longest time the build may take, e.g. "90m", "4h", "30s" (default 4h); after it the
    /// whole sandbox is killed and the log's tail shown.
    pub timeout: Option<String>,
}

impl Recipe {
    /// The recipe's SOURCE_DATE_EPOCH (its `[env]` value, validated at parse time).
    pub fn source_date_epoch(&self) -> i64 {
        self.env
            .get("SOURCE_DATE_EPOCH")
            .and_then(|v| v.parse().ok())
            .unwrap_or(DEFAULT_SOURCE_DATE_EPOCH)
    }

    /// The build's time limit.
    pub fn timeout(&self) -> anyhow::Result<Duration> {
        match &self.timeout {
            None => Ok(DEFAULT_TIMEOUT),
            Some(t) => {
                parse_duration(t).map_err(|e| anyhow::format_err!("recipe {}: {e}", self.name))
            }
        }
    }
}

/// "30s", "90m", "4h" (a positive whole number and a unit).
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let bad =
        || format!("timeout `{s}`: expected a number with a unit, like \"90m\", \"4h\" or \"30s\"");
    let (num, unit) = s.trim().split_at(s.trim().len().saturating_sub(1));
    let n: u64 = num.parse().map_err(|_| bad())?;
    let secs = match unit {
        "s" => n,
        "m" => n * 60,
        "h" => n * 3600,
        _ => return Err(bad()),
    };
    if secs == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(secs))
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
    /// A time (`YYYYMMDDTHHMMSSZ`) at which the file was in the archive: Debian's snapshot
    /// archive serves it from then on, after the pool has dropped it.
    pub snapshot: Option<String>,
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

/// `[oci]`: an OCI image layout. Either an image (`layer`: a directory under the build
/// directory that becomes its one layer, with an image config for `architecture`/linux) or an
/// artifact (`artifact-type` and one `[[oci.file]]` per layer). `[[oci.referrer]]` attaches
/// further artifacts whose `subject` is the main manifest (OCI 1.1 referrers).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciSpec {
    /// Tags: `org.opencontainers.image.ref.name` in index.json, and what `push` sets.
    #[serde(default)]
    pub tags: Vec<String>,
    /// Image: the directory (relative to the build directory) that is the layer's root.
    pub layer: Option<String>,
    /// Image: the config's architecture (Go's names; default amd64). The OS is linux.
    pub architecture: Option<String>,
    /// Artifact: its `artifactType`.
    pub artifact_type: Option<String>,
    /// Artifact: its files, one layer each (the file's name is its title).
    #[serde(default, rename = "file")]
    pub files: Vec<OciFile>,
    /// Artifacts attached to the main manifest.
    #[serde(default, rename = "referrer")]
    pub referrers: Vec<OciReferrer>,
    /// Manifest annotations added to (or replacing) the defaults: created (from
    /// SOURCE_DATE_EPOCH), version (the recipe's), revision (the recipes' content digest),
    /// title (the recipe's name).
    #[serde(default)]
    pub annotations: BTreeMap<String, String>,
}

/// A file of an OCI artifact: a path relative to the build directory and its media type.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciFile {
    pub path: String,
    pub media_type: String,
}

/// `[[oci.referrer]]`: an artifact about the main manifest (e.g. the kernel's .config).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct OciReferrer {
    pub artifact_type: String,
    #[serde(rename = "file")]
    pub files: Vec<OciFile>,
}

/// `[initramfs]`: the root file system tar of a dependency as a newc cpio (gzip).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct InitramfsSpec {
    /// The dependency whose output holds rootfs.tar.
    pub rootfs: String,
}

/// `[uefi]`: a GPT disk whose EFI system partition holds a unified kernel image (systemd's
/// stub + the kernel + command line + os-release) and whose second partition is an `[image]`
/// dependency's hd.img, mounted by PARTUUID; plus the forms named in `formats`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct UefiSpec {
    /// The dependency holding hd.img.
    pub image: String,
    /// The dependency holding bzImage.
    pub kernel: String,
    /// A file of `files`: the unified kernel image's .osrel.
    pub os_release: String,
    /// Added to the kernel command line (after `root=PARTUUID=… rw console=ttyS0 panic=-1`).
    #[serde(default)]
    pub cmdline: String,
    /// Size of the EFI system partition in MiB (default 64).
    pub esp_size_mib: Option<u64>,
    /// Other forms of efi.img: `vhd` (fixed), `vmdk` (stream-optimised), `ova`, `qcow2`.
    #[serde(default)]
    pub formats: Vec<String>,
}

/// `[iso]`: a hybrid ISO whose El Torito EFI image (also a GPT partition) holds a unified
/// kernel image with the initramfs: a live system, no disk needed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct IsoSpec {
    /// The dependency holding bzImage.
    pub kernel: String,
    /// The dependency holding initramfs.cpio.gz.
    pub initramfs: String,
    /// A file of `files`: the unified kernel image's .osrel.
    pub os_release: String,
    /// ISO 9660 volume id: 1 to 32 of A-Z 0-9 _.
    pub volume_id: String,
    /// Added to the kernel command line (after `console=ttyS0 panic=-1`).
    #[serde(default)]
    pub cmdline: String,
}

/// The forms `[uefi] formats` may name.
pub const DISK_FORMATS: [&str; 4] = ["vhd", "vmdk", "ova", "qcow2"];

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (distribution-spec).
pub fn is_oci_tag(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A media type `type/subtype[+suffix]` (RFC 6838 restricted names, no parameters).
pub fn is_media_type(m: &str) -> bool {
    let ok = |s: &str| {
        !s.is_empty()
            && s.len() <= 127
            && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
            && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"!#$&-^_.+".contains(&b))
    };
    m.split_once('/').is_some_and(|(t, s)| ok(t) && ok(s))
}

/// `DEP:SRC -> DEST` of `[rootfs] install`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Install {
    pub dep: String,
    pub src: PathBuf,
    pub dest: PathBuf,
}

/// `PATH c|b MAJOR MINOR MODE` of `[rootfs] devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Device {
    pub path: PathBuf,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

/// A path inside a tree (a rootfs, a dependency's output, the recipes): relative (a leading
/// `/` is allowed and means the tree's top where `allow_root` says so), never `..`.
pub fn tree_path(p: &str, allow_root: bool) -> Result<PathBuf, String> {
    let mut out = PathBuf::new();
    for c in Path::new(p).components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir if allow_root => {}
            Component::RootDir | Component::Prefix(_) => {
                return Err(format!("`{p}` must be a relative path"))
            }
            Component::ParentDir => return Err(format!("`{p}` must not contain `..`")),
        }
    }
    if out.as_os_str().is_empty() {
        return Err(format!("`{p}` names no file"));
    }
    Ok(out)
}

fn arrow(s: &str) -> Result<(&str, &str), String> {
    s.split_once("->")
        .map(|(a, b)| (a.trim(), b.trim()))
        .ok_or_else(|| format!("`{s}`: expected `SRC -> DEST`"))
}

/// `DEP:PATH`, with PATH inside the dependency's output.
pub fn dep_path(s: &str) -> Result<(String, PathBuf), String> {
    let (dep, rel) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected `DEP:PATH`"))?;
    Ok((dep.trim().to_string(), tree_path(rel.trim(), false)?))
}

/// One `install` entry: `DEP:SRC -> DEST`.
pub fn parse_install(i: &str) -> Result<Install, String> {
    let (src, dest) = arrow(i)?;
    let (dep, src) = dep_path(src).map_err(|e| format!("install {e}"))?;
    Ok(Install { dep, src, dest: tree_path(dest, true)? })
}

/// One `dirs` entry: `PATH[:MODE]` (default 0755).
pub fn parse_dir(d: &str) -> Result<(PathBuf, u32), String> {
    match d.split_once(':') {
        Some((p, m)) => Ok((
            tree_path(p, true)?,
            u32::from_str_radix(m, 8).map_err(|_| format!("`{d}`: bad octal mode"))?,
        )),
        None => Ok((tree_path(d, true)?, 0o755)),
    }
}

/// One `symlinks` entry: `LINK -> TARGET` (the target is symlink content, stored as is).
pub fn parse_symlink(s: &str) -> Result<(PathBuf, String), String> {
    let (link, target) = arrow(s)?;
    if target.is_empty() {
        return Err(format!("`{s}`: empty symlink target"));
    }
    Ok((tree_path(link, true)?, target.to_string()))
}

/// One `devices` entry: `PATH c|b MAJOR MINOR MODE`.
pub fn parse_device(d: &str) -> Result<Device, String> {
    let f: Vec<&str> = d.split_whitespace().collect();
    if f.len() != 5 || !(f[1] == "c" || f[1] == "b") {
        return Err(format!("device `{d}`: expected `PATH c|b MAJOR MINOR MODE`"));
    }
    let num = |s: &str| s.parse::<u32>().map_err(|_| format!("device `{d}`: bad number `{s}`"));
    Ok(Device {
        path: tree_path(f[0], true)?,
        block: f[1] == "b",
        major: num(f[2])?,
        minor: num(f[3])?,
        mode: u32::from_str_radix(f[4], 8).map_err(|_| format!("device `{d}`: bad octal mode"))?,
    })
}

/// Debian package name syntax (Policy 5.6.1): lowercase letters, digits, `+ - .`, at least two
/// characters, starting with a letter or digit.
fn is_debian_package(s: &str) -> bool {
    s.len() >= 2
        && s.bytes().next().is_some_and(|b| b.is_ascii_lowercase() || b.is_ascii_digit())
        && s.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"+-.".contains(&b))
}

/// Debian version syntax (Policy 5.6.12): `[EPOCH:]UPSTREAM[-REVISION]`, upstream starting
/// with a digit, from `A-Za-z0-9.+~-`.
fn is_debian_version(s: &str) -> bool {
    let rest = match s.split_once(':') {
        Some((epoch, rest)) => {
            if epoch.is_empty() || !epoch.bytes().all(|b| b.is_ascii_digit()) {
                return false;
            }
            rest
        }
        None => s,
    };
    rest.bytes().next().is_some_and(|b| b.is_ascii_digit())
        && rest.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~-".contains(&b))
}

/// A file name in the Debian archive's pool: no directories, from `A-Za-z0-9.+~_-`.
fn is_debian_file(s: &str) -> bool {
    !s.is_empty()
        && s.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
        && s.bytes().all(|b| b.is_ascii_alphanumeric() || b"+.~_-".contains(&b))
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
    for s in &r.sources {
        if let Some(d) = &s.debian {
            if !is_debian_package(&d.package) {
                return Err(err(&format!("\"{}\"", d.package), format!(
                    "debian.package `{}` is not a Debian package name (lowercase letters, digits, `+-.`, at least 2)",
                    d.package
                )));
            }
            if !is_debian_version(&d.version) {
                return Err(err(
                    &d.version,
                    format!(
                        "debian.version `{}` is not a Debian version ([EPOCH:]UPSTREAM[-REVISION])",
                        d.version
                    ),
                ));
            }
            if let Some(t) =
                d.snapshot.as_deref().filter(|t| !crate::mechanisms::debian::is_snapshot_time(t))
            {
                return Err(err(
                    t,
                    format!("debian.snapshot `{t}` is not a snapshot time like 20261123T120000Z"),
                ));
            }
            if !is_debian_file(&d.file) {
                return Err(err(
                    &format!("\"{}\"", d.file),
                    format!("debian.file `{}` must be a plain file name of the pool", d.file),
                ));
            }
        }
    }
    for f in r.files.iter().chain(r.kconfig.iter().flat_map(|k| k.fragments.iter())) {
        tree_path(f, false).map_err(|e| err(f, format!("file {e} inside recipes/")))?;
    }
    if let Some(k) = &r.kconfig {
        tree_path(&k.config, false).map_err(|e| {
            err(&k.config, format!("kconfig.config {e} inside the build directory"))
        })?;
        for frag in &k.fragments {
            if !r.files.contains(frag) {
                return Err(err(
                    frag,
                    format!("kconfig fragment `{frag}` must also be listed in `files`"),
                ));
            }
        }
    }
    if let Some(fs) = &r.rootfs {
        for i in &fs.install {
            let inst = parse_install(i).map_err(|e| err(i, e))?;
            if !r.deps.contains(&inst.dep) {
                return Err(err(i, format!("install from `{}`, which is not in `deps`", inst.dep)));
            }
        }
        for d in &fs.dirs {
            parse_dir(d).map_err(|e| err(d, e))?;
        }
        for l in &fs.symlinks {
            parse_symlink(l).map_err(|e| err(l, e))?;
        }
        for d in &fs.devices {
            parse_device(d).map_err(|e| err(d, e))?;
        }
        if let Some(a) = &fs.applet_links {
            dep_path(a).map_err(|e| err(a, format!("applet-links {e}")))?;
        }
        for o in &fs.overlays {
            tree_path(o, false).map_err(|e| err(o, format!("overlay {e} inside recipes/")))?;
        }
        for l in &fs.library_path {
            if l.split('/').any(|c| c == "..") || !l.starts_with('/') {
                return Err(err(l, format!("library-path `{l}` must be an absolute directory of the toolchain, without `..`")));
            }
        }
    }
    if let Some(img) = &r.image {
        let own = img.rootfs == r.name && r.rootfs.is_some();
        if !own && !r.deps.contains(&img.rootfs) {
            return Err(err(&img.rootfs, format!(
                "image rootfs `{}` must be a dependency (or this recipe itself, when it has [rootfs])",
                img.rootfs
            )));
        }
        let label_ok = !img.label.is_empty()
            && img.label.len() <= 16
            && img.label.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b));
        if !label_ok {
            return Err(err(
                &img.label,
                format!("image label `{}`: 1 to 16 of A-Z a-z 0-9 . _ -", img.label),
            ));
        }
    }
    if let Some(v) = r.env.get("SOURCE_DATE_EPOCH") {
        if v.parse::<u64>().is_err() {
            return Err(err(
                v,
                format!("SOURCE_DATE_EPOCH `{v}` must be a whole number of seconds"),
            ));
        }
    }
    if let Some(t) = &r.timeout {
        parse_duration(t).map_err(|e| err(t, e))?;
    }
    if let Some(o) = &r.oci {
        validate_oci(o).map_err(|(needle, msg)| err(&needle, msg))?;
    }
    validate_media(r).map_err(|(needle, msg)| err(&needle, msg))?;
    if r.rootfs.is_none()
        && r.image.is_none()
        && r.oci.is_none()
        && r.initramfs.is_none()
        && r.uefi.is_none()
        && r.iso.is_none()
        && r.build.script.trim().is_empty()
    {
        return Err(err(
            "[build]",
            "[build] needs a `script` (or the recipe needs [rootfs], [image], [oci], [initramfs], [uefi] or [iso])".into(),
        ));
    }
    Ok(())
}

/// `[initramfs]`, `[uefi]`, `[iso]`: their dependencies are dependencies, their os-release a
/// declared file, formats and volume ids valid. Errors are (text to point at, message).
fn validate_media(r: &Recipe) -> Result<(), (String, String)> {
    let dep = |d: &String, what: &str| -> Result<(), (String, String)> {
        if r.deps.contains(d) {
            Ok(())
        } else {
            Err((d.clone(), format!("{what} `{d}` must be in `deps`")))
        }
    };
    let file = |f: &String| -> Result<(), (String, String)> {
        if r.files.contains(f) {
            Ok(())
        } else {
            Err((f.clone(), format!("os-release `{f}` must also be listed in `files`")))
        }
    };
    if let Some(i) = &r.initramfs {
        dep(&i.rootfs, "initramfs.rootfs")?;
    }
    if let Some(u) = &r.uefi {
        dep(&u.image, "uefi.image")?;
        dep(&u.kernel, "uefi.kernel")?;
        file(&u.os_release)?;
        if let Some(f) = u.formats.iter().find(|f| !DISK_FORMATS.contains(&f.as_str())) {
            return Err((
                f.clone(),
                format!("uefi format `{f}`: one of {}", DISK_FORMATS.join(", ")),
            ));
        }
        if u.formats.iter().any(|f| f == "ova") && !u.formats.iter().any(|f| f == "vmdk") {
            return Err(("ova".into(), "uefi format `ova` carries the `vmdk`: name it too".into()));
        }
        if u.esp_size_mib.is_some_and(|m| !(33..=4096).contains(&m)) {
            return Err((
                "esp-size-mib".into(),
                "esp-size-mib: 33 to 4096 (a FAT32 EFI system partition)".into(),
            ));
        }
    }
    if let Some(i) = &r.iso {
        dep(&i.kernel, "iso.kernel")?;
        dep(&i.initramfs, "iso.initramfs")?;
        file(&i.os_release)?;
        let ok = (1..=32).contains(&i.volume_id.len())
            && i.volume_id
                .bytes()
                .all(|b| b.is_ascii_uppercase() || b.is_ascii_digit() || b == b'_');
        if !ok {
            return Err((
                i.volume_id.clone(),
                format!("iso volume-id `{}`: 1 to 32 of A-Z 0-9 _", i.volume_id),
            ));
        }
    }
    Ok(())
}

/// `[oci]`: an image or an artifact, never both; valid tags, media types and paths. Errors
/// are (text to point at, message).
fn validate_oci(o: &OciSpec) -> Result<(), (String, String)> {
    match (&o.layer, &o.artifact_type, o.files.is_empty()) {
        (Some(l), None, true) => {
            tree_path(l, false)
                .map_err(|e| (l.clone(), format!("oci.layer {e} inside the build directory")))?;
        }
        (None, Some(_), false) => {}
        _ => {
            return Err((
                "[oci]".into(),
                "[oci] is an image (`layer`) or an artifact (`artifact-type` and [[oci.file]]), not both or neither".into(),
            ))
        }
    }
    if o.artifact_type.is_some() && o.architecture.is_some() {
        return Err(("architecture".into(), "oci.architecture is for images (`layer`)".into()));
    }
    for t in &o.tags {
        if !is_oci_tag(t) {
            return Err((
                t.clone(),
                format!("oci tag `{t}`: 1 to 128 of A-Z a-z 0-9 . _ -, not starting with . or -"),
            ));
        }
    }
    let types = o.artifact_type.iter().chain(o.referrers.iter().map(|r| &r.artifact_type));
    let files = o.files.iter().chain(o.referrers.iter().flat_map(|r| r.files.iter()));
    for m in types.chain(files.clone().map(|f| &f.media_type)) {
        if !is_media_type(m) {
            return Err((m.clone(), format!("`{m}` is not a media type (type/subtype)")));
        }
    }
    for f in files {
        tree_path(&f.path, false)
            .map_err(|e| (f.path.clone(), format!("oci file {e} inside the build directory")))?;
    }
    if let Some(r) = o.referrers.iter().find(|r| r.files.is_empty()) {
        return Err((
            r.artifact_type.clone(),
            "an oci referrer needs at least one [[file]]".into(),
        ));
    }
    if let Some(k) = o.annotations.keys().find(|k| k.is_empty() || k.contains(char::is_whitespace))
    {
        return Err((k.clone(), format!("oci annotation key `{k}` is empty or has spaces")));
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
    fn debian_fields_follow_debian_syntax() {
        let with = |pkg: &str, ver: &str, file: &str| {
            let text = OK.replace(
                "size = 3\n",
                &format!("size = 3\ndebian = {{ package = \"{pkg}\", version = \"{ver}\", file = \"{file}\" }}\n"),
            );
            parse_str(&text)
        };
        assert!(with("busybox", "1:1.35.0-4+deb12u1", "busybox_1.35.0.orig.tar.bz2").is_ok());
        for (pkg, ver, file, what) in [
            ("", "1", "f.tar", "debian.package ``"),
            ("B", "1", "f.tar", "debian.package `B`"),
            ("a/b", "1", "f.tar", "debian.package `a/b`"),
            ("busybox", "x1", "f.tar", "debian.version `x1`"),
            ("busybox", "1 2", "f.tar", "debian.version `1 2`"),
            ("busybox", "1", "../f.tar", "debian.file `../f.tar`"),
            ("busybox", "1", "a/f.tar", "debian.file `a/f.tar`"),
        ] {
            let e = with(pkg, ver, file).unwrap_err().to_string();
            assert!(
                e.starts_with("recipes/t.toml:") && e.contains(what),
                "{pkg} {ver} {file}: {e}"
            );
        }
    }

    #[test]
    fn absolute_and_parent_paths_are_refused_with_their_position() {
        let rootfs = |table: &str| {
            parse_str(&format!(
                "name = \"t\"\nversion = \"1\"\ndeps = [\"d\"]\n[rootfs]\n{table}\n[build]\noutputs = []\n"
            ))
        };
        for (table, line, what) in [
            (
                "install = [\"d:bin/x -> /bin/x\", \"d:../../etc/passwd -> etc/x\"]",
                5,
                "must not contain `..`",
            ),
            ("install = [\"d:/etc/passwd -> etc/x\"]", 5, "must be a relative path"),
            ("install = [\"e:bin/x -> bin/x\"]", 5, "not in `deps`"),
            ("applet-links = \"d:../links\"", 5, "must not contain `..`"),
            ("overlays = [\"/home/me/overlay\"]", 5, "must be a relative path"),
            ("overlays = [\"../elsewhere\"]", 5, "must not contain `..`"),
            ("dirs = [\"../tmp:1777\"]", 5, "must not contain `..`"),
            ("devices = [\"dev/../../x c 1 3 0666\"]", 5, "must not contain `..`"),
            ("symlinks = [\"../l -> /x\"]", 5, "must not contain `..`"),
        ] {
            let e = rootfs(table).unwrap_err().to_string();
            assert!(
                e.starts_with(&format!("recipes/t.toml:{line}:")) && e.contains(what),
                "{table}: {e}"
            );
        }
        // Absolute paths inside the rootfs mean its top, and symlink targets are content.
        assert!(rootfs("install = [\"d:bin/x -> /bin/x\"]\nsymlinks = [\"init -> /bin/busybox\"]")
            .is_ok());
        let e =
            parse_str(&OK.replace("version = \"1\"", "version = \"1\"\nfiles = [\"/etc/passwd\"]"))
                .unwrap_err()
                .to_string();
        assert!(e.contains("must be a relative path"), "{e}");
    }

    #[test]
    fn timeouts_parse_and_bad_ones_are_refused() {
        assert_eq!(parse_duration("90m"), Ok(Duration::from_secs(5400)));
        assert_eq!(parse_duration("4h"), Ok(Duration::from_secs(14400)));
        assert_eq!(parse_duration("2s"), Ok(Duration::from_secs(2)));
        for bad in ["", "0s", "10", "1d", "m", "-1m"] {
            assert!(parse_duration(bad).is_err(), "{bad}");
        }
        let e = parse_str(&OK.replace("version = \"1\"", "version = \"1\"\ntimeout = \"soon\""))
            .unwrap_err()
            .to_string();
        assert!(e.starts_with("recipes/t.toml:4:12:") && e.contains("timeout `soon`"), "{e}");
        assert_eq!(parse_str(OK).unwrap().timeout().unwrap(), DEFAULT_TIMEOUT);
    }

    #[test]
    fn line_col_is_one_based() {
        assert_eq!(line_col("ab\ncd", 0), (1, 1));
        assert_eq!(line_col("ab\ncd", 4), (2, 2));
    }
}
