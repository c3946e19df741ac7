//! Root file systems and ext4 images.
//!
//! The root file system is assembled in Rust as an in-memory tree (dependency outputs, busybox
//! applet links, directories, device nodes, overlays, and the ELF library closure taken from
//! the pinned toolchain) and written as a deterministic tar: sorted, uid/gid 0, every mtime
//! SOURCE_DATE_EPOCH. `mke2fs -d rootfs.tar` (e2fsprogs >= 1.47.1 from the toolchain) turns it
//! into an ext4 image with a UUID and hash seed derived from the node's input hash, so no
//! privilege, fakeroot or multi-uid mapping is needed anywhere.

use crate::build::{BuildResult, PhaseCtx};
use crate::graph::Graph;
use crate::hash::Hasher;
use crate::project::Project;
use crate::recipe::{ImageSpec, Loaded, RootfsSpec};
use crate::store;
use crate::{archive, elf};
use anyhow::{bail, Context, Result};
use std::collections::BTreeMap;
use std::fs;
use std::io::{Read, Seek, SeekFrom, Write};
use std::os::unix::fs::PermissionsExt;
use std::path::{Component, Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
    Device { block: bool, major: u32, minor: u32, mode: u32 },
}

/// A root file system tree keyed by path relative to `/` (no leading slash).
#[derive(Debug, Default)]
pub struct Tree {
    pub nodes: BTreeMap<PathBuf, Node>,
}

fn clean(path: &str) -> Result<PathBuf> {
    let mut out = PathBuf::new();
    for c in Path::new(path).components() {
        match c {
            Component::Normal(p) => out.push(p),
            Component::RootDir | Component::CurDir => {}
            _ => bail!("path `{path}` contains `..`"),
        }
    }
    Ok(out)
}

impl Tree {
    /// Insert, creating parent directories (0755) as needed. Later inserts replace earlier ones
    /// (overlays are applied in order), except that a directory never replaces a directory's
    /// contents.
    pub fn insert(&mut self, path: &Path, node: Node) {
        let mut p = PathBuf::new();
        let comps: Vec<_> = path.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p.push(c);
            if !matches!(self.nodes.get(&p), Some(Node::Dir { .. })) {
                self.nodes.insert(p.clone(), Node::Dir { mode: 0o755 });
            }
        }
        if matches!(node, Node::Dir { .. })
            && matches!(self.nodes.get(path), Some(Node::Dir { .. }))
        {
            self.nodes.insert(path.to_path_buf(), node);
            return;
        }
        // Replacing a directory by a non-directory drops its children.
        if matches!(self.nodes.get(path), Some(Node::Dir { .. })) {
            let children: Vec<PathBuf> = self
                .nodes
                .keys()
                .filter(|k| k.starts_with(path) && k.as_path() != path)
                .cloned()
                .collect();
            for c in children {
                self.nodes.remove(&c);
            }
        }
        self.nodes.insert(path.to_path_buf(), node);
    }

    /// Copy a host file or directory tree into `dest`.
    pub fn add_host(&mut self, src: &Path, dest: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(src)
            .with_context(|| format!("{} does not exist", src.display()))?;
        if meta.is_dir() {
            for e in walkdir::WalkDir::new(src).sort_by_file_name() {
                let e = e?;
                let rel = e.path().strip_prefix(src)?;
                let d =
                    if rel.as_os_str().is_empty() { dest.to_path_buf() } else { dest.join(rel) };
                self.add_one(e.path(), &d)?;
            }
            Ok(())
        } else {
            self.add_one(src, dest)
        }
    }

    fn add_one(&mut self, src: &Path, dest: &Path) -> Result<()> {
        let meta = fs::symlink_metadata(src)?;
        let ft = meta.file_type();
        let mode = meta.permissions().mode() & 0o7777;
        let node = if ft.is_symlink() {
            Node::Symlink { target: fs::read_link(src)?.to_string_lossy().into_owned() }
        } else if ft.is_dir() {
            // Directory modes of host trees are not content: git does not record them and the
            // Nix store makes every directory 0555. Special bits stay.
            Node::Dir { mode: (mode & 0o7000) | 0o755 }
        } else if ft.is_file() {
            Node::File { data: fs::read(src)?, mode: if mode & 0o111 != 0 { 0o755 } else { 0o644 } }
        } else {
            bail!("{}: overlays may hold only files, directories and symlinks (declare devices in the recipe)", src.display());
        };
        if dest.as_os_str().is_empty() {
            return Ok(()); // the root directory itself
        }
        self.insert(dest, node);
        Ok(())
    }

    /// Apply a tarball overlay (any compression), refusing hostile member names.
    pub fn add_tar(&mut self, tarball: &Path) -> Result<()> {
        let fmt = archive::detect(tarball)?;
        let mut ar = tar::Archive::new(archive::tar_reader(tarball, fmt)?);
        for e in ar.entries()? {
            let mut e = e?;
            let name = e.path()?.into_owned();
            let Some(rel) = archive::safe_relative(&name, 0)? else {
                continue;
            };
            let mode = e.header().mode().unwrap_or(0o644) & 0o7777;
            let node = match e.header().entry_type() {
                tar::EntryType::Directory => Node::Dir { mode },
                tar::EntryType::Regular => {
                    let mut data = Vec::new();
                    e.read_to_end(&mut data)?;
                    Node::File { data, mode }
                }
                tar::EntryType::Symlink => Node::Symlink {
                    target: e.link_name()?.unwrap_or_default().to_string_lossy().into_owned(),
                },
                tar::EntryType::Char | tar::EntryType::Block => Node::Device {
                    block: e.header().entry_type() == tar::EntryType::Block,
                    major: e.header().device_major()?.unwrap_or(0),
                    minor: e.header().device_minor()?.unwrap_or(0),
                    mode,
                },
                tar::EntryType::Link => {
                    let target = e.link_name()?.unwrap_or_default().into_owned();
                    let Some(t) = archive::safe_relative(&target, 0)? else {
                        bail!("hard link `{}` has an empty target", rel.display())
                    };
                    match self.nodes.get(&t) {
                        Some(n @ Node::File { .. }) => n.clone(),
                        _ => bail!(
                            "hard link `{}` -> `{}`: target is not a file earlier in the tarball",
                            rel.display(),
                            target.display()
                        ),
                    }
                }
                other => bail!("entry `{}` has unsupported type {other:?}", rel.display()),
            };
            self.insert(&rel, node);
        }
        Ok(())
    }

    /// Write the tree as a deterministic tar (GNU format, sorted, root-owned, fixed mtime).
    pub fn write_tar(&self, w: impl Write, mtime: u64) -> Result<()> {
        let mut b = tar::Builder::new(w);
        b.mode(tar::HeaderMode::Deterministic);
        for (path, node) in &self.nodes {
            let mut h = tar::Header::new_gnu();
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(mtime);
            let _ = h.set_username("root");
            let _ = h.set_groupname("root");
            match node {
                Node::Dir { mode } => {
                    h.set_entry_type(tar::EntryType::Directory);
                    h.set_mode(*mode);
                    h.set_size(0);
                    b.append_data(&mut h, path, std::io::empty())?;
                }
                Node::File { data, mode } => {
                    h.set_entry_type(tar::EntryType::Regular);
                    h.set_mode(*mode);
                    h.set_size(data.len() as u64);
                    b.append_data(&mut h, path, data.as_slice())?;
                }
                Node::Symlink { target } => {
                    h.set_entry_type(tar::EntryType::Symlink);
                    h.set_mode(0o777);
                    h.set_size(0);
                    b.append_link(&mut h, path, target)?;
                }
                Node::Device { block, major, minor, mode } => {
                    h.set_entry_type(if *block {
                        tar::EntryType::Block
                    } else {
                        tar::EntryType::Char
                    });
                    h.set_mode(*mode);
                    h.set_size(0);
                    h.set_device_major(*major)?;
                    h.set_device_minor(*minor)?;
                    b.append_data(&mut h, path, std::io::empty())?;
                }
            }
        }
        b.into_inner()?.flush()?;
        Ok(())
    }

    /// Bytes of file content (for sizing images).
    pub fn content_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| if let Node::File { data, .. } = n { data.len() as u64 } else { 0 })
            .sum()
    }
}

fn parse_arrow(s: &str) -> Result<(&str, &str)> {
    s.split_once("->")
        .map(|(a, b)| (a.trim(), b.trim()))
        .with_context(|| format!("`{s}`: expected `SRC -> DEST`"))
}

/// Build the root file system of a `[rootfs]` recipe into `out/rootfs.tar`. `deps` maps each
/// dependency to its output directory; shared libraries come from `root` (the pinned toolchain
/// in the xtask's builds, `/` inside a Nix build, where RUNPATHs point into /nix/store).
pub fn assemble_rootfs(
    recipes: &Path,
    root: &Path,
    l: &Loaded,
    spec: &RootfsSpec,
    deps: &BTreeMap<String, PathBuf>,
    out: &Path,
    sde: i64,
) -> Result<()> {
    let here = |m: String| format!("{}: {m}", l.path.display());
    let mut tree = Tree::default();
    for d in &spec.dirs {
        let (p, mode) = match d.split_once(':') {
            Some((p, m)) => (
                p,
                u32::from_str_radix(m, 8)
                    .map_err(|_| anyhow::format_err!(here(format!("bad mode in `{d}`"))))?,
            ),
            None => (d.as_str(), 0o755),
        };
        tree.insert(&clean(p)?, Node::Dir { mode });
    }
    for i in &spec.install {
        let (src, dest) = parse_arrow(i).map_err(|e| anyhow::format_err!(here(e.to_string())))?;
        let (dep, rel) = src
            .split_once(':')
            .with_context(|| here(format!("`{i}`: expected `DEP:PATH -> DEST`")))?;
        let entry =
            deps.get(dep).with_context(|| here(format!("`{i}`: `{dep}` is not a dependency")))?;
        tree.add_host(&entry.join(rel), &clean(dest)?)
            .with_context(|| here(format!("installing `{i}`")))?;
    }
    if let Some(links) = &spec.applet_links {
        let (dep, rel) = links
            .split_once(':')
            .with_context(|| here(format!("applet-links `{links}`: expected DEP:PATH")))?;
        let entry = deps.get(dep).with_context(|| here(format!("`{dep}` is not a dependency")))?;
        let text = fs::read_to_string(entry.join(rel))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let p = clean(line)?;
            if !tree.nodes.contains_key(&p) {
                tree.insert(&p, Node::Symlink { target: "/bin/busybox".into() });
            }
        }
    }
    for s in &spec.symlinks {
        let (link, target) =
            parse_arrow(s).map_err(|e| anyhow::format_err!(here(e.to_string())))?;
        tree.insert(&clean(link)?, Node::Symlink { target: target.to_string() });
    }
    for d in &spec.devices {
        let f: Vec<&str> = d.split_whitespace().collect();
        if f.len() != 5 || !(f[1] == "c" || f[1] == "b") {
            bail!(here(format!("device `{d}`: expected `PATH c|b MAJOR MINOR MODE`")));
        }
        let num = |s: &str| {
            s.parse::<u32>()
                .map_err(|_| anyhow::format_err!(here(format!("device `{d}`: bad number `{s}`"))))
        };
        let mode = u32::from_str_radix(f[4], 8)
            .map_err(|_| anyhow::format_err!(here(format!("device `{d}`: bad mode"))))?;
        tree.insert(
            &clean(f[0])?,
            Node::Device { block: f[1] == "b", major: num(f[2])?, minor: num(f[3])?, mode },
        );
    }
    for o in &spec.overlays {
        let p = store::resolve_overlay(recipes, o);
        let meta = fs::metadata(&p)
            .with_context(|| here(format!("overlay `{o}` not found at {}", p.display())))?;
        let r = if meta.is_dir() { tree.add_host(&p, Path::new("")) } else { tree.add_tar(&p) };
        r.with_context(|| here(format!("overlay `{o}` refused")))?;
    }
    // Libraries and loader of dynamic binaries, from `root` (never the host's own /lib).
    let elves: Vec<(PathBuf, Vec<u8>)> = tree
        .nodes
        .iter()
        .filter_map(|(p, n)| {
            if let Node::File { data, .. } = n {
                elf::is_elf(data).then(|| (Path::new("/").join(p), data.clone()))
            } else {
                None
            }
        })
        .collect();
    let dirs = if spec.library_path.is_empty() {
        elf::DEFAULT_LIB_DIRS.iter().map(|s| s.to_string()).collect()
    } else {
        spec.library_path.clone()
    };
    let libs = elf::closure(root, &elves, &dirs)
        .with_context(|| format!("resolving shared libraries under {}", root.display()))?;
    for (install, real) in libs {
        let rel = clean(&install.to_string_lossy())?;
        if !tree.nodes.contains_key(&rel) {
            let data = fs::read(root.join(real.strip_prefix("/").unwrap_or(&real)))?;
            tree.insert(&rel, Node::File { data, mode: 0o755 });
        }
    }
    let tmp = out.join("rootfs.tar.tmp");
    let f = fs::File::create(&tmp)?;
    tree.write_tar(std::io::BufWriter::new(&f), sde.max(0) as u64)?;
    f.sync_all()?;
    fs::rename(&tmp, out.join("rootfs.tar"))?;
    let mut listing = String::new();
    for (p, n) in &tree.nodes {
        let line = match n {
            Node::Dir { mode } => format!("d {mode:04o} /{}\n", p.display()),
            Node::File { data, mode } => format!(
                "f {mode:04o} /{} {} {}\n",
                p.display(),
                data.len(),
                crate::hash::sha256_bytes(data)
            ),
            Node::Symlink { target } => format!("l 0777 /{} -> {target}\n", p.display()),
            Node::Device { block, major, minor, mode } => format!(
                "{} {mode:04o} /{} {major}:{minor}\n",
                if *block { 'b' } else { 'c' },
                p.display()
            ),
        };
        listing.push_str(&line);
    }
    fs::write(out.join("rootfs.list"), listing)?;
    fs::write(out.join("content-bytes"), tree.content_bytes().to_string())?;
    Ok(())
}

/// A UUID (RFC 4122 v4 layout) derived from the node's input hash and a purpose string.
pub fn derived_uuid(input_hash: &str, purpose: &str) -> String {
    let mut h = Hasher::new("reprovm-uuid");
    h.field("input", input_hash.as_bytes());
    h.field("purpose", purpose.as_bytes());
    let hex = h.finish();
    let mut b = hex::decode(&hex[..32]).unwrap_or_default();
    b[6] = (b[6] & 0x0f) | 0x40;
    b[8] = (b[8] & 0x3f) | 0x80;
    let s = hex::encode(&b);
    format!("{}-{}-{}-{}-{}", &s[..8], &s[8..12], &s[12..16], &s[16..20], &s[20..32])
}

/// Image size in MiB: from the recipe, or content plus headroom (at least 64 MiB).
pub fn image_size_mib(spec: &ImageSpec, content_bytes: u64) -> u64 {
    if let Some(s) = spec.size_mib {
        return s;
    }
    let headroom = spec.headroom_percent.unwrap_or(50);
    let mib = content_bytes.div_ceil(1 << 20);
    (mib + mib * headroom / 100 + 32).max(64)
}

/// The shell script that makes the ext4 image (and qcow2) of an `[image]` recipe. It runs with
/// the recipe's files in BUILD/files, the rootfs at BUILD/deps/ROOTFS and `$OUT`: in the
/// xtask's sandbox over the pinned toolchain, or in a Nix build with nixpkgs' e2fsprogs.
/// `id` seeds the file system UUID and directory hash seed (the node's input hash).
pub fn mke2fs_script(
    l: &Loaded,
    spec: &ImageSpec,
    id: &str,
    rootfs_content_bytes: u64,
    build_dir: &Path,
) -> Result<String> {
    let build = build_dir.display();
    let size = image_size_mib(spec, rootfs_content_bytes);
    let uuid = derived_uuid(id, "fs-uuid");
    let seed = derived_uuid(id, "hash-seed");
    let conf = l
        .recipe
        .files
        .iter()
        .find(|f| f.ends_with("mke2fs.conf"))
        .map(|f| format!("{build}/files/{f}"))
        .with_context(|| format!("{}: list a vendored mke2fs.conf in `files`", l.path.display()))?;
    Ok(format!(
        "export LC_ALL=C MKE2FS_CONFIG={conf}\n\
         v=\"$(mke2fs -V 2>&1 | head -1 | cut -d' ' -f2)\"; echo \"mke2fs $v\"\n\
         case \"$v\" in 1.[0-3]*|1.4[0-6].*|1.47.0|1.47.0-*) echo \"mke2fs $v cannot make this image reproducibly from a tarball: e2fsprogs >= 1.47.1 is needed\" >&2; exit 1;; esac\n\
         mke2fs -q -F -t ext4 -b 4096 -L '{label}' -U {uuid} \\\n  -E hash_seed={seed},nodiscard,lazy_itable_init=0,lazy_journal_init=0,no_copy_xattrs,root_owner=0:0 \\\n  -d {build}/deps/{rootfs}/rootfs.tar \"$OUT\"/hd.img {size}M\n\
         e2fsck -fn \"$OUT\"/hd.img\n{qcow2}",
        label = spec.label,
        rootfs = spec.rootfs,
        qcow2 = if spec.qcow2 { "qemu-img convert -f raw -O qcow2 \"$OUT\"/hd.img \"$OUT\"/hd.qcow2\n" } else { "" },
    ))
}

/// The rootfs content size an `[image]` recipe sizes itself by (written by `assemble_rootfs`).
pub fn rootfs_content_bytes(rootfs_out: &Path) -> u64 {
    fs::read_to_string(rootfs_out.join("content-bytes"))
        .ok()
        .and_then(|s| s.trim().parse().ok())
        .unwrap_or(0)
}

/// Run mke2fs (and e2fsck -fn) from the toolchain inside the sandbox.
pub fn make_ext4(
    ctx: &PhaseCtx,
    l: &Loaded,
    spec: &ImageSpec,
    input_hash: &str,
    deps: &BTreeMap<String, PathBuf>,
) -> Result<()> {
    let rootfs = deps.get(&spec.rootfs).with_context(|| {
        format!("{}: image rootfs `{}` is not a dependency", l.path.display(), spec.rootfs)
    })?;
    let script = mke2fs_script(
        l,
        spec,
        input_hash,
        rootfs_content_bytes(&store::out_dir(rootfs)),
        Path::new("/build"),
    )?;
    ctx.run_script("mke2fs", &script)
}

/// Copy a file keeping holes (images are mostly zeros), via a temp file and rename.
pub fn sparse_copy(src: &Path, dest: &Path) -> Result<()> {
    let tmp = dest.with_extension("tmp");
    let mut r = fs::File::open(src).with_context(|| format!("opening {}", src.display()))?;
    let mut w = fs::File::create(&tmp)?;
    let len = r.metadata()?.len();
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
    fs::set_permissions(&tmp, fs::Permissions::from_mode(0o644))?;
    fs::rename(&tmp, dest)?;
    Ok(())
}

/// After a build, copy well-known outputs to `out/` (out/bzImage, out/hd.img), so that the
/// store stays read-only and QEMU can write to its own copy.
pub fn link_results(
    project: &Project,
    _graph: &Graph,
    _target: &str,
    res: &BuildResult,
) -> Result<()> {
    for name in ["hd.img", "bzImage", "hd.qcow2", "kernel.release"] {
        let src = store::out_dir(&res.entry).join(name);
        if src.is_file() {
            let dest = project.out.join(name);
            sparse_copy(&src, &dest)?;
            crate::progress::say(&format!("{} -> {}", dest.display(), src.display()));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_deterministic_and_sorted() {
        let mut t = Tree::default();
        t.insert(Path::new("usr/bin/x"), Node::File { data: b"x".to_vec(), mode: 0o755 });
        t.insert(Path::new("bin/sh"), Node::Symlink { target: "busybox".into() });
        t.insert(
            Path::new("dev/console"),
            Node::Device { block: false, major: 5, minor: 1, mode: 0o600 },
        );
        let mut a = Vec::new();
        t.write_tar(&mut a, 1).unwrap();
        let mut b = Vec::new();
        t.write_tar(&mut b, 1).unwrap();
        assert_eq!(a, b);
        let mut ar = tar::Archive::new(a.as_slice());
        let names: Vec<String> = ar
            .entries()
            .unwrap()
            .map(|e| e.unwrap().path().unwrap().display().to_string())
            .collect();
        assert_eq!(
            names,
            vec!["bin", "bin/sh", "dev", "dev/console", "usr", "usr/bin", "usr/bin/x"]
        );
    }

    #[test]
    fn hostile_overlay_tarball_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.tar");
        let mut b = tar::Builder::new(fs::File::create(&p).unwrap());
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        b.finish().unwrap();
        let mut t = Tree::default();
        assert!(format!("{:#}", t.add_tar(&p).unwrap_err()).contains("path traversal"));
    }

    #[test]
    fn uuid_is_derived_and_well_formed() {
        let u = derived_uuid("abc", "fs-uuid");
        assert_eq!(u, derived_uuid("abc", "fs-uuid"));
        assert_ne!(u, derived_uuid("abd", "fs-uuid"));
        assert_eq!(u.len(), 36);
        assert_eq!(&u[14..15], "4");
    }
}
