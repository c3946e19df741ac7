//! The pinned toolchain: Debian 12 packages resolved into `pins/toolchain.lock`, then
//! fetched by sha256, extracted in Rust in a fixed order into one root (merged /usr), fixed up
//! the way maintainer scripts would, and normalised. Its identity feeds every input hash.

use crate::fetch::{Fetcher, Want};
use crate::hash::{sha256_bytes, Hasher};
use crate::project::Project;
use crate::sandbox::{self, Spec};
use crate::{archive, debian, manifest, progress};
use anyhow::{bail, Context, Result};
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};
use std::fs;
use std::io::Read;
use std::path::{Path, PathBuf};

/// Bump when materialisation changes what ends up in the root.
const MATERIALIZER_VERSION: &str = "3";
/// Timestamps of every toolchain file.
const TOOLCHAIN_EPOCH: i64 = 1_704_067_200;

/// `toolchain/packages.toml`: what a build needs.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub struct PackageSpec {
    pub suite: String,
    pub arch: String,
    /// Suite for the packages listed in `from-backports`.
    pub backports_suite: String,
    pub packages: Vec<String>,
    #[serde(default)]
    pub from_backports: Vec<String>,
    /// Dependencies never pulled in (documentation-only or init-system packages).
    #[serde(default)]
    pub exclude: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct LockedDeb {
    pub name: String,
    pub version: String,
    pub arch: String,
    pub suite: String,
    pub filename: String,
    pub size: u64,
    pub sha256: String,
}

#[derive(Debug, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LockFile {
    pub suite: String,
    #[serde(rename = "package")]
    pub packages: Vec<LockedDeb>,
}

#[derive(Debug, Clone)]
pub struct Toolchain {
    /// sha256 over the lock file and the materializer version.
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

/// The toolchain identity without materialising it (for `plan`).
pub fn identity(project: &Project) -> Result<String> {
    if project.host_toolchain {
        return Ok(host_root(project)?.0);
    }
    let path = project.toolchain_lock();
    let text = fs::read_to_string(&path).with_context(|| {
        format!("reading {} (create it with `cargo xtask toolchain lock`)", path.display())
    })?;
    let mut h = Hasher::new("reprovm-toolchain");
    h.field("materializer", MATERIALIZER_VERSION.as_bytes());
    h.field("lock", text.as_bytes());
    Ok(h.finish())
}

pub fn read_lock(project: &Project) -> Result<LockFile> {
    let path = project.toolchain_lock();
    let text = fs::read_to_string(&path).with_context(|| format!("reading {}", path.display()))?;
    toml::from_str(&text).map_err(|e| anyhow::format_err!("{}: {}", path.display(), e.message()))
}

// ---------------------------------------------------------------------------------------
// Resolution: Packages index -> lock file.

#[derive(Debug, Clone, Default)]
pub struct Stanza {
    pub fields: BTreeMap<String, String>,
}

impl Stanza {
    fn get(&self, k: &str) -> &str {
        self.fields.get(k).map(String::as_str).unwrap_or("")
    }
}

/// Parse a Debian `Packages` file (deb822 stanzas, continuation lines folded).
pub fn parse_packages(text: &str) -> Vec<Stanza> {
    let mut out = Vec::new();
    for block in text.split("\n\n") {
        let mut s = Stanza::default();
        let mut last: Option<String> = None;
        for line in block.lines() {
            if line.starts_with(' ') || line.starts_with('\t') {
                if let Some(k) = &last {
                    if let Some(v) = s.fields.get_mut(k) {
                        v.push('\n');
                        v.push_str(line.trim());
                    }
                }
            } else if let Some((k, v)) = line.split_once(':') {
                s.fields.insert(k.to_string(), v.trim().to_string());
                last = Some(k.to_string());
            }
        }
        if !s.get("Package").is_empty() {
            out.push(s);
        }
    }
    out
}

/// Dependency alternatives of a stanza: `a (>= 1) | b:any` -> [["a","b"]].
fn depends(s: &Stanza) -> Vec<Vec<String>> {
    let mut out = Vec::new();
    for field in ["Pre-Depends", "Depends"] {
        for group in s.get(field).split(',') {
            let alts: Vec<String> = group
                .split('|')
                .map(|a| {
                    a.split_whitespace()
                        .next()
                        .unwrap_or("")
                        .split(':')
                        .next()
                        .unwrap_or("")
                        .to_string()
                })
                .filter(|a| !a.is_empty())
                .collect();
            if !alts.is_empty() {
                out.push(alts);
            }
        }
    }
    out
}

/// Resolve the closure of `spec.packages` over two indices (main and backports).
pub fn resolve(
    spec: &PackageSpec,
    main: &[Stanza],
    backports: &[Stanza],
) -> Result<Vec<LockedDeb>> {
    let mut by_name: BTreeMap<&str, (&Stanza, &str)> = BTreeMap::new();
    for s in main {
        by_name.entry(s.get("Package")).or_insert((s, &spec.suite));
    }
    for s in backports {
        if spec.from_backports.iter().any(|n| n == s.get("Package")) {
            by_name.insert(s.get("Package"), (s, &spec.backports_suite));
        }
    }
    let mut providers: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for (name, (s, _)) in &by_name {
        for p in s.get("Provides").split(',') {
            if let Some(p) = p.split_whitespace().next() {
                providers.entry(p.to_string()).or_default().insert(name.to_string());
            }
        }
    }
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<String> = spec.packages.iter().cloned().collect();
    while let Some(name) = queue.pop_front() {
        if chosen.contains(&name) || spec.exclude.contains(&name) {
            continue;
        }
        let Some((s, _)) = by_name.get(name.as_str()) else {
            bail!("package `{name}` is not in {} {}", spec.suite, spec.arch);
        };
        chosen.insert(name.clone());
        for alts in depends(s) {
            if alts.iter().any(|a| chosen.contains(a) || spec.exclude.contains(a)) {
                continue;
            }
            let pick = alts.iter().find_map(|a| {
                if by_name.contains_key(a.as_str()) {
                    Some(a.clone())
                } else {
                    providers.get(a).and_then(|ps| ps.iter().next().cloned())
                }
            });
            match pick {
                Some(p) => queue.push_back(p),
                None => bail!(
                    "`{name}` depends on `{}`, which nothing in {} provides",
                    alts.join(" | "),
                    spec.suite
                ),
            }
        }
    }
    let mut out = Vec::new();
    for name in chosen {
        let (s, suite) = by_name[name.as_str()];
        out.push(LockedDeb {
            name: name.clone(),
            version: s.get("Version").to_string(),
            arch: s.get("Architecture").to_string(),
            suite: suite.to_string(),
            filename: s.get("Filename").to_string(),
            size: s.get("Size").parse().with_context(|| format!("{name}: bad Size"))?,
            sha256: s.get("SHA256").to_string(),
        });
    }
    Ok(out)
}

fn fetch_index(
    agent: &ureq::Agent,
    mirrors: &[String],
    suite: &str,
    arch: &str,
) -> Result<Vec<Stanza>> {
    let mut errs = Vec::new();
    for m in mirrors {
        let url = format!("{m}/dists/{suite}/main/binary-{arch}/Packages.xz");
        match agent.get(&url).call() {
            Ok(resp) => {
                let mut text = String::new();
                xz2::read::XzDecoder::new(resp.into_reader())
                    .read_to_string(&mut text)
                    .with_context(|| format!("reading {url}"))?;
                return Ok(parse_packages(&text));
            }
            Err(e) => errs.push(format!("{url}: {e}")),
        }
    }
    bail!(
        "no mirror had the {suite} index ({}); set {} to a Debian mirror",
        errs.join("; "),
        debian::MIRROR_ENV
    )
}

/// `cargo xtask toolchain lock`
pub fn lock(project: &Project, _fetcher: &Fetcher) -> Result<()> {
    let spec_path = project.toolchain_spec();
    let text = fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: PackageSpec = toml::from_str(&text)
        .map_err(|e| anyhow::format_err!("{}: {}", spec_path.display(), e.message()))?;
    let mirrors = debian::mirrors();
    anyhow::ensure!(
        !mirrors.is_empty(),
        "no Debian mirror configured: set {} or add one to /etc/apt/sources.list.d",
        debian::MIRROR_ENV
    );
    let agent =
        ureq::AgentBuilder::new().timeout_connect(std::time::Duration::from_secs(15)).build();
    let main = fetch_index(&agent, &mirrors, &spec.suite, &spec.arch)?;
    let bpo = fetch_index(&agent, &mirrors, &spec.backports_suite, &spec.arch)?;
    let debs = resolve(&spec, &main, &bpo)?;
    let lockfile = LockFile { suite: spec.suite.clone(), packages: debs };
    let body = format!(
        "# Generated by `cargo xtask toolchain lock` from toolchain/packages.toml. Do not edit.\n# {} packages; every .deb is fetched by sha256.\n{}",
        lockfile.packages.len(),
        toml::to_string(&lockfile)?
    );
    let old = fs::read_to_string(project.toolchain_lock()).unwrap_or_default();
    write_atomic(&project.toolchain_lock(), body.as_bytes())?;
    let changed = old != body;
    progress::say(&format!(
        "{} {} ({} packages)",
        if changed { "wrote" } else { "unchanged" },
        project.toolchain_lock().display(),
        lockfile.packages.len()
    ));
    Ok(())
}

pub fn write_atomic(path: &Path, data: &[u8]) -> Result<()> {
    let dir = path.parent().context("no parent")?;
    fs::create_dir_all(dir)?;
    let mut tmp = tempfile::NamedTempFile::new_in(dir)?;
    std::io::Write::write_all(&mut tmp, data)?;
    tmp.as_file().sync_all()?;
    tmp.persist(path)
        .map_err(|e| e.error)
        .with_context(|| format!("writing {}", path.display()))?;
    Ok(())
}

// ---------------------------------------------------------------------------------------
// Materialisation: lock file -> root directory.

/// The toolchain root for the current lock, materialising it if needed.
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
    let gcc = lockf
        .packages
        .iter()
        .find(|p| p.name == "gcc-12")
        .map(|p| format!("gcc {}", p.version))
        .unwrap_or_default();
    let label = format!("debian {} {gcc}", lockf.suite);
    let dir = project.out.join("toolchain").join(&id[..32]);
    let root = dir.join("root");
    if dir.join("manifest.json").is_file() {
        return Ok(Toolchain { id, root, version_label: label });
    }
    materialize(project, fetcher, &lockf, &dir)?;
    Ok(Toolchain { id, root, version_label: label })
}

/// Development mode: a root of host programs and their libraries (see sandbox::testroot).
/// Its identity is the hash of its tree, prefixed so it can never pass for a pinned one.
fn host_root(project: &Project) -> Result<(String, PathBuf)> {
    let base = project.out.join("toolchain");
    fs::create_dir_all(&base)?;
    let tmp = tempfile::tempdir_in(&base)?;
    let root = tmp.path().join("root");
    sandbox::testroot::make(&root)?;
    manifest::normalize(&root, TOOLCHAIN_EPOCH)?;
    let tree = manifest::output_hash(&manifest::scan(&root)?);
    let id = format!("host-toolchain-{}", &tree[..48]);
    let dir = base.join(&id);
    if !dir.join("root").is_dir() {
        let _ = fs::remove_dir_all(&dir);
        fs::rename(tmp.path(), &dir)?;
    }
    Ok((id.clone(), dir.join("root")))
}

/// Map a data.tar member path into merged-/usr layout.
fn merged_usr(rel: &Path) -> PathBuf {
    let mut comps = rel.components();
    if let Some(first) = comps.next() {
        let f = first.as_os_str().to_string_lossy();
        if matches!(f.as_ref(), "bin" | "sbin" | "lib" | "lib64" | "lib32" | "libx32") {
            return Path::new("usr").join(rel);
        }
    }
    rel.to_path_buf()
}

fn deb_data(deb: &Path) -> Result<(Vec<u8>, archive::Format)> {
    let mut ar = ar::Archive::new(fs::File::open(deb)?);
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

fn decompress(buf: Vec<u8>, fmt: archive::Format) -> Result<Box<dyn Read>> {
    let c = std::io::Cursor::new(buf);
    Ok(match fmt {
        archive::Format::TarXz => Box::new(xz2::read::XzDecoder::new_multi_decoder(c)),
        archive::Format::TarZst => Box::new(zstd::stream::read::Decoder::new(c)?),
        archive::Format::TarGz => Box::new(flate2::read::GzDecoder::new(c)),
        _ => Box::new(c),
    })
}

/// Extract one .deb's data into `root` (merged /usr). Paths may not escape; absolute symlink
/// targets are fine (they resolve inside the sandbox root).
fn unpack_deb(deb: &Path, root: &Path) -> Result<()> {
    let (buf, fmt) = deb_data(deb)?;
    let mut ar = tar::Archive::new(decompress(buf, fmt)?);
    for e in ar.entries()? {
        let mut e = e?;
        let name = e.path()?.into_owned();
        let Some(rel) = archive::safe_relative(&name, 0)? else {
            continue;
        };
        let rel = merged_usr(&rel);
        let dest = root.join(&rel);
        let mode = e.header().mode().unwrap_or(0o644) & 0o777;
        match e.header().entry_type() {
            tar::EntryType::Directory => {
                if fs::symlink_metadata(&dest).map(|m| m.file_type().is_symlink()).unwrap_or(false)
                {
                    continue; // e.g. a directory another package made a symlink
                }
                fs::create_dir_all(&dest)?;
            }
            tar::EntryType::Regular => {
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p)?;
                }
                let _ = fs::remove_file(&dest);
                let mut f = fs::File::create(&dest)?;
                std::io::copy(&mut e, &mut f)?;
                fs::set_permissions(
                    &dest,
                    std::os::unix::fs::PermissionsExt::from_mode(mode | 0o200),
                )?;
            }
            tar::EntryType::Symlink => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                if let Some(p) = dest.parent() {
                    fs::create_dir_all(p)?;
                }
                let _ = fs::remove_file(&dest);
                std::os::unix::fs::symlink(&target, &dest)?;
            }
            tar::EntryType::Link => {
                let target = e.link_name()?.map(|l| l.into_owned()).unwrap_or_default();
                let Some(trel) = archive::safe_relative(&target, 0)? else {
                    bail!("bad hard link in {}", deb.display())
                };
                let _ = fs::remove_file(&dest);
                fs::hard_link(root.join(merged_usr(&trel)), &dest)?;
            }
            _ => {} // device nodes and fifos have no place in a toolchain
        }
    }
    Ok(())
}

fn link_if_missing(root: &Path, link: &str, target: &str) -> Result<()> {
    let p = root.join(link);
    if fs::symlink_metadata(&p).is_err()
        && root.join(Path::new(link).parent().unwrap_or(Path::new(""))).join(target).exists()
    {
        std::os::unix::fs::symlink(target, &p)?;
    }
    Ok(())
}

/// What maintainer scripts and update-alternatives would have done.
fn fixups(root: &Path) -> Result<()> {
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
        link_if_missing(root, link, target)?;
    }
    fs::create_dir_all(root.join("etc"))?;
    fs::write(root.join("etc/passwd"), "root:x:0:0:root:/homeless:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n")?;
    fs::write(root.join("etc/group"), "root:x:0:\nnogroup:x:65534:\n")?;
    fs::write(root.join("etc/hostname"), "reprovm\n")?;
    fs::write(root.join("etc/hosts"), "127.0.0.1 localhost reprovm\n")?;
    for m in sandbox::MOUNT_POINTS {
        fs::create_dir_all(root.join(m))?;
    }
    Ok(())
}

fn materialize(project: &Project, fetcher: &Fetcher, lockf: &LockFile, dir: &Path) -> Result<()> {
    let timer = progress::Timer::start();
    let mirrors = debian::mirrors();
    progress::say(&format!(
        "materialising toolchain: {} packages from {}",
        lockf.packages.len(),
        project.toolchain_lock().display()
    ));
    let tmp = dir.with_file_name(format!(
        ".tmp-{}-{}",
        dir.file_name().unwrap_or_default().to_string_lossy(),
        std::process::id()
    ));
    if tmp.exists() {
        fs::remove_dir_all(&tmp)?;
    }
    let root = tmp.join("root");
    fs::create_dir_all(root.join("usr"))?;
    for d in ["bin", "sbin", "lib", "lib64"] {
        fs::create_dir_all(root.join("usr").join(d))?;
        std::os::unix::fs::symlink(format!("usr/{d}"), root.join(d))?;
    }
    let mut pkgs = lockf.packages.clone();
    pkgs.sort_by(|a, b| a.name.cmp(&b.name));
    for p in &pkgs {
        let file = p.filename.rsplit('/').next().unwrap_or(&p.filename).to_string();
        let want = Want {
            file: file.clone(),
            sha256: p.sha256.clone(),
            size: p.size,
            urls: mirrors.iter().map(|m| format!("{m}/{}", p.filename)).collect(),
            aliases: vec![],
        };
        let deb = fetcher.fetch(&want).with_context(|| {
            format!("toolchain package {} {} (pins/toolchain.lock)", p.name, p.version)
        })?;
        unpack_deb(&deb, &root).with_context(|| format!("unpacking {file}"))?;
    }
    fixups(&root)?;
    // The ld.so cache, written by the toolchain's own ldconfig inside the sandbox.
    let log = tmp.join("ldconfig.log");
    let spec = Spec {
        root: root.clone(),
        binds: vec![],
        env: sandbox::base_env(TOOLCHAIN_EPOCH, 1),
        cwd: "/".into(),
        argv: vec!["/usr/sbin/ldconfig".into()],
        root_rw: false,
    };
    let code = sandbox::run_with_rw_root(&spec, &tmp.join("ldconfig.json"), &log)?;
    anyhow::ensure!(
        code == 0,
        "ldconfig in the new toolchain failed: {}",
        fs::read_to_string(&log).unwrap_or_default().trim()
    );
    let _ = fs::remove_dir_all(root.join("var/cache/ldconfig"));
    manifest::normalize(&root, TOOLCHAIN_EPOCH)?;
    let files = manifest::scan(&root)?;
    let tree = manifest::output_hash(&files);
    let m = serde_json::json!({ "tree_hash": tree, "packages": pkgs.len(), "lock_sha256": sha256_bytes(fs::read(project.toolchain_lock())?.as_slice()) });
    fs::write(tmp.join("manifest.json"), serde_json::to_vec_pretty(&m)?)?;
    let _ = fs::remove_file(tmp.join("ldconfig.json"));
    if dir.exists() {
        fs::remove_dir_all(dir)?;
    }
    fs::rename(&tmp, dir)?;
    progress::say(&format!(
        "toolchain ready in {} (tree {}) -> {}",
        timer.elapsed(),
        &tree[..16],
        dir.display()
    ));
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const INDEX: &str = "Package: gcc\nVersion: 1\nArchitecture: amd64\nDepends: cpp (= 1), libc6 (>= 2) | libc-alt\nFilename: pool/main/g/gcc/gcc_1_amd64.deb\nSize: 10\nSHA256: aa\n\n\
Package: cpp\nVersion: 1\nArchitecture: amd64\nPre-Depends: awk\nFilename: pool/main/c/cpp/cpp_1_amd64.deb\nSize: 5\nSHA256: bb\n\n\
Package: mawk\nVersion: 1\nArchitecture: amd64\nProvides: awk\nFilename: pool/main/m/mawk/mawk_1_amd64.deb\nSize: 5\nSHA256: cc\n\n\
Package: libc6\nVersion: 2\nArchitecture: amd64\nFilename: pool/main/g/glibc/libc6_2_amd64.deb\nSize: 5\nSHA256: dd\n\n\
Package: e2fsprogs\nVersion: 1.47.0\nArchitecture: amd64\nFilename: pool/main/e/e2fsprogs/old.deb\nSize: 5\nSHA256: ee\n";

    #[test]
    fn resolves_closure_with_virtuals_alternatives_and_backports() {
        let main = parse_packages(INDEX);
        let bpo = parse_packages("Package: e2fsprogs\nVersion: 1.47.2\nArchitecture: amd64\nFilename: pool/main/e/e2fsprogs/new.deb\nSize: 6\nSHA256: ff\n");
        let spec = PackageSpec {
            suite: "bookworm".into(),
            arch: "amd64".into(),
            backports_suite: "bookworm-backports".into(),
            packages: vec!["gcc".into(), "e2fsprogs".into()],
            from_backports: vec!["e2fsprogs".into()],
            exclude: vec![],
        };
        let r = resolve(&spec, &main, &bpo).unwrap();
        let names: Vec<&str> = r.iter().map(|d| d.name.as_str()).collect();
        assert_eq!(names, vec!["cpp", "e2fsprogs", "gcc", "libc6", "mawk"]);
        let e2 = r.iter().find(|d| d.name == "e2fsprogs").unwrap();
        assert_eq!((e2.version.as_str(), e2.suite.as_str()), ("1.47.2", "bookworm-backports"));
        let bad = PackageSpec { packages: vec!["nope".into()], ..spec };
        assert!(resolve(&bad, &main, &bpo)
            .unwrap_err()
            .to_string()
            .contains("`nope` is not in bookworm"));
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
        fs::create_dir_all(&project.pins).unwrap();
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
        fs::write(project.toolchain_lock(), toml::to_string(&lock).unwrap()).unwrap();
        std::env::set_var(debian::MIRROR_ENV, format!("{base}/debian"));
        let fetcher = Fetcher::new(&project.cache, vec![], false);
        let e = format!("{:#}", ensure(&project, &fetcher).unwrap_err());
        std::env::remove_var(debian::MIRROR_ENV);
        assert!(e.contains("toolchain package fake 1") && e.contains("hash mismatch"), "{e}");
        assert!(!project.cache.join("sha256").join("0".repeat(64)).exists());
        assert!(!project
            .out
            .join("toolchain")
            .read_dir()
            .map(|mut d| d.any(|e| e.unwrap().path().join("manifest.json").exists()))
            .unwrap_or(false));
    }

    #[test]
    fn merged_usr_mapping() {
        assert_eq!(merged_usr(Path::new("bin/sh")), PathBuf::from("usr/bin/sh"));
        assert_eq!(
            merged_usr(Path::new("lib/x86_64-linux-gnu/libc.so.6")),
            PathBuf::from("usr/lib/x86_64-linux-gnu/libc.so.6")
        );
        assert_eq!(merged_usr(Path::new("etc/x")), PathBuf::from("etc/x"));
    }
}
