//! A registry client (the distribution protocol through the `oci-client` crate), shared by
//! `push`/`pull` and the binary cache: credentials from the docker `config.json`
//! (`$DOCKER_CONFIG` or `~/.docker`, credential helpers included), plain HTTP only for
//! loopback registries, manifests as exact bytes, blobs checked against their digests while
//! they stream. Requests run on a current-thread tokio runtime owned by the client.

use crate::hash::HashingWriter;
use anyhow::{bail, Context, Result};
use oci_client::client::{ClientConfig, ClientProtocol};
use oci_client::secrets::RegistryAuth;
use oci_client::{Client, Reference};
use std::time::Instant;

pub const INDEX_TYPE: &str = "application/vnd.oci.image.index.v1+json";
pub const MANIFEST_TYPE: &str = "application/vnd.oci.image.manifest.v1+json";

/// A client for one registry, with its credentials.
pub struct Registry {
    client: Client,
    auth: RegistryAuth,
    runtime: tokio::runtime::Runtime,
}

/// Whether a reference's text names a tag (the parser fills in `latest` when it does not).
pub fn explicit_tag(s: &str) -> bool {
    !s.contains('@') && s.rsplit('/').next().is_some_and(|last| last.contains(':'))
}

pub fn parse_reference(s: &str) -> Result<Reference> {
    s.parse::<Reference>()
        .with_context(|| format!("`{s}` is not an image reference (REGISTRY/REPO[:TAG|@DIGEST])"))
}

/// A repository to use as a cache or substituter: `REGISTRY/REPO`, with an `http://` prefix
/// for plain HTTP (loopback registries only). Returns the reference and whether it is plain.
pub fn parse_repository(text: &str) -> Result<(Reference, bool)> {
    let (rest, plain) = match text.strip_prefix("http://") {
        Some(rest) => (rest, true),
        None => (text.strip_prefix("https://").unwrap_or(text), false),
    };
    if rest.contains('@') || explicit_tag(rest) {
        bail!("`{text}`: name a repository (REGISTRY/REPO), without a tag or digest");
    }
    Ok((parse_reference(rest)?, plain))
}

/// The same repository at a tag.
pub fn at_tag(r: &Reference, tag: &str) -> Reference {
    Reference::with_tag(r.registry().to_string(), r.repository().to_string(), tag.to_string())
}

/// The same repository at a digest.
pub fn at_digest(r: &Reference, digest: &str) -> Reference {
    Reference::with_digest(r.registry().to_string(), r.repository().to_string(), digest.to_string())
}

/// `DURATION (RATE/s)` for `bytes` moved since `since`.
pub fn rate(bytes: u64, since: Instant) -> String {
    let s = since.elapsed().as_secs_f64().max(1e-3);
    format!(
        "{} ({}/s)",
        crate::progress::human_duration(since.elapsed()),
        crate::progress::human_bytes((bytes as f64 / s) as u64)
    )
}

/// `host[:port]` is this machine.
pub fn is_loopback(host: &str) -> bool {
    let name = match host.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => host.rsplit_once(':').map(|(h, _)| h).unwrap_or(host),
    };
    name == "localhost" || name.parse::<std::net::IpAddr>().is_ok_and(|ip| ip.is_loopback())
}

/// Credentials for `host` from the docker config; anonymous when it names none.
fn credentials(host: &str) -> Result<RegistryAuth> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(host) {
        Ok(DockerCredential::UsernamePassword(u, p)) => Ok(RegistryAuth::Basic(u, p)),
        Ok(DockerCredential::IdentityToken(t)) => Ok(RegistryAuth::Bearer(t)),
        Err(E::ConfigNotFound | E::NoCredentialConfigured | E::ConfigReadError) => {
            Ok(RegistryAuth::Anonymous)
        }
        Err(e) => bail!("credentials for {host} from the docker config.json: {e:?}"),
    }
}

impl Registry {
    /// A client for the registry of `reference`.
    pub fn connect(reference: &Reference, plain_http: bool) -> Result<Registry> {
        // reqwest over rustls needs a crypto provider; ring, as ureq uses. Installing fails
        // only when one is already installed, which is what we want.
        let _ = rustls::crypto::ring::default_provider().install_default();
        let host = reference.resolve_registry().to_string();
        let protocol = if plain_http {
            if !is_loopback(&host) {
                bail!("plain HTTP is only for registries on this machine (127.0.0.1, ::1, localhost), not {host}");
            }
            ClientProtocol::HttpsExcept(vec![host.clone()])
        } else {
            ClientProtocol::Https
        };
        let config = ClientConfig {
            protocol,
            read_timeout: Some(std::time::Duration::from_secs(120)),
            connect_timeout: Some(std::time::Duration::from_secs(20)),
            ..Default::default()
        };
        let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build()?;
        let registry = Registry { client: Client::new(config), auth: credentials(&host)?, runtime };
        registry.block_on(registry.client.store_auth_if_needed(&host, &registry.auth));
        Ok(registry)
    }

    /// Run requests to completion.
    pub fn block_on<F: std::future::Future>(&self, f: F) -> F::Output {
        self.runtime.block_on(f)
    }

    /// Whether the repository has the blob.
    pub async fn has_blob(&self, r: &Reference, digest: &str) -> Result<bool> {
        self.client.blob_exists(r, digest).await.with_context(|| format!("asking {r} for {digest}"))
    }

    /// Upload a blob unless the repository has it; true when it was sent.
    pub async fn send_blob(&self, r: &Reference, digest: &str, data: Vec<u8>) -> Result<bool> {
        if self.has_blob(r, digest).await? {
            return Ok(false);
        }
        self.client
            .push_blob(r, data, digest)
            .await
            .with_context(|| format!("pushing {digest} to {r}"))?;
        Ok(true)
    }

    /// Put a manifest's exact bytes at `r` (a tag or a digest).
    pub async fn put_manifest(
        &self,
        r: &Reference,
        bytes: Vec<u8>,
        media_type: &str,
    ) -> Result<()> {
        let content_type = media_type.parse().context("media type header")?;
        self.client
            .push_manifest_raw(r, bytes, content_type)
            .await
            .with_context(|| format!("putting the manifest {r}"))?;
        Ok(())
    }

    /// The manifest at `r` and its digest (oci-client checks the bytes against the digest
    /// the registry names, or the one asked for), or None when there is nothing there.
    pub async fn manifest(
        &self,
        r: &Reference,
        accept: &[&str],
    ) -> Result<Option<(Vec<u8>, String)>> {
        use oci_client::errors::{OciDistributionError as E, OciErrorCode};
        match self.client.pull_manifest_raw(r, &self.auth, accept).await {
            Ok((bytes, digest)) => Ok(Some((bytes.to_vec(), digest))),
            Err(E::ImageManifestNotFoundError(_)) | Err(E::ServerError { code: 404, .. }) => {
                Ok(None)
            }
            Err(E::RegistryError { envelope, .. })
                if envelope.errors.iter().any(|e| {
                    matches!(
                        e.code,
                        OciErrorCode::ManifestUnknown
                            | OciErrorCode::NotFound
                            | OciErrorCode::NameUnknown
                    )
                }) =>
            {
                Ok(None)
            }
            Err(e) => Err(anyhow::Error::new(e).context(format!("reading the manifest {r}"))),
        }
    }

    /// Stream the blob `digest` into `w`, checking size and sha256 as it comes; an error names
    /// the blob and what arrived instead. The caller discards what was written on error.
    pub async fn blob_into(
        &self,
        r: &Reference,
        digest: &str,
        size: u64,
        w: &mut dyn std::io::Write,
    ) -> Result<()> {
        use futures_util::StreamExt;
        let mut stream = self
            .client
            .pull_blob_stream(r, digest)
            .await
            .map_err(|e| anyhow::anyhow!("blob {digest} from {r} refused: {e}"))?;
        let mut hashing = HashingWriter::new(w);
        while let Some(chunk) = stream.stream.next().await {
            let chunk = match chunk {
                Ok(chunk) => chunk,
                // oci-client checks the digest itself at the end of the stream: what arrived
                // is not the blob, which is a refusal, not a broken transfer.
                Err(e) if is_digest_mismatch(&e) => {
                    bail!("blob {digest} from {r} refused: {e}")
                }
                Err(e) => {
                    return Err(e)
                        .with_context(|| format!("blob {digest} from {r}: the transfer broke off"))
                }
            };
            std::io::Write::write_all(&mut hashing, &chunk)?;
        }
        let got = hashing.written;
        let (_, hex) = hashing.finish();
        if format!("sha256:{hex}") != digest || got != size {
            bail!("blob {digest} from {r} refused: it holds {got} bytes with sha256:{hex}");
        }
        Ok(())
    }
}

/// Whether a stream error is oci-client's digest verification failing.
fn is_digest_mismatch(e: &std::io::Error) -> bool {
    use oci_client::errors::DigestError;
    e.get_ref()
        .and_then(|inner| inner.downcast_ref::<DigestError>())
        .is_some_and(|d| matches!(d, DigestError::VerificationError { .. }))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_digest_mismatch_is_told_from_a_broken_transfer() {
        let mismatch = std::io::Error::other(oci_client::errors::DigestError::VerificationError {
            expected: "sha256:aa".into(),
            actual: "sha256:bb".into(),
        });
        assert!(is_digest_mismatch(&mismatch));
        assert!(!is_digest_mismatch(&std::io::Error::other("connection reset")));
        assert!(!is_digest_mismatch(&std::io::ErrorKind::UnexpectedEof.into()));
    }

    #[test]
    fn plain_http_only_for_loopback() {
        for h in ["127.0.0.1:5000", "localhost:5000", "[::1]:5000", "127.0.0.1", "localhost"] {
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

    #[test]
    fn references_and_repositories() {
        assert!(explicit_tag("10.0.0.1:5000/reprovm/kernel:1"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel"));
        assert!(!explicit_tag("10.0.0.1:5000/reprovm/kernel@sha256:00"));
        let (r, plain) = parse_repository("127.0.0.1:5000/reprovm/cache").unwrap();
        assert!(!plain);
        assert_eq!((r.registry(), r.repository()), ("127.0.0.1:5000", "reprovm/cache"));
        assert_eq!(at_tag(&r, "abc").to_string(), "127.0.0.1:5000/reprovm/cache:abc");
        for bad in ["127.0.0.1:5000/reprovm/cache:tag", "127.0.0.1:5000/r@sha256:00"] {
            assert!(parse_repository(bad).is_err(), "{bad}");
        }
    }
}
