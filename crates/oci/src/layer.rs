//! One image layer from a directory, deterministically: a tar of the tree in walk order
//! (sorted, parents before children), GNU headers without PAX records, uid/gid 0 and no user
//! or group names, every mtime = SOURCE_DATE_EPOCH, modes normalised as store entries are
//! (directories and executables 0755, other files 0644: write bits differ between builders,
//! e.g. a copy out of Nix's read-only store is 0555, out of ours 0755), names that share an
//! inode written once and then as hard links; compressed with gzip at a fixed level, with a
//! zero header time, no file name and the "unknown" OS byte. The `tar` and `flate2` crates
//! write the formats; this file fixes every field they would otherwise take from the host.

use anyhow::{bail, Context, Result};
use reprovm_fs::archive_write::{Entry, Format, TarWriter};
use reprovm_fs::beneath::{Dir, Kind};
use reprovm_fs::hash::HashingWriter;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;

/// gzip level of every layer (flate2's default; the output is a function of the input and
/// of this level for a given flate2 backend, which Cargo.lock pins).
pub const GZIP_LEVEL: u32 = 6;

/// Which modes a layer records.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Modes<'a> {
    /// 0755/0644 (images: the same whichever builder or store the files were copied from).
    Normalize,
    /// The permission bits a list gives for each path (a store entry's manifest, whose output
    /// hash covers them: on disk the store's files are sealed without their write bits). A
    /// path the list lacks is an error.
    Listed(&'a BTreeMap<PathBuf, u32>),
}

/// What a layer is, as its descriptors and the image config name it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LayerDigests {
    /// sha256 of the compressed blob (the layer descriptor's digest).
    pub blob_sha256: String,
    pub blob_size: u64,
    /// sha256 of the uncompressed tar (the config's `rootfs.diff_ids`).
    pub diff_id_sha256: String,
    /// Length of the uncompressed tar: what unpacking it may read at most.
    pub tar_size: u64,
}

/// Write the gzip-compressed tar of `tree` to `out`; returns its digests.
pub fn write_gzip_tar(
    tree: &Dir,
    epoch: i64,
    modes: Modes,
    out: impl Write,
) -> Result<LayerDigests> {
    let blob = HashingWriter::new(out);
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(blob, flate2::Compression::new(GZIP_LEVEL));
    let tar = HashingWriter::new(gz);
    let tar = write_tar(tree, epoch, modes, tar)?;
    let tar_size = tar.written;
    let (gz, diff_id_sha256) = tar.finish();
    let blob = gz.finish().context("finishing the gzip stream")?;
    let blob_size = blob.written;
    let (mut inner, blob_sha256) = blob.finish();
    inner.flush()?;
    Ok(LayerDigests { blob_sha256, blob_size, diff_id_sha256, tar_size })
}

/// Write the tar of `tree` to `out` and return `out` (through the one deterministic writer,
/// `reprovm_fs::archive_write`: GNU headers, directory names ending in `/`).
pub fn write_tar<W: Write>(tree: &Dir, epoch: i64, modes: Modes, out: W) -> Result<W> {
    let mtime = u64::try_from(epoch).context("SOURCE_DATE_EPOCH before 1970")?;
    let mut tar = TarWriter::new(out, Format::Gnu, mtime).dir_slash();
    // The first name of each multiply-linked inode; later names become hard links to it.
    let mut first_names: BTreeMap<(u64, u64), PathBuf> = BTreeMap::new();
    for e in tree.walk()? {
        let mode = match modes {
            Modes::Normalize => normal_mode(e.kind, e.mode),
            Modes::Listed(list) => match list.get(&e.path) {
                Some(mode) => mode & 0o777,
                None => bail!(
                    "{}: `{}` is not in the list of modes (the entry's manifest)",
                    tree.path().display(),
                    e.path.display()
                ),
            },
        };
        let path = e.path.as_path();
        match e.kind {
            Kind::Dir => tar.append(Entry::Dir { path, mode })?,
            Kind::Symlink => {
                let target = tree.read_link(&e.path)?;
                tar.append(Entry::Symlink { path, target: &target, mode })?
            }
            Kind::File if e.nlink > 1 && first_names.contains_key(&(e.dev, e.ino)) => {
                let target = &first_names[&(e.dev, e.ino)];
                tar.append(Entry::HardLink { path, target, mode })?
            }
            Kind::File => {
                if e.nlink > 1 {
                    first_names.insert((e.dev, e.ino), e.path.clone());
                }
                let mut f = tree.open_file(&e.path)?;
                tar.append(Entry::File { path, mode, size: e.size, data: &mut f })
                    .with_context(|| format!("adding {} to the layer", e.path.display()))?
            }
            Kind::Special => bail!(
                "{}: `{}` is a device, FIFO or socket; a layer holds files, directories and links",
                tree.path().display(),
                e.path.display()
            ),
        }
    }
    tar.finish()
}

/// The mode a layer records: 0755 for directories and for files anyone may execute, 0644 for
/// other files, 0777 for symlinks.
fn normal_mode(kind: Kind, mode: u32) -> u32 {
    match kind {
        Kind::Dir => 0o755,
        Kind::Symlink => 0o777,
        _ if mode & 0o111 != 0 => 0o755,
        _ => 0o644,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tree(t: &Path) -> Dir {
        let d = Dir::create(&t.join("tree")).unwrap();
        d.write_atomic(Path::new("kernel/image"), b"bzImage bytes", 0o644).unwrap();
        d.write_atomic(Path::new("boot/vmlinux"), b"ELF", 0o755).unwrap();
        d.hard_link(Path::new("boot/vmlinux"), Path::new("bin/vmlinux")).unwrap();
        d.symlink(Path::new("../boot/vmlinux"), Path::new("bin/image")).unwrap();
        d
    }

    #[test]
    fn same_tree_same_bytes_whatever_the_host_times_and_order() {
        let (a, b) = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
        let (ta, tb) = (tree(a.path()), tree(b.path()));
        // Different mtimes and write bits on the host do not reach the layer.
        tb.set_mtime(Path::new("kernel/image"), 12345).unwrap();
        tb.set_mode(Path::new("kernel/image"), 0o444).unwrap();
        tb.set_mode(Path::new("boot/vmlinux"), 0o555).unwrap();
        tb.set_mode(Path::new("kernel"), 0o700).unwrap();
        let (mut ba, mut bb) = (Vec::new(), Vec::new());
        let da = write_gzip_tar(&ta, 1_704_067_200, Modes::Normalize, &mut ba).unwrap();
        let db = write_gzip_tar(&tb, 1_704_067_200, Modes::Normalize, &mut bb).unwrap();
        assert_eq!(ba, bb);
        assert_eq!(da, db);
        assert_eq!(da.blob_sha256, reprovm_fs::hash::sha256_bytes(&ba));
        // gzip header: no time, no name, OS "unknown".
        assert_eq!(&ba[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 255]);

        // Read back: sorted, root-owned, epoch times, one file and a hard link to it.
        let tar = write_tar(&ta, 1_704_067_200, Modes::Normalize, Vec::new()).unwrap();
        assert_eq!(da.diff_id_sha256, reprovm_fs::hash::sha256_bytes(&tar));
        let mut listing = Vec::new();
        for entry in tar::Archive::new(&tar[..]).entries().unwrap() {
            let mut e = entry.unwrap();
            assert!(e.pax_extensions().unwrap().is_none());
            let h = e.header();
            assert_eq!((h.uid().unwrap(), h.gid().unwrap()), (0, 0));
            assert_eq!(h.mtime().unwrap(), 1_704_067_200);
            let link = e.link_name().unwrap().map(|l| format!(" -> {}", l.display()));
            listing.push(format!(
                "{:?} {}{}",
                h.entry_type(),
                e.path().unwrap().display(),
                link.unwrap_or_default()
            ));
        }
        expect_test::expect![[r#"
            Directory bin/
            Symlink bin/image -> ../boot/vmlinux
            Regular bin/vmlinux
            Directory boot/
            Link boot/vmlinux -> bin/vmlinux
            Directory kernel/
            Regular kernel/image"#]]
        .assert_eq(&listing.join("\n"));
    }

    #[test]
    fn special_files_are_refused() {
        let t = tempfile::tempdir().unwrap();
        let d = Dir::create(&t.path().join("tree")).unwrap();
        nix::unistd::mkfifo(
            &t.path().join("tree/fifo"),
            nix::sys::stat::Mode::from_bits_truncate(0o644),
        )
        .unwrap();
        let e = write_tar(&d, 0, Modes::Normalize, Vec::new()).unwrap_err();
        assert!(format!("{e:#}").contains("`fifo` is a device, FIFO or socket"), "{e:#}");
    }
}
