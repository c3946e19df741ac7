//! The one deterministic archive writer. Every tar reprovm writes (OCI layers and the binary
//! cache's entries, the root file system's tar, the OVA and the Vagrant box) goes through
//! [`TarWriter`], which fixes every header field the `tar` crate would otherwise take from the
//! host: owner 0:0 (and, if asked, the names `root`), the given mtime and modes, entries in
//! the caller's order. The audit's bundle is a zip: [`write_zip`], fixed the same way (times,
//! permissions, method and level).

use anyhow::{Context, Result};
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Which tar header format every entry gets.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    /// GNU: long names and link targets as extension records (layers, the root file system).
    Gnu,
    /// POSIX ustar: what OVF and Vagrant's readers expect.
    Ustar,
}

/// One entry of a tar.
pub enum Entry<'a> {
    Dir {
        path: &'a Path,
        mode: u32,
    },
    File {
        path: &'a Path,
        mode: u32,
        size: u64,
        data: &'a mut dyn Read,
    },
    Symlink {
        path: &'a Path,
        target: &'a Path,
        mode: u32,
    },
    /// Another name for a file written before it.
    HardLink {
        path: &'a Path,
        target: &'a Path,
        mode: u32,
    },
    Device {
        path: &'a Path,
        block: bool,
        major: u32,
        minor: u32,
        mode: u32,
    },
}

/// A tar written entry by entry with every header field fixed.
pub struct TarWriter<W: Write> {
    builder: tar::Builder<W>,
    format: Format,
    mtime: u64,
    /// User and group names in every header (none: empty, only the ids 0:0).
    owner_names: Option<&'static str>,
    /// Directory names end in `/`, as GNU tar writes them.
    dir_slash: bool,
}

impl<W: Write> TarWriter<W> {
    /// A writer of `format` headers with modification time `mtime`, owner 0:0 and no names,
    /// directory names as given.
    pub fn new(out: W, format: Format, mtime: u64) -> TarWriter<W> {
        let mut builder = tar::Builder::new(out);
        builder.mode(tar::HeaderMode::Deterministic);
        TarWriter { builder, format, mtime, owner_names: None, dir_slash: false }
    }

    /// Every header also names its owner and group `name`.
    pub fn owner_names(mut self, name: &'static str) -> Self {
        self.owner_names = Some(name);
        self
    }

    /// Directory names end in `/`.
    pub fn dir_slash(mut self) -> Self {
        self.dir_slash = true;
        self
    }

    fn header(&self, kind: tar::EntryType, mode: u32, size: u64) -> std::io::Result<tar::Header> {
        let mut h = match self.format {
            Format::Gnu => tar::Header::new_gnu(),
            Format::Ustar => tar::Header::new_ustar(),
        };
        h.set_uid(0);
        h.set_gid(0);
        h.set_mtime(self.mtime);
        if let Some(name) = self.owner_names {
            h.set_username(name)?;
            h.set_groupname(name)?;
        }
        h.set_entry_type(kind);
        h.set_mode(mode);
        h.set_size(size);
        Ok(h)
    }

    /// Append one entry.
    pub fn append(&mut self, entry: Entry) -> Result<()> {
        let shown = match &entry {
            Entry::Dir { path, .. }
            | Entry::File { path, .. }
            | Entry::Symlink { path, .. }
            | Entry::HardLink { path, .. }
            | Entry::Device { path, .. } => path.display().to_string(),
        };
        let written = match entry {
            Entry::Dir { path, mode } => {
                let mut h = self.header(tar::EntryType::Directory, mode, 0)?;
                let name = if self.dir_slash {
                    let mut s = path.as_os_str().to_owned();
                    s.push("/");
                    PathBuf::from(s)
                } else {
                    path.to_path_buf()
                };
                self.builder.append_data(&mut h, name, std::io::empty())
            }
            Entry::File { path, mode, size, data } => {
                let mut h = self.header(tar::EntryType::Regular, mode, size)?;
                // The tar crate pads what it copied and trusts the header's size: a source
                // shorter than it says would leave an archive whose next header is misplaced.
                let mut counted = Counted { inner: data.take(size), count: 0 };
                self.builder.append_data(&mut h, path, &mut counted).and_then(|()| {
                    match counted.count == size {
                        true => Ok(()),
                        false => Err(std::io::Error::new(
                            std::io::ErrorKind::UnexpectedEof,
                            format!("{} of its {size} bytes could be read", counted.count),
                        )),
                    }
                })
            }
            Entry::Symlink { path, target, mode } => {
                let mut h = self.header(tar::EntryType::Symlink, mode, 0)?;
                self.builder.append_link(&mut h, path, target)
            }
            Entry::HardLink { path, target, mode } => {
                let mut h = self.header(tar::EntryType::Link, mode, 0)?;
                self.builder.append_link(&mut h, path, target)
            }
            Entry::Device { path, block, major, minor, mode } => {
                let kind = if block { tar::EntryType::Block } else { tar::EntryType::Char };
                let mut h = self.header(kind, mode, 0)?;
                h.set_device_major(major)?;
                h.set_device_minor(minor)?;
                self.builder.append_data(&mut h, path, std::io::empty())
            }
        };
        written.with_context(|| format!("adding `{shown}` to the tar"))
    }

    /// End the archive and return the writer.
    pub fn finish(self) -> Result<W> {
        self.builder.into_inner().context("finishing the tar stream")
    }
}

/// A reader that counts what it gives.
struct Counted<R> {
    inner: R,
    count: u64,
}

impl<R: Read> Read for Counted<R> {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.count += n as u64;
        Ok(n)
    }
}

/// Write `files` (by name, in name order) as a zip whose bytes depend only on them: every
/// entry deflated at level 6, dated 1980-01-01 00:00, mode 0644. Written through a temp file
/// and renamed.
pub fn write_zip(path: &Path, files: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let mut buf = std::io::Cursor::new(Vec::new());
    {
        let mut z = zip::ZipWriter::new(&mut buf);
        let time = zip::DateTime::from_date_and_time(1980, 1, 1, 0, 0, 0)
            .map_err(|_| anyhow::format_err!("bad zip time"))?;
        let opts = zip::write::SimpleFileOptions::default()
            .compression_method(zip::CompressionMethod::Deflated)
            .compression_level(Some(6))
            .last_modified_time(time)
            .unix_permissions(0o644);
        for (name, data) in files {
            z.start_file(name.as_str(), opts)?;
            z.write_all(data)?;
        }
        z.finish()?;
    }
    crate::util::write_atomic(path, &buf.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every field the writer fixes, for every kind of entry, read back; a ustar header where
    /// asked; and the same bytes whatever the host's umask, owner or clock.
    #[test]
    fn every_header_field_is_fixed() {
        let write = |format, names: bool| {
            let mut w = TarWriter::new(Vec::new(), format, 1_704_067_200).dir_slash();
            if names {
                w = w.owner_names("root");
            }
            let p = Path::new;
            w.append(Entry::Dir { path: p("bin"), mode: 0o755 }).unwrap();
            w.append(Entry::File {
                path: p("bin/sh"),
                mode: 0o755,
                size: 3,
                data: &mut &b"sh!"[..],
            })
            .unwrap();
            w.append(Entry::HardLink { path: p("bin/ash"), target: p("bin/sh"), mode: 0o755 })
                .unwrap();
            w.append(Entry::Symlink { path: p("sh"), target: p("bin/sh"), mode: 0o777 }).unwrap();
            w.append(Entry::Device {
                path: p("null"),
                block: false,
                major: 1,
                minor: 3,
                mode: 0o666,
            })
            .unwrap();
            w.finish().unwrap()
        };
        let bytes = write(Format::Gnu, true);
        assert_eq!(bytes, write(Format::Gnu, true), "the same entries, other bytes");
        let mut listing = Vec::new();
        for e in tar::Archive::new(&bytes[..]).entries().unwrap() {
            let e = e.unwrap();
            let h = e.header();
            assert_eq!(
                (h.uid().unwrap(), h.gid().unwrap(), h.mtime().unwrap()),
                (0, 0, 1_704_067_200)
            );
            assert_eq!(h.username().unwrap(), Some("root"));
            assert!(h.as_gnu().is_some());
            let link = e.link_name().unwrap().map(|l| format!(" -> {}", l.display()));
            listing.push(format!(
                "{:?} {:o} {}{}",
                h.entry_type(),
                h.mode().unwrap(),
                e.path().unwrap().display(),
                link.unwrap_or_default()
            ));
        }
        assert_eq!(
            listing,
            [
                "Directory 755 bin/",
                "Regular 755 bin/sh",
                "Link 755 bin/ash -> bin/sh",
                "Symlink 777 sh -> bin/sh",
                "Char 666 null",
            ]
        );
        // The raw name of the directory carries its slash.
        assert_eq!(&bytes[..4], b"bin/");
        let ustar = write(Format::Ustar, false);
        let mut archive = tar::Archive::new(&ustar[..]);
        let first = archive.entries().unwrap().next().unwrap().unwrap();
        assert!(first.header().as_ustar().is_some());
        assert_eq!(first.header().username().unwrap(), Some(""));
    }

    #[test]
    fn a_file_shorter_than_its_size_is_an_error() {
        let mut w = TarWriter::new(Vec::new(), Format::Gnu, 0);
        let short =
            Entry::File { path: Path::new("f"), mode: 0o644, size: 5, data: &mut &b"abc"[..] };
        let e = format!("{:#}", w.append(short).unwrap_err());
        assert!(e.contains("`f`") && e.contains("3 of its 5 bytes"), "{e}");
    }

    #[test]
    fn a_zip_is_a_function_of_its_files() {
        let t = tempfile::tempdir().unwrap();
        let mut files = BTreeMap::new();
        files.insert("b.txt".to_string(), b"two".to_vec());
        files.insert("a.txt".to_string(), b"one".to_vec());
        write_zip(&t.path().join("1.zip"), &files).unwrap();
        std::thread::sleep(std::time::Duration::from_millis(1100));
        write_zip(&t.path().join("2.zip"), &files).unwrap();
        assert_eq!(
            std::fs::read(t.path().join("1.zip")).unwrap(),
            std::fs::read(t.path().join("2.zip")).unwrap()
        );
    }
}
