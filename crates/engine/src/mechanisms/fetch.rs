//! Content-addressed fetching, like Nix's fixed-output derivations: one pinned sha256, many
//! origins (the cache, local mirror directories, content-addressed blob sources such as a
//! binary cache's registry, upstream URLs, the Debian archive). The first origin whose bytes
//! hash right wins; nothing unverified ever enters the cache.

use crate::mechanisms::http::{Client, HttpError};
use reprovm_fs::hash::HashingWriter;
use reprovm_fs::lock::Lock;
use reprovm_fs::progress::{self, human_bytes, Timer};
use std::fs::{self, File};
use std::io::{self, Write};
use std::path::{Path, PathBuf};
use std::sync::OnceLock;

/// What to fetch: a file name (for mirrors and messages), its pin and where it may be found.
#[derive(Debug, Clone)]
pub(crate) struct Want {
    pub file: String,
    pub sha256: String,
    pub size: u64,
    pub urls: Vec<String>,
    /// Other names the same bytes go by in mirror directories (e.g. Debian's orig name).
    pub aliases: Vec<String>,
}

#[derive(Debug, thiserror::Error)]
pub(crate) enum FetchError {
    #[error("{file}: no origin had the pinned bytes (sha256 {sha256}): {}", attempts.join("; "))]
    AllOriginsFailed { file: String, sha256: String, attempts: Vec<String> },
    #[error("{file}: not in the cache or a mirror and --offline was given (sha256 {sha256}); run `cargo xtask fetch` online or pass --mirror DIR")]
    Offline { file: String, sha256: String },
}

/// Why one origin failed; the caller decides whether to try the next.
#[derive(Debug)]
enum AttemptError {
    Missing(String),
    Transfer(String),
    Mismatch { expected: String, got: String, size: u64, expected_size: u64 },
}

impl std::fmt::Display for AttemptError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            AttemptError::Missing(m) | AttemptError::Transfer(m) => f.write_str(m),
            AttemptError::Mismatch { expected, got, size, expected_size } => {
                write!(f, "hash mismatch: expected sha256 {expected} ({expected_size} bytes), got sha256 {got} ({size} bytes); refused")
            }
        }
    }
}

/// An origin that serves blobs by their sha256 (a registry used as a binary cache).
pub(crate) trait BlobSource: Send + Sync {
    /// For messages: where the blobs come from.
    fn describe(&self) -> String;
    /// Write the blob to `w`: Ok(false) when the source does not have it, Err with a one-line
    /// reason when it failed (what was written is then discarded).
    fn fetch_blob(&self, sha256: &str, size: u64, w: &mut dyn Write) -> Result<bool, String>;
}

pub struct Fetcher {
    cache: PathBuf,
    mirrors: Vec<PathBuf>,
    blob_sources: Vec<Box<dyn BlobSource>>,
    offline: bool,
    client: Client,
    /// Held shared while this process may write temp files in the cache (see `cache_lock`).
    lock: OnceLock<Lock>,
}

impl Fetcher {
    pub(crate) fn new(cache: &Path, mirrors: Vec<PathBuf>, offline: bool) -> Fetcher {
        Fetcher {
            cache: cache.to_path_buf(),
            mirrors,
            blob_sources: Vec::new(),
            offline,
            client: Client::new(),
            lock: OnceLock::new(),
        }
    }

    /// Try `source` after the mirrors and before upstream URLs (not with --offline).
    pub(crate) fn add_blob_source(&mut self, source: Box<dyn BlobSource>) {
        self.blob_sources.push(source);
    }

    /// Before the first write to the cache: take `cache/.lock`. If nobody else holds it, no
    /// other process is downloading, so every `tmp/*.part` is left by a killed process and is
    /// removed; then keep the lock shared for as long as this process lives.
    fn cache_lock(&self) -> io::Result<()> {
        if self.lock.get().is_some() {
            return Ok(());
        }
        let path = self.cache.join(".lock");
        let to_io = |e: anyhow::Error| io::Error::other(format!("{e:#}"));
        let lock = match Lock::try_exclusive(&path).map_err(to_io)? {
            Some(ex) => {
                let tmp = self.cache.join("tmp");
                if let Ok(rd) = fs::read_dir(&tmp) {
                    for e in rd.flatten() {
                        if e.file_name().to_string_lossy().ends_with(".part") {
                            progress::say(&format!(
                                "removing {} (left by an interrupted fetch)",
                                e.path().display()
                            ));
                            fs::remove_file(e.path())?;
                        }
                    }
                }
                ex.downgrade().map_err(to_io)?
            }
            None => Lock::shared(&path).map_err(to_io)?,
        };
        let _ = self.lock.set(lock);
        Ok(())
    }

    /// Where a verified blob with this hash lives (whether or not it exists yet).
    /// `--offline`: no network.
    pub(crate) fn is_offline(&self) -> bool {
        self.offline
    }

    /// The `--mirror` directories.
    pub(crate) fn mirror_dirs(&self) -> &[PathBuf] {
        &self.mirrors
    }

    pub(crate) fn cache_path(&self, sha256: &str) -> PathBuf {
        self.cache.join("sha256").join(sha256)
    }

    /// Present in the cache. The name is the hash and only verified bytes are ever renamed
    /// there, so a size check is enough: no re-hashing of large tarballs on every run.
    pub(crate) fn is_cached(&self, sha256: &str, size: u64) -> bool {
        fs::metadata(self.cache_path(sha256)).map(|m| m.len() == size).unwrap_or(false)
    }

    pub(crate) fn fetch(&self, want: &Want) -> Result<PathBuf, FetchError> {
        let dest = self.cache_path(&want.sha256);
        if self.is_cached(&want.sha256, want.size) {
            return Ok(dest);
        }
        let mut attempts = Vec::new();
        for dir in &self.mirrors {
            let names = std::iter::once(&want.file).chain(want.aliases.iter());
            let cands: Vec<PathBuf> =
                names.map(|n| dir.join(n)).chain([dir.join("sha256").join(&want.sha256)]).collect();
            for cand in cands {
                if !cand.is_file() {
                    continue;
                }
                let origin = format!("mirror {}", cand.display());
                match self.store_from(want, &origin, |w| {
                    let mut f =
                        File::open(&cand).map_err(|e| AttemptError::Transfer(e.to_string()))?;
                    io::copy(&mut f, w).map_err(|e| AttemptError::Transfer(e.to_string()))?;
                    Ok(())
                }) {
                    Ok(p) => return Ok(p),
                    Err(e) => attempts.push(format!("{origin}: {e}")),
                }
            }
        }
        if self.offline {
            if attempts.is_empty() {
                return Err(FetchError::Offline {
                    file: want.file.clone(),
                    sha256: want.sha256.clone(),
                });
            }
            return Err(FetchError::AllOriginsFailed {
                file: want.file.clone(),
                sha256: want.sha256.clone(),
                attempts,
            });
        }
        for source in &self.blob_sources {
            let origin = source.describe();
            let mut absent = false;
            let r = self.store_from(want, &origin, |w| {
                match source.fetch_blob(&want.sha256, want.size, w) {
                    Ok(true) => Ok(()),
                    Ok(false) => {
                        absent = true;
                        Err(AttemptError::Missing("not there".into()))
                    }
                    Err(e) => Err(AttemptError::Transfer(e)),
                }
            });
            match r {
                Ok(p) => return Ok(p),
                Err(_) if absent => attempts.push(format!("{origin}: not there")),
                Err(e) => attempts.push(format!("{origin}: {e}")),
            }
        }
        for url in &want.urls {
            match self.store_from(want, url, |w| self.download(url, want, w)) {
                Ok(p) => return Ok(p),
                Err(e) => attempts.push(format!("{url}: {e}")),
            }
        }
        if attempts.is_empty() {
            attempts
                .push("no origins configured (add urls, a [debian] origin or --mirror DIR)".into());
        }
        Err(FetchError::AllOriginsFailed {
            file: want.file.clone(),
            sha256: want.sha256.clone(),
            attempts,
        })
    }

    /// Stream one origin into a temp file in the cache, verify size and sha256, fsync and
    /// rename into place. Every failure removes the temp file (NamedTempFile drops it).
    fn store_from(
        &self,
        want: &Want,
        origin: &str,
        fill: impl FnOnce(&mut HashingWriter<&mut File>) -> Result<(), AttemptError>,
    ) -> Result<PathBuf, AttemptError> {
        let tmpdir = self.cache.join("tmp");
        let dest = self.cache_path(&want.sha256);
        let mk = |e: io::Error| AttemptError::Transfer(format!("cache: {e}"));
        fs::create_dir_all(&tmpdir).map_err(mk)?;
        self.cache_lock().map_err(mk)?;
        fs::create_dir_all(dest.parent().unwrap_or(&self.cache)).map_err(mk)?;
        let mut tmp = tempfile::Builder::new()
            .prefix(&want.sha256[..16])
            .suffix(".part")
            .tempfile_in(&tmpdir)
            .map_err(mk)?;
        let timer = Timer::start();
        // Without a terminal: a start line for large files, one result line for every file.
        if !progress::interactive() && want.size > 8 << 20 {
            progress::say(&format!(
                "fetch {} ({}) from {origin}",
                want.file,
                human_bytes(want.size)
            ));
        }
        let got = {
            let file = tmp.as_file_mut();
            let mut w = HashingWriter::new(file);
            fill(&mut w)?;
            let written = w.written;
            let (_, got) = w.finish();
            (got, written)
        };
        if got.0 != want.sha256 || got.1 != want.size {
            return Err(AttemptError::Mismatch {
                expected: want.sha256.clone(),
                got: got.0,
                size: got.1,
                expected_size: want.size,
            });
        }
        tmp.as_file().sync_all().map_err(mk)?;
        tmp.persist(&dest).map_err(|e| mk(e.error))?;
        if let Some(parent) = dest.parent() {
            File::open(parent).and_then(|d| d.sync_all()).map_err(mk)?;
        }
        if !progress::interactive() {
            progress::say(&format!(
                "fetched {} ({}) from {origin} in {}",
                want.file,
                human_bytes(want.size),
                timer.elapsed()
            ));
        }
        Ok(dest)
    }

    fn download(&self, url: &str, want: &Want, w: &mut dyn Write) -> Result<(), AttemptError> {
        if let Some(path) = url.strip_prefix("file://") {
            let mut f = File::open(path).map_err(|e| AttemptError::Missing(e.to_string()))?;
            io::copy(&mut f, w).map_err(|e| AttemptError::Transfer(e.to_string()))?;
            return Ok(());
        }
        let body = self.client.get(url, want.size).map_err(|e| match e {
            HttpError::Status(_) => AttemptError::Missing(e.to_string()),
            HttpError::Transport(m) => AttemptError::Transfer(m),
        })?;
        let pb = progress::bytes_bar(want.size, &want.file);
        let mut reader = pb.wrap_read(body);
        let r = io::copy(&mut reader, w);
        pb.finish_and_clear();
        r.map_err(|e| {
            AttemptError::Transfer(format!("transfer failed: {}", one_line(&e.to_string())))
        })?;
        Ok(())
    }
}

fn one_line(s: &str) -> String {
    s.replace('\n', " ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::testutil::serve;
    use reprovm_fs::hash::sha256_bytes;

    fn want(body: &[u8], urls: Vec<String>) -> Want {
        Want {
            file: "x.tar.gz".into(),
            sha256: sha256_bytes(body),
            size: body.len() as u64,
            urls,
            aliases: vec![],
        }
    }

    fn cache_is_empty(cache: &Path) -> bool {
        let count = |d: PathBuf| fs::read_dir(d).map(|r| r.count()).unwrap_or(0);
        count(cache.join("sha256")) == 0 && count(cache.join("tmp")) == 0
    }

    #[test]
    fn wrong_hash_is_refused_and_not_cached() {
        let base = serve(vec![("/x", 200, b"evil bytes".to_vec(), None)]);
        let t = tempfile::tempdir().unwrap();
        let f = Fetcher::new(t.path(), vec![], false);
        let mut w = want(b"good bytes", vec![format!("{base}/x")]);
        w.size = 10;
        let e = f.fetch(&w).unwrap_err().to_string();
        assert!(e.contains(&format!("expected sha256 {}", sha256_bytes(b"good bytes"))), "{e}");
        assert!(e.contains(&format!("got sha256 {}", sha256_bytes(b"evil bytes"))), "{e}");
        assert!(cache_is_empty(t.path()));
    }

    #[test]
    fn truncated_download_leaves_nothing() {
        let body = vec![7u8; 100_000];
        let base = serve(vec![("/x", 200, body.clone(), Some(1000))]);
        let t = tempfile::tempdir().unwrap();
        let f = Fetcher::new(t.path(), vec![], false);
        let e = f.fetch(&want(&body, vec![format!("{base}/x")])).unwrap_err().to_string();
        assert!(e.contains("no origin had the pinned bytes"), "{e}");
        assert!(cache_is_empty(t.path()));
    }

    #[test]
    fn first_origin_404_then_second_succeeds_then_cache_hit() {
        let body = b"the real tarball".to_vec();
        let base = serve(vec![("/good", 200, body.clone(), None)]);
        let t = tempfile::tempdir().unwrap();
        let f = Fetcher::new(t.path(), vec![], false);
        let w = want(&body, vec![format!("{base}/missing"), format!("{base}/good")]);
        let p = f.fetch(&w).unwrap();
        assert_eq!(fs::read(&p).unwrap(), body);
        // Second fetch: a cache hit with no network (every URL now points nowhere).
        let offline = Fetcher::new(t.path(), vec![], true);
        let w2 = Want { urls: vec!["http://127.0.0.1:1/nope".into()], ..w };
        assert_eq!(offline.fetch(&w2).unwrap(), p);
    }

    #[test]
    fn mirror_directory_and_offline() {
        let body = b"mirrored".to_vec();
        let t = tempfile::tempdir().unwrap();
        let mirror = t.path().join("mirror");
        fs::create_dir(&mirror).unwrap();
        fs::write(mirror.join("x.tar.gz"), &body).unwrap();
        let cache = t.path().join("cache");
        let f = Fetcher::new(&cache, vec![mirror], true);
        assert_eq!(fs::read(f.fetch(&want(&body, vec![])).unwrap()).unwrap(), body);
        let none = Fetcher::new(&t.path().join("c2"), vec![], true);
        let e = none.fetch(&want(&body, vec![])).unwrap_err();
        assert!(matches!(e, FetchError::Offline { .. }));
    }
}
