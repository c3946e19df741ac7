//! The registry client: the OCI distribution protocol over the project's one HTTP stack
//! (ureq), shared by `push`/`pull` and the binary cache. A registry is untrusted, so:
//!
//! - every byte it sends is bounded: manifests and indexes by [`MANIFEST_LIMIT`], token
//!   responses and error bodies by small limits, blobs by the size their descriptor declares
//!   (a blob that sends one byte more is cut off and refused while it streams, not after);
//! - every manifest is hashed as it arrives and checked against the digest asked for and the
//!   one the registry names; every blob against its digest and size;
//! - every transfer has an overall deadline besides its per-read timeout
//!   ([`reprovm_fs::util::transfer_deadline`] over the bytes it may carry), so a registry that
//!   drips a byte per read timeout is abandoned; `REPROVM_REGISTRY_TIMEOUT` sets the per-read
//!   timeout (seconds, default 120);
//! - credentials (docker's `config.json`, credential helpers included) go only to the
//!   registry's own origin, and for token authentication to a realm on that origin or one the
//!   user allowed in `REPROVM_REGISTRY_TOKEN_REALMS`; an anonymous token may come from any
//!   realm, and a realm on another host is named in the log. Nothing is sent over plain HTTP
//!   except to a registry on this machine;
//! - a registry chooses no request to this machine: a token realm or a redirect on loopback
//!   (or over plain HTTP) is followed only for a registry that is itself on loopback;
//! - redirects are followed by hand (at most five): credentials only to the same origin, never
//!   from HTTPS down to plain HTTP.

use anyhow::{bail, Context, Result};
use reprovm_fs::hash::HashingWriter;
use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::sync::Mutex;
use std::time::{Duration, Instant};

pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";
/// The largest manifest or index a registry may send (distribution's own limit).
pub const MANIFEST_LIMIT: u64 = 4 << 20;
/// The largest token response or error body read.
const SMALL_LIMIT: u64 = 64 << 10;
const MAX_REDIRECTS: usize = 5;
/// Token realms (`https://auth.example/token`, space-separated) that may receive credentials
/// besides the registry's own origin.
pub const REALMS_ENV: &str = "REPROVM_REGISTRY_TOKEN_REALMS";
/// The per-read timeout of registry transfers, in seconds (default 120).
pub const TIMEOUT_ENV: &str = "REPROVM_REGISTRY_TIMEOUT";
const DEFAULT_READ_TIMEOUT: Duration = Duration::from_secs(120);

mod auth;
mod blob;
mod reference;

use auth::*;
pub use blob::BlobReader;
pub use reference::{check_digest, explicit_tag, parse_repository, plain, Reference};

/// `DURATION (RATE/s)` for `bytes` moved since `since`.
pub fn rate(bytes: u64, since: Instant) -> String {
    let s = since.elapsed().as_secs_f64().max(1e-3);
    format!(
        "{} ({}/s)",
        reprovm_fs::progress::human_duration(since.elapsed()),
        reprovm_fs::progress::human_bytes((bytes as f64 / s) as u64)
    )
}

/// `host[:port]` is this machine: `localhost`, or an address [`is_local_address`] takes for
/// one (the resolver's check, so that the two never disagree).
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| is_local_address(&ip))
}

/// An address of this machine (loopback, unspecified, or an IPv4-mapped one of those).
fn is_local_address(ip: &std::net::IpAddr) -> bool {
    let ip = match ip {
        std::net::IpAddr::V6(v6) => v6.to_ipv4_mapped().map(std::net::IpAddr::V4).unwrap_or(*ip),
        v4 => *v4,
    };
    ip.is_loopback() || ip.is_unspecified()
}

/// Why a request to a registry failed; callers branch on it.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// What the registry sent is not what was asked for or declared (or it may not be used).
    #[error("{0}")]
    Refused(String),
    /// The registry could not be reached, answered with an error, or the transfer broke off.
    #[error("{0}")]
    Transfer(String),
}

/// A manifest or index as the registry sent it.
#[derive(Debug, Clone)]
pub struct Fetched {
    pub bytes: Vec<u8>,
    /// `sha256:` of the bytes (checked against what was asked for and what the registry said).
    pub digest: String,
    /// The Content-Type the registry gave it.
    pub media_type: String,
}

/// A scheme, host and port: where credentials may go.
#[derive(Debug, Clone, PartialEq, Eq)]
struct Origin {
    scheme: String,
    host: String,
    port: u16,
}

impl Origin {
    fn of(url: &str) -> Option<Origin> {
        let (scheme, rest) = url.split_once("://")?;
        let authority = rest.split(['/', '?', '#']).next()?;
        let authority = authority.rsplit('@').next()?;
        let default = match scheme {
            "https" => 443,
            "http" => 80,
            _ => return None,
        };
        let (host, port) = match authority.strip_prefix('[') {
            Some(v6) => {
                let (h, after) = v6.split_once(']')?;
                let port = after.strip_prefix(':').map(str::parse).transpose().ok()?;
                (format!("[{h}]"), port.unwrap_or(default))
            }
            None => match authority.rsplit_once(':') {
                Some((h, p)) => (h.to_string(), p.parse().ok()?),
                None => (authority.to_string(), default),
            },
        };
        Some(Origin { scheme: scheme.to_string(), host: host.to_ascii_lowercase(), port })
    }

    fn loopback(&self) -> bool {
        is_loopback(&self.host)
    }
}

/// A client for one registry, with its credentials and tokens.
pub struct Registry {
    /// The registry as the reference names it.
    name: String,
    origin: Origin,
    agent: ureq::Agent,
    credentials: Option<Credentials>,
    /// Token realms allowed to receive credentials besides the registry's own origin.
    realms: Vec<Origin>,
    /// Bearer tokens by scope.
    tokens: Mutex<BTreeMap<String, String>>,
    /// The per-read timeout; the overall deadline of a transfer is derived from it.
    read_timeout: Duration,
}

impl std::fmt::Debug for Registry {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Registry").field("name", &self.name).finish()
    }
}

/// A request body: none, or bytes (sent again after an authentication challenge).
enum Body<'a> {
    Empty,
    Bytes(&'a [u8], &'a str),
    /// A file of known length, streamed; sent once (the caller authenticates before).
    Stream(&'a mut dyn Read, u64),
}

impl Registry {
    /// A client for the registry of `reference`; `plain_http` only for one on this machine.
    pub fn connect(reference: &Reference, plain_http: bool) -> Result<Registry> {
        let host = reference.api_host().to_string();
        if plain_http && !is_loopback(&host) {
            bail!("plain HTTP is only for registries on this machine (127.0.0.1, ::1, localhost), not {host}");
        }
        let scheme = if plain_http { "http" } else { "https" };
        let origin = Origin::of(&format!("{scheme}://{host}/"))
            .with_context(|| format!("`{host}` is not a registry host"))?;
        let realms = match std::env::var(REALMS_ENV) {
            Ok(list) => list
                .split_whitespace()
                .map(|r| Origin::of(r).with_context(|| format!("{REALMS_ENV}: `{r}` is not a URL")))
                .collect::<Result<Vec<_>>>()?,
            Err(_) => Vec::new(),
        };
        let read_timeout = match std::env::var(TIMEOUT_ENV) {
            Ok(v) => Duration::from_secs(
                v.parse::<u64>()
                    .ok()
                    .filter(|s| *s > 0)
                    .with_context(|| format!("{TIMEOUT_ENV}=`{v}`: give a number of seconds"))?,
            ),
            Err(_) => DEFAULT_READ_TIMEOUT,
        };
        // A registry off this machine reaches nothing on it: by name (`is_loopback`) and by
        // address (a name that resolves to 127.0.0.1, `127.1`, `0.0.0.0`, `::ffff:127.0.0.1`).
        let local_allowed = origin.loopback();
        let agent = ureq::AgentBuilder::new()
            .timeout_connect(Duration::from_secs(20).min(read_timeout))
            .timeout_read(read_timeout)
            .redirects(0)
            .user_agent("reprovm/1")
            .resolver(move |netloc: &str| -> std::io::Result<Vec<std::net::SocketAddr>> {
                let addrs: Vec<std::net::SocketAddr> =
                    std::net::ToSocketAddrs::to_socket_addrs(netloc)?.collect();
                if !local_allowed && addrs.iter().any(|a| is_local_address(&a.ip())) {
                    return Err(std::io::Error::new(
                        std::io::ErrorKind::PermissionDenied,
                        format!(
                            "{netloc} is this machine: a registry off it sends no request here"
                        ),
                    ));
                }
                Ok(addrs)
            })
            .build();
        Ok(Registry {
            name: reference.registry().to_string(),
            origin,
            agent,
            credentials: credentials(reference.registry())?,
            realms,
            tokens: Mutex::new(BTreeMap::new()),
            read_timeout,
        })
    }

    fn url(&self, path: &str) -> String {
        let Origin { scheme, host, port } = &self.origin;
        format!("{scheme}://{host}:{port}{path}")
    }

    /// The overall deadline of a request whose response carries at most `bytes`.
    fn deadline(&self, bytes: u64) -> Duration {
        reprovm_fs::util::transfer_deadline(self.read_timeout, bytes)
    }

    /// Send a request to `url`, answering an authentication challenge once and following
    /// redirects; returns the final response (2xx, or 404 when `allow_404`). Each request
    /// (and the reading of its response) ends by the deadline of `bytes`, the most either way.
    #[allow(clippy::too_many_arguments)]
    fn send(
        &self,
        method: &str,
        mut url: String,
        headers: &[(&str, &str)],
        mut body: Body,
        scope: &str,
        allow_404: bool,
        bytes: u64,
    ) -> Result<ureq::Response, RegistryError> {
        let mut challenged = false;
        let mut hops = 0;
        loop {
            let origin = Origin::of(&url)
                .ok_or_else(|| RegistryError::Refused(format!("`{url}` is not a URL")))?;
            if origin.scheme == "http" && !origin.loopback() {
                return Err(RegistryError::Refused(format!(
                    "{}: refusing plain HTTP to {} (only registries on this machine speak it)",
                    self.name, origin.host
                )));
            }
            if origin.loopback() && !self.origin.loopback() {
                return Err(RegistryError::Refused(format!(
                    "{}: refusing to follow it to {url}: a registry off this machine sends no request to this one",
                    self.name
                )));
            }
            let mut req = self.agent.request(method, &url).timeout(self.deadline(bytes));
            for (k, v) in headers {
                req = req.set(k, v);
            }
            // Credentials and tokens go to the registry's own origin only.
            if origin == self.origin {
                if let Some(a) = self.authorization(scope) {
                    req = req.set("Authorization", &a);
                }
            }
            let result = match &mut body {
                Body::Empty => req.call(),
                Body::Bytes(b, content_type) => req.set("Content-Type", content_type).send_bytes(b),
                Body::Stream(r, len) => req
                    .set("Content-Length", &len.to_string())
                    .set("Content-Type", "application/octet-stream")
                    .send(r),
            };
            match result {
                Ok(resp) if (300..400).contains(&resp.status()) => {
                    hops += 1;
                    if hops > MAX_REDIRECTS || !matches!(method, "GET" | "HEAD") {
                        return Err(RegistryError::Refused(format!(
                            "{method} {url}: {} redirect{} (at most {MAX_REDIRECTS}, for GET and HEAD only)",
                            resp.status(),
                            if hops > 1 { "s" } else { "" }
                        )));
                    }
                    let location = resp.header("Location").unwrap_or_default().to_string();
                    let next = resolve(&url, &location).ok_or_else(|| {
                        RegistryError::Refused(format!(
                            "{url}: redirect to `{location}`, which is not a URL"
                        ))
                    })?;
                    let to = Origin::of(&next).ok_or_else(|| {
                        RegistryError::Refused(format!("redirect to `{next}`: not a URL"))
                    })?;
                    if origin.scheme == "https" && to.scheme == "http" {
                        return Err(RegistryError::Refused(format!(
                            "{url}: redirect from HTTPS down to plain HTTP ({next})"
                        )));
                    }
                    url = next;
                }
                Ok(resp) => return Ok(resp),
                Err(ureq::Error::Status(401, resp)) if !challenged && origin == self.origin => {
                    challenged = true;
                    let challenge = resp.header("WWW-Authenticate").unwrap_or_default().to_string();
                    if matches!(body, Body::Stream(..)) {
                        return Err(RegistryError::Transfer(format!(
                            "{method} {url}: the registry asks for authentication in mid-upload"
                        )));
                    }
                    self.authenticate(&challenge, scope)?;
                }
                Err(ureq::Error::Status(404, resp)) if allow_404 => return Ok(resp),
                Err(ureq::Error::Status(code, resp)) => {
                    let mut text = String::new();
                    let _ = resp.into_reader().take(SMALL_LIMIT).read_to_string(&mut text);
                    let text: String = text.chars().filter(|c| !c.is_control()).take(300).collect();
                    return Err(RegistryError::Transfer(format!(
                        "{method} {url}: HTTP {code}{}{}",
                        if text.is_empty() { "" } else { ": " },
                        text.trim()
                    )));
                }
                Err(e) => {
                    return Err(RegistryError::Transfer(format!(
                        "{method} {url}: {}",
                        e.to_string().replace('\n', " ")
                    )))
                }
            }
        }
    }

    /// The Authorization header for `scope`: a token got for it, else Basic credentials
    /// when the registry takes them (a Basic challenge was answered).
    fn authorization(&self, scope: &str) -> Option<String> {
        let tokens = self.tokens.lock().ok()?;
        tokens.get(scope).or_else(|| tokens.get("")).cloned()
    }

    fn scope(repo: &Reference, push: bool) -> String {
        format!("repository:{}:{}", repo.repository(), if push { "pull,push" } else { "pull" })
    }

    /// The manifest or index at `r` (a tag or a digest), hashed as it arrives and bounded by
    /// [`MANIFEST_LIMIT`]; None when the registry has nothing there. A digest reference must
    /// match the bytes, and so must the digest the registry names.
    pub fn manifest(
        &self,
        r: &Reference,
        accept: &[&str],
    ) -> Result<Option<Fetched>, RegistryError> {
        let url = self.url(&format!("/v2/{}/manifests/{}", r.repository(), r.manifest_reference()));
        let accept = accept.join(", ");
        let resp = self.send(
            "GET",
            url,
            &[("Accept", &accept)],
            Body::Empty,
            &Self::scope(r, false),
            true,
            MANIFEST_LIMIT,
        )?;
        if resp.status() == 404 {
            return Ok(None);
        }
        let named = resp.header("Docker-Content-Digest").map(str::to_string);
        let media_type = resp.header("Content-Type").unwrap_or_default().to_string();
        let mut bytes = Vec::new();
        resp.into_reader().take(MANIFEST_LIMIT + 1).read_to_end(&mut bytes).map_err(|e| {
            RegistryError::Transfer(format!("the manifest {r}: the transfer broke off: {e}"))
        })?;
        if bytes.len() as u64 > MANIFEST_LIMIT {
            return Err(RegistryError::Refused(format!(
                "the manifest {r} is larger than the limit of {MANIFEST_LIMIT} bytes"
            )));
        }
        let digest = format!("sha256:{}", reprovm_fs::hash::sha256_bytes(&bytes));
        if let Some(asked) = r.digest().filter(|d| *d != digest) {
            return Err(RegistryError::Refused(format!(
                "the manifest {r} hashes to {digest}, not the {asked} asked for"
            )));
        }
        if let Some(named) = named.filter(|n| *n != digest) {
            return Err(RegistryError::Refused(format!(
                "the manifest {r} hashes to {digest}, the registry says {named}"
            )));
        }
        Ok(Some(Fetched { bytes, digest, media_type }))
    }

    /// Whether the repository has the blob.
    pub fn has_blob(&self, repo: &Reference, digest: &str) -> Result<bool, RegistryError> {
        let url = self.url(&format!("/v2/{}/blobs/{digest}", repo.repository()));
        let resp = self.send("HEAD", url, &[], Body::Empty, &Self::scope(repo, false), true, 0)?;
        Ok(resp.status() != 404)
    }

    /// The blob `digest` of `size` bytes as a reader that checks both as it streams: a byte
    /// past `size` is an error at once, and at its end the count and the digest are checked
    /// (the reader errs, [`RegistryError`] inside the `io::Error`, rather than reach its end).
    /// What was read before an error is the caller's to discard.
    pub fn blob_reader(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
    ) -> Result<BlobReader, RegistryError> {
        check_digest(digest).map_err(|e| RegistryError::Refused(format!("{e:#}")))?;
        let url = self.url(&format!("/v2/{}/blobs/{digest}", repo.repository()));
        let resp =
            self.send("GET", url, &[], Body::Empty, &Self::scope(repo, false), false, size)?;
        if let Some(len) = resp.header("Content-Length").and_then(|l| l.parse::<u64>().ok()) {
            if len != size {
                return Err(RegistryError::Refused(format!(
                    "blob {digest} from {repo} refused: the registry announces {len} bytes, the descriptor declares {size}"
                )));
            }
        }
        Ok(BlobReader {
            inner: Box::new(resp.into_reader().take(size + 1)),
            hashing: HashingWriter::new(std::io::sink()),
            size,
            digest: digest.to_string(),
            repo: repo.to_string(),
            read: 0,
            verified: false,
            deadline: self.deadline(size),
        })
    }

    /// Stream the blob `digest` of `size` bytes into `w` ([`Registry::blob_reader`]'s
    /// checks). The caller discards what was written on error.
    pub fn blob_into(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
        w: &mut dyn Write,
    ) -> Result<(), RegistryError> {
        let mut r = self.blob_reader(repo, digest, size)?;
        match std::io::copy(&mut r, w) {
            Ok(_) => Ok(()),
            Err(e) => Err(BlobReader::error(e)),
        }
    }

    /// Upload `size` bytes from `data` as blob `digest` unless the repository has it; true
    /// when it was sent (monolithic upload: POST, then PUT to the location given).
    pub fn send_blob(
        &self,
        repo: &Reference,
        digest: &str,
        size: u64,
        data: &mut dyn Read,
    ) -> Result<bool> {
        if self.has_blob(repo, digest)? {
            return Ok(false);
        }
        let scope = Self::scope(repo, true);
        let start = self.url(&format!("/v2/{}/blobs/uploads/", repo.repository()));
        let resp = self.send(
            "POST",
            start.clone(),
            &[],
            Body::Bytes(&[], "application/octet-stream"),
            &scope,
            false,
            SMALL_LIMIT,
        )?;
        let location = resp
            .header("Location")
            .with_context(|| format!("{repo}: the upload of {digest} was given no location"))?;
        let target = resolve(&start, location)
            .with_context(|| format!("{repo}: upload location `{location}`"))?;
        let to = Origin::of(&target).context("upload location")?;
        anyhow::ensure!(
            to == self.origin,
            "{repo}: the upload location {target} is not on the registry's origin"
        );
        let sep = if target.contains('?') { '&' } else { '?' };
        let put = format!("{target}{sep}digest={}", urlencode(digest));
        self.send("PUT", put, &[], Body::Stream(data, size), &scope, false, size)
            .with_context(|| format!("pushing {digest} to {repo}"))?;
        Ok(true)
    }

    /// Put a manifest's exact bytes at `r` (a tag or a digest).
    pub fn put_manifest(&self, r: &Reference, bytes: &[u8], media_type: &str) -> Result<()> {
        let url = self.url(&format!("/v2/{}/manifests/{}", r.repository(), r.manifest_reference()));
        let scope = Self::scope(r, true);
        let len = bytes.len() as u64;
        self.send("PUT", url, &[], Body::Bytes(bytes, media_type), &scope, false, len)
            .with_context(|| format!("putting the manifest {r}"))?;
        Ok(())
    }
}

/// Percent-encode a query value.
fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-_.~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

/// `location` (absolute, or absolute-path) against `base`.
fn resolve(base: &str, location: &str) -> Option<String> {
    if location.starts_with("http://") || location.starts_with("https://") {
        return Some(location.to_string());
    }
    if !location.starts_with('/') || location.starts_with("//") {
        return None;
    }
    let (scheme, rest) = base.split_once("://")?;
    let authority = rest.split('/').next()?;
    Some(format!("{scheme}://{authority}{location}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plain_http_only_for_loopback() {
        for h in [
            "127.0.0.1:5000",
            "localhost:5000",
            "[::1]:5000",
            "127.0.0.1",
            "localhost",
            "[::ffff:127.0.0.1]:5000",
            "0.0.0.0:5000",
        ] {
            assert!(is_loopback(h), "{h}");
        }
        for h in
            ["10.0.0.1:5000", "registry.example:5000", "[2001:db8::1]:443", "localhost.example"]
        {
            assert!(!is_loopback(h), "{h}");
        }
        let (r, plain) = parse_repository("http://10.0.0.1:5000/reprovm/cache").unwrap();
        assert!(plain);
        let e = Registry::connect(&r, plain).err().unwrap();
        assert!(e.to_string().contains("plain HTTP is only for registries on this machine"), "{e}");
    }

    /// A registry off this machine cannot make the client ask one on it (a token realm or a
    /// redirect to 127.0.0.1 would be a blind request to any local service it chose), nor
    /// send it a plain-HTTP realm. Refused before any connection.
    #[test]
    fn a_registry_off_this_machine_chooses_no_request_to_it() {
        let r = Reference::parse("registry.example/a/b:1").unwrap();
        let reg = Registry::connect(&r, false).unwrap();
        for realm in [
            "http://127.0.0.1:9/token",
            "https://127.0.0.1:9/token",
            "https://localhost/token",
            "https://[::1]:9/token",
            "http://auth.example/token",
        ] {
            let e = reg.authenticate(&format!("Bearer realm=\"{realm}\""), "s").unwrap_err();
            assert!(e.to_string().contains("only for a registry on this machine"), "{realm}: {e}");
        }
        let e = reg
            .send("GET", "https://127.0.0.1:9/x".into(), &[], Body::Empty, "", false, 0)
            .unwrap_err();
        assert!(e.to_string().contains("sends no request to this one"), "{e}");
        // Other spellings of this machine: address literals refused by name, as above; one
        // that is no literal (127.1) at the address the resolver gives.
        for url in ["https://0.0.0.0:9/x", "https://[::ffff:127.0.0.1]:9/x"] {
            let e = reg.send("GET", url.into(), &[], Body::Empty, "", false, 0).unwrap_err();
            assert!(e.to_string().contains("sends no request to this one"), "{url}: {e}");
        }
        let e = reg.send("GET", "https://127.1:9/x".into(), &[], Body::Empty, "", false, 0);
        assert!(e.unwrap_err().to_string().contains("is this machine"));
    }

    #[test]
    fn references_and_repositories() {
        assert!(explicit_tag("10.0.0.1:5000/reprovm/kernel:1"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel@sha256:00"));
        let (r, plain) = parse_repository("127.0.0.1:5000/reprovm/cache").unwrap();
        assert!(!plain);
        assert_eq!((r.registry(), r.repository()), ("127.0.0.1:5000", "reprovm/cache"));
        assert_eq!(r.at_tag("abc").to_string(), "127.0.0.1:5000/reprovm/cache:abc");
        for bad in ["127.0.0.1:5000/reprovm/cache:tag", "127.0.0.1:5000/r@sha256:00"] {
            assert!(parse_repository(bad).is_err(), "{bad}");
        }
        let d = format!("sha256:{}", "a".repeat(64));
        let r = Reference::parse(&format!("ghcr.io/o/k:6.1@{d}")).unwrap();
        assert_eq!((r.tag(), r.digest()), (Some("6.1"), Some(d.as_str())));
        assert_eq!(Reference::parse("busybox").unwrap().to_string(), "docker.io/library/busybox");
        for bad in
            ["ghcr.io/O/k", "ghcr.io/o/k:", "ghcr.io/o/k@sha256:xyz", "ghcr.io/o/k:-x", "ghcr.io/"]
        {
            assert!(Reference::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn challenges_origins_and_locations() {
        let (k, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="registry.example",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(k, "bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["scope"], "repository:a/b:pull");
        assert_eq!(parse_challenge("Basic realm=x").unwrap().0, "basic");
        let o = |u: &str| Origin::of(u).unwrap();
        assert_eq!(o("https://a.example/v2/"), o("https://A.example:443/x"));
        assert_ne!(o("https://a.example/"), o("http://a.example/"));
        assert_ne!(o("http://127.0.0.1:5000/"), o("http://127.0.0.1:5001/"));
        assert_eq!(o("http://[::1]:5000/v2").port, 5000);
        assert_eq!(
            resolve("http://127.0.0.1:5000/v2/a/blobs/x", "/v2/a/uploads/1?s=2").unwrap(),
            "http://127.0.0.1:5000/v2/a/uploads/1?s=2"
        );
        assert!(resolve("http://127.0.0.1:5000/v2/a", "//evil.example/x").is_none());
        assert!(resolve("http://127.0.0.1:5000/v2/a", "relative").is_none());
    }
}
