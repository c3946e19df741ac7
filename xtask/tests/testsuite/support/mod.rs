//! Helpers shared by the test suite's modules.

pub mod registry;

use std::collections::BTreeMap;
use std::fs;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// The repository root.
pub fn repo() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().unwrap().to_path_buf()
}

/// The fixture recipes of the fast tier.
pub fn fixtures() -> PathBuf {
    repo().join("tests/fixtures/sandbox")
}

/// `cargo xtask` (the binary under test), with the caller's REPROVM_* locations removed.
pub fn xtask() -> Command {
    let mut c = Command::new(env!("CARGO_BIN_EXE_xtask"));
    c.env_remove("REPROVM_RECIPES").env_remove("REPROVM_OUT").env_remove("REPROVM_CACHE");
    c
}

/// Run `cargo xtask ARGS` in the repository's own out/, stderr passed through.
pub fn xtask_in_repo(args: &[&str]) -> Output {
    xtask().args(args).stderr(std::process::Stdio::inherit()).output().unwrap()
}

/// Like [`xtask_in_repo`], failing the test unless it succeeds; returns stdout.
pub fn xtask_ok(args: &[&str]) -> String {
    let o = xtask_in_repo(args);
    assert!(o.status.success(), "cargo xtask {} failed", args.join(" "));
    String::from_utf8(o.stdout).unwrap()
}

/// Run `c`: whether it succeeded, and its stdout followed by its stderr.
pub fn captured(c: &mut Command) -> (bool, String) {
    let o = c.output().unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

/// Copy the fixture recipes to `dir/recipes`.
pub fn recipes_in(dir: &Path) -> PathBuf {
    let r = dir.join("recipes");
    fs::create_dir_all(&r).unwrap();
    for e in fs::read_dir(fixtures()).unwrap() {
        let e = e.unwrap();
        if e.file_type().unwrap().is_file() {
            fs::copy(e.path(), r.join(e.file_name())).unwrap();
        }
    }
    r
}

/// `xtask --host-toolchain --recipes R --out O build TARGET EXTRA...`
pub fn build(recipes: &Path, out: &Path, target: &str, extra: &[&str]) -> Output {
    xtask()
        .arg("--host-toolchain")
        .arg("--recipes")
        .arg(recipes)
        .arg("--out")
        .arg(out)
        .arg("build")
        .arg(target)
        .args(extra)
        .output()
        .unwrap()
}

pub fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

/// The store entry of `name` in `out` (there must be exactly one).
pub fn store_out(out: &Path, name: &str) -> PathBuf {
    let store = out.join("store");
    let found: Vec<PathBuf> = fs::read_dir(&store)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| {
            let n = p.file_name().unwrap().to_string_lossy().into_owned();
            !n.starts_with('.') && n.contains(&format!("-{name}-"))
        })
        .collect();
    assert_eq!(found.len(), 1, "entries for {name} in {}: {found:?}", store.display());
    found.into_iter().next().unwrap()
}

/// No temp or half-made entry in the store of `out`: every entry complete with its
/// manifest, and no layer file (substitution unpacks as it streams) anywhere in one.
pub fn store_is_clean(out: &Path) {
    for e in fs::read_dir(out.join("store")).unwrap() {
        let e = e.unwrap();
        let name = e.file_name().to_string_lossy().into_owned();
        if name == ".lock" || name == ".locks" {
            continue;
        }
        assert!(!name.starts_with('.'), "left in the store: {name}");
        assert!(e.path().join("manifest.json").is_file(), "{name} has no manifest.json");
        assert!(!e.path().join(".layer.tar.gz").exists(), "{name} kept a layer file");
    }
}

/// A command running `program` of the pinned host tools (`cargo xtask tool PROGRAM`):
/// QEMU, ssh, skopeo, umoci, unsquashfs, docker-registry, sgdisk, sfdisk, fsck.fat, mtools,
/// xorriso, qemu-img, as pins/tools.lock has them. Nothing is taken from the host.
pub fn tool(program: &str) -> Command {
    let mut c = xtask();
    c.args(["tool", program]);
    c
}

/// `program ARGS` of the pinned host tools must succeed; returns its stdout.
pub fn run_tool(program: &str, args: &[&str]) -> String {
    let o = tool(program).args(args).output().unwrap_or_else(|e| panic!("{program}: {e}"));
    assert!(
        o.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&o.stderr)
    );
    String::from_utf8(o.stdout).unwrap()
}

/// `umoci unpack --rootless` of the image tagged `tag` in `layout` into `dest` (by the
/// pinned umoci); returns its root file system, `dest/rootfs`.
pub fn umoci_unpack(layout: &Path, tag: &str, dest: &Path) -> PathBuf {
    run_tool(
        "umoci",
        &[
            "unpack",
            "--rootless",
            "--image",
            &format!("{}:{tag}", layout.display()),
            dest.to_str().unwrap(),
        ],
    );
    dest.join("rootfs")
}

/// The pinned host tools (pins/tools.lock: QEMU, OVMF, skopeo, umoci, docker-registry, …),
/// materialised (fetched like the toolchain) for a full-tier test that runs them; the test
/// fails, naming `why` and the error, when they cannot be.
pub fn host_tools(why: &str) {
    let o = xtask().args(["tool", "--list"]).output().unwrap();
    let err = String::from_utf8_lossy(&o.stderr);
    assert!(o.status.success(), "the pinned host tools are required here ({why}): {err}");
}

pub fn is_root() -> bool {
    // SAFETY: getuid has no preconditions.
    unsafe { libc::getuid() == 0 }
}

/// The gate of every full-tier test (`#[ignore = "full tier: …"]`), called first. The test
/// fails at once unless `REPROVM_FULL=1` (README's test command sets it: the tier downloads
/// pinned sources and programs, builds kernels and boots them), and holds the returned guard
/// for its life: full-tier tests run one at a time, none beside another in the repository's
/// out/ (fast tests, each in a temporary directory of its own, may run beside one). The guard
/// says when the test starts and how long it took.
pub fn full_tier() -> FullTier {
    static FULL_TIER: std::sync::Mutex<()> = std::sync::Mutex::new(());
    assert!(
        std::env::var("REPROVM_FULL").as_deref() == Ok("1"),
        "a full-tier test: run `REPROVM_FULL=1 cargo test -- --include-ignored` (README, \"The two commands\")"
    );
    // A full-tier test that failed poisoned the lock; the next one runs all the same.
    let lock = FULL_TIER.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
    let name = std::thread::current().name().unwrap_or("a full-tier test").to_string();
    eprintln!("==> full tier: {name}");
    FullTier { _lock: lock, name, started: std::time::Instant::now() }
}

/// A running full-tier test (see [`full_tier`]).
pub struct FullTier {
    _lock: std::sync::MutexGuard<'static, ()>,
    name: String,
    started: std::time::Instant,
}

impl Drop for FullTier {
    fn drop(&mut self) {
        let outcome = if std::thread::panicking() { "failed" } else { "done" };
        eprintln!(
            "==> full tier: {} {outcome} in {} s",
            self.name,
            self.started.elapsed().as_secs()
        );
    }
}

/// Type, mode and content (or link target) of every entry below `dir`: equal snapshots mean
/// nothing under `dir` changed.
pub fn snapshot(dir: &Path) -> BTreeMap<PathBuf, (String, u32, Vec<u8>)> {
    let mut out = BTreeMap::new();
    for e in walkdir::WalkDir::new(dir).min_depth(1) {
        let e = e.unwrap();
        let (p, m) = (e.path(), e.metadata().unwrap());
        let rel = p.strip_prefix(dir).unwrap().to_path_buf();
        let mode = m.permissions().mode();
        let entry = if m.file_type().is_symlink() {
            ("link", fs::read_link(p).unwrap().into_os_string().into_encoded_bytes())
        } else if m.is_dir() {
            ("dir", Vec::new())
        } else {
            ("file", fs::read(p).unwrap())
        };
        out.insert(rel, (entry.0.to_string(), mode, entry.1));
    }
    out
}

/// Write `data` into the file `p` whatever its mode (a store file is sealed read-only), as a
/// careless owner would, and give it its mode back.
pub fn scribble(p: &Path, data: &[u8]) {
    let mode = fs::symlink_metadata(p).unwrap().permissions().mode();
    fs::set_permissions(p, fs::Permissions::from_mode(mode | 0o200)).unwrap();
    fs::write(p, data).unwrap();
    fs::set_permissions(p, fs::Permissions::from_mode(mode)).unwrap();
}

/// Compile a C file into a static binary with the host's cc.
pub fn compile_static(src: &Path, dest: &Path) {
    let st = Command::new("cc")
        .args(["-static", "-O2", "-o"])
        .arg(dest)
        .arg(src)
        .status()
        .expect("cc (gcc with static libc, Debian: gcc libc6-dev) is needed by this test");
    assert!(st.success(), "compiling {}", src.display());
}

/// Copy a file or a directory tree (regular files, directories and symlinks, modes kept).
pub fn copy_tree(from: &Path, to: &Path) {
    let m = fs::symlink_metadata(from).unwrap_or_else(|e| panic!("{}: {e}", from.display()));
    if let Some(parent) = to.parent() {
        fs::create_dir_all(parent).unwrap();
    }
    if m.file_type().is_symlink() {
        std::os::unix::fs::symlink(fs::read_link(from).unwrap(), to).unwrap();
    } else if m.is_dir() {
        fs::create_dir_all(to).unwrap();
        for e in fs::read_dir(from).unwrap() {
            let e = e.unwrap();
            copy_tree(&e.path(), &to.join(e.file_name()));
        }
    } else {
        fs::copy(from, to).unwrap();
    }
}

/// Debian's docker-registry (of the pinned host tools) on a free loopback port with a
/// temporary config and storage; killed when dropped.
pub struct LocalRegistry {
    child: std::process::Child,
    pub addr: String,
    pub storage: PathBuf,
    _dir: tempfile::TempDir,
}

impl LocalRegistry {
    pub fn start() -> LocalRegistry {
        let dir = tempfile::tempdir().unwrap();
        let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let addr = format!("127.0.0.1:{port}");
        let storage = dir.path().join("storage");
        let config = dir.path().join("config.yml");
        fs::write(
            &config,
            format!(
                "version: 0.1\nlog:\n  level: error\nstorage:\n  filesystem:\n    rootdirectory: {}\nhttp:\n  addr: {addr}\n",
                storage.display()
            ),
        )
        .unwrap();
        // `xtask tool` replaces itself with the registry: the child is the registry.
        let child = tool("docker-registry")
            .arg("serve")
            .arg(&config)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the pinned docker-registry (cargo xtask tool docker-registry)");
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
        while std::net::TcpStream::connect(&addr).is_err() {
            assert!(std::time::Instant::now() < deadline, "the registry did not listen on {addr}");
            std::thread::sleep(std::time::Duration::from_millis(100));
        }
        LocalRegistry { child, addr, storage, _dir: dir }
    }

    /// The data file of a blob in the registry's storage.
    pub fn blob_file(&self, digest: &str) -> PathBuf {
        let hex = digest.trim_start_matches("sha256:");
        self.storage.join("docker/registry/v2/blobs/sha256").join(&hex[..2]).join(hex).join("data")
    }

    /// The manifest the registry holds under `repo:tag`, parsed.
    pub fn manifest(&self, repo: &str, tag: &str) -> serde_json::Value {
        let link = self
            .storage
            .join("docker/registry/v2/repositories")
            .join(repo)
            .join("_manifests/tags")
            .join(tag)
            .join("current/link");
        let digest =
            fs::read_to_string(&link).unwrap_or_else(|e| panic!("{}: {e}", link.display()));
        serde_json::from_slice(&fs::read(self.blob_file(digest.trim())).unwrap()).unwrap()
    }
}

impl Drop for LocalRegistry {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Fixture recipes (`tests/fixtures/NAME`) copied into a temporary directory, built over host
/// programs (`--host-toolchain`) into out dirs beside them, one per name.
pub struct Tiny {
    pub t: tempfile::TempDir,
    pub recipes: PathBuf,
}

impl Tiny {
    pub fn new(fixtures: &str) -> Tiny {
        let t = tempfile::tempdir().unwrap();
        let recipes = t.path().join("recipes");
        copy_tree(&repo().join("tests/fixtures").join(fixtures), &recipes);
        Tiny { t, recipes }
    }

    /// `p` in the temporary directory (an out dir, a key).
    pub fn path(&self, p: &str) -> PathBuf {
        self.t.path().join(p)
    }

    /// `xtask --host-toolchain --recipes RECIPES --out OUT ARGS`, OUT in the directory.
    pub fn command(&self, out: &str, args: &[&str]) -> Command {
        let mut c = on_host(&self.recipes, &self.path(out));
        c.args(args);
        c
    }
}

/// `xtask --host-toolchain --recipes RECIPES --out OUT`: builds over host programs.
pub fn on_host(recipes: &Path, out: &Path) -> Command {
    let mut c = xtask();
    c.arg("--host-toolchain").arg("--recipes").arg(recipes).arg("--out").arg(out);
    c
}

/// `cmd` on the guest whose SSH is forwarded from 127.0.0.1:`port`, logged in with `key`
/// through the pinned ssh: (success, stdout and stderr).
pub fn guest_ssh(port: u16, key: &Path, cmd: &str) -> (bool, String) {
    let o = tool("ssh")
        .args(["-F", "/dev/null", "-p", &port.to_string(), "-i"])
        .arg(key)
        .args(["-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null"])
        .args(["-o", "BatchMode=yes", "-o", "ConnectTimeout=10", "-o", "LogLevel=ERROR"])
        .args(["root@127.0.0.1", cmd])
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap();
    let text =
        format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr));
    (o.status.success(), text)
}

/// The validators (check-jsonschema, actionlint, the CycloneDX and SLSA readers), installed
/// from tests/python/requirements.txt (every wheel pinned by sha256) into a virtual
/// environment named by that file's hash; tests running at once make it once (a lock).
pub fn validators() -> PathBuf {
    let req = repo().join("tests/python/requirements.txt");
    let hash = registry::sha256_hex(&std::fs::read(&req).unwrap());
    let base = repo().join("out/validators");
    std::fs::create_dir_all(&base).unwrap();
    let lock = std::fs::File::create(base.join(".lock")).unwrap();
    use std::os::fd::AsRawFd;
    // SAFETY: flock on a file this function holds open; released when `lock` is dropped.
    assert_eq!(
        unsafe { libc::flock(lock.as_raw_fd(), libc::LOCK_EX) },
        0,
        "locking out/validators"
    );
    let venv = base.join(&hash[..16]);
    if venv.join("ready").is_file() {
        return venv;
    }
    let _ = std::fs::remove_dir_all(&venv);
    let status = Command::new("python3").arg("-m").arg("venv").arg(&venv).status().unwrap();
    assert!(status.success(), "python3 -m venv {} failed", venv.display());
    let status = Command::new(venv.join("bin/pip"))
        .args(["install", "--quiet", "--disable-pip-version-check", "--require-hashes"])
        .args(["--no-deps", "-r"])
        .arg(&req)
        .status()
        .unwrap();
    assert!(status.success(), "pip install -r {} failed", req.display());
    std::fs::write(venv.join("ready"), b"").unwrap();
    venv
}
