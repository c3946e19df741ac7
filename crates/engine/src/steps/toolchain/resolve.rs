//! Resolution: a package list (`toolchain/packages.toml`, `toolchain/nix.toml`) against the
//! mirror's Packages indices (main and, optionally, backports), each authenticated through its
//! suite's signed InRelease (`archive.rs`), into a lock (`pins/*.lock`), every .deb with its
//! size and sha256, and the time of resolution: the Debian snapshot archive serves the pool as
//! it was then, after the pool itself has dropped a version.

use super::archive::Archive;
use crate::mechanisms::deb822::Paragraph;
use crate::mechanisms::debian;
use crate::model::project::Project;
use anyhow::{bail, Context, Result};
use reprovm_fs::progress;
use reprovm_fs::util;
use serde::{Deserialize, Serialize};
use std::collections::{BTreeMap, BTreeSet, VecDeque};

/// `toolchain/*.toml`: a set of packages to pin.
#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "kebab-case")]
pub(crate) struct PackageSpec {
    pub suite: String,
    pub arch: String,
    /// Suite for the packages listed in `from-backports`.
    #[serde(default)]
    pub backports_suite: Option<String>,
    /// Suites whose newer versions of `suite`'s packages are taken too, as apt takes them
    /// from a fully updated system's sources (`bookworm-security`, `bookworm-updates`): per
    /// package the newest version of `suite` and these, and its suite recorded in the lock.
    #[serde(default)]
    pub updates: Vec<String>,
    pub packages: Vec<String>,
    #[serde(default)]
    pub from_backports: Vec<String>,
    /// Dependencies never pulled in (documentation-only or init-system packages).
    #[serde(default)]
    pub exclude: Vec<String>,
    /// Libraries of another architecture (Debian multiarch: `arm64`) for programs built for
    /// it: `foreign-packages` and their `Multi-Arch: same` dependencies, resolved against that
    /// architecture's index. Any other dependency must be in the native closure.
    #[serde(default)]
    pub foreign_arch: Option<String>,
    #[serde(default)]
    pub foreign_packages: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub(crate) struct LockedDeb {
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
pub(crate) struct LockFile {
    pub suite: String,
    /// When the packages were resolved (`YYYYMMDDTHHMMSSZ`): their snapshot-archive time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub snapshot: Option<String>,
    #[serde(rename = "package")]
    pub packages: Vec<LockedDeb>,
}

/// Dependency alternatives of a paragraph: `a (>= 1) | b:any` -> [["a","b"]].
fn depends(s: &Paragraph) -> Vec<Vec<String>> {
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
#[cfg(test)]
pub(crate) fn resolve(
    spec: &PackageSpec,
    main: &[Paragraph],
    backports: &[Paragraph],
) -> Result<Vec<LockedDeb>> {
    resolve_over(spec, main, backports, &BTreeSet::new())
}

/// The same, leaving out what `provided` names (a base set's packages: already in the root).
pub(crate) fn resolve_over(
    spec: &PackageSpec,
    main: &[Paragraph],
    backports: &[Paragraph],
    provided: &BTreeSet<String>,
) -> Result<Vec<LockedDeb>> {
    let mut by_name: BTreeMap<&str, (&Paragraph, &str)> = BTreeMap::new();
    for s in main {
        by_name.entry(s.get("Package")).or_insert((s, suite_of(s, &spec.suite)));
    }
    if let Some(bpo_suite) = &spec.backports_suite {
        for s in backports {
            if spec.from_backports.iter().any(|n| n == s.get("Package")) {
                by_name.insert(s.get("Package"), (s, bpo_suite));
            }
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
        if chosen.contains(&name) || spec.exclude.contains(&name) || provided.contains(&name) {
            continue;
        }
        let Some((s, _)) = by_name.get(name.as_str()) else {
            bail!("package `{name}` is not in {} {}", spec.suite, spec.arch);
        };
        chosen.insert(name.clone());
        for alts in depends(s) {
            if alts
                .iter()
                .any(|a| chosen.contains(a) || spec.exclude.contains(a) || provided.contains(a))
            {
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
        out.push(locked(&name, s, suite)?);
    }
    Ok(out)
}

fn locked(name: &str, s: &Paragraph, suite: &str) -> Result<LockedDeb> {
    Ok(LockedDeb {
        name: name.to_string(),
        version: s.get("Version").to_string(),
        arch: s.get("Architecture").to_string(),
        suite: suite.to_string(),
        filename: s.get("Filename").to_string(),
        size: s.get("Size").parse().with_context(|| format!("{name}: bad Size"))?,
        sha256: s.get("SHA256").to_string(),
    })
}

/// The foreign-architecture libraries of `spec` over that architecture's index: each listed
/// package and, of its dependencies, those that are `Multi-Arch: same` (libraries, installed
/// once per architecture). Every other dependency (`Multi-Arch: foreign` tools, `:any`) is
/// one package for all architectures and must be in `native` (the native closure). A
/// library also present natively must be at the same version: their shared files
/// (headers, documentation) are then the same bytes.
pub(crate) fn resolve_foreign(
    spec: &PackageSpec,
    index: &[Paragraph],
    backports: &[Paragraph],
    native: &BTreeMap<String, String>,
) -> Result<Vec<LockedDeb>> {
    let Some(arch) = &spec.foreign_arch else { return Ok(Vec::new()) };
    let mut by_name: BTreeMap<&str, (&Paragraph, &str)> = BTreeMap::new();
    for s in index {
        by_name.entry(s.get("Package")).or_insert((s, suite_of(s, &spec.suite)));
    }
    if let Some(bpo_suite) = &spec.backports_suite {
        for s in backports {
            if spec.from_backports.iter().any(|n| n == s.get("Package")) {
                by_name.insert(s.get("Package"), (s, bpo_suite));
            }
        }
    }
    let mut chosen: BTreeSet<String> = BTreeSet::new();
    let mut queue: VecDeque<String> = spec.foreign_packages.iter().cloned().collect();
    while let Some(name) = queue.pop_front() {
        if chosen.contains(&name) || spec.exclude.contains(&name) {
            continue;
        }
        let Some((s, _)) = by_name.get(name.as_str()) else {
            bail!("package `{name}` is not in {} {arch}", spec.suite);
        };
        if let Some(v) = native.get(&name) {
            anyhow::ensure!(
                v == s.get("Version"),
                "`{name}:{arch}` is {} but the native `{name}` is {v}: both must be one version (lock the sets again from one mirror state)",
                s.get("Version")
            );
        }
        chosen.insert(name.clone());
        // The first alternative that can be satisfied, in order, as apt would: a library
        // (`Multi-Arch: same`) from this architecture, a tool (`foreign`, `allowed`) from the
        // native closure. A `Multi-Arch: no` package cannot sit beside its native twin.
        for alts in depends(s) {
            let mut taken = None;
            let mut why = Vec::new();
            for a in &alts {
                if chosen.contains(a) || spec.exclude.contains(a) {
                    taken = Some(None);
                    break;
                }
                match by_name.get(a.as_str()).map(|(p, _)| p.get("Multi-Arch")) {
                    Some("same") => {
                        taken = Some(Some(a.clone()));
                        break;
                    }
                    Some("foreign" | "allowed") if native.contains_key(a) => {
                        taken = Some(None);
                        break;
                    }
                    Some("foreign" | "allowed") => {
                        why.push(format!("`{a}` is a tool not in the native packages"))
                    }
                    Some(_) => why.push(format!(
                        "`{a}` is not Multi-Arch (cannot sit beside its native twin)"
                    )),
                    None if native.contains_key(a) => why.push(format!("`{a}` is only native")),
                    None => why.push(format!("`{a}` is in no index")),
                }
            }
            match taken {
                Some(Some(a)) => queue.push_back(a),
                Some(None) => {}
                None => bail!(
                    "`{name}:{arch}` depends on `{}`, which cannot be satisfied: {}; add the tool to `packages` or exclude it",
                    alts.join(" | "),
                    why.join(", ")
                ),
            }
        }
    }
    chosen
        .iter()
        .map(|n| {
            let (s, suite) = by_name[n.as_str()];
            locked(n, s, suite)
        })
        .collect()
}

/// Which suite a paragraph of a merged index ([`merged_index`]) came from.
const SUITE_FIELD: &str = "X-Reprovm-Suite";

/// The suite a paragraph came from: its mark, or `default` for an index of one suite.
fn suite_of<'a>(p: &'a Paragraph, default: &'a str) -> &'a str {
    match p.get(SUITE_FIELD) {
        "" => default,
        s => s,
    }
}

/// The Packages indexes of `suites` for `arch` as one, each authenticated: per package the
/// newest version (dpkg's order; the first suite's on a tie), marked with its suite.
pub(crate) fn merged_index(
    archive: &Archive,
    suites: &[String],
    arch: &str,
) -> Result<Vec<Paragraph>> {
    let mut newest: BTreeMap<String, Paragraph> = BTreeMap::new();
    for suite in suites {
        for p in packages_index(archive, suite, arch)?.iter() {
            let name = p.get("Package");
            let newer = newest.get(name).is_none_or(|old| {
                crate::mechanisms::debian_version::compare(p.get("Version"), old.get("Version"))
                    .is_gt()
            });
            if newer {
                let mut p = p.clone();
                p.fields.insert(SUITE_FIELD.to_string(), suite.clone());
                newest.insert(name.to_string(), p);
            }
        }
    }
    Ok(newest.into_values().collect())
}

/// The Packages index of `suite` for `arch`, authenticated (its InRelease verified, its hash
/// the one listed there); read once per archive reader.
pub(crate) fn packages_index(
    archive: &Archive,
    suite: &str,
    arch: &str,
) -> Result<std::sync::Arc<Vec<Paragraph>>> {
    let release = archive.release(suite)?;
    let p = archive.paragraphs(&release, &format!("main/binary-{arch}/Packages"))?;
    anyhow::ensure!(
        !p.is_empty(),
        "{}/dists/{suite}: an empty Packages index for {arch}",
        release.base
    );
    Ok(p)
}

/// `cargo xtask toolchain lock [SET...]`: resolve package sets into their locks (every index
/// authenticated by `archive`) and write them.
pub(crate) fn lock(project: &Project, archive: &Archive, sets: &[super::PackageSet]) -> Result<()> {
    for set in sets {
        let resolved = resolve_set(project, archive, *set)?;
        write_lock(&resolved)?;
    }
    Ok(())
}

/// A package set resolved into a lock, not yet written.
#[derive(Debug)]
pub(crate) struct ResolvedLock {
    pub set: super::PackageSet,
    pub path: std::path::PathBuf,
    pub lock: LockFile,
    /// The lock file's text.
    pub body: String,
}

impl ResolvedLock {
    /// Whether the file holds this text already.
    pub(crate) fn unchanged(&self) -> bool {
        std::fs::read(&self.path).is_ok_and(|t| t == self.body.as_bytes())
    }
}

/// Write a resolved lock (unless the file already says the same).
pub(crate) fn write_lock(r: &ResolvedLock) -> Result<()> {
    let same_text = r.unchanged();
    if !same_text {
        util::write_atomic(&r.path, r.body.as_bytes())?;
    }
    progress::say(&format!(
        "{} {} ({} packages)",
        if same_text { "unchanged" } else { "wrote" },
        r.path.display(),
        r.lock.packages.len()
    ));
    Ok(())
}

/// Resolve a package set against the archive's current indexes.
pub(crate) fn resolve_set(
    project: &Project,
    archive: &Archive,
    set: super::PackageSet,
) -> Result<ResolvedLock> {
    resolve_set_over(project, archive, set, None)
}

/// [`resolve_set`], a layered set over `base` (its base set's lock as resolved now) instead
/// of the base's lock file.
pub(crate) fn resolve_set_over(
    project: &Project,
    archive: &Archive,
    set: super::PackageSet,
    base: Option<&LockFile>,
) -> Result<ResolvedLock> {
    let base_override = base;
    let spec_path = set.spec(project);
    let text = std::fs::read_to_string(&spec_path)
        .with_context(|| format!("reading {}", spec_path.display()))?;
    let spec: PackageSpec = toml::from_str(&text)
        .map_err(|e| anyhow::format_err!("{}: {}", spec_path.display(), e.message()))?;
    let suites: Vec<String> =
        std::iter::once(spec.suite.clone()).chain(spec.updates.iter().cloned()).collect();
    let main = merged_index(archive, &suites, &spec.arch)?;
    let bpo = match &spec.backports_suite {
        Some(s) => packages_index(archive, s, &spec.arch)?.to_vec(),
        None => Vec::new(),
    };
    // A layered set leaves out what its base set's root already holds.
    let base: Vec<LockedDeb> = match (set.base(), base_override) {
        (Some(_), Some(l)) => l.packages.clone(),
        (Some(b), None) => super::read_lock(project, b)?.packages,
        (None, _) => Vec::new(),
    };
    let provided: BTreeSet<String> = base.iter().map(|p| p.name.clone()).collect();
    let mut debs = resolve_over(&spec, &main, &bpo, &provided)?;
    if let Some(arch) = &spec.foreign_arch {
        let index = merged_index(archive, &suites, arch)?;
        let bpo = match &spec.backports_suite {
            Some(s) => packages_index(archive, s, arch)?.to_vec(),
            None => Vec::new(),
        };
        let native: BTreeMap<String, String> =
            base.iter().chain(debs.iter()).map(|p| (p.name.clone(), p.version.clone())).collect();
        debs.extend(resolve_foreign(&spec, &index, &bpo, &native)?);
    }
    let lock_path = set.lock(project);
    let old: Option<LockFile> = match std::fs::read_to_string(&lock_path) {
        Ok(t) => Some(
            toml::from_str(&t)
                .map_err(|e| anyhow::format_err!("{}: {}", lock_path.display(), e.message()))?,
        ),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
        Err(e) => return Err(e).with_context(|| format!("reading {}", lock_path.display())),
    };
    // The same packages keep their old snapshot time; a changed set gets the time of this
    // resolution (the archive imports a few times a day, so a package published in the last
    // hours may be missing from the snapshot at that time: `toolchain lock` again later).
    let unchanged = old.as_ref().is_some_and(|o| o.packages == debs && o.suite == spec.suite);
    let snapshot = match &old {
        Some(o) if unchanged && o.snapshot.is_some() => o.snapshot.clone(),
        _ => Some(debian::snapshot_time_now()),
    };
    let lockfile = LockFile { suite: spec.suite.clone(), snapshot, packages: debs };
    let body = format!(
        "# Generated by `cargo xtask toolchain lock` from {}. Do not edit.\n# {} packages; every .deb is fetched by sha256.\n{}",
        reprovm_fs::util::display_rel(&spec_path, &project.root),
        lockfile.packages.len(),
        toml::to_string(&lockfile)?
    );
    Ok(ResolvedLock { set, path: lock_path, lock: lockfile, body })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanisms::deb822;

    const INDEX: &str = "Package: gcc\nVersion: 1\nArchitecture: amd64\nDepends: cpp (= 1), libc6 (>= 2) | libc-alt\nFilename: pool/main/g/gcc/gcc_1_amd64.deb\nSize: 10\nSHA256: aa\n\n\
Package: cpp\nVersion: 1\nArchitecture: amd64\nPre-Depends: awk\nFilename: pool/main/c/cpp/cpp_1_amd64.deb\nSize: 5\nSHA256: bb\n\n\
Package: mawk\nVersion: 1\nArchitecture: amd64\nProvides: awk\nFilename: pool/main/m/mawk/mawk_1_amd64.deb\nSize: 5\nSHA256: cc\n\n\
Package: libc6\nVersion: 2\nArchitecture: amd64\nFilename: pool/main/g/glibc/libc6_2_amd64.deb\nSize: 5\nSHA256: dd\n\n\
Package: e2fsprogs\nVersion: 1.47.0\nArchitecture: amd64\nFilename: pool/main/e/e2fsprogs/old.deb\nSize: 5\nSHA256: ee\n";

    #[test]
    fn resolves_closure_with_virtuals_alternatives_and_backports() {
        let main = deb822::paragraphs(INDEX);
        let bpo = deb822::paragraphs("Package: e2fsprogs\nVersion: 1.47.2\nArchitecture: amd64\nFilename: pool/main/e/e2fsprogs/new.deb\nSize: 6\nSHA256: ff\n");
        let spec = PackageSpec {
            suite: "bookworm".into(),
            arch: "amd64".into(),
            backports_suite: Some("bookworm-backports".into()),
            updates: vec![],
            packages: vec!["gcc".into(), "e2fsprogs".into()],
            from_backports: vec!["e2fsprogs".into()],
            exclude: vec![],
            foreign_arch: None,
            foreign_packages: vec![],
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
    fn foreign_libraries_take_their_multiarch_closure_and_leave_tools_native() {
        let arm64 = deb822::paragraphs("Package: libc6-dev\nVersion: 2\nArchitecture: arm64\nMulti-Arch: same\nDepends: libc6 (= 2), libc-dev-bin (= 2), rpcsvc-proto\nFilename: pool/l6d_arm64.deb\nSize: 1\nSHA256: a1\n\n\
Package: libc6\nVersion: 2\nArchitecture: arm64\nMulti-Arch: same\nDepends: libgcc-s1\nFilename: pool/l6_arm64.deb\nSize: 1\nSHA256: a2\n\n\
Package: libgcc-s1\nVersion: 12\nArchitecture: arm64\nMulti-Arch: same\nFilename: pool/lg_arm64.deb\nSize: 1\nSHA256: a3\n\n\
Package: libc-dev-bin\nVersion: 2\nArchitecture: arm64\nMulti-Arch: foreign\nFilename: pool/ldb_arm64.deb\nSize: 1\nSHA256: a4\n\n\
Package: rpcsvc-proto\nVersion: 1\nArchitecture: arm64\nMulti-Arch: foreign\nFilename: pool/rp_arm64.deb\nSize: 1\nSHA256: a5\n");
        let spec = PackageSpec {
            suite: "bookworm".into(),
            arch: "amd64".into(),
            backports_suite: None,
            updates: vec![],
            packages: vec![],
            from_backports: vec![],
            exclude: vec![],
            foreign_arch: Some("arm64".into()),
            foreign_packages: vec!["libc6-dev".into()],
        };
        let native: BTreeMap<String, String> =
            [("libc-dev-bin", "2"), ("rpcsvc-proto", "1"), ("libc6", "2")]
                .iter()
                .map(|(n, v)| (n.to_string(), v.to_string()))
                .collect();
        let r = resolve_foreign(&spec, &arm64, &[], &native).unwrap();
        let got: Vec<(&str, &str)> = r.iter().map(|d| (d.name.as_str(), d.arch.as_str())).collect();
        assert_eq!(got, [("libc6", "arm64"), ("libc6-dev", "arm64"), ("libgcc-s1", "arm64")]);
        // A tool the native closure lacks is named; so is a library at another version than
        // its native twin (their shared files would differ).
        let mut lacking = native.clone();
        lacking.remove("rpcsvc-proto");
        let e = resolve_foreign(&spec, &arm64, &[], &lacking).unwrap_err().to_string();
        assert!(e.contains("`libc6-dev:arm64` depends on `rpcsvc-proto`"), "{e}");
        assert!(e.contains("a tool not in the native packages"), "{e}");
        let mut other = native;
        other.insert("libc6".into(), "3".into());
        let e = resolve_foreign(&spec, &arm64, &[], &other).unwrap_err().to_string();
        assert!(e.contains("`libc6:arm64` is 2 but the native `libc6` is 3"), "{e}");
    }

    /// An index is read only through its suite's Release: the bytes must be the size and
    /// sha256 it lists (a mirror serving other bytes is refused naming both), then it parses.
    #[test]
    fn an_index_is_taken_only_as_its_release_lists_it() {
        let mut xz = Vec::new();
        let mut enc = xz2::write::XzEncoder::new(&mut xz, 1);
        std::io::Write::write_all(&mut enc, INDEX.as_bytes()).unwrap();
        enc.finish().unwrap();
        let path = "dists/bookworm/main/binary-amd64/Packages.xz";
        let base = crate::testutil::serve(vec![
            (&format!("/good/{path}"), 200, xz.clone(), None),
            (&format!("/bad/{path}"), 200, b"not the listed bytes".to_vec(), None),
        ]);
        let sha = reprovm_fs::hash::sha256_bytes(&xz);
        let release = format!(
            "Codename: bookworm\nSHA256:\n {sha} {} main/binary-amd64/Packages.xz\n",
            xz.len()
        );
        for (mirror, ok) in [("good", true), ("bad", false)] {
            let archive = Archive::with_release(&format!("{base}/{mirror}"), "bookworm", &release);
            match packages_index(&archive, "bookworm", "amd64") {
                Ok(p) => assert!(ok && p.len() == 5),
                Err(e) => {
                    let e = format!("{e:#}");
                    assert!(!ok, "{e}");
                    assert!(
                        e.contains(&format!("/bad/{path}: it is 20 bytes with sha256 "))
                            && e.contains(&format!(
                                "the InRelease lists {} bytes with sha256 {sha}",
                                xz.len()
                            )),
                        "{e}"
                    );
                }
            }
        }
    }
}
