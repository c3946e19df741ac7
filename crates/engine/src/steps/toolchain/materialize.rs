//! Materialisation: `pins/toolchain.lock` -> a root directory. Every locked .deb is fetched
//! by sha256 and decompressed (on several threads, a few packages ahead) and its data.tar
//! extracted in Rust, in name order, into one merged-/usr root
//! (through a directory handle: no write through a symlink, no link out of the root), then
//! fixed up the way maintainer scripts would, given an ld.so cache by its own ldconfig in the
//! sandbox, normalised, and renamed into place.

use super::resolve::LockFile;
use super::{ToolchainManifest, TOOLCHAIN_EPOCH};
use crate::mechanisms::debian;
use crate::mechanisms::fetch::{Fetcher, Want};
use crate::model::manifest;
use crate::model::project::Project;
use anyhow::{bail, Context, Result};
use reprovm_fs::archive;
use reprovm_fs::beneath::Dir;
use reprovm_fs::hash::sha256_file;
use reprovm_fs::progress;
use reprovm_sandbox::{self as sandbox, Spec};
use std::io::Read;
use std::path::{Path, PathBuf};

/// Map a data.tar member path into the merged-/usr layout.
pub(crate) fn merged_usr(rel: &Path) -> PathBuf {
    match rel.components().next().map(|c| c.as_os_str().to_string_lossy().into_owned()) {
        Some(f) if matches!(f.as_str(), "bin" | "sbin" | "lib" | "lib64" | "lib32" | "libx32") => {
            Path::new("usr").join(rel)
        }
        _ => rel.to_path_buf(),
    }
}

/// The data.tar member of a .deb and its compression.
pub(crate) fn deb_data(deb: &Path) -> Result<(Vec<u8>, archive::Format)> {
    let mut ar = ar::Archive::new(
        std::fs::File::open(deb).with_context(|| format!("opening {}", deb.display()))?,
    );
    while let Some(entry) = ar.next_entry() {
        let mut entry = entry?;
        let id = String::from_utf8_lossy(entry.header().identifier()).into_owned();
        if let Some(ext) = id.strip_prefix("data.tar") {
            let fmt = match ext {
                ".xz" => archive::Format::TarXz,
                ".zst" => archive::Format::TarZst,
                ".gz" => archive::Format::TarGz,
                "" => archive::Format::Tar,
                other => bail!("{}: unsupported data.tar{other}", deb.display()),
            };
            let mut buf = Vec::new();
            entry.read_to_end(&mut buf)?;
            return Ok((buf, fmt));
        }
    }
    bail!("{}: no data.tar member (not a .deb?)", deb.display())
}

/// Every regular file of a .deb's data (merged-/usr path, `/`-rooted) with its sha256.
pub(crate) fn deb_files(deb: &Path) -> Result<Vec<(String, String)>> {
    let (buf, fmt) = deb_data(deb)?;
    let mut tar = tar::Archive::new(archive::decoder(fmt, std::io::Cursor::new(buf))?);
    let mut out = Vec::new();
    for entry in tar.entries().with_context(|| format!("reading {}", deb.display()))? {
        let mut entry = entry.with_context(|| format!("reading {}", deb.display()))?;
        if entry.header().entry_type() != tar::EntryType::Regular {
            continue;
        }
        let Some(rel) = archive::safe_relative(&entry.path()?, 0)? else { continue };
        let path = format!("/{}", merged_usr(&rel).display());
        let (sha, _) = reprovm_fs::hash::sha256_reader(&mut entry)?;
        out.push((path, sha));
    }
    Ok(out)
}

/// The manifest of the materialised root in `dir` (`dir/manifest.json`).
pub(crate) fn read_manifest(dir: &Path) -> Result<ToolchainManifest> {
    let manifest_path = dir.join("manifest.json");
    let text = std::fs::read(&manifest_path)
        .with_context(|| format!("reading {}", manifest_path.display()))?;
    serde_json::from_slice::<ToolchainManifest>(&text).with_context(|| {
        format!("{}: damaged; remove {} and run again", manifest_path.display(), dir.display())
    })
}

/// The most one package's data.tar may hold once decompressed.
const MAX_DEB_DATA: u64 = 4 << 30;

/// One .deb's data.tar, decompressed.
pub(crate) fn deb_tar(deb: &Path) -> Result<Vec<u8>> {
    let (buf, fmt) = deb_data(deb)?;
    let mut tar = Vec::new();
    archive::decoder(fmt, std::io::Cursor::new(buf))?
        .take(MAX_DEB_DATA + 1)
        .read_to_end(&mut tar)
        .with_context(|| format!("decompressing {}", deb.display()))?;
    anyhow::ensure!(
        tar.len() as u64 <= MAX_DEB_DATA,
        "{}: its data.tar holds more than {} GiB",
        deb.display(),
        MAX_DEB_DATA >> 30
    );
    Ok(tar)
}

/// Extract a .deb's decompressed data.tar into `root` (merged /usr). Its own symlinks are
/// checked at once (so a refusal names the package); the whole root is checked again at the
/// end.
pub(crate) fn unpack_tar(tar: Vec<u8>, root: &Dir) -> Result<()> {
    let links = archive::extract_tar(
        Box::new(std::io::Cursor::new(tar)),
        root,
        0,
        &merged_usr,
        archive::Links::RootFileSystem,
    )?;
    archive::check_links(root, Some(&links), archive::Links::RootFileSystem)
}

/// Extract one .deb's data into `root` (merged /usr), as `unpack_tar`.
#[cfg(test)]
pub(crate) fn unpack_deb(deb: &Path, root: &Dir) -> Result<()> {
    unpack_tar(deb_tar(deb)?, root)
}

/// What maintainer scripts and update-alternatives would have done.
fn fixups(root: &Dir) -> Result<()> {
    for (link, target) in [
        ("usr/bin/sh", "dash"),
        ("usr/bin/awk", "mawk"),
        ("usr/bin/cc", "gcc"),
        ("usr/bin/c++", "g++"),
        ("usr/bin/cpp", "cpp-12"),
        ("usr/bin/yacc", "bison.yacc"),
        ("usr/bin/lex", "flex"),
        ("usr/bin/which", "which.debianutils"),
        ("usr/bin/pager", "less"),
    ] {
        let link = Path::new(link);
        let present = root.metadata(link)?.is_some();
        let target_there = root.resolve_in_root(&link.with_file_name(target), true).is_ok();
        if !present && target_there {
            root.symlink(Path::new(target), link)?;
        }
    }
    for (file, text) in [
        ("etc/passwd", "root:x:0:0:root:/homeless:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n"),
        ("etc/group", "root:x:0:\nnogroup:x:65534:\n"),
        ("etc/hostname", "reprovm\n"),
        ("etc/hosts", "127.0.0.1 localhost reprovm\n"),
    ] {
        root.write_atomic(Path::new(file), text.as_bytes(), 0o644)?;
    }
    for m in sandbox::MOUNT_POINTS {
        root.create_dir_all(Path::new(m))?;
    }
    Ok(())
}

/// Rewrite every absolute symlink as a relative one to the same place in the root. The host
/// tools run on the host, not in a sandbox whose `/` is this root: QEMU opening
/// `usr/share/qemu/x -> /usr/share/seabios/x` must land in this root's seabios, never the
/// host's. Links were checked to stay inside the root, and `bin`, `lib`, ... are relative
/// links to `usr/...`, so `../` up to the root followed by the old target names the same file.
pub(crate) fn relative_links(root: &Dir) -> Result<()> {
    for e in root.walk()? {
        if e.kind != reprovm_fs::beneath::Kind::Symlink {
            continue;
        }
        let target = root.read_link(&e.path)?;
        let Ok(inside) = target.strip_prefix("/") else { continue };
        let depth = e.path.parent().map_or(0, |p| p.components().count());
        let mut relative: PathBuf = std::iter::repeat_n("..", depth).collect();
        relative.push(inside);
        root.remove_all(&e.path)?;
        root.symlink(&relative, &e.path)?;
    }
    Ok(())
}

/// The fetch request of a locked .deb: by its sha256, from each Debian mirror, then from
/// Debian's snapshot archive at the lock's time (after the pool has dropped the version).
pub(crate) fn deb_want(project: &Project, lockf: &LockFile, p: &super::resolve::LockedDeb) -> Want {
    let mirrors = project.debian_mirrors.iter().map(|m| format!("{m}/{}", p.filename));
    let snapshots = lockf
        .snapshot
        .iter()
        .flat_map(|t| debian::snapshot_urls(&project.debian_snapshots, t, &p.filename));
    Want {
        file: p.filename.rsplit('/').next().unwrap_or(&p.filename).to_string(),
        sha256: p.sha256.clone(),
        size: p.size,
        urls: mirrors.chain(snapshots).collect(),
        aliases: vec![],
    }
}

/// Build the root for `locks` (a set's base set's lock, then its own) into `dir`
/// (`dir/root` and `dir/manifest.json`).
pub(crate) fn materialize(
    project: &Project,
    fetcher: &Fetcher,
    set: super::PackageSet,
    locks: &[LockFile],
    dir: &Path,
    _lock: &crate::model::store::StoreLock,
    workers: usize,
) -> Result<()> {
    let timer = progress::Timer::start();
    let count: usize = locks.iter().map(|l| l.packages.len()).sum();
    progress::say(&format!("materialising {count} packages from {}", set.lock(project).display()));
    let parent = Dir::create(dir.parent().context("toolchain directory has no parent")?)?;
    let name =
        dir.file_name().context("toolchain directory has no name")?.to_string_lossy().into_owned();
    let tmp_name = format!(".tmp-{name}-{}", std::process::id());
    parent.remove_all(Path::new(&tmp_name))?;
    let tmp = parent.create_dir_all(Path::new(&tmp_name))?;
    let root = tmp.create_dir_all(Path::new("root"))?;
    for d in ["bin", "sbin", "lib", "lib64"] {
        root.create_dir_all(&Path::new("usr").join(d))?;
        root.symlink(&Path::new("usr").join(d), Path::new(d))?;
    }
    // Name order (then architecture: an arm64 library next to its amd64 twin, whose shared
    // files are the same bytes), each .deb fetched with its own lock's snapshot time.
    let mut pkgs: Vec<(&LockFile, &super::resolve::LockedDeb)> =
        locks.iter().flat_map(|l| l.packages.iter().map(move |p| (l, p))).collect();
    pkgs.sort_by(|a, b| (&a.1.name, &a.1.arch).cmp(&(&b.1.name, &b.1.arch)));
    // Fetched and decompressed on `workers` threads (at most 4), as many packages ahead (each
    // held whole in memory until it is written: a few hundred MB at worst); written into the
    // root one at a time in the lock's order (a path two packages share ends as the later
    // one's).
    let workers = workers.min(4);
    reprovm_fs::parallel::map_in_order(
        &pkgs,
        workers,
        workers,
        |(lockf, p)| {
            let want = deb_want(project, lockf, p);
            let deb = fetcher.fetch(&want).with_context(|| {
                format!("package {} {} ({})", p.name, p.version, set.lock(project).display())
            })?;
            deb_tar(&deb).with_context(|| format!("unpacking {}", want.file))
        },
        |(_, p), tar| {
            let file = p.filename.rsplit('/').next().unwrap_or(&p.filename);
            unpack_tar(tar, &root).with_context(|| format!("unpacking {file}"))
        },
    )?;
    archive::check_links(&root, None, archive::Links::RootFileSystem)?;
    fixups(&root)?;
    if matches!(
        set,
        super::PackageSet::Tools | super::PackageSet::Archive | super::PackageSet::Cosign
    ) {
        relative_links(&root)?;
    }
    if set == super::PackageSet::Vagrant {
        // Debian ships Vagrant's system plugin list as `{}`, a version-0 file that Vagrant
        // rewrites as version 1 at its first start: in a read-only root it must already be.
        let plugins = Path::new("usr/share/vagrant-plugins/plugins.json");
        if root.metadata(plugins)?.is_some() {
            root.write_atomic(plugins, b"{\"version\":\"1\",\"installed\":{}}", 0o644)?;
        }
    }
    let tmp_path = parent.path().join(&tmp_name);
    // The build toolchain and Vagrant's root are sandbox roots: their programs need an ld.so
    // cache, written by the root's own ldconfig inside the sandbox. The Nix and host tools run
    // through their loader with an explicit library path and need none.
    if matches!(
        set,
        super::PackageSet::Build | super::PackageSet::Vagrant | super::PackageSet::Aarch64
    ) {
        let log = tmp_path.join("ldconfig.log");
        let spec = Spec {
            root: tmp_path.join("root"),
            binds: vec![],
            env: sandbox::base_env(TOOLCHAIN_EPOCH, 1),
            cwd: "/".into(),
            argv: vec!["/usr/sbin/ldconfig".into()],
            root_rw: true,
        };
        let code = sandbox::run(&spec, &tmp_path.join("ldconfig.json"), &log, None)?;
        anyhow::ensure!(
            code == 0,
            "ldconfig in the new toolchain failed: {}",
            reprovm_fs::util::tail_lines(&log, 20)
        );
        root.remove_all(Path::new("var/cache/ldconfig"))?;
        tmp.remove_all(Path::new("ldconfig.json"))?;
    }
    manifest::normalize(&tmp_path.join("root"), TOOLCHAIN_EPOCH)?;
    let tree = manifest::output_hash(&manifest::scan(&tmp_path.join("root"))?);
    let m = ToolchainManifest {
        tree_hash: tree.clone(),
        packages: pkgs.len(),
        lock_sha256: sha256_file(&set.lock(project))?.0,
    };
    tmp.write_atomic(Path::new("manifest.json"), &serde_json::to_vec_pretty(&m)?, 0o644)?;
    parent.remove_all(Path::new(&name))?;
    parent.rename(Path::new(&tmp_name), Path::new(&name))?;
    progress::say(&format!(
        "toolchain ready in {} (tree {}) -> {}",
        timer.elapsed(),
        &tree[..16],
        dir.display()
    ));
    Ok(())
}
