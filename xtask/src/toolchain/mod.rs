//! The pinned toolchain: Debian 12 packages resolved into `pins/toolchain.lock`
//! (`resolve.rs`), materialised into one root (`materialize.rs`). Its identity feeds every
//! input hash. Also the `toolchain` and `sandbox-exec` commands.

mod materialize;
mod resolve;

use crate::fetch::Fetcher;
use crate::hash::Hasher;
use crate::project::Project;
use crate::{lock, manifest, sandbox};
use anyhow::{Context, Result};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

pub use resolve::LockFile;

/// Bump when materialisation changes what ends up in the root.
const MATERIALIZER_VERSION: &str = "3";
/// Timestamps of every toolchain file.
const TOOLCHAIN_EPOCH: i64 = 1_704_067_200;

#[derive(clap::Args, Debug)]
pub struct ToolchainArgs {
    #[command(subcommand)]
    pub action: Option<ToolchainAction>,
}

#[derive(clap::Subcommand, Debug, Clone, Copy)]
pub enum ToolchainAction {
    /// Resolve toolchain/packages.toml against the Debian mirror into pins/toolchain.lock.
    Lock,
    /// Fetch, verify and extract every locked .deb into the toolchain store entry.
    Materialize,
    /// Print the toolchain identity and root.
    Show,
}

impl ToolchainArgs {
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<()> {
        match self.action.unwrap_or(ToolchainAction::Materialize) {
            ToolchainAction::Lock => resolve::lock(project),
            ToolchainAction::Materialize => {
                let _lock = lock::store_exclusive(&project.out)?;
                println!("{}", ensure(project, fetcher)?.root.display());
                Ok(())
            }
            ToolchainAction::Show => {
                println!("toolchain {}", identity(project)?);
                Ok(())
            }
        }
    }
}

#[derive(clap::Args, Debug)]
pub struct ExecArgs {
    #[arg(trailing_var_arg = true, required = true)]
    pub cmd: Vec<String>,
}

impl ExecArgs {
    /// Run the command in the sandbox over the toolchain; its exit code is ours.
    pub fn run(&self, project: &Project, fetcher: &Fetcher) -> Result<i32> {
        let tc = {
            let _lock = lock::store_exclusive(&project.out)?;
            ensure(project, fetcher)?
        };
        sandbox::exec_capture(&tc.root, &self.cmd)
    }
}

/// A materialised toolchain root and what it is.
#[derive(Debug, Clone)]
pub struct Toolchain {
    /// sha256 over the lock file and the materializer version (or `host-toolchain-…`).
    pub id: String,
    pub root: PathBuf,
    pub version_label: String,
}

impl Toolchain {
    pub fn label(&self) -> String {
        let short = if self.id.starts_with("host-") { &self.id[..] } else { &self.id[..16] };
        format!("{short} ({})", self.version_label)
    }
}

/// `out/toolchain/<id>/manifest.json`: what the materialised root holds.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct ToolchainManifest {
    /// Output hash (as for store entries) of the whole root.
    pub tree_hash: String,
    pub packages: usize,
    pub lock_sha256: String,
}

/// The toolchain identity without materialising it (for `plan`).
pub fn identity(project: &Project) -> Result<String> {
    if project.host_toolchain {
        return Ok(host_root(project)?.0);
    }
    let path = project.toolchain_lock();
    let text = std::fs::read_to_string(&path).with_context(|| {
        format!("reading {} (create it with `cargo xtask toolchain lock`)", path.display())
    })?;
    let mut h = Hasher::new("reprovm-toolchain");
    h.field("materializer", MATERIALIZER_VERSION.as_bytes());
    h.field("lock", text.as_bytes());
    Ok(h.finish())
}

pub fn read_lock(project: &Project) -> Result<LockFile> {
    let path = project.toolchain_lock();
    let text =
        std::fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::format_err!("{}: {}", path.display(), e.message()))
}

/// The toolchain root for the current lock, materialising it if needed. The caller holds
/// the store lock.
pub fn ensure(project: &Project, fetcher: &Fetcher) -> Result<Toolchain> {
    if project.host_toolchain {
        let (id, root) = host_root(project)?;
        return Ok(Toolchain {
            id,
            root,
            version_label: "HOST TOOLCHAIN: not pinned, development only".into(),
        });
    }
    let id = identity(project)?;
    let lockf = read_lock(project)?;
    let gcc =
        lockf.packages.iter().find(|p| p.name == "gcc-12").map(|p| format!("gcc {}", p.version));
    let label = format!("debian {} {}", lockf.suite, gcc.unwrap_or_default());
    let dir = project.out.join("toolchain").join(&id[..32]);
    let root = dir.join("root");
    let manifest_path = dir.join("manifest.json");
    if manifest_path.is_file() {
        let text = std::fs::read(&manifest_path)?;
        serde_json::from_slice::<ToolchainManifest>(&text).with_context(|| {
            format!("{}: damaged; remove {} and run again", manifest_path.display(), dir.display())
        })?;
        return Ok(Toolchain { id, root, version_label: label });
    }
    materialize::materialize(project, fetcher, &lockf, &dir)?;
    Ok(Toolchain { id, root, version_label: label })
}

/// Development mode: a root of host programs and their libraries (see sandbox::testroot).
/// Its identity is the hash of its tree, prefixed so it can never pass for a pinned one.
fn host_root(project: &Project) -> Result<(String, PathBuf)> {
    let base = crate::beneath::Dir::create(&project.out.join("toolchain"))?;
    let tmp_name = format!(".tmp-host-{}", std::process::id());
    base.remove_all(Path::new(&tmp_name))?;
    let root = base.path().join(&tmp_name).join("root");
    sandbox::testroot::make(&root)?;
    manifest::normalize(&root, TOOLCHAIN_EPOCH)?;
    let tree = manifest::output_hash(&manifest::scan(&root)?);
    let id = format!("host-toolchain-{}", &tree[..48]);
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
    use crate::beneath::Dir;

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
        let fetcher = Fetcher::new(&project.cache, vec![], false);
        let e = format!("{:#}", ensure(&project, &fetcher).unwrap_err());
        assert!(e.contains("toolchain package fake 1") && e.contains("hash mismatch"), "{e}");
        assert!(!project.cache.join("sha256").join("0".repeat(64)).exists());
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
        use crate::archive::tests_support::{hostile_tar, Entries};
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
            packages: vec![LockedDeb {
                name: "hostile".into(),
                version: "1".into(),
                arch: "amd64".into(),
                suite: "bookworm".into(),
                filename: "pool/main/h/hostile/hostile_1_amd64.deb".into(),
                size: bytes.len() as u64,
                sha256: crate::hash::sha256_bytes(&bytes),
            }],
        };
        std::fs::write(project.toolchain_lock(), toml::to_string(&lock).unwrap()).unwrap();
        let e = format!(
            "{:#}",
            ensure(&project, &Fetcher::new(&project.cache, vec![mirror], true)).unwrap_err()
        );
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
