//! Pinned package sets: the build toolchain (Debian 12 packages in `pins/toolchain.lock`, whose
//! identity feeds every input hash) and the Nix tools the full tier builds with (Debian 13's
//! nix-bin in `pins/nix.lock`). Each is resolved by `resolve.rs` and materialised into a root by
//! `materialize.rs`. Also the `toolchain`, `sandbox-exec` and `nix` commands.

pub(crate) mod archive;
pub(crate) mod materialize;
pub(crate) mod resolve;

pub(crate) use materialize::read_manifest;

use crate::mechanisms::fetch::Fetcher;
use crate::model::arch::Arch;
use crate::model::manifest;
use crate::model::project::Project;
use crate::model::store::StoreLock;
use anyhow::{Context, Result};
use reprovm_fs::hash::Hasher;
use reprovm_sandbox as sandbox;
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub(crate) use materialize::deb_want;
pub(crate) use resolve::LockFile;
pub(crate) use resolve::LockedDeb;
pub(crate) use resolve::{lock, resolve_set_over, ResolvedLock};

/// A pinned set of Debian packages and where its spec and lock live.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PackageSet {
    /// The build toolchain: `toolchain/packages.toml`, `pins/toolchain.lock`.
    Build,
    /// Nix, for the full tier's Nix builds: `toolchain/nix.toml`, `pins/nix.lock`.
    Nix,
    /// The programs reprovm runs on the host (QEMU, firmware, ssh, the readers):
    /// `toolchain/tools.toml`, `pins/tools.lock`.
    Tools,
    /// Vagrant, the full tier's reader of the box: `toolchain/vagrant.toml`,
    /// `pins/vagrant.lock`; a sandbox root (Ruby needs its Debian paths).
    Vagrant,
    /// The arm64 cross toolchain and arm64 libraries, layered over the build toolchain's
    /// packages (one root holds both): `toolchain/aarch64.toml`, `pins/aarch64.lock`. A set of
    /// its own so that the x86_64 toolchain's identity, and every x86_64 input hash, stay.
    Aarch64,
    /// The Debian archive's keyring and the verifier of its signatures (sqv), and sq for the
    /// full tier's stand-in archive: `toolchain/archive.toml`, `pins/archive.lock`.
    Archive,
    /// Sigstore's cosign (Debian trixie's 2.5), the full tier's second verifier of pushed
    /// images' signatures and attestations: `toolchain/cosign.toml`, `pins/cosign.lock`.
    Cosign,
}

impl PackageSet {
    pub(crate) const ALL: [PackageSet; 7] = [
        PackageSet::Build,
        PackageSet::Nix,
        PackageSet::Tools,
        PackageSet::Vagrant,
        PackageSet::Aarch64,
        PackageSet::Archive,
        PackageSet::Cosign,
    ];

    /// Every set with its name on the command line and what it is.
    pub const VALUES: [(PackageSet, &'static str, &'static str); 7] = [
        (PackageSet::Build, "build", "the build toolchain: toolchain/packages.toml"),
        (PackageSet::Nix, "nix", "Nix for the full tier: toolchain/nix.toml"),
        (PackageSet::Tools, "tools", "the host tools: toolchain/tools.toml"),
        (PackageSet::Vagrant, "vagrant", "Vagrant for the full tier: toolchain/vagrant.toml"),
        (
            PackageSet::Aarch64,
            "aarch64",
            "the arm64 cross toolchain over the build toolchain: toolchain/aarch64.toml",
        ),
        (
            PackageSet::Archive,
            "archive",
            "Debian's archive keyring and its verifier (sqv): toolchain/archive.toml",
        ),
        (PackageSet::Cosign, "cosign", "Sigstore's cosign: toolchain/cosign.toml"),
    ];

    /// The toolchain that builds for `arch`.
    pub(crate) fn for_arch(arch: Arch) -> PackageSet {
        match arch {
            Arch::X86_64 => PackageSet::Build,
            Arch::Aarch64 => PackageSet::Aarch64,
        }
    }

    /// The set whose packages this one's root also holds (it is layered over them).
    pub(crate) fn base(self) -> Option<PackageSet> {
        match self {
            PackageSet::Aarch64 => Some(PackageSet::Build),
            _ => None,
        }
    }

    pub(crate) fn spec(self, project: &Project) -> PathBuf {
        project.root.join("toolchain").join(match self {
            PackageSet::Build => "packages.toml",
            PackageSet::Nix => "nix.toml",
            PackageSet::Tools => "tools.toml",
            PackageSet::Vagrant => "vagrant.toml",
            PackageSet::Aarch64 => "aarch64.toml",
            PackageSet::Archive => "archive.toml",
            PackageSet::Cosign => "cosign.toml",
        })
    }

    pub(crate) fn lock(self, project: &Project) -> PathBuf {
        match self {
            PackageSet::Build => project.toolchain_lock(),
            PackageSet::Nix => project.pins.join("nix.lock"),
            PackageSet::Tools => project.pins.join("tools.lock"),
            PackageSet::Vagrant => project.pins.join("vagrant.lock"),
            PackageSet::Aarch64 => project.pins.join("aarch64.lock"),
            PackageSet::Archive => project.pins.join("archive.lock"),
            PackageSet::Cosign => project.pins.join("cosign.lock"),
        }
    }

    fn domain(self) -> &'static str {
        match self {
            PackageSet::Build => "reprovm-toolchain",
            PackageSet::Nix => "reprovm-nix-tools",
            PackageSet::Tools => "reprovm-host-tools",
            PackageSet::Vagrant => "reprovm-vagrant",
            PackageSet::Aarch64 => "reprovm-toolchain-aarch64",
            PackageSet::Archive => "reprovm-debian-archive",
            PackageSet::Cosign => "reprovm-cosign",
        }
    }
}

/// Bump when materialisation changes what ends up in the root.
const MATERIALIZER_VERSION: &str = "3";
/// Timestamps of every toolchain file.
const TOOLCHAIN_EPOCH: i64 = 1_704_067_200;

/// A command running `program` from a materialised Nix tools root through that root's own
/// dynamic loader and libraries: the host's libc is not involved, nor replaced.
pub(crate) fn nix_command(root: &Path, program: &str) -> Result<std::process::Command> {
    anyhow::ensure!(
        !program.is_empty() && program.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-'),
        "`{program}` is not a Nix program name"
    );
    let dir = reprovm_fs::beneath::Dir::open(root)?;
    let binary =
        dir.resolve_in_root(&Path::new("/usr/bin").join(program), true).with_context(|| {
            format!("`{program}` is not a program of the pinned Nix (pins/nix.lock)")
        })?;
    // argv[0] selects the program inside Nix's multi-call binary.
    let mut c = root_program(root, &binary, program)?;
    c.env("NIX_CONFIG", nix_config(root, std::env::var("NIX_CONFIG").ok().as_deref()));
    Ok(c)
}

/// Library directories of a materialised root that its programs search, in ld.so's order
/// (Nix keeps its own libraries in a subdirectory).
const ROOT_LIBRARY_DIRS: [&str; 3] =
    ["usr/lib/x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/nix", "usr/lib"];

/// A command running the program `file` (relative to `root`, already resolved inside it) on
/// the host with the root's own dynamic loader and libraries, seen by itself as `argv0`. A
/// dynamic program runs as `ROOT/LOADER --argv0 ARGV0 --library-path ROOT/LIBS ROOT/FILE`, so
/// no library of the host is loaded (the path replaces the host's ld.so cache; it is not in
/// the environment, so children the program starts are unaffected); a static one runs as it is.
pub(crate) fn root_program(root: &Path, file: &Path, argv0: &str) -> Result<std::process::Command> {
    let dir = reprovm_fs::beneath::Dir::open(root)?;
    let interpreter = reprovm_fs::elf::interpreter(&mut dir.open_file(file)?)
        .with_context(|| format!("{}", root.join(file).display()))?;
    let Some(interpreter) = interpreter else {
        let mut c = std::process::Command::new(root.join(file));
        std::os::unix::process::CommandExt::arg0(&mut c, argv0);
        return Ok(c);
    };
    let loader = dir.resolve_in_root(Path::new(&interpreter), true).with_context(|| {
        format!("the loader {interpreter} of {} is not in {}", file.display(), root.display())
    })?;
    let libs: Vec<String> = ROOT_LIBRARY_DIRS
        .iter()
        .map(|l| root.join(l))
        .filter(|p| p.is_dir())
        .map(|p| p.display().to_string())
        .collect();
    let mut c = std::process::Command::new(root.join(loader));
    c.arg("--argv0").arg(argv0).arg("--library-path").arg(libs.join(":")).arg(root.join(file));
    Ok(c)
}

/// Settings the pinned Nix needs because it runs from a tools root, not from `/usr`, followed
/// by the caller's own `NIX_CONFIG` (later lines win, so the caller can override them):
/// - `build-hook =`: the default hook re-executes `/proc/self/exe`, which is the dynamic
///   loader here, not Nix (the tests build locally; remote builders need an installed Nix);
/// - `sandbox-paths`: Debian's build of Nix gives its sandbox `/bin/sh` from
///   `/usr/bin/bash-static`, which is inside the tools root, not on the host.
pub(crate) fn nix_config(root: &Path, user: Option<&str>) -> String {
    let mut conf = format!(
        "build-hook =\nsandbox-paths = /bin/sh={}\n",
        root.join("usr/bin/bash-static").display()
    );
    if let Some(user) = user {
        conf.push_str(user);
        conf.push('\n');
    }
    conf
}

/// A materialised toolchain root and what it is.
#[derive(Debug, Clone)]
pub(crate) struct Toolchain {
    /// sha256 over the lock file and the materializer version (or `host-toolchain-…`).
    pub id: String,
    pub root: PathBuf,
    pub version_label: String,
}

/// What the host toolchain's outputs and messages are marked with.
const HOST_MARK: &str = "HOST TOOLCHAIN: not pinned, development only";

/// A toolchain's identity as a build's header shows it: 16 hex digits, or the host's whole
/// identity with its mark.
pub(crate) fn describe(id: &str) -> String {
    if id.starts_with("host-") {
        format!("{id} ({HOST_MARK})")
    } else {
        id[..16.min(id.len())].to_string()
    }
}

/// `out/toolchain/<id>/manifest.json`: what the materialised root holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct ToolchainManifest {
    /// Output hash (as for store entries) of the whole root.
    pub tree_hash: String,
    pub packages: usize,
    pub lock_sha256: String,
}

/// The toolchain identity without materialising it (for `plan`).
pub(crate) fn identity(project: &Project) -> Result<String> {
    match pinned_identity(project)? {
        Some(id) => Ok(id),
        None => {
            // host_root writes under out/toolchain: not beside a gc or a sweep.
            let _store = crate::model::store::store_shared(&project.out)?;
            Ok(host_root(project)?.0)
        }
    }
}

/// A package set's identity: what its root holds (each package's name, version, architecture,
/// file and sha256, and how they are put together), not where the files may be fetched from.
fn set_identity(set: PackageSet, lock: &LockFile) -> String {
    let mut h = Hasher::new(set.domain());
    h.field("materializer", MATERIALIZER_VERSION.as_bytes());
    h.field("suite", lock.suite.as_bytes());
    let mut pkgs: Vec<_> = lock.packages.iter().collect();
    pkgs.sort_by(|a, b| (&a.name, &a.arch).cmp(&(&b.name, &b.arch)));
    for p in pkgs {
        let line =
            format!("{} {} {} {} {} {}", p.name, p.version, p.arch, p.filename, p.size, p.sha256);
        h.field("package", line.as_bytes());
    }
    h.finish()
}

/// The locks whose packages make up a set's root: its base set's first, then its own.
pub(crate) fn read_locks(project: &Project, set: PackageSet) -> Result<Vec<LockFile>> {
    let mut locks = Vec::new();
    if let Some(base) = set.base() {
        locks.push(read_lock(project, base)?);
    }
    let own = read_lock(project, set)?;
    // A layered lock is resolved against its base's: a base locked again since then may hold
    // what it left out at other versions, or twins of its foreign libraries at other versions.
    if let (Some(base), Some(base_lock)) = (set.base(), locks.first()) {
        for p in &own.packages {
            if let Some(b) = base_lock.packages.iter().find(|b| b.name == p.name) {
                let twin = p.arch != b.arch && p.arch != "all" && b.arch != "all";
                anyhow::ensure!(
                    twin && b.version == p.version,
                    "{} was locked against another {}: `{}` is {} {} there and {} {} here; run `cargo xtask toolchain lock {}`",
                    set.lock(project).display(),
                    base.lock(project).display(),
                    p.name,
                    b.version,
                    b.arch,
                    p.version,
                    p.arch,
                    PackageSet::VALUES.iter().find(|v| v.0 == set).map_or("", |v| v.1)
                );
            }
        }
    }
    locks.push(own);
    Ok(locks)
}

/// The identity of a set from all its locks (the base set's packages are part of what the
/// root holds).
fn locks_identity(set: PackageSet, locks: &[LockFile]) -> String {
    match locks {
        [one] => set_identity(set, one),
        _ => {
            let merged = LockFile {
                suite: locks.iter().map(|l| l.suite.as_str()).collect::<Vec<_>>().join("+"),
                snapshot: None,
                packages: locks.iter().flat_map(|l| l.packages.iter().cloned()).collect(),
            };
            set_identity(set, &merged)
        }
    }
}

pub(crate) fn read_lock(project: &Project, set: PackageSet) -> Result<LockFile> {
    let path = set.lock(project);
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("reading {} (create it with `cargo xtask toolchain lock`)", path.display())
    })?;
    toml::from_str(&text).map_err(|e| anyhow::format_err!("{}: {}", path.display(), e.message()))
}

/// The toolchain root for the current lock, materialising it if needed. The caller holds
/// the store lock.
pub(crate) fn ensure(project: &Project, fetcher: &Fetcher, lock: &StoreLock) -> Result<Toolchain> {
    if project.host_toolchain {
        let (id, root) = host_root(project)?;
        return Ok(Toolchain { id, root, version_label: HOST_MARK.into() });
    }
    ensure_set(project, fetcher, PackageSet::for_arch(project.arch), lock)
}

/// The identity of the pinned build toolchain, read from its lock without materialising it
/// (builds whose every node is substituted never need its root); None in `--host-toolchain`
/// mode, whose identity is the hash of a root that must be made first.
pub(crate) fn pinned_identity(project: &Project) -> Result<Option<String>> {
    if project.host_toolchain {
        return Ok(None);
    }
    let set = PackageSet::for_arch(project.arch);
    Ok(Some(locks_identity(set, &read_locks(project, set)?)))
}

/// The directory name (under out/toolchain) of a package set's root, whether or not it is
/// materialised; None when its lock is missing.
pub(crate) fn set_dir(project: &Project, set: PackageSet) -> Result<Option<String>> {
    if !set.lock(project).is_file() || set.base().is_some_and(|b| !b.lock(project).is_file()) {
        return Ok(None);
    }
    let id = locks_identity(set, &read_locks(project, set)?);
    Ok(Some(id[..32].to_string()))
}

/// The root of a package set, materialising it if needed (which writes `out/toolchain`:
/// hence the store lock).
pub(crate) fn ensure_set(
    project: &Project,
    fetcher: &Fetcher,
    set: PackageSet,
    lock: &StoreLock,
) -> Result<Toolchain> {
    ensure_set_with(project, fetcher, set, lock, reprovm_fs::util::default_jobs())
}

/// `ensure_set`, its packages decompressed on `workers` threads if it has to be made (0: one
/// after another on this thread; the root is the same bytes whatever the count, and `bench
/// toolchain` compares 0 with the cores).
pub(crate) fn ensure_set_with(
    project: &Project,
    fetcher: &Fetcher,
    set: PackageSet,
    lock: &StoreLock,
    workers: usize,
) -> Result<Toolchain> {
    let (toolchain, locks, dir) = locate_set(project, set)?;
    if !dir.join("manifest.json").is_file() {
        // One process materialises a root; another that needs it waits, then finds it made.
        let name = dir.file_name().context("toolchain root name")?.to_string_lossy();
        let locks_dir = project.out.join("toolchain").join(crate::model::store::ENTRY_LOCKS);
        let _root = reprovm_fs::lock::Lock::exclusive(&locks_dir.join(format!("{name}.lock")))?;
        if !dir.join("manifest.json").is_file() {
            materialize::materialize(project, fetcher, set, &locks, &dir, lock, workers)?;
        }
    }
    Ok(toolchain)
}

/// The root of a package set if it is already materialised. Needs no lock: a root appears by
/// a rename, complete with its manifest, and is never changed afterwards.
pub(crate) fn find_set(project: &Project, set: PackageSet) -> Result<Option<Toolchain>> {
    let (toolchain, _, dir) = locate_set(project, set)?;
    Ok(dir.join("manifest.json").is_file().then_some(toolchain))
}

/// The root of a package set, materialised first when it is not yet: the store lock is taken
/// only then (a running build holds it, and the first use waits for it). What the commands
/// over one set (`tool`, `nix`, `vagrant`) share.
pub(crate) fn find_or_ensure_set(
    project: &Project,
    fetcher: &Fetcher,
    set: PackageSet,
) -> Result<Toolchain> {
    match find_set(project, set)? {
        Some(t) => Ok(t),
        None => {
            let lock = crate::model::store::store_shared(&project.out)?;
            ensure_set(project, fetcher, set, &lock)
        }
    }
}

/// Where the root of a package set lives (`out/toolchain/ID`), checking the manifest of an
/// existing one.
fn locate_set(project: &Project, set: PackageSet) -> Result<(Toolchain, Vec<LockFile>, PathBuf)> {
    let locks = read_locks(project, set)?;
    let lockf = locks.last().context("a package set without a lock")?;
    let id = locks_identity(set, &locks);
    let key = match set {
        PackageSet::Build => "gcc-12",
        PackageSet::Nix => "nix-bin",
        PackageSet::Tools => "qemu-system-x86",
        PackageSet::Vagrant => "vagrant",
        PackageSet::Aarch64 => "gcc-12-aarch64-linux-gnu",
        PackageSet::Archive => "sqv",
        PackageSet::Cosign => "cosign",
    };
    let version =
        lockf.packages.iter().find(|p| p.name == key).map(|p| format!("{key} {}", p.version));
    let label = format!("debian {} {}", lockf.suite, version.unwrap_or_default());
    let dir = project.out.join("toolchain").join(&id[..32]);
    if dir.join("manifest.json").is_file() {
        read_manifest(&dir)?;
    }
    Ok((Toolchain { id, root: dir.join("root"), version_label: label }, locks, dir))
}

/// Development mode: a root of host programs and their libraries (see sandbox::testroot).
/// Its identity is the hash of its tree, prefixed so it can never pass for a pinned one.
fn host_root(project: &Project) -> Result<(String, PathBuf)> {
    let base = reprovm_fs::beneath::Dir::create(&project.out.join("toolchain"))?;
    let tmp_name = format!(".tmp-host-{}", std::process::id());
    base.remove_all(Path::new(&tmp_name))?;
    let root = base.path().join(&tmp_name).join("root");
    sandbox::testroot::make(&root)?;
    manifest::normalize(&root, TOOLCHAIN_EPOCH)?;
    let tree = manifest::output_hash(&manifest::scan(&root)?);
    let id = format!("host-toolchain-{}", &tree[..48]);
    // Another process may be putting the same root in place (builds share the store).
    let locks_dir = project.out.join("toolchain").join(crate::model::store::ENTRY_LOCKS);
    let _placing = reprovm_fs::lock::Lock::exclusive(&locks_dir.join(format!("{id}.lock")))?;
    if base.metadata(&Path::new(&id).join("root"))?.is_some() {
        base.remove_all(Path::new(&tmp_name))?;
    } else {
        base.remove_all(Path::new(&id))?;
        base.rename(Path::new(&tmp_name), Path::new(&id))?;
    }
    Ok((id.clone(), base.path().join(&id).join("root")))
}

#[cfg(test)]
mod tests {
    use super::resolve::LockedDeb;
    use super::*;
    use reprovm_fs::beneath::Dir;

    #[test]
    fn a_layered_set_is_its_base_and_itself_and_refuses_a_base_locked_again() {
        let t = tempfile::tempdir().unwrap();
        let mut project = Project::new(None, Some(t.path().join("out")), None);
        project.pins = t.path().join("pins");
        std::fs::create_dir_all(&project.pins).unwrap();
        let deb = |name: &str, version: &str, arch: &str| LockedDeb {
            name: name.into(),
            version: version.into(),
            arch: arch.into(),
            suite: "bookworm".into(),
            filename: format!("pool/{name}_{version}_{arch}.deb"),
            size: 1,
            sha256: "0".repeat(64),
        };
        let write = |set: PackageSet, debs: Vec<LockedDeb>| {
            let lock = LockFile { suite: "bookworm".into(), snapshot: None, packages: debs };
            std::fs::write(set.lock(&project), toml::to_string(&lock).unwrap()).unwrap();
        };
        write(PackageSet::Build, vec![deb("gcc-12", "12", "amd64"), deb("libc6", "2.36", "amd64")]);
        write(
            PackageSet::Aarch64,
            vec![deb("gcc-12-aarch64-linux-gnu", "12", "amd64"), deb("libc6", "2.36", "arm64")],
        );
        let locks = read_locks(&project, PackageSet::Aarch64).unwrap();
        assert_eq!(locks.len(), 2);
        let base_id = set_dir(&project, PackageSet::Build).unwrap().unwrap();
        let layered_id = set_dir(&project, PackageSet::Aarch64).unwrap().unwrap();
        assert_ne!(base_id, layered_id);
        // The base locked again at another glibc: the arm64 twin no longer matches.
        write(PackageSet::Build, vec![deb("gcc-12", "12", "amd64"), deb("libc6", "2.37", "amd64")]);
        let e = read_locks(&project, PackageSet::Aarch64).unwrap_err().to_string();
        assert!(e.contains("`libc6` is 2.37 amd64 there and 2.36 arm64 here"), "{e}");
        assert!(e.contains("cargo xtask toolchain lock aarch64"), "{e}");
        // A package the layered set holds natively that the base now holds too.
        write(
            PackageSet::Build,
            vec![deb("gcc-12-aarch64-linux-gnu", "12", "amd64"), deb("libc6", "2.36", "amd64")],
        );
        assert!(read_locks(&project, PackageSet::Aarch64).is_err());
    }

    #[test]
    fn deb_with_wrong_hash_is_refused() {
        let fake_deb = b"!<arch>\nnot really a deb".to_vec();
        let base = crate::testutil::serve(vec![(
            "/debian/pool/main/f/fake/fake_1_amd64.deb",
            200,
            fake_deb,
            None,
        )]);
        let t = tempfile::tempdir().unwrap();
        let mut project = Project::new(None, Some(t.path().join("out")), None);
        project.pins = t.path().join("pins");
        project.debian_mirrors = vec![format!("{base}/debian")];
        std::fs::create_dir_all(&project.pins).unwrap();
        let lock = LockFile {
            suite: "bookworm".into(),
            snapshot: None,
            packages: vec![LockedDeb {
                name: "fake".into(),
                version: "1".into(),
                arch: "amd64".into(),
                suite: "bookworm".into(),
                filename: "pool/main/f/fake/fake_1_amd64.deb".into(),
                size: 25,
                sha256: "0".repeat(64),
            }],
        };
        std::fs::write(project.toolchain_lock(), toml::to_string(&lock).unwrap()).unwrap();
        let fetcher = Fetcher::new(&project.downloads, vec![], false);
        let store = crate::model::store::store_exclusive(&project.out).unwrap();
        let e = format!("{:#}", ensure(&project, &fetcher, &store).unwrap_err());
        assert!(
            e.contains("package fake 1 (")
                && e.contains("toolchain.lock")
                && e.contains("hash mismatch"),
            "{e}"
        );
        assert!(!project.downloads.join("sha256").join("0".repeat(64)).exists());
        let any_root = std::fs::read_dir(project.out.join("toolchain"))
            .map(|mut d| d.any(|e| e.unwrap().path().join("manifest.json").exists()))
            .unwrap_or(false);
        assert!(!any_root);
    }

    #[test]
    fn merged_usr_mapping() {
        use materialize::merged_usr;
        assert_eq!(merged_usr(Path::new("bin/sh")), PathBuf::from("usr/bin/sh"));
        assert_eq!(
            merged_usr(Path::new("lib/x86_64-linux-gnu/libc.so.6")),
            PathBuf::from("usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(merged_usr(Path::new("etc/x")), PathBuf::from("etc/x"));
    }

    /// A .deb is a `!<arch>` file with a data.tar member: build one around a tar.
    fn deb_with(tar_gz: Vec<u8>) -> Vec<u8> {
        let mut out = Vec::new();
        let mut b = ar::Builder::new(&mut out);
        let mut add = |name: &str, data: &[u8]| {
            let h = ar::Header::new(name.as_bytes().to_vec(), data.len() as u64);
            b.append(&h, data).unwrap();
        };
        add("debian-binary", b"2.0\n");
        add("data.tar.gz", &tar_gz);
        out
    }

    /// dpkg reads data.tar.gz as a stream of gzip members; so must the extractor (the
    /// toolchain used to stop after the first member and lose the rest silently).
    #[test]
    fn multi_member_gzip_data_is_read_whole() {
        use std::io::Write;
        let tar_of = |name: &str, data: &[u8], finish: bool| {
            let mut b = tar::Builder::new(Vec::new());
            let mut h = tar::Header::new_gnu();
            h.set_path(name).unwrap();
            h.set_size(data.len() as u64);
            h.set_mode(0o644);
            h.set_cksum();
            b.append(&h, data).unwrap();
            if finish {
                b.into_inner().unwrap()
            } else {
                let mut v = b.into_inner().unwrap();
                v.truncate(v.len() - 1024); // no end-of-archive marker in the first member
                v
            }
        };
        let mut gz = Vec::new();
        for (tar, finish) in
            [(tar_of("usr/a", b"first", false), false), (tar_of("usr/b", b"second", true), true)]
        {
            let mut e = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
            e.write_all(&tar).unwrap();
            gz.extend(e.finish().unwrap());
            let _ = finish;
        }
        let t = tempfile::tempdir().unwrap();
        let deb = t.path().join("m.deb");
        std::fs::write(&deb, deb_with(gz)).unwrap();
        materialize::unpack_deb(&deb, &Dir::create(&t.path().join("root")).unwrap()).unwrap();
        assert_eq!(std::fs::read(t.path().join("root/usr/b")).unwrap(), b"second");
    }

    #[test]
    fn hostile_debs_are_refused_with_the_entry_named() {
        use reprovm_fs::archive::tests_support::{hostile_tar, Entries};
        use tar::EntryType::{Directory, Link, Regular, Symlink};
        let t = tempfile::tempdir().unwrap();
        let sentinel = t.path().join("sentinel");
        std::fs::create_dir(&sentinel).unwrap();
        let cases: [(Entries, &str); 4] = [
            // Each link harmless alone, escaping together (relative chains may not climb
            // above the root even in a root file system).
            (
                &[
                    ("./usr/", Directory, ""),
                    ("./usr/a", Symlink, ".."),
                    ("./usr/b", Symlink, "a/../../sentinel"),
                ],
                "usr/b",
            ),
            (&[("./etc/l", Symlink, "/usr"), ("./etc/l/x", Regular, "")], "etc/l/x"),
            (&[("./etc/d", Symlink, "."), ("./etc/d/", Directory, "")], "etc/d"),
            (&[("./etc/h", Link, "../../sentinel")], "path traversal"),
        ];
        for (entries, named) in cases {
            let deb = t.path().join("x.deb");
            std::fs::write(&deb, deb_with(hostile_tar(entries))).unwrap();
            let root = Dir::create(&t.path().join("root")).unwrap();
            let e = format!("{:#}", materialize::unpack_deb(&deb, &root).unwrap_err());
            assert!(e.contains(named), "{named}: {e}");
            t.path()
                .join("root")
                .exists()
                .then(|| std::fs::remove_dir_all(t.path().join("root")).unwrap());
        }
        assert_eq!(std::fs::read_dir(&sentinel).unwrap().count(), 0);
        // Through the real path: a local --mirror directory serving a hostile .deb whose hash
        // is the locked one. Materialisation stops naming the package and the entry.
        let mirror = t.path().join("mirror");
        std::fs::create_dir(&mirror).unwrap();
        let bytes =
            deb_with(hostile_tar(&[("./etc/l", Symlink, "/usr"), ("./etc/l/x", Regular, "")]));
        std::fs::write(mirror.join("hostile_1_amd64.deb"), &bytes).unwrap();
        let mut project = Project::new(None, Some(t.path().join("out")), None);
        project.pins = t.path().join("pins");
        project.debian_mirrors = vec![];
        std::fs::create_dir_all(&project.pins).unwrap();
        let lock = LockFile {
            suite: "bookworm".into(),
            snapshot: None,
            packages: vec![LockedDeb {
                name: "hostile".into(),
                version: "1".into(),
                arch: "amd64".into(),
                suite: "bookworm".into(),
                filename: "pool/main/h/hostile/hostile_1_amd64.deb".into(),
                size: bytes.len() as u64,
                sha256: reprovm_fs::hash::sha256_bytes(&bytes),
            }],
        };
        std::fs::write(project.toolchain_lock(), toml::to_string(&lock).unwrap()).unwrap();
        let store = crate::model::store::store_exclusive(&project.out).unwrap();
        let fetcher = Fetcher::new(&project.downloads, vec![mirror], true);
        let e = format!("{:#}", ensure(&project, &fetcher, &store).unwrap_err());
        assert!(
            e.contains("unpacking hostile_1_amd64.deb") && e.contains("entry `etc/l/x`"),
            "{e}"
        );
        assert_eq!(std::fs::read_dir(&sentinel).unwrap().count(), 0);
        // Absolute targets are the root's own: allowed in a root file system.
        let deb = t.path().join("ok.deb");
        std::fs::write(
            &deb,
            deb_with(hostile_tar(&[
                ("./usr/bin/", Directory, ""),
                ("./usr/bin/awk", Symlink, "/etc/alternatives/awk"),
            ])),
        )
        .unwrap();
        materialize::unpack_deb(&deb, &Dir::create(&t.path().join("root")).unwrap()).unwrap();
    }
}
