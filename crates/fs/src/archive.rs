//! Archive extraction in Rust (tar.gz/bz2/xz/zst, plain tar, zip, and the data.tar of a
//! .deb) through a directory handle (`beneath.rs`). Refused, with the entry named: `..` and
//! absolute names, writes through any symlink (an earlier entry's included), a directory entry
//! where a symlink is, hard links to anything but a regular file of the same archive, device
//! nodes and FIFOs in sources, and, once everything is written, any symlink whose chain of
//! targets leaves the tree (each link may look harmless alone and still escape together).

use crate::beneath::{Dir, Kind};
use anyhow::{bail, Context, Result};
use std::ffi::OsString;
use std::fs::File;
use std::io::{self, BufReader, Read, Seek};
use std::path::{Component, Path, PathBuf};
use std::time::{Duration, UNIX_EPOCH};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    Tar,
    TarGz,
    TarBz2,
    TarXz,
    TarZst,
    Zip,
}

/// The format from magic bytes (names lie; bytes do not).
pub fn detect_head(h: &[u8]) -> Option<Format> {
    Some(if h.starts_with(&[0x1f, 0x8b]) {
        Format::TarGz
    } else if h.starts_with(b"BZh") {
        Format::TarBz2
    } else if h.starts_with(&[0xfd, b'7', b'z', b'X', b'Z', 0]) {
        Format::TarXz
    } else if h.starts_with(&[0x28, 0xb5, 0x2f, 0xfd]) {
        Format::TarZst
    } else if h.starts_with(b"PK\x03\x04") || h.starts_with(b"PK\x05\x06") {
        Format::Zip
    } else if h.len() >= 262 && &h[257..262] == b"ustar" {
        Format::Tar
    } else {
        return None;
    })
}

fn detect_file(f: &mut File, what: &dyn std::fmt::Display) -> Result<Format> {
    let mut head = [0u8; 262];
    let mut n = 0;
    while n < head.len() {
        let k = f.read(&mut head[n..])?;
        if k == 0 {
            break;
        }
        n += k;
    }
    f.rewind()?;
    detect_head(&head[..n]).with_context(|| {
        format!("{what}: unknown archive format (expected tar, tar.gz, tar.bz2, tar.xz, tar.zst or zip)")
    })
}

/// A decompressing reader for `fmt` (multi-member streams included, as gzip -d reads them).
pub fn decoder<R: Read + 'static>(fmt: Format, r: R) -> Result<Box<dyn Read>> {
    let r = BufReader::with_capacity(1 << 20, r);
    Ok(match fmt {
        Format::Tar => Box::new(r),
        Format::TarGz => Box::new(flate2::read::MultiGzDecoder::new(r)),
        Format::TarBz2 => Box::new(bzip2::read::MultiBzDecoder::new(r)),
        Format::TarXz => Box::new(xz2::read::XzDecoder::new_multi_decoder(r)),
        Format::TarZst => Box::new(
            ruzstd::decoding::StreamingDecoder::new(r).map_err(|e| anyhow::anyhow!("zstd: {e}"))?,
        ),
        Format::Zip => bail!("zip is not a tar stream"),
    })
}

/// The tar stream of an open (possibly compressed) tarball.
pub fn tar_stream(mut f: File) -> Result<Box<dyn Read>> {
    let fmt = detect_file(&mut f, &"tarball")?;
    decoder(fmt, f)
}

/// What kind of tree an archive is extracted into.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Links {
    /// A source tree: every symlink must resolve inside it (absolute targets are refused),
    /// device nodes and FIFOs are refused.
    StayInTree,
    /// A root file system (.debs): absolute symlink targets mean the root's own `/` but
    /// relative chains must still not climb above it; device nodes and FIFOs are skipped;
    /// files stay writable by their owner, so that a later package can replace them (dpkg).
    RootFileSystem,
}

/// Extract `archive` (a file in the cache, named by its hash) into `dest`, dropping `strip`
/// leading components.
pub fn extract(archive: &Path, dest: &Dir, strip: usize) -> Result<()> {
    let mut f = File::open(archive).with_context(|| format!("opening {}", archive.display()))?;
    let fmt = detect_file(&mut f, &archive.display())?;
    let r = if fmt == Format::Zip {
        extract_zip(f, dest, strip)
    } else {
        extract_tar(decoder(fmt, f)?, dest, strip, &|p| p.to_path_buf(), Links::StayInTree)
            .and_then(|_| check_links(dest, None, Links::StayInTree))
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

/// The open parent directory of the last entry written: most entries of a tarball share it,
/// so it is resolved once (component by component, never through a symlink) and reused.
struct Parents<'a> {
    root: &'a Dir,
    last: Option<(PathBuf, Dir)>,
}

impl<'a> Parents<'a> {
    fn of(&mut self, rel: &Path) -> Result<(&Dir, OsString)> {
        let parent = rel.parent().unwrap_or(Path::new("")).to_path_buf();
        let name = rel.file_name().context("entry without a name")?.to_os_string();
        if self.last.as_ref().is_none_or(|(p, _)| *p != parent) {
            let d = self.root.create_dir_all(&parent)?;
            self.last = Some((parent, d));
        }
        Ok((&self.last.as_ref().expect("just set").1, name))
    }
}

fn set_file_time(f: &File, mtime: u64) -> io::Result<()> {
    f.set_times(std::fs::FileTimes::new().set_modified(UNIX_EPOCH + Duration::from_secs(mtime)))
}

/// A reader of at most `limit` bytes of `inner`: one byte more is an error (naming the
/// limit), not a quiet end, so an archive that unpacks to more than it declared is refused
/// while it streams.
pub struct Bounded<R> {
    inner: R,
    limit: u64,
    read: u64,
}

impl<R: Read> Bounded<R> {
    pub fn new(inner: R, limit: u64) -> Bounded<R> {
        Bounded { inner, limit, read: 0 }
    }
}

impl<R: Read> Read for Bounded<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let room = (self.limit - self.read).saturating_add(1).min(buf.len() as u64) as usize;
        let n = self.inner.read(&mut buf[..room])?;
        self.read += n as u64;
        if self.read > self.limit {
            return Err(io::Error::other(format!(
                "it unpacks to more than the {} bytes declared",
                self.limit
            )));
        }
        Ok(n)
    }
}

/// Extract a tar stream into `dest`; `map` rewrites member paths (merged /usr for .debs).
/// Returns the symlinks it created, for [`check_links`] (callers check once the whole tree is
/// in place: a later entry can change where an earlier link leads).
pub fn extract_tar(
    r: Box<dyn Read>,
    dest: &Dir,
    strip: usize,
    map: &dyn Fn(&Path) -> PathBuf,
    links: Links,
) -> Result<Vec<PathBuf>> {
    let mut created = Vec::new();
    let mut ar = tar::Archive::new(r);
    let mut parents = Parents { root: dest, last: None };
    let mut dirs: Vec<(PathBuf, u64, u32)> = Vec::new();
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
        let rel = map(&rel);
        let mode = entry.header().mode().unwrap_or(0o644);
        let mtime = entry.header().mtime().unwrap_or(0);
        let shown = rel.display().to_string();
        let step = (|| -> Result<()> {
            match kind {
                tar::EntryType::Directory => {
                    dest.create_dir_all(&rel)?;
                    dirs.push((rel.clone(), mtime, mode));
                }
                // A sparse entry's holes are zeros the stream never carries: unpacking one
                // would write more than any bound on the stream allows. No archive reprovm
                // unpacks has a use for them: source archives, layers, and Debian packages,
                // whose dpkg takes none either.
                tar::EntryType::GNUSparse => {
                    bail!("a sparse file; the archives reprovm unpacks may not contain them")
                }
                tar::EntryType::Regular | tar::EntryType::Continuous => {
                    let (dir, n) = parents.of(&rel)?;
                    let owner_w = if links == Links::RootFileSystem { 0o200 } else { 0 };
                    let mut f = dir.create_file(Path::new(&n), (mode & 0o777) | owner_w)?;
                    io::copy(&mut entry, &mut f)?;
                    set_file_time(&f, mtime)?;
                }
                tar::EntryType::Symlink => {
                    let target = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                    if target.as_os_str().is_empty() {
                        bail!("symlink with an empty target");
                    }
                    let (dir, n) = parents.of(&rel)?;
                    dir.symlink(&target, Path::new(&n))?;
                    dir.set_mtime(Path::new(&n), mtime as i64)?;
                    created.push(rel.clone());
                }
                tar::EntryType::Link => {
                    let target = entry.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                    let Some(src) = safe_relative(&target, strip)
                        .with_context(|| format!("hard link to `{}`", target.display()))?
                    else {
                        bail!("hard link to `{}` points outside the archive", target.display())
                    };
                    dest.hard_link(&map(&src), &rel).with_context(|| {
                        format!(
                            "hard link to `{}` (it must be a regular file extracted before it)",
                            target.display()
                        )
                    })?;
                }
                tar::EntryType::Char | tar::EntryType::Block | tar::EntryType::Fifo => {
                    if links == Links::StayInTree {
                        bail!("a device node or FIFO; source archives may not contain them");
                    }
                    // A toolchain needs no device nodes: skipped.
                }
                other => bail!("unsupported entry type {other:?}"),
            }
            Ok(())
        })();
        step.with_context(|| format!("entry `{shown}`"))?;
    }
    drop(parents);
    // Directory modes and times last, deepest first, so that writing children does not undo
    // them; the owner keeps write and search permission (the tree is deleted later).
    dirs.sort_by(|a, b| b.0.cmp(&a.0));
    for (d, mtime, mode) in dirs {
        dest.set_mode(&d, (mode & 0o777) | 0o700)?;
        dest.set_mtime(&d, mtime as i64)?;
    }
    Ok(created)
}

fn extract_zip(f: File, dest: &Dir, strip: usize) -> Result<()> {
    let mut z = zip::ZipArchive::new(f)?;
    for i in 0..z.len() {
        let mut f = z.by_index(i)?;
        let name = PathBuf::from(f.name());
        let Some(rel) = safe_relative(&name, strip)? else {
            continue;
        };
        let mode = f.unix_mode();
        let is_link = mode.is_some_and(|m| m & 0o170000 == 0o120000);
        let step = (|| -> Result<()> {
            if f.is_dir() {
                dest.create_dir_all(&rel)?;
            } else if is_link {
                let mut t = String::new();
                f.read_to_string(&mut t)?;
                dest.symlink(Path::new(&t), &rel)?;
            } else {
                let mut out = dest.create_file(&rel, mode.unwrap_or(0o644) & 0o777)?;
                io::copy(&mut f, &mut out)?;
            }
            Ok(())
        })();
        step.with_context(|| format!("entry `{}`", rel.display()))?;
    }
    check_links(dest, None, Links::StayInTree)
}

/// Every symlink of the tree (or those named) must resolve inside it, following chains
/// through other symlinks of the tree. Dangling links are fine as long as their path stays in.
pub fn check_links(tree: &Dir, only: Option<&[PathBuf]>, policy: Links) -> Result<()> {
    let links: Vec<PathBuf> = match only {
        Some(paths) => paths.to_vec(),
        None => {
            tree.walk()?.into_iter().filter(|e| e.kind == Kind::Symlink).map(|e| e.path).collect()
        }
    };
    for path in links {
        if tree.metadata(&path)?.is_none_or(|m| m.kind != Kind::Symlink) {
            continue; // replaced by a later entry
        }
        let target = tree.read_link(&path)?;
        let base = path.parent().unwrap_or(Path::new(""));
        if let Err(why) = resolves_inside(tree, base, &target, policy) {
            bail!("symlink `{}` -> `{}` {why}", path.display(), target.display());
        }
    }
    Ok(())
}

/// Follow `target` (as seen from directory `base`) inside `tree`; Err(reason) if the chain
/// leaves it.
fn resolves_inside(tree: &Dir, base: &Path, target: &Path, policy: Links) -> Result<(), String> {
    let mut todo: Vec<OsString> = Vec::new();
    let mut cur: Vec<OsString> = Vec::new();
    if target.is_absolute() {
        if policy == Links::StayInTree {
            return Err("points outside the tree (absolute)".into());
        }
    } else {
        cur = base.components().map(|c| c.as_os_str().to_os_string()).collect();
    }
    push_rev(&mut todo, target);
    let mut hops = 0;
    while let Some(c) = todo.pop() {
        if c == ".." {
            if cur.pop().is_none() {
                return Err("points outside the tree (through `..`)".into());
            }
            continue;
        }
        let here: PathBuf = cur.iter().chain(std::iter::once(&c)).collect();
        match tree.metadata(&here) {
            Ok(Some(m)) if m.kind == Kind::Symlink => {
                hops += 1;
                if hops > 40 {
                    return Err("is a loop of symlinks".into());
                }
                let t = tree.read_link(&here).map_err(|e| e.to_string())?;
                if t.is_absolute() {
                    if policy == Links::StayInTree {
                        return Err(format!(
                            "points outside the tree through `{}` (absolute)",
                            here.display()
                        ));
                    }
                    cur.clear();
                }
                push_rev(&mut todo, &t);
            }
            // Past a regular file nothing resolves at all (ENOTDIR): nothing escapes either.
            Ok(Some(m)) if m.kind != Kind::Dir && !todo.is_empty() => return Ok(()),
            Ok(_) => cur.push(c),
            // A missing or unreadable component: go on by name (what it might become later).
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => cur.push(c),
            Err(_) => cur.push(c),
        }
    }
    Ok(())
}

fn push_rev(stack: &mut Vec<OsString>, p: &Path) {
    let comps: Vec<OsString> = p
        .components()
        .filter_map(|c| match c {
            Component::Normal(n) => Some(n.to_os_string()),
            Component::ParentDir => Some(OsString::from("..")),
            _ => None,
        })
        .collect();
    stack.extend(comps.into_iter().rev());
}

/// Hostile archives for tests here and in `toolchain` (.debs).
/// Hostile archives for tests (here and in the crates that extract through this one).
#[doc(hidden)]
pub mod tests_support {
    /// Entries of [`hostile_tar`]: name, type, link target.
    pub type Entries<'a> = &'a [(&'a str, tar::EntryType, &'a str)];

    /// Build a tar.gz with raw headers, so hostile names are written as-is.
    pub fn hostile_tar(entries: &[(&str, tar::EntryType, &str)]) -> Vec<u8> {
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        for (name, kind, link) in entries {
            let mut h = tar::Header::new_gnu();
            {
                let raw = h.as_old_mut();
                raw.name[..name.len()].copy_from_slice(name.as_bytes());
            }
            h.set_entry_type(*kind);
            h.set_mode(if *kind == tar::EntryType::Directory { 0o700 } else { 0o644 });
            h.set_mtime(1);
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
}

#[cfg(test)]
mod tests {
    use super::tests_support::hostile_tar;
    use super::*;
    use std::os::unix::fs::PermissionsExt;

    /// A temp dir holding `dest/` and, beside it, a sentinel directory that must survive.
    struct Scene {
        t: tempfile::TempDir,
    }

    impl Scene {
        fn new() -> Scene {
            let t = tempfile::tempdir().unwrap();
            let s = t.path().join("sentinel");
            std::fs::create_dir(&s).unwrap();
            std::fs::write(s.join("keep"), "sentinel").unwrap();
            std::fs::set_permissions(&s, std::fs::Permissions::from_mode(0o751)).unwrap();
            filetime::set_file_mtime(&s, filetime::FileTime::from_unix_time(1_000_000, 0)).unwrap();
            Scene { t }
        }
        fn extract(&self, bytes: &[u8]) -> Result<()> {
            let _ = std::fs::remove_dir_all(self.t.path().join("dest"));
            let a = self.t.path().join("a.tar.gz");
            std::fs::write(&a, bytes).unwrap();
            extract(&a, &Dir::create(&self.t.path().join("dest")).unwrap(), 0)
        }
        fn sentinel_intact(&self) {
            let s = self.t.path().join("sentinel");
            let m = std::fs::metadata(&s).unwrap();
            assert_eq!(m.permissions().mode() & 0o7777, 0o751, "sentinel mode changed");
            assert_eq!(
                filetime::FileTime::from_last_modification_time(&m).unix_seconds(),
                1_000_000,
                "sentinel re-timed"
            );
            let names: Vec<_> =
                std::fs::read_dir(&s).unwrap().map(|e| e.unwrap().file_name()).collect();
            assert_eq!(names, ["keep"], "files appeared in the sentinel");
            assert_eq!(std::fs::read_to_string(s.join("keep")).unwrap(), "sentinel");
        }
    }

    fn refused(r: Result<()>, what: &str) -> String {
        let e = format!("{:#}", r.expect_err("the archive was accepted"));
        assert!(e.contains(what), "expected `{what}` in: {e}");
        e
    }

    #[test]
    fn path_traversal_and_absolute_names_refused() {
        let s = Scene::new();
        refused(
            s.extract(&hostile_tar(&[
                ("ok", tar::EntryType::Regular, ""),
                ("../sentinel/evil", tar::EntryType::Regular, ""),
            ])),
            "path traversal",
        );
        refused(
            s.extract(&hostile_tar(&[("/tmp/reprovm-evil", tar::EntryType::Regular, "")])),
            "absolute path",
        );
        assert!(!Path::new("/tmp/reprovm-evil").exists());
        s.sentinel_intact();
    }

    /// A sparse entry would unpack to holes the stream never carried (a 2 KiB tar writing
    /// 256 MiB): refused before anything of it is written.
    #[test]
    fn sparse_entries_refused() {
        let s = Scene::new();
        // One data byte at offset 256 MiB: a real GNU sparse header, as tar writes one.
        let mut h = tar::Header::new_gnu();
        h.set_path("holes").unwrap();
        h.set_entry_type(tar::EntryType::GNUSparse);
        h.set_mode(0o644);
        h.set_size(1);
        {
            let g = h.as_gnu_mut().unwrap();
            let octal = |field: &mut [u8], v: u64| {
                let text = format!("{v:0w$o}\0", w = field.len() - 1);
                field.copy_from_slice(text.as_bytes());
            };
            octal(&mut g.sparse[0].offset, 256 << 20);
            octal(&mut g.sparse[0].numbytes, 1);
            octal(&mut g.realsize, (256 << 20) + 1);
        }
        h.set_cksum();
        let gz = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        let mut b = tar::Builder::new(gz);
        b.append(&h, &[7u8][..]).unwrap();
        let bytes = b.into_inner().unwrap().finish().unwrap();
        assert!(bytes.len() < 2048);
        refused(s.extract(&bytes), "a sparse file");
        assert!(!s.t.path().join("dest/holes").exists());
        // Into a root file system (a .deb's data, an image layer read by `diff`) as well.
        let tar = flate2::read::GzDecoder::new(std::io::Cursor::new(bytes));
        let dest = Dir::create(&s.t.path().join("root")).unwrap();
        let same = |p: &Path| p.to_path_buf();
        refused(
            extract_tar(Box::new(tar), &dest, 0, &same, Links::RootFileSystem).map(drop),
            "a sparse file",
        );
        assert!(!s.t.path().join("root/holes").exists());
        s.sentinel_intact();
    }

    #[test]
    fn symlink_escapes_refused_alone_and_in_chains() {
        let s = Scene::new();
        refused(
            s.extract(&hostile_tar(&[("d/link", tar::EntryType::Symlink, "../../sentinel")])),
            "symlink `d/link` -> `../../sentinel` points outside",
        );
        refused(s.extract(&hostile_tar(&[("link", tar::EntryType::Symlink, "/etc")])), "absolute");
        // Each link alone stays inside; together `c` leaves the tree: a/b is the top, so
        // a/b/.. is above it.
        let e = refused(
            s.extract(&hostile_tar(&[
                ("a/", tar::EntryType::Directory, ""),
                ("a/b", tar::EntryType::Symlink, ".."),
                ("c", tar::EntryType::Symlink, "a/b/../sentinel"),
            ])),
            "points outside",
        );
        assert!(e.contains("`c`"), "{e}");
        s.sentinel_intact();
    }

    #[test]
    fn writes_and_directory_entries_through_symlinks_refused() {
        let s = Scene::new();
        // A file written through an earlier (inside) symlink.
        refused(
            s.extract(&hostile_tar(&[
                ("d/x", tar::EntryType::Regular, ""),
                ("l", tar::EntryType::Symlink, "d"),
                ("l/y", tar::EntryType::Regular, ""),
            ])),
            "entry `l/y`",
        );
        // A chain pointing out, then a directory entry and a file through it: the extractor
        // must not chmod, re-time or write the directory outside.
        let e = refused(
            s.extract(&hostile_tar(&[
                ("p", tar::EntryType::Symlink, "q/.."),
                ("q", tar::EntryType::Symlink, "."),
                ("p/sentinel/", tar::EntryType::Directory, ""),
                ("p/sentinel/new", tar::EntryType::Regular, ""),
            ])),
            "is a symlink",
        );
        assert!(e.contains("entry `p/sentinel`"), "{e}");
        // A directory entry where a symlink is.
        refused(
            s.extract(&hostile_tar(&[
                ("x", tar::EntryType::Symlink, "."),
                ("x/", tar::EntryType::Directory, ""),
            ])),
            "entry `x`",
        );
        s.sentinel_intact();
    }

    #[test]
    fn hard_links_out_refused() {
        let s = Scene::new();
        refused(
            s.extract(&hostile_tar(&[("h", tar::EntryType::Link, "../../etc/passwd")])),
            "path traversal",
        );
        refused(s.extract(&hostile_tar(&[("h", tar::EntryType::Link, "/etc/passwd")])), "absolute");
        refused(
            s.extract(&hostile_tar(&[
                ("l", tar::EntryType::Symlink, "."),
                ("h", tar::EntryType::Link, "l/nothing"),
            ])),
            "entry `h`",
        );
        // To a symlink of the archive (which could point anywhere later): refused.
        refused(
            s.extract(&hostile_tar(&[
                ("l", tar::EntryType::Symlink, "x"),
                ("h", tar::EntryType::Link, "l"),
            ])),
            "not a regular file",
        );
        s.sentinel_intact();
    }

    #[test]
    fn device_nodes_refused_in_sources() {
        let s = Scene::new();
        refused(s.extract(&hostile_tar(&[("dev/null", tar::EntryType::Char, "")])), "device node");
    }

    #[test]
    fn benign_archive_with_strip() {
        let bytes = hostile_tar(&[
            ("top/", tar::EntryType::Directory, ""),
            ("top/a", tar::EntryType::Regular, ""),
            ("top/l", tar::EntryType::Symlink, "a"),
            ("top/dangling", tar::EntryType::Symlink, "not/yet/there"),
            ("top/h", tar::EntryType::Link, "top/a"),
        ]);
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.tar.gz");
        std::fs::write(&a, bytes).unwrap();
        extract(&a, &Dir::create(&t.path().join("dest")).unwrap(), 1).unwrap();
        assert_eq!(std::fs::read(t.path().join("dest/h")).unwrap(), b"data");
        assert_eq!(std::fs::read_link(t.path().join("dest/l")).unwrap(), Path::new("a"));
    }

    #[test]
    fn zip_traversal_refused() {
        let t = tempfile::tempdir().unwrap();
        let a = t.path().join("a.zip");
        let mut w = zip::ZipWriter::new(File::create(&a).unwrap());
        w.start_file("../evil", zip::write::SimpleFileOptions::default()).unwrap();
        std::io::Write::write_all(&mut w, b"x").unwrap();
        w.finish().unwrap();
        let r = extract(&a, &Dir::create(&t.path().join("dest")).unwrap(), 0);
        assert!(format!("{:#}", r.unwrap_err()).contains("path traversal"));
    }
}
