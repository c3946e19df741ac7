//! The Debian archive as an origin: mirror discovery from configuration (never hard-coded)
//! and pool paths for source and binary package files.

use std::path::Path;

/// Environment variable naming Debian mirror base URLs (space separated), checked first.
pub(crate) const MIRROR_ENV: &str = "REPROVM_DEBIAN_MIRROR";

/// Environment variable naming Debian snapshot-archive base URLs (space separated).
pub(crate) const SNAPSHOT_ENV: &str = "REPROVM_DEBIAN_SNAPSHOT";

/// Debian's snapshot archive: every file the archive ever published, by time. Unlike the pool
/// (which drops superseded versions) it keeps pinned sources fetchable; it has one public
/// address, the default here and in nix/recipe.nix, replaced by `REPROVM_DEBIAN_SNAPSHOT`.
pub(crate) const DEFAULT_SNAPSHOT: &str = "https://snapshot.debian.org";

/// Snapshot-archive base URLs.
pub(crate) fn snapshots() -> Vec<String> {
    match std::env::var(SNAPSHOT_ENV) {
        Ok(v) => v.split_whitespace().map(|s| s.trim_end_matches('/').to_string()).collect(),
        Err(_) => vec![DEFAULT_SNAPSHOT.to_string()],
    }
}

/// A snapshot time as the archive names them: `YYYYMMDDTHHMMSSZ`.
pub(crate) fn is_snapshot_time(s: &str) -> bool {
    let b = s.as_bytes();
    b.len() == 16
        && b[8] == b'T'
        && b[15] == b'Z'
        && b[..8].iter().chain(&b[9..15]).all(u8::is_ascii_digit)
}

/// Now, as a snapshot time (UTC).
pub(crate) fn snapshot_time_now() -> String {
    snapshot_time(reprovm_fs::util::unix_now())
}

/// Seconds since the epoch as a snapshot time (UTC).
pub(crate) fn snapshot_time(secs: u64) -> String {
    let t = reprovm_fs::util::UtcTime::from_unix(secs);
    format!("{:04}{:02}{:02}T{:02}{:02}{:02}Z", t.year, t.month, t.day, t.hour, t.minute, t.second)
}

/// URLs of a pool file in the snapshot archive at `time`: `BASE/archive/ARCHIVE/TIME/POOLPATH`.
/// `pool_path` is relative to the archive root (`pool/main/...`); security updates live in
/// the `debian-security` archive under `pool/updates/`.
pub(crate) fn snapshot_urls(bases: &[String], time: &str, pool_path: &str) -> Vec<String> {
    let archive = if pool_path.starts_with("pool/updates/") { "debian-security" } else { "debian" };
    bases.iter().map(|b| format!("{b}/archive/{archive}/{time}/{pool_path}")).collect()
}

/// Mirror base URLs (e.g. `http://HOST/debian`), from `$REPROVM_DEBIAN_MIRROR` or else the
/// host's apt sources (`/etc/apt/sources.list` and `/etc/apt/sources.list.d/*.{list,sources}`).
/// Only archives that carry a `pool/` for Debian main are kept (security archives included).
pub fn mirrors() -> Vec<String> {
    if let Ok(v) = std::env::var(MIRROR_ENV) {
        let list: Vec<String> =
            v.split_whitespace().map(|s| s.trim_end_matches('/').to_string()).collect();
        if !list.is_empty() {
            return list;
        }
    }
    mirrors_from_apt(Path::new("/etc/apt"))
}

pub(crate) fn mirrors_from_apt(etc_apt: &Path) -> Vec<String> {
    let mut files = vec![etc_apt.join("sources.list")];
    if let Ok(rd) = std::fs::read_dir(etc_apt.join("sources.list.d")) {
        let mut more: Vec<_> = rd.filter_map(|e| e.ok()).map(|e| e.path()).collect();
        more.sort();
        files.extend(more);
    }
    let mut out: Vec<String> = Vec::new();
    for f in files {
        let Ok(text) = std::fs::read_to_string(&f) else {
            continue;
        };
        let name = f.to_string_lossy();
        let found = if name.ends_with(".sources") {
            parse_deb822(&text)
        } else if name.ends_with(".list") {
            parse_one_line(&text)
        } else {
            continue;
        };
        for u in found {
            if !out.contains(&u) {
                out.push(u);
            }
        }
    }
    out
}

fn looks_debian(uri: &str, suites: &[&str]) -> bool {
    (uri.starts_with("http://") || uri.starts_with("https://") || uri.starts_with("file:"))
        && suites.iter().any(|s| {
            let base = s.split(['-', '/']).next().unwrap_or(s);
            matches!(
                base,
                "bookworm"
                    | "trixie"
                    | "bullseye"
                    | "sid"
                    | "stable"
                    | "oldstable"
                    | "testing"
                    | "unstable"
            )
        })
}

/// deb822 `.sources` paragraphs: `URIs:`, `Suites:`, `Enabled:`.
fn parse_deb822(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for p in crate::mechanisms::deb822::paragraphs(text) {
        if p.get("Enabled") == "no" {
            continue;
        }
        let suites: Vec<&str> = p.get("Suites").split_whitespace().collect();
        for u in p.get("URIs").split_whitespace() {
            if looks_debian(u, &suites) {
                out.push(u.trim_end_matches('/').to_string());
            }
        }
    }
    out
}

/// One-line format: `deb [opts] URI SUITE COMPONENTS…`.
fn parse_one_line(text: &str) -> Vec<String> {
    let mut out = Vec::new();
    for line in text.lines() {
        let line = line.trim();
        if !(line.starts_with("deb ") || line.starts_with("deb-src ")) {
            continue;
        }
        let mut words: Vec<&str> = line.split_whitespace().skip(1).collect();
        if words.first().is_some_and(|w| w.starts_with('[')) {
            while let Some(w) = words.first() {
                let end = w.ends_with(']');
                words.remove(0);
                if end {
                    break;
                }
            }
        }
        if words.len() >= 2 && looks_debian(words[0], &[words[1]]) {
            out.push(words[0].trim_end_matches('/').to_string());
        }
    }
    out
}

/// Debian's releases, oldest first: their numbers (the `+debNNuM` and `~bpoNN` markers of
/// stable and backported versions) and codenames (their suites: `CODENAME`,
/// `CODENAME-security`, `CODENAME-updates`, `CODENAME-backports`).
pub(crate) const RELEASES: [(u32, &str); 4] =
    [(11, "bullseye"), (12, "bookworm"), (13, "trixie"), (14, "forky")];

/// The codename of Debian release `number`.
pub(crate) fn codename(number: u32) -> Option<&'static str> {
    RELEASES.iter().find(|(n, _)| *n == number).map(|(_, c)| *c)
}

/// Pool directory of a source package: `pool/main/b/busybox`, `pool/main/libc/libcap2`.
/// Recipes validate package names (`recipe.rs`); an invalid one still never panics here.
pub(crate) fn pool_dir(source_package: &str) -> String {
    let prefix = if source_package.starts_with("lib") && source_package.len() > 3 {
        source_package.get(..4)
    } else {
        source_package.get(..1)
    };
    format!("pool/main/{}/{source_package}", prefix.unwrap_or(""))
}

/// Candidate pool paths of a file of a Debian source package (main archive, security archive).
pub(crate) fn source_pool_paths(package: &str, file: &str) -> [String; 2] {
    let pool = pool_dir(package);
    [format!("{pool}/{file}"), format!("{}/{file}", pool.replacen("pool/", "pool/updates/", 1))]
}

/// Candidate URLs for a file of a Debian source package on every configured mirror.
pub(crate) fn source_urls(mirrors: &[String], package: &str, file: &str) -> Vec<String> {
    let paths = source_pool_paths(package, file);
    mirrors.iter().flat_map(|m| paths.iter().map(move |p| format!("{m}/{p}"))).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn snapshot_times_and_urls() {
        assert_eq!(snapshot_time(0), "19700101T000000Z");
        assert_eq!(snapshot_time(1_784_011_430), "20260714T064350Z");
        assert_eq!(snapshot_time(951_782_400), "20000229T000000Z");
        assert!(is_snapshot_time("20261123T120000Z"));
        for bad in ["20261123", "20261123T1200Z", "2026112xT120000Z", "20261123T120000z"] {
            assert!(!is_snapshot_time(bad), "{bad}");
        }
        let [main, security] = source_pool_paths("linux", "linux_6.1.176.orig.tar.xz");
        let bases = vec!["http://s".to_string()];
        assert_eq!(
            snapshot_urls(&bases, "20261123T120000Z", &main),
            ["http://s/archive/debian/20261123T120000Z/pool/main/l/linux/linux_6.1.176.orig.tar.xz"]
        );
        assert_eq!(
            snapshot_urls(&bases, "20261123T120000Z", &security),
            ["http://s/archive/debian-security/20261123T120000Z/pool/updates/main/l/linux/linux_6.1.176.orig.tar.xz"]
        );
    }

    #[test]
    fn pool_paths() {
        assert_eq!(pool_dir("busybox"), "pool/main/b/busybox");
        assert_eq!(pool_dir("libcap2"), "pool/main/libc/libcap2");
    }

    #[test]
    fn reads_both_apt_formats() {
        let t = tempfile::tempdir().unwrap();
        std::fs::create_dir(t.path().join("sources.list.d")).unwrap();
        std::fs::write(
            t.path().join("sources.list.d/d.sources"),
            "Types: deb\nURIs: http://m.example/debian\nSuites: bookworm bookworm-updates\nComponents: main\n\nTypes: deb\nURIs: https://other.example/apt\nSuites: cloud-sdk\n",
        )
        .unwrap();
        std::fs::write(
            t.path().join("sources.list"),
            "deb [arch=amd64] http://m2.example/debian/ bookworm main\n# deb http://x/ y z\n",
        )
        .unwrap();
        assert_eq!(
            mirrors_from_apt(t.path()),
            vec!["http://m2.example/debian", "http://m.example/debian"]
        );
    }
}
