//! The small syntaxes inside recipe values: paths inside trees, the `[rootfs]` entries
//! (`DEP:SRC -> DEST`, `PATH[:MODE]`, `LINK -> TARGET`, `PATH c|b MAJOR MINOR MODE`), OCI tags
//! and media types, and durations. Each parser returns the value or a message naming the entry.

use std::path::{Component, Path, PathBuf};
use std::time::Duration;

/// "30s", "90m", "4h" (a positive whole number and a unit).
pub(crate) fn parse_duration(s: &str) -> Result<Duration, String> {
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

/// An OCI tag: `[A-Za-z0-9_][A-Za-z0-9._-]{0,127}` (distribution-spec).
pub(crate) fn is_oci_tag(t: &str) -> bool {
    (1..=128).contains(&t.len())
        && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
        && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
}

/// A media type `type/subtype[+suffix]` (RFC 6838 restricted names, no parameters).
pub(crate) fn is_media_type(m: &str) -> bool {
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
pub(crate) struct Install {
    pub dep: String,
    pub src: PathBuf,
    pub dest: PathBuf,
}

/// `PATH c|b MAJOR MINOR MODE` of `[rootfs] devices`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Device {
    pub path: PathBuf,
    pub block: bool,
    pub major: u32,
    pub minor: u32,
    pub mode: u32,
}

/// A path inside a tree (a rootfs, a dependency's output, the recipes): relative (a leading
/// `/` is allowed and means the tree's top where `allow_root` says so), never `..`.
pub(crate) fn tree_path(p: &str, allow_root: bool) -> Result<PathBuf, String> {
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
pub(crate) fn dep_path(s: &str) -> Result<(String, PathBuf), String> {
    let (dep, rel) = s.split_once(':').ok_or_else(|| format!("`{s}`: expected `DEP:PATH`"))?;
    Ok((dep.trim().to_string(), tree_path(rel.trim(), false)?))
}

/// One `install` entry: `DEP:SRC -> DEST`.
pub(crate) fn parse_install(i: &str) -> Result<Install, String> {
    let (src, dest) = arrow(i)?;
    let (dep, src) = dep_path(src).map_err(|e| format!("install {e}"))?;
    Ok(Install { dep, src, dest: tree_path(dest, true)? })
}

/// One `dirs` entry: `PATH[:MODE]` (default 0755).
pub(crate) fn parse_dir(d: &str) -> Result<(PathBuf, u32), String> {
    match d.split_once(':') {
        Some((p, m)) => Ok((
            tree_path(p, true)?,
            u32::from_str_radix(m, 8).map_err(|_| format!("`{d}`: bad octal mode"))?,
        )),
        None => Ok((tree_path(d, true)?, 0o755)),
    }
}

/// One `symlinks` entry: `LINK -> TARGET` (the target is symlink content, stored as is).
pub(crate) fn parse_symlink(s: &str) -> Result<(PathBuf, String), String> {
    let (link, target) = arrow(s)?;
    if target.is_empty() {
        return Err(format!("`{s}`: empty symlink target"));
    }
    Ok((tree_path(link, true)?, target.to_string()))
}

/// One `devices` entry: `PATH c|b MAJOR MINOR MODE`.
pub(crate) fn parse_device(d: &str) -> Result<Device, String> {
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
