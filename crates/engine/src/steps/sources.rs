//! Recipe sources as fetch requests (every origin of one pinned hash), and the `fetch` command.

use crate::mechanisms::debian;
use crate::mechanisms::fetch::Want;
use crate::model::graph::Graph;
use crate::model::project::Project;
use crate::model::recipe::Recipe;
use anyhow::Result;
use serde::{Deserialize, Serialize};

/// One line of `fetch --list`: a source pin and every origin it is looked for at.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct SourceListing {
    pub recipe: String,
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub urls: Vec<String>,
}

/// The recipes whose sources a command is about: TARGET's closure, or every recipe.
fn recipe_names(graph: &Graph, target: Option<&str>) -> Result<Vec<String>> {
    match target {
        Some(t) => graph.closure(t),
        None => Ok(graph.recipes.keys().cloned().collect()),
    }
}

/// Every source pin of the graph (or of a target's closure), one request per distinct hash
/// (kernel recipes share a tarball).
pub(crate) fn wants(graph: &Graph, target: Option<&str>, project: &Project) -> Result<Vec<Want>> {
    let mut out: Vec<Want> = Vec::new();
    for name in recipe_names(graph, target)? {
        let l = graph.get(&name)?;
        for w in wants_for(&l.recipe, project).into_iter().chain(debs_for(l, project)?) {
            if !out.iter().any(|o| o.sha256 == w.sha256) {
                out.push(w);
            }
        }
    }
    Ok(out)
}

/// `fetch --list`: one entry per recipe and source.
pub(crate) fn list(
    graph: &Graph,
    target: Option<&str>,
    project: &Project,
) -> Result<Vec<SourceListing>> {
    let mut out = Vec::new();
    let names = recipe_names(graph, target)?;
    for name in &names {
        let name = name.clone();
        let l = graph.get(&name)?;
        // A flavour's sources are its version's (`kernel+kvm` builds `kernel`'s tarball):
        // listed once, under the node without the flavour when that is listed too, as Nix's
        // `allSources` has them.
        if l.cell.flavour.is_some() {
            let (base, cell) = crate::model::recipe::Cell::of(&name);
            let plain = crate::model::recipe::Cell { flavour: None, ..cell };
            if names.contains(&format!("{base}{}", plain.suffix())) {
                continue;
            }
        }
        // A Debian lock is the recipe's: listed once, under its name, not again under each
        // node over another version (`rootfs-net@6.18`).
        let debs =
            if !crate::model::graph::is_base(&name) { Vec::new() } else { debs_for(l, project)? };
        for w in wants_for(&l.recipe, project).into_iter().chain(debs) {
            out.push(SourceListing {
                recipe: name.clone(),
                file: w.file,
                sha256: w.sha256,
                size: w.size,
                urls: w.urls,
            });
        }
    }
    Ok(out)
}

/// The .debs of a node's `[rootfs] debian` lock (none without one).
pub(crate) fn debs_for(l: &crate::model::recipe::Loaded, project: &Project) -> Result<Vec<Want>> {
    Ok(match crate::steps::debian_packages::read(project, &l.recipe, l.arch)? {
        Some(lock) => lock.wants(project),
        None => Vec::new(),
    })
}

/// Fetch requests for one recipe's sources: upstream URLs first, then the Debian mirrors, then
/// Debian's snapshot archive (at the recipe's snapshot time).
pub(crate) fn wants_for(recipe: &Recipe, project: &Project) -> Vec<Want> {
    recipe
        .sources
        .iter()
        .map(|s| {
            let mut urls = s.urls.clone();
            let mut aliases = Vec::new();
            if let Some(d) = &s.debian {
                urls.extend(debian::source_urls(&project.debian_mirrors, &d.package, &d.file));
                if let Some(time) = &d.snapshot {
                    for path in debian::source_pool_paths(&d.package, &d.file) {
                        urls.extend(debian::snapshot_urls(&project.debian_snapshots, time, &path));
                    }
                }
                aliases.push(d.file.clone());
            }
            Want { file: s.file.clone(), sha256: s.sha256.clone(), size: s.size, urls, aliases }
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mechanisms::fetch::Fetcher;

    #[test]
    fn listing_round_trips_and_refuses_unknown_fields() {
        let l = SourceListing {
            recipe: "busybox".into(),
            file: "busybox-1.35.0.tar.bz2".into(),
            sha256: "a".repeat(64),
            size: 3,
            urls: vec!["http://x/y".into()],
        };
        let text = serde_json::to_string(&vec![l.clone()]).unwrap();
        assert_eq!(serde_json::from_str::<Vec<SourceListing>>(&text).unwrap(), vec![l]);
        let extra = text.replace("\"size\"", "\"extra\":1,\"size\"");
        assert!(serde_json::from_str::<Vec<SourceListing>>(&extra).is_err());
    }

    /// Once the pool has dropped a version, the snapshot archive is the origin: a source
    /// (main archive) and toolchain .debs (main and security archives) laid out as the
    /// archive serves them, behind a mirror that has none of them.
    #[test]
    fn snapshot_archive_serves_what_the_pool_dropped() {
        use reprovm_fs::hash::sha256_bytes as sha256_hex;
        use std::path::Path;
        let time = "20261123T132506Z";
        let tarball = b"linux source".to_vec();
        let (deb, security_deb) = (b"!<arch>\nbinutils".to_vec(), b"!<arch>\nlibc6".to_vec());
        let base = crate::testutil::serve(vec![
            (
                "/archive/debian/20261123T132506Z/pool/main/l/linux/linux_6.1.176.orig.tar.xz",
                200,
                tarball.clone(),
                None,
            ),
            (
                "/archive/debian/20261123T132506Z/pool/main/b/binutils/binutils_2.40-2_amd64.deb",
                200,
                deb.clone(),
                None,
            ),
            (
                "/archive/debian-security/20261123T132506Z/pool/updates/main/g/glibc/libc6_2.36-9+deb12u99_amd64.deb",
                200,
                security_deb.clone(),
                None,
            ),
        ]);
        let t = tempfile::tempdir().unwrap();
        let mut project = Project::new(None, Some(t.path().join("out")), None);
        project.debian_mirrors = vec![format!("{base}/debian")]; // serves nothing: 404
        project.debian_snapshots = vec![base.clone()];
        let fetcher = Fetcher::new(&project.downloads, vec![], false);

        let text = format!(
            "name = \"k\"\nversion = \"1\"\n[[source]]\nfile = \"linux-6.1.176.tar.xz\"\nsha256 = \"{}\"\nsize = {}\ndebian = {{ package = \"linux\", version = \"6.1.176-1\", file = \"linux_6.1.176.orig.tar.xz\", snapshot = \"{time}\" }}\n[build]\nscript = \"true\"\n",
            sha256_hex(&tarball),
            tarball.len()
        );
        let recipe = crate::model::recipe::parse(Path::new("k.toml"), &text, "k.toml").unwrap();
        let [want] = wants_for(&recipe, &project).try_into().unwrap();
        assert_eq!(
            want.urls.last().unwrap(),
            &format!("{base}/archive/debian-security/{time}/pool/updates/main/l/linux/linux_6.1.176.orig.tar.xz")
        );
        let got = fetcher.fetch(&want).unwrap();
        assert_eq!(std::fs::read(got).unwrap(), tarball);

        let locked =
            |name: &str, filename: &str, bytes: &[u8]| crate::steps::toolchain::LockedDeb {
                name: name.into(),
                version: "1".into(),
                arch: "amd64".into(),
                suite: "bookworm".into(),
                filename: filename.into(),
                size: bytes.len() as u64,
                sha256: sha256_hex(bytes),
            };
        let packages = vec![
            locked("binutils", "pool/main/b/binutils/binutils_2.40-2_amd64.deb", &deb),
            locked(
                "libc6",
                "pool/updates/main/g/glibc/libc6_2.36-9+deb12u99_amd64.deb",
                &security_deb,
            ),
        ];
        let mut lock = crate::steps::toolchain::LockFile {
            suite: "bookworm".into(),
            snapshot: Some(time.into()),
            packages,
        };
        for (p, bytes) in lock.packages.iter().zip([&deb, &security_deb]) {
            let got =
                fetcher.fetch(&crate::steps::toolchain::deb_want(&project, &lock, p)).unwrap();
            assert_eq!(&std::fs::read(got).unwrap(), bytes);
        }
        // Without the lock's time there is no snapshot origin, and the mirror has nothing.
        lock.snapshot = None;
        let fresh = Fetcher::new(&t.path().join("empty-cache"), vec![], false);
        let e = fresh.fetch(&crate::steps::toolchain::deb_want(&project, &lock, &lock.packages[0]));
        assert!(e.is_err());
    }
}
