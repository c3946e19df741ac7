//! Output manifests: every file of a store entry with its type, mode, size and sha256, and
//! one `output_hash` over all of it (the identity compared by audits and pins). Trees are read
//! through directory handles (`beneath.rs`): a symlink is recorded as a symlink, never followed.

use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::hash::{sha256_reader, Hasher};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::path::Path;

/// What an output path is.
#[derive(Debug, Clone, Copy, Serialize, Deserialize, PartialEq, Eq, PartialOrd, Ord)]
#[serde(rename_all = "lowercase")]
pub enum FileKind {
    File,
    Dir,
    Symlink,
}

impl fmt::Display for FileKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            FileKind::File => "file",
            FileKind::Dir => "dir",
            FileKind::Symlink => "symlink",
        })
    }
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct FileEntry {
    pub path: String,
    pub kind: FileKind,
    pub mode: u32,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub sha256: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub target: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct Manifest {
    pub name: String,
    pub version: String,
    pub input_hash: String,
    pub toolchain: String,
    pub output_hash: String,
    pub files: Vec<FileEntry>,
}

/// Describe every entry below `dir`, in byte order of paths (each directory before its
/// contents). Devices, FIFOs and sockets are refused: outputs hold files, directories and
/// symlinks only.
pub(crate) fn scan(dir: &Path) -> Result<Vec<FileEntry>> {
    scan_dir(&Dir::open(dir)?)
}

/// [`scan`] of an open directory.
pub(crate) fn scan_dir(d: &Dir) -> Result<Vec<FileEntry>> {
    let dir = d.path();
    let mut out = Vec::new();
    // Names of one inode are hashed once: a tree of N hard links to a large file costs one
    // read of it, not N (a hostile layer is made of little more than link entries).
    let mut hashed: std::collections::BTreeMap<(u64, u64), (String, u64)> = Default::default();
    for e in d.walk()? {
        let path = e.path.to_string_lossy().into_owned();
        let entry = match e.kind {
            Kind::Symlink => {
                let t = d.read_link(&e.path)?;
                let target = Some(t.to_string_lossy().into_owned());
                FileEntry {
                    path,
                    kind: FileKind::Symlink,
                    mode: 0o777,
                    size: None,
                    sha256: None,
                    target,
                }
            }
            Kind::Dir => FileEntry {
                path,
                kind: FileKind::Dir,
                mode: e.mode,
                size: None,
                sha256: None,
                target: None,
            },
            Kind::File => {
                let (sha, size) = match hashed.get(&(e.dev, e.ino)) {
                    Some(known) => known.clone(),
                    None => {
                        let mut f = d.open_file(&e.path)?;
                        let got = sha256_reader(&mut f)
                            .with_context(|| format!("reading {}", dir.join(&e.path).display()))?;
                        if e.nlink > 1 {
                            hashed.insert((e.dev, e.ino), got.clone());
                        }
                        got
                    }
                };
                FileEntry {
                    path,
                    kind: FileKind::File,
                    mode: e.mode,
                    size: Some(size),
                    sha256: Some(sha),
                    target: None,
                }
            }
            Kind::Special => {
                bail!(
                    "{}: outputs may only hold files, directories and symlinks",
                    dir.join(&e.path).display()
                )
            }
        };
        out.push(entry);
    }
    Ok(out)
}

pub(crate) fn output_hash(files: &[FileEntry]) -> String {
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
/// no group/other write bits, everything readable, and (unlike Nix, which clears them) the
/// owner's write bit set: a mode is 0644 or 0755 in effect. The store seals its files without
/// write bits (`store::seal`), and a build that copies a dependency's file (0444 or 0555 on
/// disk, as in Nix's store) must record the mode that file had when it was made, or the
/// sealing would reach the output hash. Symlinks keep their (meaningless) mode.
pub(crate) fn normalize(dir: &Path, epoch: i64) -> Result<()> {
    let d = Dir::open(dir)?;
    let entries = d.walk()?;
    // Deepest first: re-timing a child must not come after its directory's final time.
    for e in entries.iter().rev() {
        match e.kind {
            Kind::Special => {
                bail!(
                    "{}: outputs may only hold files, directories and symlinks",
                    dir.join(&e.path).display()
                )
            }
            Kind::Symlink => {}
            Kind::Dir => d.set_mode(&e.path, (e.mode & 0o777 & !0o022) | 0o755)?,
            Kind::File => d.set_mode(&e.path, (e.mode & 0o777 & !0o022) | 0o644)?,
        }
        d.set_mtime(&e.path, epoch)?;
    }
    let top = d.metadata(Path::new(""))?.context("output directory vanished")?;
    d.set_mode(Path::new(""), (top.mode & 0o777 & !0o022) | 0o755)?;
    Ok(d.set_mtime(Path::new(""), epoch)?)
}

/// The largest manifest.json read, from the store or a registry (the kernel's, with every
/// module listed, is about 16 KiB).
pub(crate) const MAX_BYTES: u64 = 16 << 20;

/// Read a manifest file: a regular file opened beneath its directory's handle (a symlink or a
/// device in its place is refused, never followed), at most [`MAX_BYTES`]. A missing file is an
/// error here; callers that treat "absent" as "not built" check for it first (see
/// `store::lookup`).
pub(crate) fn read(path: &Path) -> Result<Manifest> {
    let (dir, name) = match (path.parent(), path.file_name()) {
        (Some(dir), Some(name)) => (dir, Path::new(name)),
        _ => bail!("{}: not a manifest file's path", path.display()),
    };
    let file = Dir::open(dir)?.open_file(name)?;
    let mut text = String::new();
    std::io::Read::read_to_string(&mut std::io::Read::take(file, MAX_BYTES + 1), &mut text)
        .with_context(|| format!("reading {}", path.display()))?;
    anyhow::ensure!(
        text.len() as u64 <= MAX_BYTES,
        "{}: larger than the limit of {MAX_BYTES} bytes",
        path.display()
    );
    serde_json::from_str(&text).with_context(|| format!("parsing {}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A manifest.json that is a symlink (to another file, or to /dev/zero) or larger than the
    /// limit is refused, never followed or read to the end.
    #[test]
    fn a_manifest_is_a_bounded_regular_file() {
        let t = tempfile::tempdir().unwrap();
        let entry = t.path().join("entry");
        std::fs::create_dir(&entry).unwrap();
        let m = entry.join("manifest.json");
        std::os::unix::fs::symlink("/dev/zero", &m).unwrap();
        let e = format!("{:#}", read(&m).unwrap_err());
        assert!(e.contains("symlink"), "{e}");
        std::fs::remove_file(&m).unwrap();
        let f = std::fs::File::create(&m).unwrap();
        f.set_len(MAX_BYTES + 1).unwrap();
        let e = format!("{:#}", read(&m).unwrap_err());
        assert!(e.contains("larger than the limit"), "{e}");
    }

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

    /// A file copied out of a sealed store entry (0444, 0555) records the mode the original
    /// had when it was made (0644, 0755), so sealing never reaches an output hash.
    #[test]
    fn a_copy_of_a_sealed_file_normalises_to_the_original_mode() {
        let t = tempfile::tempdir().unwrap();
        for (name, mode) in [("sealed-exec", 0o555), ("sealed", 0o444), ("private", 0o600)] {
            std::fs::write(t.path().join(name), "x").unwrap();
            std::fs::set_permissions(t.path().join(name), std::fs::Permissions::from_mode(mode))
                .unwrap();
        }
        normalize(t.path(), 1).unwrap();
        let modes: Vec<(String, u32)> =
            scan(t.path()).unwrap().into_iter().map(|f| (f.path, f.mode)).collect();
        assert_eq!(
            modes,
            [("private".into(), 0o644), ("sealed".into(), 0o644), ("sealed-exec".into(), 0o755)]
        );
    }

    #[test]
    fn a_symlink_out_is_recorded_not_followed_and_its_target_untouched() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host");
        std::fs::write(&host, "secret").unwrap();
        std::fs::set_permissions(&host, std::fs::Permissions::from_mode(0o600)).unwrap();
        let out = t.path().join("out");
        std::fs::create_dir(&out).unwrap();
        std::os::unix::fs::symlink(&host, out.join("hd.img")).unwrap();
        normalize(&out, 1).unwrap();
        let files = scan(&out).unwrap();
        assert_eq!(files[0].kind, FileKind::Symlink);
        assert_eq!(files[0].target.as_deref(), Some(host.to_str().unwrap()));
        assert!(files[0].sha256.is_none());
        let m = std::fs::metadata(&host).unwrap();
        assert_eq!(
            m.permissions().mode() & 0o777,
            0o600,
            "normalize chmod-ed the symlink's target"
        );
    }

    #[test]
    fn a_fifo_is_refused_by_name() {
        let t = tempfile::tempdir().unwrap();
        rustix::fs::mkfifoat(
            rustix::fs::CWD,
            t.path().join("pipe").as_path(),
            rustix::fs::Mode::from_raw_mode(0o644),
        )
        .unwrap();
        let e = normalize(t.path(), 1).unwrap_err();
        assert!(format!("{e:#}").contains("pipe: outputs may only hold"), "{e:#}");
    }

    #[test]
    fn manifest_json_round_trips_with_the_same_kind_strings() {
        let m = Manifest {
            name: "n".into(),
            version: "1".into(),
            input_hash: "i".into(),
            toolchain: "t".into(),
            output_hash: "o".into(),
            files: vec![FileEntry {
                path: "l".into(),
                kind: FileKind::Symlink,
                mode: 0o777,
                size: None,
                sha256: None,
                target: Some("x".into()),
            }],
        };
        let text = serde_json::to_string(&m).unwrap();
        assert!(text.contains("\"kind\":\"symlink\""), "{text}");
        assert_eq!(serde_json::from_str::<Manifest>(&text).unwrap(), m);
    }
}
