//! Output manifests: every file of a store entry with its type, mode, size and sha256, and
//! one `output_hash` over all of it (the identity compared by audits and pins).

use crate::hash::{sha256_file, Hasher};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::os::unix::fs::PermissionsExt;
use std::path::Path;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct FileEntry {
    pub path: String,
    pub kind: String,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub input_hash: String,
    pub toolchain: String,
    pub output_hash: String,
    pub files: Vec<FileEntry>,
}

/// Walk `dir` in byte order of paths and describe every entry.
pub fn scan(dir: &Path) -> Result<Vec<FileEntry>> {
    let mut out = Vec::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1).sort_by_file_name() {
        let e = e?;
        let rel = e.path().strip_prefix(dir)?.to_string_lossy().into_owned();
        let meta = e.path().symlink_metadata()?;
        let mode = meta.permissions().mode() & 0o7777;
        let ft = meta.file_type();
        let entry = if ft.is_symlink() {
            let t = std::fs::read_link(e.path())?;
            FileEntry {
                path: rel,
                kind: "symlink".into(),
                mode: 0o777,
                size: None,
                sha256: None,
                target: Some(t.to_string_lossy().into_owned()),
            }
        } else if ft.is_dir() {
            FileEntry {
                path: rel,
                kind: "dir".into(),
                mode,
                size: None,
                sha256: None,
                target: None,
            }
        } else if ft.is_file() {
            let (sha, size) = sha256_file(e.path())?;
            FileEntry {
                path: rel,
                kind: "file".into(),
                mode,
                size: Some(size),
                sha256: Some(sha),
                target: None,
            }
        } else {
            anyhow::bail!(
                "{}: outputs may only hold files, directories and symlinks",
                e.path().display()
            );
        };
        out.push(entry);
    }
    Ok(out)
}

pub fn output_hash(files: &[FileEntry]) -> String {
    let mut h = Hasher::new("reprovm-output-v1");
    for f in files {
        let line = format!(
            "{} {} {:o} {} {}",
            f.kind,
            f.path,
            f.mode,
            f.sha256.as_deref().unwrap_or("-"),
            f.target.as_deref().unwrap_or("-")
        );
        h.field("entry", line.as_bytes());
    }
    h.finish()
}

/// Canonicalise an output tree like Nix does: mtimes to SOURCE_DATE_EPOCH, no setuid/setgid,
/// no group/other write bits.
pub fn normalize(dir: &Path, epoch: i64) -> Result<()> {
    let t = filetime::FileTime::from_unix_time(epoch, 0);
    for e in walkdir::WalkDir::new(dir).contents_first(true) {
        let e = e?;
        let meta = e.path().symlink_metadata()?;
        if !meta.file_type().is_symlink() {
            let mode = meta.permissions().mode() & 0o777 & !0o022;
            let mode = if meta.is_dir() { mode | 0o755 } else { mode | 0o444 };
            std::fs::set_permissions(e.path(), std::fs::Permissions::from_mode(mode))
                .with_context(|| format!("chmod {}", e.path().display()))?;
        }
        filetime::set_symlink_file_times(e.path(), t, t)
            .with_context(|| format!("setting times on {}", e.path().display()))?;
    }
    Ok(())
}

pub fn read(path: &Path) -> Result<Manifest> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    #[test]
    fn scan_and_hash_see_content_and_mode() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("d")).unwrap();
        std::fs::write(t.path().join("d/f"), "x").unwrap();
        std::os::unix::fs::symlink("d/f", t.path().join("l")).unwrap();
        normalize(t.path(), 1).unwrap();
        let a = scan(t.path()).unwrap();
        assert_eq!(a.iter().map(|f| f.path.as_str()).collect::<Vec<_>>(), vec!["d", "d/f", "l"]);
        let h1 = output_hash(&a);
        std::fs::set_permissions(t.path().join("d/f"), std::fs::Permissions::from_mode(0o755))
            .unwrap();
        assert_ne!(h1, output_hash(&scan(t.path()).unwrap()));
    }
}
