//! Where a pinned source stands: its release's suites, the newest of its series there.

use super::{Pin, SourceRow, SourceState};
use crate::mechanisms::deb822::Paragraph;
use crate::mechanisms::debian;
use crate::mechanisms::debian_version as dv;
use crate::steps::toolchain::archive::Archive;
use anyhow::{bail, Context, Result};

/// The indexes sources are looked up in: the archive's, each read and parsed once per run
/// (`Archive::paragraphs`, which the lock resolution shares).
pub(super) struct Indexes<'a> {
    pub(super) archive: &'a Archive,
}

impl Indexes<'_> {
    /// The paragraphs of `package` in `suite`'s index `stem`; None when no configured mirror
    /// serves the suite.
    fn of(&mut self, suite: &str, stem: &str, package: &str) -> Result<Option<Vec<Paragraph>>> {
        if !self.archive.has_suite(suite)? {
            return Ok(None);
        }
        let release = self.archive.release(suite)?;
        let all = self.archive.paragraphs(&release, stem)?;
        Ok(Some(all.iter().filter(|p| p.get("Package") == package).cloned().collect()))
    }
}

/// The suites of a release: the release itself, its security and its point updates.
fn release_group(codename: &str) -> Vec<String> {
    vec![codename.to_string(), format!("{codename}-security"), format!("{codename}-updates")]
}

/// The number after `marker` in a Debian revision (`~bpo13+1` -> 13, `+deb12u1` -> 12).
fn release_marker(revision: &str, marker: &str) -> Option<u32> {
    let at = revision.find(marker)? + marker.len();
    let digits: String = revision[at..].chars().take_while(char::is_ascii_digit).collect();
    digits.parse().ok()
}

/// The groups of suites a pinned version may be in, in the order they are tried.
fn suite_groups(version: &str, releases: &[String]) -> Vec<Vec<String>> {
    let rev = dv::parse(version).revision;
    if let Some(n) = release_marker(rev, "~bpo").and_then(debian::codename) {
        return vec![vec![format!("{n}-backports")]];
    }
    // `+deb12u1` (a stable update), `~deb12u1` (a new upstream uploaded to stable).
    let stable = release_marker(rev, "+deb").or_else(|| release_marker(rev, "~deb"));
    if let Some(n) = stable.and_then(debian::codename) {
        return vec![release_group(n)];
    }
    releases.iter().map(|r| release_group(r)).collect()
}

/// Look one pinned source up.
pub(super) fn source_row(pin: &Pin, releases: &[String], idx: &mut Indexes) -> Result<SourceRow> {
    let d = pin.source.debian.as_ref().context("a source without a Debian origin")?;
    let is_deb = d.file.ends_with(".deb");
    // A .deb is looked up in its own architecture's Packages (`all` is in every one).
    let (package, stem) = if is_deb {
        let name = d.file.split('_').next().unwrap_or_default().to_string();
        let arch = d.file.trim_end_matches(".deb").rsplit('_').next().unwrap_or("amd64");
        let arch = if arch == "all" { "amd64" } else { arch };
        (name, format!("main/binary-{arch}/Packages"))
    } else {
        (d.package.clone(), "main/source/Sources".to_string())
    };
    let series = dv::series(dv::parse(&d.version).upstream);
    let groups = suite_groups(&d.version, releases);
    let mut row = SourceRow {
        node: pin.node.clone(),
        recipe: pin.recipe.display().to_string(),
        file: pin.source.file.clone(),
        package: package.clone(),
        series: series.clone(),
        suites: Vec::new(),
        current: d.version.clone(),
        newest: None,
        newest_suite: None,
        security: false,
        state: SourceState::Current,
    };
    let mut missing = Vec::new();
    let mut older = None;
    for group in &groups {
        let mut found: Vec<(Paragraph, String)> = Vec::new();
        for suite in group {
            let Some(paragraphs) = idx.of(suite, &stem, &package)? else {
                missing.push(suite.clone());
                continue;
            };
            for p in paragraphs {
                if dv::series(dv::parse(p.get("Version")).upstream) == series {
                    found.push((p, suite.clone()));
                }
            }
        }
        // The group this pin is in carries it at its version or a newer one; a group whose
        // newest is older is another release (or a stale mirror): the next is tried.
        let best = found
            .into_iter()
            .max_by(|(a, _), (b, _)| dv::compare(a.get("Version"), b.get("Version")));
        let Some((newest, suite)) = best else { continue };
        if dv::compare(newest.get("Version"), &d.version).is_lt() {
            older.get_or_insert((newest.get("Version").to_string(), suite));
            continue;
        }
        row.suites = group.clone();
        let version = newest.get("Version").to_string();
        let index = format!("{suite}'s {stem}");
        row.security = suite.ends_with("-security");
        row.newest = Some(version.clone());
        row.newest_suite = Some(suite);
        if dv::compare(&version, &d.version).is_le() {
            return Ok(row);
        }
        row.state = if is_deb {
            let filename = newest.get("Filename").to_string();
            SourceState::Newer {
                file: filename.rsplit('/').next().unwrap_or_default().to_string(),
                sha256: newest.get("SHA256").to_string(),
                size: newest
                    .get("Size")
                    .parse()
                    .with_context(|| format!("{index}: {package} {version}: Size"))?,
                pool_path: filename,
            }
        } else if dv::parse(&version).upstream == dv::parse(&d.version).upstream {
            SourceState::SameFile
        } else {
            let upstream = dv::parse(&version).upstream.to_string();
            let orig = format!("{package}_{upstream}.orig.tar.");
            let line = newest
                .get("Checksums-Sha256")
                .lines()
                .map(str::split_whitespace)
                .map(|mut w| (w.next(), w.next(), w.next()))
                .find(|(_, _, n)| n.is_some_and(|n| n.starts_with(&orig)));
            let (Some(sha), Some(size), Some(name)) = line.unwrap_or_default() else {
                bail!("{index}: {package} {version} lists no {orig}* file");
            };
            SourceState::Newer {
                file: name.to_string(),
                sha256: sha.to_string(),
                size: size.parse().with_context(|| format!("{index}: {name}: size"))?,
                pool_path: format!("{}/{name}", newest.get("Directory")),
            }
        };
        return Ok(row);
    }
    let looked: Vec<String> = groups.iter().flatten().cloned().collect();
    let why = match older {
        Some((v, suite)) => format!(
            "the newest {package} {series}.x is {v} in {suite}, older than the pin (a stale or rolled-back mirror?)"
        ),
        None if !missing.is_empty() => format!(
            "{package} {series}.x is in none of {} (no configured mirror serves {})",
            looked.join(", "),
            missing.join(", ")
        ),
        None => format!("{package} {series}.x is in none of {}", looked.join(", ")),
    };
    row.state = SourceState::NotFound { why };
    Ok(row)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_version_names_the_suites_it_may_be_in() {
        let releases = vec!["bookworm".to_string(), "trixie".to_string()];
        assert_eq!(suite_groups("6.18.15-1~bpo13+1", &releases), [vec!["trixie-backports"]]);
        assert_eq!(
            suite_groups("1:1.35.0-4+deb12u1", &releases),
            [vec!["bookworm", "bookworm-security", "bookworm-updates"]]
        );
        assert_eq!(suite_groups("6.1.176-1", &releases).len(), 2);
        assert_eq!(suite_groups("6.1.176-1", &releases)[1][0], "trixie");
        assert_eq!(release_marker("4+deb12u1", "+deb"), Some(12));
        assert_eq!(release_marker("1", "+deb"), None);
    }
}
