//! Archive extraction in Rust (tar.gz/bz2/xz/zst, plain tar, zip) that refuses entries
//! escaping the target: `..`, absolute paths, symlinks pointing out, hard links out.

use anyhow::{bail, Context, Result};
use std::fs::{self, File};
use std::io::{self, BufReader, Read};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    TarZst,
    Zip,
}

/// Detect the format from magic bytes (names lie; bytes do not).
pub fn detect(path: &Path) -> Result<Format> {
    let mut head = [0u8; 262];
    let mut f = File::open(path).with_context(|| format!("opening {}", path.display()))?;
    let n = f.read(&mut head)?;
    let h = &head[..n];
    Ok(if h.starts_with(&[0x1f, 0x8b]) {
        Format::TarGz
    } else if h.starts_with(b"BZh") {
        Format::TarBz2
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::TarXz
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::TarZst
    } else if h.starts_with(b"PK\x03\x04") || h.starts_with(b"PK\x05\x06") {
        Format::Zip
    } else if n >= 262 && &h[257..262] == b"ustar" {
        Format::Tar
    } else {
        bail!(
            "{}: unknown archive format (expected tar, tar.gz, tar.bz2, tar.xz, tar.zst or zip)",
            path.display()
        )
    })
}

/// Open a decompressing reader for a (possibly compressed) tar stream.
pub fn tar_reader(path: &Path, fmt: Format) -> Result<Box<dyn Read>> {
    let f = BufReader::with_capacity(
        1 << 20,
        File::open(path).with_context(|| format!("opening {}", path.display()))?,
    );
    Ok(match fmt {
        Format::Tar => Box::new(f),
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(f)),
        Format::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(f)),
        Format::TarXz => Box::new(xz2::read::XzDecoder::new_multi_decoder(f)),
        Format::TarZst => Box::new(zstd::stream::read::Decoder::with_buffer(f)?),
        Format::Zip => bail!("{}: zip is not a tar stream", path.display()),
    })
}

/// Extract `archive` into `dest` (created if needed), dropping `strip` leading components.
pub fn extract(archive: &Path, dest: &Path, strip: usize) -> Result<()> {
    let fmt = detect(archive)?;
    fs::create_dir_all(dest)?;
    let r = if fmt == Format::Zip {
        extract_zip(archive, dest, strip)
    } else {
        extract_tar(tar_reader(archive, fmt)?, dest, strip)
    };
    r.with_context(|| format!("refusing to extract {}", archive.display()))
}

/// Normalise an archive member name: strip components, refuse absolute paths and `..`.
/// Returns None for entries that vanish after stripping (the top directory itself).
pub fn safe_relative(name: &Path, strip: usize) -> Result<Option<PathBuf>> {
    let mut out = PathBuf::new();
    let mut seen = 0usize;
    for c in name.components() {
        match c {
            Component::RootDir | Component::Prefix(_) => {
                bail!("entry `{}` has an absolute path", name.display())
            }
            Component::ParentDir => {
                bail!("entry `{}` contains `..` (path traversal)", name.display())
            }
            Component::CurDir => {}
            Component::Normal(p) => {
                if seen < strip {
                    seen += 1;
                } else {
                    out.push(p);
                }
            }
        }
    }
    Ok(if out.as_os_str().is_empty() { None } else { Some(out) })
}

/// A symlink at `rel` with `target` must resolve inside the extraction root.
pub fn check_symlink(rel: &Path, target: &Path) -> Result<()> {
    if target.is_absolute() {
        bail!(
            "symlink `{}` -> `{}` points outside the target (absolute)",
            rel.display(),
            target.display()
        );
    }
    let mut depth: i64 = rel.components().count() as i64 - 1;
    for c in target.components() {
        match c {
            Component::ParentDir => depth -= 1,
            Component::Normal(_) => depth += 1,
            _ => {}
        }
        if depth < 0 {
            bail!(
                "symlink `{}` -> `{}` points outside the target",
                rel.display(),
                target.display()
            );
        }
    }
    Ok(())
}

/// Refuse to write through a symlink created by an earlier entry.
fn check_no_symlink_parent(dest: &Path, rel: &Path) -> Result<()> {
    let mut p = dest.to_path_buf();
    let comps: Vec<_> = rel.components().collect();
    for c in &comps[..comps.len().saturating_sub(1)] {
        p.push(c);
        if let Ok(m) = fs::symlink_metadata(&p) {
            if m.file_type().is_symlink() {
                bail!(
                    "entry `{}` would be written through the symlink `{}`",
                    rel.display(),
                    p.display()
                );
            }
        }
    }
    Ok(())
}

fn extract_tar(r: Box<dyn Read>, dest: &Path, strip: usize) -> Result<()> {
    let mut ar = tar::Archive::new(r);
    let mut dir_times: Vec<(PathBuf, u64, u32)> = Vec::new();
    for entry in ar.entries()? {
        let mut entry = entry?;
        let kind = entry.header().entry_type();
        if matches!(
            kind,
            tar::EntryType::XGlobalHeader
                | tar::EntryType::XHeader
                | tar::EntryType::GNULongName
                | tar::EntryType::GNULongLink
        ) {
            continue;
        }
        let name = entry.path()?.into_owned();
        let Some(rel) = safe_relative(&name, strip)? else {
            continue;
        };
        check_no_symlink_parent(dest, &rel)?;
        let target = dest.join(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        let mtime = entry.header().mtime().unwrap_or(0);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        match kind {
            tar::EntryType::Directory => {
                fs::create_dir_all(&target)?;
                dir_times.push((target, mtime, mode));
            }
            tar::EntryType::Regular | tar::EntryType::Continuous | tar::EntryType::GNUSparse => {
                remove_existing(&target)?;
                let mut f = File::create(&target)?;
                io::copy(&mut entry, &mut f)?;
                f.set_permissions(fs::Permissions::from_mode(mode & 0o7777 & !0o6000))?;
                drop(f);
                filetime::set_file_mtime(
                    &target,
                    filetime::FileTime::from_unix_time(mtime as i64, 0),
                )?;
            }
            tar::EntryType::Symlink => {
                let link = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                check_symlink(&rel, &link)?;
                remove_existing(&target)?;
                std::os::unix::fs::symlink(&link, &target)?;
                filetime::set_symlink_file_times(
                    &target,
                    filetime::FileTime::from_unix_time(mtime as i64, 0),
                    filetime::FileTime::from_unix_time(mtime as i64, 0),
                )?;
            }
            tar::EntryType::Link => {
                let link = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let Some(src_rel) = safe_relative(&link, strip)
                    .map_err(|e| anyhow::format_err!("hard link `{}`: {e}", rel.display()))?
                else {
                    bail!(
                        "hard link `{}` -> `{}` points outside the target",
                        rel.display(),
                        link.display()
                    )
                };
                check_no_symlink_parent(dest, &src_rel)?;
                let src = dest.join(&src_rel);
                let meta = fs::symlink_metadata(&src).with_context(|| {
                    format!(
                        "hard link `{}` -> `{}`: target not extracted before it",
                        rel.display(),
                        link.display()
                    )
                })?;
                if meta.file_type().is_symlink() {
                    bail!(
                        "hard link `{}` -> `{}` points at a symlink",
                        rel.display(),
                        link.display()
                    );
                }
                remove_existing(&target)?;
                fs::hard_link(&src, &target)?;
            }
            tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                bail!(
                    "entry `{}` is a device node or fifo; source archives may not contain them",
                    rel.display()
                )
            }
            other => bail!("entry `{}` has unsupported type {other:?}", rel.display()),
        }
    }
    // Directory modes and times last, deepest first, so that writing children does not undo them.
    dir_times.sort_by(|a, b| b.0.cmp(&a.0));
    for (d, mtime, mode) in dir_times {
        fs::set_permissions(&d, fs::Permissions::from_mode((mode & 0o7777 & !0o6000) | 0o700))?;
        filetime::set_file_mtime(&d, filetime::FileTime::from_unix_time(mtime as i64, 0))?;
    }
    Ok(())
}

fn remove_existing(p: &Path) -> Result<()> {
    match fs::symlink_metadata(p) {
        Ok(m) if m.is_dir() => bail!("entry `{}` would replace a directory", p.display()),
        Ok(_) => fs::remove_file(p)?,
        Err(_) => {}
    }
    Ok(())
}

fn extract_zip(archive: &Path, dest: &Path, strip: usize) -> Result<()> {
    let mut z = zip::ZipArchive::new(File::open(archive)?)?;
    for i in 0..z.len() {
        let mut f = z.by_index(i)?;
        let name = PathBuf::from(f.name());
        let Some(rel) = safe_relative(&name, strip)? else {
            continue;
        };
        check_no_symlink_parent(dest, &rel)?;
        let target = dest.join(&rel);
        let mode = f.unix_mode();
        let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        if let Some(parent) = target.parent() {
            fs::create_dir_all(parent)?;
        }
        if f.is_dir() {
            fs::create_dir_all(&target)?;
        } else if is_link {
            let mut t = String::new();
            f.read_to_string(&mut t)?;
            check_symlink(&rel, Path::new(&t))?;
            remove_existing(&target)?;
            std::os::unix::fs::symlink(&t, &target)?;
        } else {
            remove_existing(&target)?;
            let mut out = File::create(&target)?;
            io::copy(&mut f, &mut out)?;
            out.set_permissions(fs::Permissions::from_mode(mode.unwrap_or(0o644) & 0o777))?;
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Build a tar.gz with raw headers, so hostile names are written as-is.
    fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            {
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
            }
            h.set_entry_type(*kind);
            h.set_mode(0o644);
            let data: &[u8] = if *kind == tar::EntryType::Regular { b"data" } else { b"" };
            h.set_size(data.len() as u64);
            if !link.is_empty() {
                h.set_link_name(link).unwrap();
            }
            h.set_cksum();
            b.append(&h, data).unwrap();
        }
        b.into_inner().unwrap().finish().unwrap()
    }

    fn try_extract(bytes: &[u8]) -> (tempfile::TempDir, Result<()>) {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.tar.gz");
        fs::write(&a, bytes).unwrap();
        let r = extract(&a, &t.path().join("dest"), 0);
        (t, r)
    }

    #[test]
    fn path_traversal_refused() {
        let (t, r) = try_extract(&hostile_tar(&[
            ("ok", tar::EntryType::Regular, ""),
            ("../evil", tar::EntryType::Regular, ""),
        ]));
        assert!(format!("{:#}", r.unwrap_err()).contains("path traversal"));
        assert!(!t.path().join("evil").exists());
    }

    #[test]
    fn absolute_path_refused() {
        let (_t, r) =
            try_extract(&hostile_tar(&[("/tmp/reprovm-evil", tar::EntryType::Regular, "")]));
        assert!(format!("{:#}", r.unwrap_err()).contains("absolute path"));
        assert!(!Path::new("/tmp/reprovm-evil").exists());
    }

    #[test]
    fn symlink_escape_refused() {
        let (_t, r) =
            try_extract(&hostile_tar(&[("d/link", tar::EntryType::Symlink, "../../outside")]));
        assert!(format!("{:#}", r.unwrap_err()).contains("points outside"));
        let (_t, r) = try_extract(&hostile_tar(&[("link", tar::EntryType::Symlink, "/etc")]));
        assert!(format!("{:#}", r.unwrap_err()).contains("absolute"));
        // A symlink that stays inside, then a write through it, is refused too.
        let (_t, r) = try_extract(&hostile_tar(&[
            ("d/x", tar::EntryType::Regular, ""),
            ("l", tar::EntryType::Symlink, "d"),
            ("l/y", tar::EntryType::Regular, ""),
        ]));
        assert!(format!("{:#}", r.unwrap_err()).contains("through the symlink"));
    }

    #[test]
    fn hard_link_escape_refused() {
        let (_t, r) = try_extract(&hostile_tar(&[("h", tar::EntryType::Link, "../../etc/passwd")]));
        assert!(format!("{:#}", r.unwrap_err()).contains("path traversal"));
        let (_t, r) = try_extract(&hostile_tar(&[("h", tar::EntryType::Link, "/etc/passwd")]));
        assert!(format!("{:#}", r.unwrap_err()).contains("absolute"));
    }

    #[test]
    fn benign_archive_with_strip() {
        let bytes = hostile_tar(&[
            ("top/", tar::EntryType::Directory, ""),
            ("top/a", tar::EntryType::Regular, ""),
            ("top/l", tar::EntryType::Symlink, "a"),
            ("top/h", tar::EntryType::Link, "top/a"),
        ]);
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.tar.gz");
        fs::write(&a, bytes).unwrap();
        extract(&a, &t.path().join("dest"), 1).unwrap();
        assert_eq!(fs::read(t.path().join("dest/h")).unwrap(), b"data");
        assert_eq!(fs::read_link(t.path().join("dest/l")).unwrap(), Path::new("a"));
    }

    #[test]
    fn zip_traversal_refused() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.zip");
        let mut w = zip::ZipWriter::new(File::create(&a).unwrap());
        w.start_file("../evil", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        w.finish().unwrap();
        let r = extract(&a, &t.path().join("dest"), 0);
        assert!(format!("{:#}", r.unwrap_err()).contains("path traversal"));
    }
}
