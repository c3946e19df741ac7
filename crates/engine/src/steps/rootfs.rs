//! Root file systems: assembled in Rust as an in-memory tree (dependency outputs, busybox
//! applet links, directories, device nodes, overlays, and the ELF library closure taken from
//! the pinned toolchain) and written as a deterministic tar: sorted, uid/gid 0, every mtime
//! SOURCE_DATE_EPOCH. `image.rs` turns it into ext4 with `mke2fs -d rootfs.tar`, so no
//! privilege, fakeroot or multi-uid mapping is needed anywhere.

use crate::model::recipe::{self, Loaded, RootfsSpec};
use anyhow::{bail, Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::{Dir, Entry, Kind};
use reprovm_fs::elf;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum Node {
    Dir { mode: u32 },
    File { data: Vec<u8>, mode: u32 },
    Symlink { target: String },
    Device { block: bool, major: u32, minor: u32, mode: u32 },
}

/// A root file system tree keyed by path relative to `/` (no leading slash).
#[derive(Debug, Default)]
pub(crate) struct Tree {
    pub nodes: BTreeMap<PathBuf, Node>,
}

impl Tree {
    /// Insert, creating parent directories (0755) as needed. Later inserts replace earlier ones
    /// (overlays are applied in order), except that a directory never replaces a directory's
    /// contents. As on a real file system, nothing is written through a symlink: a path whose
    /// parent, or a directory whose place, is a symlink of the tree is refused.
    pub(crate) fn insert(&mut self, path: &Path, node: Node) -> Result<()> {
        let mut p = PathBuf::new();
        let comps: Vec<_> = path.components().collect();
        for c in &comps[..comps.len().saturating_sub(1)] {
            p.push(c);
            match self.nodes.get(&p) {
                Some(Node::Dir { .. }) => {}
                Some(Node::Symlink { .. }) => {
                    bail!(
                        "`{}` would be written through the symlink `{}`",
                        path.display(),
                        p.display()
                    )
                }
                _ => {
                    self.nodes.insert(p.clone(), Node::Dir { mode: 0o755 });
                }
            }
        }
        match (&node, self.nodes.get(path)) {
            (Node::Dir { .. }, Some(Node::Dir { .. })) => {
                self.nodes.insert(path.to_path_buf(), node);
                return Ok(());
            }
            (Node::Dir { .. }, Some(Node::Symlink { .. })) => {
                bail!("directory `{}` would replace a symlink", path.display())
            }
            _ => {}
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
        Ok(())
    }

    /// Copy the file, symlink or directory tree `rel` beneath `base` into `dest`. Nothing is
    /// followed: a path through a symlink is refused, and symlinks are copied as symlinks.
    pub(crate) fn add_host(&mut self, base: &Dir, rel: &Path, dest: &Path) -> Result<()> {
        let meta = base
            .metadata(rel)?
            .with_context(|| format!("{} does not exist", base.path().join(rel).display()))?;
        if meta.kind != Kind::Dir {
            return self.add_one(base, &meta, dest);
        }
        let dir = base.open_dir(rel)?;
        self.add_one(base, &meta, dest)?;
        for e in dir.walk()? {
            self.add_one(&dir, &e, &dest.join(&e.path))?;
        }
        Ok(())
    }

    fn add_one(&mut self, base: &Dir, e: &Entry, dest: &Path) -> Result<()> {
        let node = match e.kind {
            Kind::Symlink => Node::Symlink { target: base.read_link(&e.path)?.to_string_lossy().into_owned() },
            // Directory modes of host trees are not content: git does not record them and the
            // Nix store makes every directory 0555. Special bits stay.
            Kind::Dir => Node::Dir { mode: (e.mode & 0o7000) | 0o755 },
            Kind::File => Node::File {
                data: base.read(&e.path)?,
                mode: if e.mode & 0o111 != 0 { 0o755 } else { 0o644 },
            },
            Kind::Special => bail!(
                "{}: overlays may hold only files, directories and symlinks (declare devices in the recipe)",
                base.path().join(&e.path).display()
            ),
        };
        if dest.as_os_str().is_empty() {
            return Ok(()); // the root directory itself
        }
        self.insert(dest, node)?;
        Ok(())
    }

    /// Apply a tarball overlay (any compression), refusing hostile member names.
    pub(crate) fn add_tar(&mut self, tarball: std::fs::File) -> Result<()> {
        self.add_tar_stream(archive::tar_stream(tarball)?, &mut |_, _, _| Ok(true))
    }

    /// Apply a tar stream; `keep(tree, path, node)` decides for each entry before it is
    /// inserted: false skips it, an error refuses the stream.
    pub(crate) fn add_tar_stream(
        &mut self,
        stream: impl Read,
        keep: &mut dyn FnMut(&Tree, &Path, &Node) -> Result<bool>,
    ) -> Result<()> {
        let mut ar = tar::Archive::new(stream);
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
            if !keep(self, &rel, &node)? {
                continue;
            }
            self.insert(&rel, node).with_context(|| format!("entry `{}`", rel.display()))?;
        }
        Ok(())
    }

    /// Write the tree as a deterministic tar (GNU format, sorted, owned by root:root by id and
    /// name, fixed mtime), through the one archive writer.
    pub(crate) fn write_tar(&self, w: impl Write, mtime: u64) -> Result<()> {
        use reprovm_fs::archive_write::{Entry, Format, TarWriter};
        let mut tar = TarWriter::new(w, Format::Gnu, mtime).owner_names("root");
        for (path, node) in &self.nodes {
            let path = path.as_path();
            let mut bytes: &[u8] = match node {
                Node::File { data, .. } => data,
                _ => &[],
            };
            tar.append(match node {
                Node::Dir { mode } => Entry::Dir { path, mode: *mode },
                Node::File { data, mode } => {
                    Entry::File { path, mode: *mode, size: data.len() as u64, data: &mut bytes }
                }
                Node::Symlink { target } => {
                    Entry::Symlink { path, target: Path::new(target), mode: 0o777 }
                }
                Node::Device { block, major, minor, mode } => {
                    Entry::Device { path, block: *block, major: *major, minor: *minor, mode: *mode }
                }
            })?;
        }
        tar.finish()?.flush()?;
        Ok(())
    }

    /// What identifies this tree: the first 16 hex digits of the sha256 of its listing (every
    /// path, type, mode, size and content hash), the same for every builder.
    pub(crate) fn build_id(&self) -> String {
        let mut h = reprovm_fs::hash::Hasher::new("reprovm-build-id-v1");
        for (p, n) in &self.nodes {
            let line = match n {
                Node::Dir { mode } => format!("d {mode:o} {}", p.display()),
                Node::File { data, mode } => {
                    format!("f {mode:o} {} {}", p.display(), reprovm_fs::hash::sha256_bytes(data))
                }
                Node::Symlink { target } => format!("l {} {target}", p.display()),
                Node::Device { block, major, minor, mode } => {
                    format!("c {block} {major} {minor} {mode:o} {}", p.display())
                }
            };
            h.field("node", line.as_bytes());
        }
        h.finish()[..16].to_string()
    }

    /// Bytes of file content (for sizing images).
    pub(crate) fn content_bytes(&self) -> u64 {
        self.nodes
            .values()
            .map(|n| if let Node::File { data, .. } = n { data.len() as u64 } else { 0 })
            .sum()
    }
}

/// `/etc/os-release`: the recipe's file without VERSION_ID and BUILD_ID, then those two.
fn os_release(text: &str, version: &str, build_id: &str) -> Vec<u8> {
    let mut out: String = text
        .lines()
        .filter(|l| !l.starts_with("VERSION_ID=") && !l.starts_with("BUILD_ID="))
        .map(|l| format!("{l}\n"))
        .collect();
    out.push_str(&format!("VERSION_ID={version}\nBUILD_ID={build_id}\n"));
    out.into_bytes()
}

/// Build the root file system of a `[rootfs]` recipe into `out/rootfs.tar`. `deps` maps each
/// dependency to its output directory; shared libraries come from `root` (the pinned toolchain
/// in the xtask's builds, `/` inside a Nix build, where RUNPATHs point into /nix/store).
pub(crate) fn write_rootfs(
    paths: &crate::steps::runner::StepPaths,
    l: &Loaded,
    spec: &RootfsSpec,
    sde: i64,
) -> Result<()> {
    let (recipes, root, deps, build, out) =
        (paths.recipes, paths.lib_root, paths.deps, paths.build, paths.out);
    let here = |m: String| format!("{}: {m}", l.path.display());
    let bad = |e: String| anyhow::format_err!("{}: {e}", l.path.display());
    let dep_dir = |dep: &str| -> Result<Dir> {
        Ok(Dir::open(deps.get(dep).with_context(|| here(format!("`{dep}` is not a dependency")))?)?)
    };
    let mut tree = Tree::default();
    for d in &spec.dirs {
        let (p, mode) = recipe::parse_dir(d).map_err(bad)?;
        tree.insert(&p, Node::Dir { mode }).map_err(|e| bad(format!("dirs `{d}`: {e}")))?;
    }
    for i in &spec.install {
        let inst = recipe::parse_install(i).map_err(bad)?;
        tree.add_host(&dep_dir(&inst.dep)?, &inst.src, &inst.dest)
            .with_context(|| here(format!("installing `{i}`")))?;
    }
    if let Some(links) = &spec.applet_links {
        let (dep, rel) = recipe::dep_path(links).map_err(bad)?;
        let text = String::from_utf8(dep_dir(&dep)?.read(&rel)?)
            .with_context(|| here(format!("applet-links `{links}` is not text")))?;
        for line in text.lines().map(str::trim).filter(|l| !l.is_empty()) {
            let p = recipe::tree_path(line, true)
                .map_err(|e| bad(format!("applet-links `{links}`: {e}")))?;
            if !tree.nodes.contains_key(&p) {
                tree.insert(&p, Node::Symlink { target: "/bin/busybox".into() })?;
            }
        }
    }
    for s in &spec.symlinks {
        let (link, target) = recipe::parse_symlink(s).map_err(bad)?;
        tree.insert(&link, Node::Symlink { target })
            .map_err(|e| bad(format!("symlinks `{s}`: {e}")))?;
    }
    for d in &spec.devices {
        let dev = recipe::parse_device(d).map_err(bad)?;
        tree.insert(
            &dev.path,
            Node::Device { block: dev.block, major: dev.major, minor: dev.minor, mode: dev.mode },
        )
        .map_err(|e| bad(format!("devices `{d}`: {e}")))?;
    }
    // Debian packages, before the overlays (which may replace their files on purpose).
    let packages = if spec.debian.is_empty() {
        None
    } else {
        Some(install_debs(
            &mut tree,
            &build.join("debs"),
            &build.join("debian-root"),
            &l.recipe.name,
        )?)
    };
    let recipes_dir = Dir::open(recipes)?;
    for o in &spec.overlays {
        let rel = recipe::tree_path(o, false).map_err(bad)?;
        let meta = recipes_dir.metadata(&rel)?.with_context(|| {
            here(format!("overlay `{o}` not found at {}", recipes.join(&rel).display()))
        })?;
        let r = match meta.kind {
            Kind::Dir => tree.add_host(&recipes_dir, &rel, Path::new("")),
            _ => recipes_dir
                .open_file(&rel)
                .map_err(anyhow::Error::from)
                .and_then(|f| tree.add_tar(f)),
        };
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
    let machine = l.arch.elf_machine();
    let dirs = if spec.library_path.is_empty() {
        elf::default_lib_dirs(machine).iter().map(|s| s.to_string()).collect()
    } else {
        spec.library_path.clone()
    };
    let root_dir = Dir::open(root)?;
    // The packages' own libraries first (they are in the tree already), then the toolchain's.
    let mut roots = Vec::new();
    if let Some(p) = &packages {
        roots.push(p);
    }
    roots.push(&root_dir);
    // One machine per image: a program or library of another is refused by name.
    let libs = elf::closure_over(&roots, &elves, &dirs, machine)
        .with_context(|| format!("resolving shared libraries under {}", root.display()))?;
    for (install, (from, real)) in libs {
        let rel = recipe::tree_path(&install.to_string_lossy(), true).map_err(bad)?;
        if !tree.nodes.contains_key(&rel) {
            tree.insert(&rel, Node::File { data: roots[from].read(&real)?, mode: 0o755 })?;
        }
    }
    if let Some(o) = &spec.os_release {
        let rel = recipe::tree_path(o, false).map_err(bad)?;
        let text = String::from_utf8(recipes_dir.read(&rel)?)
            .with_context(|| here(format!("os-release `{o}` is not text")))?;
        let data = os_release(&text, &l.recipe.version, &tree.build_id());
        tree.insert(Path::new("etc/os-release"), Node::File { data, mode: 0o644 })
            .map_err(|e| bad(format!("os-release: {e}")))?;
    }
    let out_dir = Dir::open(out)?;
    let mut tar = Vec::new();
    tree.write_tar(&mut tar, sde.max(0) as u64)?;
    out_dir.write_atomic(Path::new("rootfs.tar"), &tar, 0o644)?;
    let mut listing = String::new();
    for (p, n) in &tree.nodes {
        let line = match n {
            Node::Dir { mode } => format!("d {mode:04o} /{}\n", p.display()),
            Node::File { data, mode } => format!(
                "f {mode:04o} /{} {} {}\n",
                p.display(),
                data.len(),
                reprovm_fs::hash::sha256_bytes(data)
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
    out_dir.write_atomic(Path::new("rootfs.list"), listing.as_bytes(), 0o644)?;
    out_dir.write_atomic(
        Path::new("content-bytes"),
        tree.content_bytes().to_string().as_bytes(),
        0o644,
    )?;
    Ok(())
}

/// What of a package is not installed: documentation (but its copyright file), manuals,
/// info pages, translations, lintian overrides.
fn dropped(rel: &Path) -> bool {
    if rel.starts_with("usr/share/doc") {
        // usr/share/doc, usr/share/doc/PACKAGE and usr/share/doc/PACKAGE/copyright stay.
        return match rel.components().count() {
            0..=4 => false,
            5 => rel.file_name().is_some_and(|f| f != "copyright"),
            _ => true,
        };
    }
    ["usr/share/man", "usr/share/info", "usr/share/locale", "usr/share/lintian"]
        .iter()
        .any(|d| rel.starts_with(d))
}

/// Install every .deb of `debs` (the lock's, in name order) into `tree`, and into `staging`
/// on disk, where the ELF closure finds the packages' libraries. A path the image already
/// has (from an install, an applet link, a symlink, a device, or another package) is an
/// error naming both. Maintainer scripts are not run.
fn install_debs(tree: &mut Tree, debs: &Path, staging: &Path, recipe: &str) -> Result<Dir> {
    let mut files: Vec<PathBuf> = std::fs::read_dir(debs)
        .with_context(|| format!("reading {}", debs.display()))?
        .map(|e| e.map(|e| e.path()))
        .collect::<std::io::Result<_>>()?;
    files.retain(|p| p.extension().is_some_and(|x| x == "deb"));
    files.sort();
    let stage = Dir::create(staging)?;
    let mut owner: BTreeMap<PathBuf, String> = BTreeMap::new();
    for deb in &files {
        let file = deb.file_name().unwrap_or_default().to_string_lossy().into_owned();
        let package = file.split('_').next().unwrap_or(&file).to_string();
        let (data, fmt) = crate::steps::toolchain::materialize::deb_data(deb)?;
        let stream = archive::decoder(fmt, std::io::Cursor::new(data.clone()))?;
        tree.add_tar_stream(stream, &mut |t, rel, node| {
            if dropped(rel) {
                return Ok(false);
            }
            match (t.nodes.get(rel), node) {
                (None, _) | (Some(Node::Dir { .. }), Node::Dir { .. }) => {}
                (Some(_), _) => bail!(
                    "/{}: Debian package {package} installs it, but the image has it already from {}",
                    rel.display(),
                    match owner.get(rel) {
                        Some(other) => format!("Debian package {other}"),
                        None => format!(
                            "recipes/{recipe}.toml (an install, applet link, symlink or device)"
                        ),
                    }
                ),
            }
            if !matches!(node, Node::Dir { .. }) {
                owner.insert(rel.to_path_buf(), package.clone());
            }
            Ok(true)
        })
        .with_context(|| format!("installing {file}"))?;
        let stream = archive::decoder(fmt, std::io::Cursor::new(data))?;
        archive::extract_tar(
            stream,
            &stage,
            0,
            &|p: &Path| p.to_path_buf(),
            archive::Links::RootFileSystem,
        )
        .with_context(|| format!("unpacking {file}"))?;
    }
    Ok(stage)
}

/// The rootfs content size an `[image]` recipe sizes itself by (written by [`assemble`]).
pub(crate) fn content_bytes(rootfs_out: &Path) -> Result<u64> {
    let text = String::from_utf8(Dir::open(rootfs_out)?.read(Path::new("content-bytes"))?)?;
    text.trim()
        .parse()
        .with_context(|| format!("{}/content-bytes: not a number", rootfs_out.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tar_is_deterministic_and_sorted() {
        let mut t = Tree::default();
        t.insert(Path::new("usr/bin/x"), Node::File { data: b"x".to_vec(), mode: 0o755 }).unwrap();
        t.insert(Path::new("bin/sh"), Node::Symlink { target: "busybox".into() }).unwrap();
        t.insert(
            Path::new("dev/console"),
            Node::Device { block: false, major: 5, minor: 1, mode: 0o600 },
        )
        .unwrap();
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
    fn build_id_follows_content_and_os_release_carries_it() {
        let tree = |data: &[u8], mode: u32| {
            let mut t = Tree::default();
            t.insert(Path::new("bin/x"), Node::File { data: data.to_vec(), mode }).unwrap();
            t
        };
        let id = tree(b"x", 0o755).build_id();
        assert_eq!(id.len(), 16);
        assert_eq!(id, tree(b"x", 0o755).build_id());
        assert_ne!(id, tree(b"y", 0o755).build_id());
        assert_ne!(id, tree(b"x", 0o644).build_id());
        let text = "NAME=reprovm\nVERSION_ID=stale\nID=reprovm\nBUILD_ID=stale\n";
        assert_eq!(
            String::from_utf8(os_release(text, "3", &id)).unwrap(),
            format!("NAME=reprovm\nID=reprovm\nVERSION_ID=3\nBUILD_ID={id}\n")
        );
    }

    #[test]
    fn overlay_writes_through_its_own_symlinks_are_refused() {
        use reprovm_fs::archive::tests_support::{hostile_tar, Entries};
        use tar::EntryType::{Directory, Regular, Symlink};
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.tar.gz");
        let cases: [(Entries, &str); 2] = [
            (
                &[("etc", Symlink, "/tmp"), ("etc/passwd", Regular, "")],
                "`etc/passwd` would be written through the symlink `etc`",
            ),
            (
                &[("run", Symlink, "/var/run"), ("run/", Directory, "")],
                "directory `run` would replace a symlink",
            ),
        ];
        for (entries, what) in cases {
            std::fs::write(&p, hostile_tar(entries)).unwrap();
            let mut t = Tree::default();
            let e = format!("{:#}", t.add_tar(std::fs::File::open(&p).unwrap()).unwrap_err());
            assert!(e.contains(what), "{e}");
        }
    }

    #[test]
    fn hostile_overlay_tarball_is_refused() {
        let d = tempfile::tempdir().unwrap();
        let p = d.path().join("o.tar");
        let mut b = tar::Builder::new(std::fs::File::create(&p).unwrap());
        let mut h = tar::Header::new_gnu();
        h.as_old_mut().name[..9].copy_from_slice(b"../escape");
        h.set_size(0);
        h.set_entry_type(tar::EntryType::Regular);
        h.set_cksum();
        b.append(&h, std::io::empty()).unwrap();
        b.finish().unwrap();
        let mut t = Tree::default();
        assert!(format!("{:#}", t.add_tar(std::fs::File::open(&p).unwrap()).unwrap_err())
            .contains("path traversal"));
    }

    /// A .deb: an ar archive with `data.tar.gz` holding `files`.
    fn deb(dir: &Path, name: &str, files: &[(&str, &[u8])]) {
        let mut data =
            tar::Builder::new(flate2::write::GzEncoder::new(Vec::new(), Default::default()));
        for (path, bytes) in files {
            let mut h = tar::Header::new_gnu();
            h.set_size(bytes.len() as u64);
            h.set_mode(0o755);
            h.set_cksum();
            data.append_data(&mut h, path, *bytes).unwrap();
        }
        let data = data.into_inner().unwrap().finish().unwrap();
        let mut ar = ar::Builder::new(std::fs::File::create(dir.join(name)).unwrap());
        ar.append(&ar::Header::new(b"debian-binary".to_vec(), 4), &b"2.0\n"[..]).unwrap();
        ar.append(&ar::Header::new(b"data.tar.gz".to_vec(), data.len() as u64), &data[..]).unwrap();
    }

    #[test]
    fn debian_packages_install_without_docs_and_never_over_another_file() {
        let t = tempfile::tempdir().unwrap();
        let debs = t.path().join("debs");
        std::fs::create_dir(&debs).unwrap();
        deb(
            &debs,
            "hello_1_amd64.deb",
            &[
                ("./usr/bin/hello", b"hi"),
                ("./usr/share/doc/hello/copyright", b"GPL"),
                ("./usr/share/doc/hello/changelog.gz", b"log"),
                ("./usr/share/man/man1/hello.1.gz", b"man"),
            ],
        );
        let mut tree = Tree::default();
        tree.insert(Path::new("bin/busybox"), Node::File { data: b"bb".to_vec(), mode: 0o755 })
            .unwrap();
        install_debs(&mut tree, &debs, &t.path().join("stage"), "rootfs-x").unwrap();
        for (p, there) in [
            ("usr/bin/hello", true),
            ("usr/share/doc/hello/copyright", true),
            ("usr/share/doc/hello/changelog.gz", false),
            ("usr/share/man/man1/hello.1.gz", false),
        ] {
            assert_eq!(tree.nodes.contains_key(Path::new(p)), there, "{p}");
        }
        assert!(t.path().join("stage/usr/bin/hello").is_file(), "the ELF closure's copy");
        // A package file where the recipes put one, and where another package did.
        deb(&debs, "zbusybox_1_amd64.deb", &[("./bin/busybox", b"other")]);
        let e = install_debs(&mut Tree::default(), &debs, &t.path().join("s2"), "r").map(|_| ());
        assert!(e.is_ok(), "{e:?}");
        let mut tree = Tree::default();
        tree.insert(Path::new("bin/busybox"), Node::File { data: b"bb".to_vec(), mode: 0o755 })
            .unwrap();
        let e = format!(
            "{:#}",
            install_debs(&mut tree, &debs, &t.path().join("s3"), "rootfs-x").unwrap_err()
        );
        assert!(
            e.contains("/bin/busybox: Debian package zbusybox installs it")
                && e.contains("recipes/rootfs-x.toml"),
            "{e}"
        );
        deb(&debs, "zzhello_2_amd64.deb", &[("./usr/bin/hello", b"again")]);
        std::fs::remove_file(debs.join("zbusybox_1_amd64.deb")).unwrap();
        let e = format!(
            "{:#}",
            install_debs(&mut Tree::default(), &debs, &t.path().join("s4"), "r").unwrap_err()
        );
        assert!(
            e.contains("Debian package zzhello installs it") && e.contains("Debian package hello"),
            "{e}"
        );
    }

    /// Hostile .debs (the archive crate's shared hostile tars): a member climbing out of the
    /// root, a symlink leading out with a file written through it. Each is refused, and
    /// nothing lands outside the staging root.
    #[test]
    fn a_hostile_debian_package_is_refused() {
        use reprovm_fs::archive::tests_support::hostile_tar;
        use tar::EntryType::{Regular, Symlink};
        let t = tempfile::tempdir().unwrap();
        for (i, entries) in [
            &[("../../escaped", Regular, "")][..],
            &[("./usr/out", Symlink, "../../.."), ("./usr/out/through", Regular, "")][..],
        ]
        .into_iter()
        .enumerate()
        {
            let debs = t.path().join(format!("debs{i}"));
            std::fs::create_dir(&debs).unwrap();
            let data = hostile_tar(entries);
            let mut ar =
                ar::Builder::new(std::fs::File::create(debs.join("evil_1_amd64.deb")).unwrap());
            ar.append(&ar::Header::new(b"data.tar.gz".to_vec(), data.len() as u64), &data[..])
                .unwrap();
            drop(ar);
            let stage = t.path().join(format!("stage{i}"));
            let r = install_debs(&mut Tree::default(), &debs, &stage, "r");
            assert!(r.is_err(), "{entries:?} was accepted");
        }
        assert!(!t.path().join("escaped").exists() && !t.path().join("through").exists());
    }
}
