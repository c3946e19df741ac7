//! Debian archives read as apt reads them. A suite's `InRelease` is verified by the pinned sqv
//! against the pinned keyring (`pins/archive.lock`: Debian's `debian-archive-keyring`), or
//! against a keyring the caller names (`--keyring`: how a test or private archive is trusted,
//! and only then); only the text the signature covers is read. That Release must be the suite
//! asked for and within its `Valid-Until`. Every index is then fetched by a path the Release
//! lists, bounded by the size listed there, and its sha256 checked before it is decompressed
//! or read. Each refusal is one line naming the file (`toolchain lock` and `update` read
//! nothing else from an archive).

use super::{find_or_ensure_set, root_program, PackageSet};
use crate::mechanisms::deb822::{self, Paragraph};
use crate::mechanisms::debian;
use crate::mechanisms::debian_release::{self, Release};
use crate::mechanisms::fetch::Fetcher;
use crate::mechanisms::http::{Client, HttpError};
use crate::model::project::Project;
use anyhow::{bail, Context, Result};
use reprovm_fs::archive;
use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// The most an `InRelease` may be (bookworm's is ~160 KB).
const INRELEASE_LIMIT: u64 = 16 << 20;
/// The most a decompressed index may be (bookworm's main Packages is ~45 MB).
const INDEX_TEXT_LIMIT: u64 = 1 << 30;
/// The keyring file of the pinned `debian-archive-keyring` (every current release's keys).
const PINNED_KEYRING: &str = "usr/share/keyrings/debian-archive-keyring.pgp";

/// Which keys an archive's signatures must verify with.
#[derive(Debug, Clone)]
pub(crate) struct Keyring {
    pub path: PathBuf,
    /// How it was chosen, for messages.
    pub origin: String,
}

/// A suite's verified Release and the mirror base it came from.
#[derive(Debug, Clone)]
pub(crate) struct SuiteRelease {
    pub suite: String,
    pub base: String,
    pub release: Release,
}

/// An index's paragraphs, shared.
type Parsed = Arc<Vec<Paragraph>>;

/// A reader of Debian archives whose every index is authenticated.
pub(crate) struct Archive {
    client: Client,
    mirrors: Vec<String>,
    sqv: (PathBuf, PathBuf),
    pub keyring: Keyring,
    releases: Mutex<BTreeMap<String, SuiteRelease>>,
    /// Indexes parsed, by suite and stem: each is read once per reader.
    parsed: Mutex<BTreeMap<(String, String), Parsed>>,
}

impl Archive {
    /// The project's mirrors, verified with `keyring` (a file the user trusts) or else the
    /// pinned keyring; the pinned sqv either way (materialised at first use).
    pub(crate) fn open(
        project: &Project,
        fetcher: &Fetcher,
        keyring: Option<&Path>,
    ) -> Result<Archive> {
        if let Some(k) = keyring {
            anyhow::ensure!(k.is_file(), "--keyring {}: no such file", k.display());
        }
        anyhow::ensure!(
            !project.debian_mirrors.is_empty(),
            "no Debian mirror configured: set {} or add one to /etc/apt/sources.list.d",
            debian::MIRROR_ENV
        );
        let lock = PackageSet::Archive.lock(project);
        anyhow::ensure!(
            lock.is_file(),
            "{} does not exist: it pins the verifier and keyring every index is checked with; restore it from the repository (`git checkout -- pins/archive.lock`)",
            lock.display()
        );
        let root = find_or_ensure_set(project, fetcher, PackageSet::Archive)?.root;
        let dir = reprovm_fs::beneath::Dir::open(&root)?;
        let sqv = dir.resolve_in_root(Path::new("/usr/bin/sqv"), true).with_context(|| {
            format!("sqv is not in the archive set's root ({})", lock.display())
        })?;
        let keyring = match keyring {
            Some(k) => {
                anyhow::ensure!(k.is_file(), "--keyring {}: no such file", k.display());
                Keyring { path: k.to_path_buf(), origin: format!("--keyring {}", k.display()) }
            }
            None => Keyring {
                path: root.join(PINNED_KEYRING),
                origin: format!("debian-archive-keyring of {}", lock.display()),
            },
        };
        Ok(Archive {
            client: Client::new(),
            mirrors: project.debian_mirrors.clone(),
            sqv: (root, sqv),
            keyring,
            releases: Mutex::new(BTreeMap::new()),
            parsed: Mutex::new(BTreeMap::new()),
        })
    }

    /// The verified Release of `suite` from the first mirror that has one (a mirror without
    /// the suite is skipped; one whose InRelease fails a check is an error, not skipped).
    pub(crate) fn release(&self, suite: &str) -> Result<SuiteRelease> {
        if let Some(r) = self.releases.lock().ok().and_then(|m| m.get(suite).cloned()) {
            return Ok(r);
        }
        let mut missing = Vec::new();
        for base in &self.mirrors {
            let url = format!("{base}/dists/{suite}/InRelease");
            let signed = match self.get(&url, INRELEASE_LIMIT) {
                Ok(b) => b,
                Err(Fetch::Missing(why)) => {
                    missing.push(format!("{url}: {why}"));
                    continue;
                }
                Err(Fetch::TooLarge) => bail!("{url}: larger than {INRELEASE_LIMIT} bytes"),
                Err(Fetch::Failed(e)) => return Err(e),
            };
            let text = self.verify(&url, &signed)?;
            let release = debian_release::parse(&text).with_context(|| url.clone())?;
            anyhow::ensure!(
                release.is_suite(suite),
                "{url}: it is the Release of {} ({}), not of {suite} (a replay of another suite)",
                release.codename,
                release.suite
            );
            release.check_valid_at(now()).map_err(|why| anyhow::anyhow!("{url}: {why}"))?;
            // apt's Check-Date: a Release from the future means a wrong clock or mirror.
            if let Some(date) = release.date.filter(|d| *d > now() + 86_400) {
                bail!(
                    "{url}: it is dated {}, in the future (the clock here or the mirror is wrong)",
                    debian_release::format_date(date)
                );
            }
            let r = SuiteRelease { suite: suite.to_string(), base: base.clone(), release };
            if let Ok(mut m) = self.releases.lock() {
                m.insert(suite.to_string(), r.clone());
            }
            return Ok(r);
        }
        bail!(
            "no configured mirror has the suite {suite} ({}); set {} to mirrors that do",
            missing.join("; "),
            debian::MIRROR_ENV
        )
    }

    /// Whether a mirror has `suite` at all (its InRelease is served); verified when it is.
    pub(crate) fn has_suite(&self, suite: &str) -> Result<bool> {
        match self.release(suite) {
            Ok(_) => Ok(true),
            Err(e) if e.to_string().starts_with("no configured mirror has the suite") => Ok(false),
            Err(e) => Err(e),
        }
    }

    /// The text of the index `stem` of a suite (`main/binary-amd64/Packages`,
    /// `main/source/Sources`): the first of its `.xz`, `.gz` or plain forms the Release lists,
    /// fetched within the listed size and checked against the listed sha256, then decompressed.
    pub(crate) fn index_text(&self, suite: &SuiteRelease, stem: &str) -> Result<String> {
        let (path, format) = [
            (format!("{stem}.xz"), Some(archive::Format::TarXz)),
            (format!("{stem}.gz"), Some(archive::Format::TarGz)),
            (stem.to_string(), None),
        ]
        .into_iter()
        .find(|(p, _)| suite.release.files.contains_key(p))
        .with_context(|| {
            format!("{}/dists/{}/InRelease lists no {stem} index", suite.base, suite.suite)
        })?;
        let (sha, size) = suite.release.files[&path].clone();
        let url = format!("{}/dists/{}/{path}", suite.base, suite.suite);
        let bytes = match self.get(&url, size) {
            Ok(b) => b,
            Err(Fetch::Missing(why)) => bail!("{url}: {why} (the InRelease lists it)"),
            Err(Fetch::TooLarge) => bail!(
                "{url}: it is more than the {size} bytes the InRelease lists (with sha256 {sha}); cut off"
            ),
            Err(Fetch::Failed(e)) => return Err(e),
        };
        let got = reprovm_fs::hash::sha256_bytes(&bytes);
        anyhow::ensure!(
            bytes.len() as u64 == size && got == sha,
            "{url}: it is {} bytes with sha256 {got}, the InRelease lists {size} bytes with sha256 {sha}",
            bytes.len()
        );
        let mut text = String::new();
        let reader: Box<dyn Read> = match format {
            Some(f) => archive::decoder(f, std::io::Cursor::new(bytes))?,
            None => Box::new(std::io::Cursor::new(bytes)),
        };
        archive::Bounded::new(reader, INDEX_TEXT_LIMIT)
            .read_to_string(&mut text)
            .with_context(|| format!("{url}: decompressing"))?;
        Ok(text)
    }

    /// An archive at `base` whose `suite` has the (already verified) Release `text`: for the
    /// index checks' tests, which have no signed archive.
    #[cfg(test)]
    pub(crate) fn with_release(base: &str, suite: &str, text: &str) -> Archive {
        let release = debian_release::parse(text).unwrap();
        let r = SuiteRelease { suite: suite.into(), base: base.into(), release };
        Archive {
            client: Client::new(),
            mirrors: vec![base.into()],
            sqv: (PathBuf::new(), PathBuf::new()),
            keyring: Keyring { path: PathBuf::new(), origin: "test".into() },
            releases: Mutex::new(BTreeMap::from([(suite.to_string(), r)])),
            parsed: Mutex::new(BTreeMap::new()),
        }
    }

    /// The paragraphs of a suite's index `stem` ([`Archive::index_text`]), parsed once.
    pub(crate) fn paragraphs(&self, suite: &SuiteRelease, stem: &str) -> Result<Parsed> {
        let key = (suite.suite.clone(), stem.to_string());
        if let Some(p) = self.parsed.lock().ok().and_then(|m| m.get(&key).cloned()) {
            return Ok(p);
        }
        let p = Arc::new(deb822::paragraphs(&self.index_text(suite, stem)?));
        if let Ok(mut m) = self.parsed.lock() {
            m.insert(key, p.clone());
        }
        Ok(p)
    }

    /// GET `url`, at most `limit` bytes.
    fn get(&self, url: &str, limit: u64) -> Result<Vec<u8>, Fetch> {
        let mut body = self.client.get(url, limit).map_err(|e| match e {
            HttpError::Status(404 | 410) => Fetch::Missing(e.to_string()),
            e => Fetch::Failed(anyhow::anyhow!("{url}: {e}")),
        })?;
        let mut bytes = Vec::new();
        body.read_to_end(&mut bytes)
            .map_err(|e| Fetch::Failed(anyhow::anyhow!("{url}: the transfer broke off: {e}")))?;
        if bytes.len() as u64 > limit {
            return Err(Fetch::TooLarge);
        }
        Ok(bytes)
    }

    /// The text a cleartext-signed `InRelease` signs, if a key of the keyring signed it (sqv).
    fn verify(&self, url: &str, signed: &[u8]) -> Result<String> {
        anyhow::ensure!(
            signed.starts_with(b"-----BEGIN PGP SIGNED MESSAGE-----"),
            "{url}: it is not signed (no cleartext signature): refused"
        );
        let dir = tempfile::tempdir()?;
        let (input, output) = (dir.path().join("InRelease"), dir.path().join("Release"));
        std::fs::write(&input, signed)?;
        // sqv's cryptographic policy is its own built-in one: not the host's
        // /etc/crypto-policies, nor a SEQUOIA_CRYPTO_POLICY of the caller's environment.
        let policy = dir.path().join("policy.toml");
        std::fs::write(&policy, "")?;
        let (root, sqv) = &self.sqv;
        let mut c = root_program(root, sqv, "sqv")?;
        c.env_clear().env("SEQUOIA_CRYPTO_POLICY", &policy);
        c.arg("--keyring")
            .arg(&self.keyring.path)
            .arg("--cleartext")
            .arg("--output")
            .arg(&output)
            .arg(&input)
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped());
        let o = c.output().context("running the pinned sqv")?;
        if !o.status.success() {
            let why = String::from_utf8_lossy(&o.stderr);
            let lines: Vec<&str> = why.lines().map(str::trim).filter(|l| !l.is_empty()).collect();
            let why =
                if lines.is_empty() { "no reason given".to_string() } else { lines.join("; ") };
            bail!("{url}: its signature does not verify with {} (sqv: {why})", self.keyring.origin);
        }
        let text = std::fs::read(&output).with_context(|| format!("{url}: sqv's output"))?;
        String::from_utf8(text).with_context(|| format!("{url}: the signed text is not UTF-8"))
    }
}

/// Why a GET gave nothing.
enum Fetch {
    /// The mirror does not have it.
    Missing(String),
    /// It sends more than it may (cut off there).
    TooLarge,
    Failed(anyhow::Error),
}

fn now() -> i64 {
    reprovm_fs::util::unix_now() as i64
}
