//! The Debian archive as an origin: mirror discovery from configuration (never hard-coded)
//! and pool paths for source and binary package files.

use std::path::Path;

/// Environment variable naming Debian mirror base URLs (space separated), checked first.
pub const MIRROR_ENV: &str = "REPROVM_DEBIAN_MIRROR";

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

pub fn mirrors_from_apt(etc_apt: &Path) -> Vec<String> {
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
    for p in crate::deb822::paragraphs(text) {
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

/// Pool directory of a source package: `pool/main/b/busybox`, `pool/main/libc/libcap2`.
/// Recipes validate package names (`recipe.rs`); an invalid one still never panics here.
pub fn pool_dir(source_package: &str) -> String {
    let prefix = if source_package.starts_with("lib") && source_package.len() > 3 {
        source_package.get(..4)
    } else {
        source_package.get(..1)
    };
    format!("pool/main/{}/{source_package}", prefix.unwrap_or(""))
}

/// Candidate URLs for a file of a Debian source package on every configured mirror.
pub fn source_urls(mirrors: &[String], package: &str, file: &str) -> Vec<String> {
    let pool = pool_dir(package);
    let mut urls = Vec::new();
    for m in mirrors {
        urls.push(format!("{m}/{pool}/{file}"));
        // The security archive keeps its pool under pool/updates/.
        urls.push(format!("{m}/{}/{file}", pool.replacen("pool/", "pool/updates/", 1)));
    }
    urls
}

#[cfg(test)]
mod tests {
    use super::*;

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
