//! Host-side file work beneath a directory handle. Every path given to a [`Dir`] is relative
//! and is resolved one component at a time from the handle with `openat(O_NOFOLLOW)`: a path
//! can never leave the directory, never passes through a symlink, and a symlink at the end is
//! an object of its own (created, read or recorded, never followed). `..`, absolute paths and
//! empty names are refused before any system call.
//!
//! This is what `openat2(RESOLVE_BENEATH | RESOLVE_NO_SYMLINKS)` gives, done component by
//! component so that it also works on kernels without openat2 (< 5.6) and so that a refusal can
//! name the symlink in the way. [`Dir::resolve_in_root`] is the other policy, for reading
//! inside a root file system whose absolute symlinks point into itself (the toolchain): like
//! `RESOLVE_IN_ROOT`, symlinks are followed but `/` and `..` stop at the handle.
//!
//! Extraction, rootfs assembly, manifest scans, output normalisation and the copies to `out/`
//! all go through here; nothing checks a path string and then opens it by path.

use rustix::fs::{AtFlags, FileType, Mode, OFlags, Stat, Timespec, Timestamps};
use rustix::io::Errno;
use std::ffi::{OsStr, OsString};
use std::fs::File;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::{Component, Path, PathBuf};

/// Every operation answers `std::io::Result`: errors keep their kind (callers branch on
/// `NotFound`) and say where they happened; refusals (`..`, a symlink in the way) are
/// `InvalidInput`.
pub type Result<T> = std::io::Result<T>;

/// An error of `kind` saying `message`.
fn error(kind: std::io::ErrorKind, message: String) -> std::io::Error {
    std::io::Error::new(kind, message)
}

/// `e`, saying where it happened (`what`), of the same kind.
fn at(e: std::io::Error, what: String) -> std::io::Error {
    error(e.kind(), format!("{what}: {e}"))
}

/// `return Err(...)` of a refusal (`InvalidInput`) with a formatted message.
macro_rules! bail {
    ($($t:tt)*) => {
        return Err(error(std::io::ErrorKind::InvalidInput, format!($($t)*)))
    };
}

/// Where an error happened, kept with its kind: `.with_context(|| format!("creating {x}"))`.
trait Context<T> {
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T>;
}

impl<T> Context<T> for Result<T> {
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.map_err(|e| error(e.kind(), format!("{}: {e}", f())))
    }
}

impl<T> Context<T> for Option<T> {
    fn with_context<F: FnOnce() -> String>(self, f: F) -> Result<T> {
        self.ok_or_else(|| error(std::io::ErrorKind::InvalidInput, f()))
    }
}

/// An open directory; all operations resolve beneath it.
#[derive(Debug)]
pub struct Dir {
    fd: OwnedFd,
    /// Where this directory is, for messages only (never opened again by this path).
    display: PathBuf,
}

/// The type of a directory entry, as `lstat` sees it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    Symlink,
    /// Devices, FIFOs, sockets.
    Special,
}

impl Kind {
    fn of(st: &Stat) -> Kind {
        match FileType::from_raw_mode(st.st_mode) {
            FileType::RegularFile => Kind::File,
            FileType::Directory => Kind::Dir,
            FileType::Symlink => Kind::Symlink,
            _ => Kind::Special,
        }
    }
}

/// One entry of [`Dir::walk`].
#[derive(Debug, Clone)]
pub struct Entry {
    /// Path relative to the walked directory.
    pub path: PathBuf,
    pub kind: Kind,
    /// Permission bits (including setuid/setgid/sticky).
    pub mode: u32,
    pub size: u64,
    /// Device and inode, and the number of names the inode has (hard links share them).
    pub dev: u64,
    pub ino: u64,
    pub nlink: u64,
    /// When the inode last changed (contents, mode, owner or links), in nanoseconds since
    /// the epoch. Nothing but the clock sets it: the store's seal compares with it.
    pub ctime_ns: i128,
}

const DIR_FLAGS: OFlags =
    OFlags::RDONLY.union(OFlags::DIRECTORY).union(OFlags::NOFOLLOW).union(OFlags::CLOEXEC);

/// Split a relative path into plain names, refusing anything that could leave the directory.
pub fn names(rel: &Path) -> Result<Vec<&OsStr>> {
    let mut out = Vec::new();
    for c in rel.components() {
        match c {
            Component::Normal(n) => out.push(n),
            Component::CurDir => {}
            Component::RootDir | Component::Prefix(_) => {
                bail!("`{}` is an absolute path", rel.display())
            }
            Component::ParentDir => bail!("`{}` contains `..`", rel.display()),
        }
    }
    Ok(out)
}

fn io_err(e: Errno) -> std::io::Error {
    std::io::Error::from_raw_os_error(e.raw_os_error())
}

impl Dir {
    /// Open a directory given by a trusted host path (the top of a tree this program owns:
    /// the store, a work tree, the output directory). Everything below is resolved beneath it.
    pub fn open(path: &Path) -> Result<Dir> {
        let fd = rustix::fs::open(
            path,
            OFlags::RDONLY | OFlags::DIRECTORY | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)
        .with_context(|| format!("opening directory {}", path.display()))?;
        Ok(Dir { fd, display: path.to_path_buf() })
    }

    /// Create a trusted directory path (and its parents) and open it.
    pub fn create(path: &Path) -> Result<Dir> {
        std::fs::create_dir_all(path).with_context(|| format!("creating {}", path.display()))?;
        Dir::open(path)
    }

    /// The directory's host path, for messages.
    pub fn path(&self) -> &Path {
        &self.display
    }

    fn shown(&self, rel: &Path) -> String {
        self.display.join(rel).display().to_string()
    }

    /// Open the directory `rel` beneath this one; no component may be a symlink.
    pub fn open_dir(&self, rel: &Path) -> Result<Dir> {
        let names = names(rel)?;
        let mut cur = self.fd.try_clone()?;
        let mut walked = PathBuf::new();
        for n in names {
            walked.push(n);
            cur = self.step(&cur, n, &walked)?;
        }
        Ok(Dir { fd: cur, display: self.display.join(rel) })
    }

    /// One component: open `name` in `dir` as a directory without following it.
    fn step(&self, dir: &OwnedFd, name: &OsStr, walked: &Path) -> Result<OwnedFd> {
        match rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()) {
            Ok(fd) => Ok(fd),
            Err(e) => {
                let what = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
                    Ok(st) if Kind::of(&st) == Kind::Symlink => {
                        format!("`{}` is a symlink (never followed)", walked.display())
                    }
                    Ok(_) if e == Errno::NOTDIR || e == Errno::LOOP => {
                        format!("`{}` is not a directory", walked.display())
                    }
                    _ => format!("cannot open `{}`: {}", walked.display(), io_err(e)),
                };
                Err(at(io_err(e), format!("in {}: {what}", self.display.display())))
            }
        }
    }

    /// The parent directory of `rel` (created, mode 0755, when `create`) and the final name.
    fn parent<'p>(&self, rel: &'p Path, create: bool) -> Result<(OwnedFd, &'p OsStr)> {
        let mut names = names(rel)?;
        let last =
            names.pop().with_context(|| format!("empty path under {}", self.display.display()))?;
        let mut cur = self.fd.try_clone()?;
        let mut walked = PathBuf::new();
        for n in names {
            walked.push(n);
            if create {
                match rustix::fs::mkdirat(&cur, n, Mode::from_raw_mode(0o755)) {
                    Ok(()) | Err(Errno::EXIST) => {}
                    Err(e) => {
                        return Err(at(io_err(e), format!("creating {}", self.shown(&walked))))
                    }
                }
            }
            cur = self.step(&cur, n, &walked)?;
        }
        Ok((cur, last))
    }

    /// `lstat` of `rel` (None when it does not exist); the parents must be real directories.
    pub fn metadata(&self, rel: &Path) -> Result<Option<Entry>> {
        if names(rel)?.is_empty() {
            let st = rustix::fs::fstat(&self.fd).map_err(io_err)?;
            return Ok(Some(entry(rel, &st)));
        }
        let (dir, name) = match self.parent(rel, false) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e),
        };
        match rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW) {
            Ok(st) => Ok(Some(entry(rel, &st))),
            Err(Errno::NOENT) => Ok(None),
            Err(e) => Err(at(io_err(e), format!("lstat {}", self.shown(rel)))),
        }
    }

    /// Create `rel` and every missing parent as directories (mode 0755). An existing symlink
    /// anywhere on the way, the last component included, is refused.
    pub fn create_dir_all(&self, rel: &Path) -> Result<Dir> {
        if names(rel)?.is_empty() {
            return Ok(Dir { fd: self.fd.try_clone()?, display: self.display.clone() });
        }
        let (parent, name) = self.parent(rel, true)?;
        match rustix::fs::mkdirat(&parent, name, Mode::from_raw_mode(0o755)) {
            Ok(()) | Err(Errno::EXIST) => {}
            Err(e) => return Err(at(io_err(e), format!("creating {}", self.shown(rel)))),
        }
        let fd = self.step(&parent, name, rel)?;
        Ok(Dir { fd, display: self.display.join(rel) })
    }

    /// Open the regular file `rel` for reading; symlinks anywhere in the path are refused.
    pub fn open_file(&self, rel: &Path) -> Result<File> {
        let (dir, name) = self.parent(rel, false)?;
        let fd = rustix::fs::openat(
            &dir,
            name,
            OFlags::RDONLY | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| {
            let kind =
                rustix::fs::statat(&dir, name, AtFlags::SYMLINK_NOFOLLOW).map(|s| Kind::of(&s));
            let why = match kind {
                Ok(Kind::Symlink) => "is a symlink (never followed)".to_string(),
                _ => io_err(e).to_string(),
            };
            error(io_err(e).kind(), format!("{}: {why}", self.shown(rel)))
        })?;
        let st = rustix::fs::fstat(&fd).map_err(io_err)?;
        if Kind::of(&st) != Kind::File {
            bail!("{}: not a regular file", self.shown(rel));
        }
        Ok(File::from(fd))
    }

    /// Read the whole regular file `rel`.
    pub fn read(&self, rel: &Path) -> Result<Vec<u8>> {
        let mut data = Vec::new();
        std::io::Read::read_to_end(&mut self.open_file(rel)?, &mut data)
            .with_context(|| format!("reading {}", self.shown(rel)))?;
        Ok(data)
    }

    /// Create the regular file `rel` (parents created) with `mode`, replacing an existing file
    /// or symlink at that name; an existing directory is refused.
    pub fn create_file(&self, rel: &Path, mode: u32) -> Result<File> {
        let (dir, name) = self.parent(rel, true)?;
        remove_non_dir(&dir, name).with_context(|| format!("replacing {}", self.shown(rel)))?;
        let flags =
            OFlags::WRONLY | OFlags::CREATE | OFlags::EXCL | OFlags::NOFOLLOW | OFlags::CLOEXEC;
        let fd = rustix::fs::openat(&dir, name, flags, Mode::from_raw_mode(mode & 0o777))
            .map_err(io_err)
            .with_context(|| format!("creating {}", self.shown(rel)))?;
        // The umask may have taken bits away; the caller asked for exactly these.
        rustix::fs::fchmod(&fd, Mode::from_raw_mode(mode & 0o777)).map_err(io_err)?;
        Ok(File::from(fd))
    }

    /// Write `data` to `rel` through a temp file beside it, fsync and rename: readers see the
    /// old file or the new one.
    pub fn write_atomic(&self, rel: &Path, data: &[u8], mode: u32) -> Result<()> {
        let (dir, name) = self.parent(rel, true)?;
        let mut tmp_name = OsString::from(".tmp-");
        tmp_name.push(name);
        tmp_name.push(format!(".{}", std::process::id()));
        let tmp_rel = rel.with_file_name(&tmp_name);
        let mut f = self.create_file(&tmp_rel, mode)?;
        std::io::Write::write_all(&mut f, data)
            .with_context(|| format!("writing {}", self.shown(rel)))?;
        f.sync_all()?;
        drop(f);
        rustix::fs::renameat(&dir, &tmp_name, &dir, name)
            .map_err(io_err)
            .with_context(|| format!("renaming into {}", self.shown(rel)))?;
        rustix::fs::fsync(&dir).map_err(io_err)?;
        Ok(())
    }

    /// Rename `from` to `to`, both beneath this directory (parents of `to` created).
    pub fn rename(&self, from: &Path, to: &Path) -> Result<()> {
        let (fdir, fname) = self.parent(from, false)?;
        let (tdir, tname) = self.parent(to, true)?;
        rustix::fs::renameat(&fdir, fname, &tdir, tname)
            .map_err(io_err)
            .with_context(|| format!("renaming {} to {}", self.shown(from), self.shown(to)))
    }

    /// Create the symlink `rel` -> `target` (parents created), replacing a file or symlink.
    /// The target is stored as given and never followed by this program.
    pub fn symlink(&self, target: &Path, rel: &Path) -> Result<()> {
        let (dir, name) = self.parent(rel, true)?;
        remove_non_dir(&dir, name).with_context(|| format!("replacing {}", self.shown(rel)))?;
        rustix::fs::symlinkat(target, &dir, name)
            .map_err(io_err)
            .with_context(|| format!("creating symlink {}", self.shown(rel)))
    }

    /// Hard-link the regular file `existing` as `rel`, both beneath this directory.
    pub fn hard_link(&self, existing: &Path, rel: &Path) -> Result<()> {
        let (sdir, sname) = self.parent(existing, false)?;
        let st = rustix::fs::statat(&sdir, sname, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err)
            .with_context(|| format!("hard link target {}", self.shown(existing)))?;
        if Kind::of(&st) != Kind::File {
            bail!("hard link target `{}` is not a regular file", existing.display());
        }
        let (dir, name) = self.parent(rel, true)?;
        remove_non_dir(&dir, name).with_context(|| format!("replacing {}", self.shown(rel)))?;
        rustix::fs::linkat(&sdir, sname, &dir, name, AtFlags::empty())
            .map_err(io_err)
            .with_context(|| format!("linking {} to {}", self.shown(rel), self.shown(existing)))
    }

    /// The target of the symlink `rel`.
    pub fn read_link(&self, rel: &Path) -> Result<PathBuf> {
        let (dir, name) = self.parent(rel, false)?;
        let t = rustix::fs::readlinkat(&dir, name, Vec::new())
            .map_err(io_err)
            .with_context(|| format!("reading symlink {}", self.shown(rel)))?;
        Ok(PathBuf::from(OsStr::from_bytes(t.as_bytes())))
    }

    /// Set the permission bits of `rel` (not a symlink: those have none).
    pub fn set_mode(&self, rel: &Path, mode: u32) -> Result<()> {
        let fd = self.open_path(rel)?;
        let st = rustix::fs::fstat(&fd).map_err(io_err)?;
        if Kind::of(&st) == Kind::Symlink {
            bail!("{}: a symlink has no mode to set", self.shown(rel));
        }
        // fchmod does not take an O_PATH handle; its /proc/self/fd link names exactly the
        // inode the handle holds (what glibc's fchmodat(AT_SYMLINK_NOFOLLOW) does).
        let proc = format!("/proc/self/fd/{}", std::os::fd::AsRawFd::as_raw_fd(&fd));
        rustix::fs::chmod(proc.as_str(), Mode::from_raw_mode(mode & 0o7777))
            .map_err(io_err)
            .with_context(|| format!("chmod {}", self.shown(rel)))
    }

    /// Set access and modification times of `rel` (a symlink's own times, never its target's).
    pub fn set_mtime(&self, rel: &Path, secs: i64) -> Result<()> {
        let t = Timespec { tv_sec: secs, tv_nsec: 0 };
        let times = Timestamps { last_access: t, last_modification: t };
        if names(rel)?.is_empty() {
            return rustix::fs::futimens(&self.fd, &times).map_err(io_err);
        }
        let (dir, name) = self.parent(rel, false)?;
        rustix::fs::utimensat(&dir, name, &times, AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err)
            .with_context(|| format!("setting times of {}", self.shown(rel)))
    }

    /// Change the owner of `rel` (a symlink itself, never its target).
    pub fn chown(&self, rel: &Path, uid: u32, gid: u32) -> Result<()> {
        let (uid, gid) = (rustix::process::Uid::from_raw(uid), rustix::process::Gid::from_raw(gid));
        if names(rel)?.is_empty() {
            return rustix::fs::fchown(&self.fd, Some(uid), Some(gid)).map_err(io_err);
        }
        let (dir, name) = self.parent(rel, false)?;
        rustix::fs::chownat(&dir, name, Some(uid), Some(gid), AtFlags::SYMLINK_NOFOLLOW)
            .map_err(io_err)
            .with_context(|| format!("chown {}", self.shown(rel)))
    }

    /// An `O_PATH` handle on `rel` itself (a symlink is not followed).
    fn open_path(&self, rel: &Path) -> Result<OwnedFd> {
        if names(rel)?.is_empty() {
            return self.fd.try_clone();
        }
        let (dir, name) = self.parent(rel, false)?;
        rustix::fs::openat(
            &dir,
            name,
            OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC,
            Mode::empty(),
        )
        .map_err(io_err)
        .with_context(|| format!("opening {}", self.shown(rel)))
    }

    /// Remove `rel`: a file or symlink, or a directory with everything in it.
    pub fn remove_all(&self, rel: &Path) -> Result<()> {
        let (dir, name) = match self.parent(rel, false) {
            Ok(p) => p,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(e) => return Err(e),
        };
        remove_tree(&dir, name).with_context(|| format!("removing {}", self.shown(rel)))
    }

    /// The names in this directory, sorted bytewise.
    pub fn names(&self) -> Result<Vec<OsString>> {
        let mut out = Vec::new();
        for e in rustix::fs::Dir::read_from(&self.fd).map_err(io_err)? {
            let e = e.map_err(io_err)?;
            let n = e.file_name().to_bytes();
            if n != b"." && n != b".." {
                out.push(OsStr::from_bytes(n).to_os_string());
            }
        }
        out.sort();
        Ok(out)
    }

    /// Every entry below this directory, depth first, each directory's entries sorted by
    /// name (bytewise) and listed before their contents. Symlinks are listed, not followed.
    pub fn walk(&self) -> Result<Vec<Entry>> {
        let mut out = Vec::new();
        self.walk_into(&self.fd, Path::new(""), &mut out)?;
        Ok(out)
    }

    fn walk_into(&self, dir: &OwnedFd, at: &Path, out: &mut Vec<Entry>) -> Result<()> {
        let d = Dir { fd: dir.try_clone()?, display: self.display.join(at) };
        for name in d.names()? {
            let rel = at.join(&name);
            let st = rustix::fs::statat(dir, name.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_err)
                .with_context(|| format!("lstat {}", self.shown(&rel)))?;
            let e = entry(&rel, &st);
            let is_dir = e.kind == Kind::Dir;
            out.push(e);
            if is_dir {
                let sub = self.step(dir, &name, &rel)?;
                self.walk_into(&sub, &rel, out)?;
            }
        }
        Ok(())
    }

    /// Resolve `path` inside the root file system held by this handle, following symlinks
    /// the way that root's own programs would see them, but never above the handle: `/` and
    /// `..` at the top stay at the top (like openat2's RESOLVE_IN_ROOT). Returns the path of
    /// the final object relative to the root (its last component not followed when it is a
    /// symlink and `follow_last` is false).
    pub fn resolve_in_root(&self, path: &Path, follow_last: bool) -> Result<PathBuf> {
        let mut todo: Vec<OsString> = Vec::new();
        push_components(&mut todo, path);
        let mut cur: Vec<OsString> = Vec::new();
        let mut hops = 0;
        while let Some(c) = todo.pop() {
            if c == ".." {
                cur.pop();
                continue;
            }
            let here: PathBuf = cur.iter().collect();
            let dir = self.open_dir(&here)?;
            let st = rustix::fs::statat(&dir.fd, c.as_os_str(), AtFlags::SYMLINK_NOFOLLOW)
                .map_err(io_err)
                .with_context(|| {
                    format!("{} not found in {}", here.join(&c).display(), self.display.display())
                })?;
            if Kind::of(&st) == Kind::Symlink && (follow_last || !todo.is_empty()) {
                hops += 1;
                if hops > 40 {
                    bail!(
                        "too many symlinks resolving {} in {}",
                        path.display(),
                        self.display.display()
                    );
                }
                let target = dir.read_link(Path::new(&c))?;
                if target.is_absolute() {
                    cur.clear();
                }
                push_components(&mut todo, &target);
            } else {
                cur.push(c);
            }
        }
        Ok(cur.iter().collect())
    }
}

/// Push the components of `p` onto a stack (so that popping yields them in order).
fn push_components(stack: &mut Vec<OsString>, p: &Path) {
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

fn entry(rel: &Path, st: &Stat) -> Entry {
    Entry {
        path: rel.to_path_buf(),
        kind: Kind::of(st),
        mode: st.st_mode & 0o7777,
        size: st.st_size as u64,
        dev: st.st_dev,
        ino: st.st_ino,
        nlink: st.st_nlink,
        ctime_ns: i128::from(st.st_ctime) * 1_000_000_000 + i128::from(st.st_ctime_nsec),
    }
}

/// Remove `name` in `dir` unless it is a directory (which is refused); absent is fine.
fn remove_non_dir(dir: &OwnedFd, name: &OsStr) -> Result<()> {
    match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) if Kind::of(&st) == Kind::Dir => {
            bail!("a directory is in the way")
        }
        Ok(_) => rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io_err)?,
        Err(Errno::NOENT) => {}
        Err(e) => return Err(io_err(e)),
    }
    Ok(())
}

fn remove_tree(dir: &OwnedFd, name: &OsStr) -> Result<()> {
    let st = match rustix::fs::statat(dir, name, AtFlags::SYMLINK_NOFOLLOW) {
        Ok(st) => st,
        Err(Errno::NOENT) => return Ok(()),
        Err(e) => return Err(io_err(e)),
    };
    if Kind::of(&st) == Kind::Dir {
        let sub = rustix::fs::openat(dir, name, DIR_FLAGS, Mode::empty()).map_err(io_err)?;
        // A directory without write or search permission cannot be emptied: grant them first.
        let _ = rustix::fs::fchmod(&sub, Mode::from_raw_mode(0o700));
        let d = Dir { fd: sub, display: PathBuf::new() };
        for n in d.names()? {
            remove_tree(&d.fd, &n)?;
        }
        rustix::fs::unlinkat(dir, name, AtFlags::REMOVEDIR).map_err(io_err)?;
    } else {
        rustix::fs::unlinkat(dir, name, AtFlags::empty()).map_err(io_err)?;
    }
    Ok(())
}

impl AsFd for Dir {
    fn as_fd(&self) -> std::os::fd::BorrowedFd<'_> {
        self.fd.as_fd()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::symlink;

    fn sentinel() -> (tempfile::TempDir, Dir, PathBuf) {
        let t = tempfile::tempdir().unwrap();
        let outside = t.path().join("outside");
        std::fs::create_dir(&outside).unwrap();
        std::fs::write(outside.join("secret"), "host").unwrap();
        let inside = Dir::create(&t.path().join("tree")).unwrap();
        (t, inside, outside)
    }

    #[test]
    fn paths_that_leave_are_refused_before_any_syscall() {
        let (_t, d, _) = sentinel();
        for bad in ["../x", "/etc/passwd", "a/../../x"] {
            let e = d.create_file(Path::new(bad), 0o644).unwrap_err();
            assert!(
                format!("{e:#}").contains("absolute") || format!("{e:#}").contains(".."),
                "{bad}: {e:#}"
            );
        }
    }

    #[test]
    fn no_operation_passes_through_a_symlink() {
        let (_t, d, outside) = sentinel();
        symlink(&outside, d.path().join("link")).unwrap();
        symlink("link", d.path().join("chain")).unwrap();
        for rel in ["link/new", "chain/new", "link/secret"] {
            let e = d.create_file(Path::new(rel), 0o644).unwrap_err();
            assert!(format!("{e:#}").contains("is a symlink"), "{rel}: {e:#}");
        }
        assert!(d.open_file(Path::new("link/secret")).is_err());
        assert!(d.open_file(Path::new("chain")).is_err());
        assert!(d.create_dir_all(Path::new("link/sub")).is_err());
        assert!(d.create_dir_all(Path::new("link")).is_err());
        assert!(d.set_mode(Path::new("link/secret"), 0o777).is_err());
        assert!(d.set_mtime(Path::new("link/secret"), 0).is_err());
        assert!(d.chown(Path::new("link/secret"), 0, 0).is_err());
        assert!(d.hard_link(Path::new("link/secret"), Path::new("h")).is_err());
        // The symlink itself can be read, re-timed and replaced; what it points at is untouched.
        assert_eq!(d.read_link(Path::new("link")).unwrap(), outside);
        d.set_mtime(Path::new("link"), 1).unwrap();
        d.create_file(Path::new("link"), 0o600).unwrap();
        assert_eq!(std::fs::read_to_string(outside.join("secret")).unwrap(), "host");
        let m = std::fs::metadata(&outside).unwrap();
        assert_ne!(filetime::FileTime::from_last_modification_time(&m).unix_seconds(), 1);
    }

    #[test]
    fn walk_is_sorted_preorder_and_lists_symlinks_without_following() {
        let (_t, d, outside) = sentinel();
        d.create_dir_all(Path::new("a/b")).unwrap();
        std::io::Write::write_all(&mut d.create_file(Path::new("a/b/f"), 0o640).unwrap(), b"x")
            .unwrap();
        d.create_file(Path::new("a-c"), 0o644).unwrap();
        d.symlink(&outside, Path::new("z")).unwrap();
        let w: Vec<(String, Kind)> =
            d.walk().unwrap().into_iter().map(|e| (e.path.display().to_string(), e.kind)).collect();
        assert_eq!(
            w,
            [
                ("a".to_string(), Kind::Dir),
                ("a/b".into(), Kind::Dir),
                ("a/b/f".into(), Kind::File),
                ("a-c".into(), Kind::File),
                ("z".into(), Kind::Symlink)
            ]
        );
        assert_eq!(d.metadata(Path::new("a/b/f")).unwrap().unwrap().mode, 0o640);
        assert!(d.metadata(Path::new("nope/x")).unwrap().is_none());
    }

    #[test]
    fn resolve_in_root_reroots_absolute_links_and_stops_at_the_top() {
        let (_t, d, _) = sentinel();
        d.create_dir_all(Path::new("usr/lib")).unwrap();
        d.create_file(Path::new("usr/lib/real"), 0o644).unwrap();
        d.symlink(Path::new("usr/lib"), Path::new("lib")).unwrap();
        d.symlink(Path::new("/lib/real"), Path::new("usr/lib/abs")).unwrap();
        d.symlink(Path::new("../../../../usr/lib/real"), Path::new("usr/lib/up")).unwrap();
        assert_eq!(
            d.resolve_in_root(Path::new("/lib/abs"), true).unwrap(),
            PathBuf::from("usr/lib/real")
        );
        assert_eq!(
            d.resolve_in_root(Path::new("/usr/lib/up"), true).unwrap(),
            PathBuf::from("usr/lib/real")
        );
        assert_eq!(
            d.resolve_in_root(Path::new("/lib/abs"), false).unwrap(),
            PathBuf::from("usr/lib/abs")
        );
        assert!(d.resolve_in_root(Path::new("/nope"), true).is_err());
    }

    #[test]
    fn remove_all_does_not_follow_symlinks() {
        let (_t, d, outside) = sentinel();
        d.create_dir_all(Path::new("x/y")).unwrap();
        d.symlink(&outside, Path::new("x/y/out")).unwrap();
        d.set_mode(Path::new("x/y"), 0o500).unwrap();
        d.remove_all(Path::new("x")).unwrap();
        assert!(d.metadata(Path::new("x")).unwrap().is_none());
        assert!(outside.join("secret").exists());
    }
}
