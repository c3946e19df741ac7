//! The well-known results of a build (`out/hd.img`, `out/bzImage`, ...): copies of files in a
//! store entry, so that the store stays read-only and QEMU writes to its own copy. A result
//! must be a regular file inside the entry (a symlink is never followed, whatever it points
//! at). Copies keep holes, appear by rename, and are skipped when `out/` already holds exactly
//! the bytes of this entry (recorded in `out/.results.json` with the copy's inode and mtime,
//! so a no-op build reads nothing).

use crate::model::manifest::{FileKind, Manifest};
use crate::model::store;
use anyhow::{bail, Context, Result};
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::progress;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::MetadataExt;
use std::path::Path;

/// The lock a process holds while it writes the results (`out/.results.lock`).
pub(crate) const RESULTS_LOCK: &str = ".results.lock";

/// Files copied to `out/` when a build produces them.
pub(crate) const RESULTS: [&str; 14] = [
    "hd.img",
    "bzImage",
    "Image",
    "hd.qcow2",
    "kernel.release",
    "initramfs.cpio.gz",
    "efi.img",
    "efi.vhd",
    "efi.vhdx",
    "efi.vmdk",
    "efi.qcow2",
    "reprovm.ova",
    "reprovm.box",
    "reprovm.iso",
];

const STAMPS: &str = ".results.json";

/// What a copy in `out/` was made from, and how to recognise it untouched.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
struct Stamp {
    /// The store entry the copy was made from.
    #[serde(default)]
    entry: String,
    sha256: String,
    size: u64,
    inode: u64,
    mtime_ns: i128,
}

/// An OCI layout result: `out/oci/NAME` becomes a symlink to the entry's read-only output
/// (a layout is only read: by skopeo, umoci, `push`), replaced atomically when it changes.
pub(crate) fn link_layout(out_dir: &Path, name: &str, entry: &Path) -> Result<()> {
    let layout = store::out_dir(entry);
    if !layout.join("oci-layout").is_file() {
        return Ok(());
    }
    let dir = Dir::create(&out_dir.join("oci"))?;
    if dir.metadata(Path::new(name))?.is_some_and(|m| m.kind == Kind::Symlink)
        && dir.read_link(Path::new(name))? == layout
    {
        return Ok(());
    }
    let tmp = format!(".tmp-{name}-{}", std::process::id());
    dir.symlink(&layout, Path::new(&tmp))?;
    dir.rename(Path::new(&tmp), Path::new(name))?;
    progress::say(&format!("{} -> {}", out_dir.join("oci").join(name).display(), layout.display()));
    Ok(())
}

/// Copy the entry's results to `out_dir`.
pub(crate) fn link(out_dir: &Path, entry: &Path, manifest: &Manifest) -> Result<()> {
    let src = Dir::open(&store::out_dir(entry))?;
    let dest = Dir::create(out_dir)?;
    let mut stamps: BTreeMap<String, Stamp> = match dest.metadata(Path::new(STAMPS))? {
        // A damaged stamp file only costs a copy: every result is copied again.
        Some(_) => serde_json::from_slice(&dest.read(Path::new(STAMPS))?).unwrap_or_default(),
        None => BTreeMap::new(),
    };
    for name in RESULTS {
        let Some(f) = manifest.files.iter().find(|f| f.path == name) else {
            continue;
        };
        if f.kind != FileKind::File {
            bail!(
                "{}: result `{name}` is a {} in the store entry, not a regular file; refusing to copy it",
                entry.display(),
                f.kind
            );
        }
        let sha = f.sha256.clone().context("manifest file without sha256")?;
        let current = dest.metadata(Path::new(name))?.map(|m| (m.kind, m.size));
        let from = entry.display().to_string();
        let untouched = match (stamps.get(name), current) {
            (Some(s), Some((Kind::File, size))) => {
                let md = std::fs::symlink_metadata(out_dir.join(name))?;
                s.entry == from
                    && s.sha256 == sha
                    && s.size == size
                    && s.inode == md.ino()
                    && s.mtime_ns == mtime_ns(&md)
            }
            _ => false,
        };
        if untouched {
            continue;
        }
        sparse_copy(&src, Path::new(name), &dest, Path::new(name))?;
        let md = std::fs::symlink_metadata(out_dir.join(name))?;
        stamps.insert(
            name.to_string(),
            Stamp {
                entry: from,
                sha256: sha,
                size: md.len(),
                inode: md.ino(),
                mtime_ns: mtime_ns(&md),
            },
        );
        progress::say(&format!(
            "{} <- {}",
            out_dir.join(name).display(),
            src.path().join(name).display()
        ));
    }
    Ok(dest.write_atomic(Path::new(STAMPS), &serde_json::to_vec_pretty(&stamps)?, 0o644)?)
}

fn mtime_ns(md: &std::fs::Metadata) -> i128 {
    i128::from(md.mtime()) * 1_000_000_000 + i128::from(md.mtime_nsec())
}

/// Copy the regular file `from` (beneath `src`) to `to` (beneath `dest`) keeping holes, via
/// a temp file and rename; mode 0644 (the store's copy is read-only, this one is for use).
pub(crate) fn sparse_copy(src: &Dir, from: &Path, dest: &Dir, to: &Path) -> Result<()> {
    let mut r = src.open_file(from)?;
    let len = r.metadata()?.len();
    let tmp = to.with_file_name(format!(
        ".tmp-{}.{}",
        to.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default(),
        std::process::id()
    ));
    let mut w = dest.create_file(&tmp, 0o644)?;
    let mut buf = vec![0u8; 1 << 16];
    loop {
        let n = r.read(&mut buf)?;
        if n == 0 {
            break;
        }
        if buf[..n].iter().all(|&b| b == 0) {
            w.seek(SeekFrom::Current(n as i64))?;
        } else {
            w.write_all(&buf[..n])?;
        }
    }
    w.set_len(len)?;
    w.sync_all()?;
    drop(w);
    Ok(dest.rename(&tmp, to)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::manifest;

    fn entry_with(t: &Path, f: impl FnOnce(&Path)) -> (std::path::PathBuf, Manifest) {
        let entry = t.join("entry");
        let out = store::out_dir(&entry);
        std::fs::create_dir_all(&out).unwrap();
        f(&out);
        let files = manifest::scan(&out).unwrap();
        let m = Manifest {
            name: "n".into(),
            version: "1".into(),
            input_hash: "0".repeat(64),
            toolchain: "t".into(),
            output_hash: manifest::output_hash(&files),
            files,
        };
        (entry, m)
    }

    #[test]
    fn results_are_copied_once_and_again_only_when_touched() {
        let t = tempfile::tempdir().unwrap();
        let (entry, m) = entry_with(t.path(), |out| {
            let mut img = vec![0u8; 1 << 20];
            img[1000] = 1;
            std::fs::write(out.join("hd.img"), img).unwrap();
        });
        let out = t.path().join("out");
        link(&out, &entry, &m).unwrap();
        let first = std::fs::metadata(out.join("hd.img")).unwrap();
        assert_eq!(
            std::fs::read(out.join("hd.img")).unwrap(),
            std::fs::read(store::out_dir(&entry).join("hd.img")).unwrap()
        );
        assert!(first.blocks() * 512 < first.len(), "the copy is not sparse");
        // A no-op build leaves the copy alone (same inode).
        link(&out, &entry, &m).unwrap();
        assert_eq!(std::fs::metadata(out.join("hd.img")).unwrap().ino(), first.ino());
        // A copy written to since (`run --persist`) is replaced by the entry's bytes.
        std::fs::write(out.join("hd.img"), b"changed by a VM").unwrap();
        link(&out, &entry, &m).unwrap();
        assert_eq!(
            std::fs::read(out.join("hd.img")).unwrap(),
            std::fs::read(store::out_dir(&entry).join("hd.img")).unwrap()
        );
    }

    /// A manifest that lies about a result (the sha256 of what `out/` already holds) cannot
    /// leave a stale copy: another entry is copied again (the registry case of issue 21).
    #[test]
    fn a_result_from_another_entry_is_copied_whatever_its_manifest_claims() {
        let t = tempfile::tempdir().unwrap();
        let (old, old_m) =
            entry_with(t.path(), |out| std::fs::write(out.join("hd.img"), b"old").unwrap());
        let out = t.path().join("out");
        link(&out, &old, &old_m).unwrap();
        let newer = t.path().join("other");
        std::fs::create_dir_all(store::out_dir(&newer)).unwrap();
        std::fs::write(store::out_dir(&newer).join("hd.img"), b"new").unwrap();
        // Its manifest says hd.img is the old bytes.
        link(&out, &newer, &old_m).unwrap();
        assert_eq!(std::fs::read(out.join("hd.img")).unwrap(), b"new");
    }

    #[test]
    fn a_result_that_is_a_symlink_is_refused_and_nothing_is_copied() {
        let t = tempfile::tempdir().unwrap();
        let host = t.path().join("host-secret");
        std::fs::write(&host, "secret bytes").unwrap();
        let (entry, m) = entry_with(t.path(), |out| {
            std::os::unix::fs::symlink(&host, out.join("hd.img")).unwrap()
        });
        let out = t.path().join("out");
        let e = link(&out, &entry, &m).unwrap_err();
        assert!(format!("{e:#}").contains("result `hd.img` is a symlink"), "{e:#}");
        assert!(!out.join("hd.img").exists());
    }
}
