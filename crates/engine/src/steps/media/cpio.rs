//! The initramfs: a root file system tree as a `newc` cpio (the `cpio` crate writes the
//! format), deterministically: entries in path order (parents first), uid/gid 0, every mtime
//! SOURCE_DATE_EPOCH, inode numbers renumbered 1, 2, 3, … in that order, no device numbers of
//! the host; then gzip with a fixed level, no time, no name, OS byte 255.

use crate::steps::rootfs::{Node, Tree};
use anyhow::{Context, Result};
use std::io::Write;

/// gzip level of the initramfs.
pub(crate) const GZIP_LEVEL: u32 = 9;

/// Write `tree` as a gzip-compressed newc cpio.
pub(crate) fn write_gz(tree: &Tree, mtime: u32, out: impl Write) -> Result<()> {
    let gz = flate2::GzBuilder::new()
        .mtime(0)
        .operating_system(255)
        .write(out, flate2::Compression::new(GZIP_LEVEL));
    let mut gz = write(tree, mtime, gz)?;
    gz.flush()?;
    gz.finish().context("finishing the gzip stream")?;
    Ok(())
}

/// Write `tree` as a newc cpio to `w` and return `w`.
pub(crate) fn write<W: Write>(tree: &Tree, mtime: u32, mut w: W) -> Result<W> {
    const S_IFDIR: u32 = 0o040000;
    const S_IFREG: u32 = 0o100000;
    const S_IFLNK: u32 = 0o120000;
    const S_IFCHR: u32 = 0o020000;
    const S_IFBLK: u32 = 0o060000;
    for (ino, (path, node)) in (1u32..).zip(&tree.nodes) {
        let name = path.to_str().with_context(|| format!("`{}` is not UTF-8", path.display()))?;
        let b = cpio::newc::Builder::new(name).ino(ino).uid(0).gid(0).mtime(mtime);
        match node {
            Node::Dir { mode } => {
                let mut e = b.mode(S_IFDIR | mode).nlink(2).write(&mut w, 0);
                e.flush()?;
                e.finish()?;
            }
            Node::File { data, mode } => {
                let mut e = b.mode(S_IFREG | mode).nlink(1).write(&mut w, data.len() as u32);
                e.write_all(data)?;
                e.finish()?;
            }
            Node::Symlink { target } => {
                let mut e = b.mode(S_IFLNK | 0o777).nlink(1).write(&mut w, target.len() as u32);
                e.write_all(target.as_bytes())?;
                e.finish()?;
            }
            Node::Device { block, major, minor, mode } => {
                let kind = if *block { S_IFBLK } else { S_IFCHR };
                let e = b
                    .mode(kind | mode)
                    .nlink(1)
                    .rdev_major(*major)
                    .rdev_minor(*minor)
                    .write(&mut w, 0);
                e.finish()?;
            }
        }
    }
    Ok(cpio::newc::trailer(w)?)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::Path;

    fn tree() -> Tree {
        let mut t = Tree::default();
        t.insert(Path::new("bin/busybox"), Node::File { data: b"ELF".to_vec(), mode: 0o755 })
            .unwrap();
        t.insert(Path::new("init"), Node::Symlink { target: "/bin/busybox".into() }).unwrap();
        t.insert(
            Path::new("dev/console"),
            Node::Device { block: false, major: 5, minor: 1, mode: 0o600 },
        )
        .unwrap();
        t
    }

    #[test]
    fn sorted_root_owned_renumbered_and_readable() {
        let a = write(&tree(), 1_704_067_200, Vec::new()).unwrap();
        assert_eq!(a, write(&tree(), 1_704_067_200, Vec::new()).unwrap());
        let mut listing = Vec::new();
        let mut r = &a[..];
        loop {
            let e = cpio::newc::Reader::new(r).unwrap();
            if e.entry().is_trailer() {
                break;
            }
            let h = e.entry();
            listing.push(format!(
                "{} ino={} mode={:o} uid={} gid={} mtime={} rdev={}:{} size={}",
                h.name(),
                h.ino(),
                h.mode(),
                h.uid(),
                h.gid(),
                h.mtime(),
                h.rdev_major(),
                h.rdev_minor(),
                h.file_size()
            ));
            r = e.finish().unwrap();
        }
        expect_test::expect![[r#"
            bin ino=1 mode=40755 uid=0 gid=0 mtime=1704067200 rdev=0:0 size=0
            bin/busybox ino=2 mode=100755 uid=0 gid=0 mtime=1704067200 rdev=0:0 size=3
            dev ino=3 mode=40755 uid=0 gid=0 mtime=1704067200 rdev=0:0 size=0
            dev/console ino=4 mode=20600 uid=0 gid=0 mtime=1704067200 rdev=5:1 size=0
            init ino=5 mode=120777 uid=0 gid=0 mtime=1704067200 rdev=0:0 size=12"#]]
        .assert_eq(&listing.join("\n"));
        let mut gz = Vec::new();
        write_gz(&tree(), 1_704_067_200, &mut gz).unwrap();
        assert_eq!(&gz[..10], &[0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 2, 255]);
    }
}
