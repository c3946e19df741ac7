//! Image references (`REGISTRY/REPO[:TAG][@sha256:HEX]`) and repositories as the caches
//! take them, parsed and checked before any request.

use anyhow::{bail, Context, Result};

/// An image reference: `REGISTRY/REPO[:TAG][@sha256:HEX]`. A first component without a dot
/// or a port (and not `localhost`) is a Docker Hub name, as docker reads it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Reference {
    registry: String,
    repository: String,
    tag: Option<String>,
    digest: Option<String>,
}

impl Reference {
    pub fn parse(text: &str) -> Result<Reference> {
        let bad = |why: &str| {
            anyhow::format_err!(
                "`{text}` is not an image reference (REGISTRY/REPO[:TAG][@sha256:HEX]): {why}"
            )
        };
        let (rest, digest) = match text.split_once('@') {
            Some((r, d)) => {
                check_digest(d).map_err(|e| bad(&e.to_string()))?;
                (r, Some(d.to_string()))
            }
            None => (text, None),
        };
        let (name, tag) = match rest.rsplit_once(':') {
            Some((n, t)) if !t.contains('/') => (n, Some(t.to_string())),
            _ => (rest, None),
        };
        if let Some(t) = &tag {
            let ok = t.len() <= 128
                && t.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric() || b == b'_')
                && t.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
            if !ok {
                return Err(bad(&format!("`{t}` is not a tag")));
            }
        }
        let (registry, repository) = match name.split_once('/') {
            Some((first, rest))
                if first.contains('.') || first.contains(':') || first == "localhost" =>
            {
                (first.to_string(), rest.to_string())
            }
            Some(_) => ("docker.io".to_string(), name.to_string()),
            None => ("docker.io".to_string(), format!("library/{name}")),
        };
        let component_ok = |c: &str| {
            !c.is_empty()
                && c.bytes()
                    .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b"._-".contains(&b))
                && c.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric())
                && c.bytes().last().is_some_and(|b| b.is_ascii_alphanumeric())
        };
        if repository.is_empty() || !repository.split('/').all(component_ok) {
            return Err(bad(&format!("`{repository}` is not a repository name")));
        }
        if registry.is_empty() || registry.contains(['/', '@', ' ']) {
            return Err(bad(&format!("`{registry}` is not a registry")));
        }
        Ok(Reference { registry, repository, tag, digest })
    }

    pub fn registry(&self) -> &str {
        &self.registry
    }
    pub fn repository(&self) -> &str {
        &self.repository
    }
    pub fn tag(&self) -> Option<&str> {
        self.tag.as_deref()
    }
    pub fn digest(&self) -> Option<&str> {
        self.digest.as_deref()
    }

    /// The same repository at a tag.
    pub fn at_tag(&self, tag: &str) -> Reference {
        Reference { tag: Some(tag.to_string()), digest: None, ..self.clone() }
    }

    /// The same repository at a digest.
    pub fn at_digest(&self, digest: &str) -> Reference {
        Reference { tag: None, digest: Some(digest.to_string()), ..self.clone() }
    }

    /// What the manifest endpoint is asked for: the digest, else the tag, else `latest`.
    pub(super) fn manifest_reference(&self) -> &str {
        self.digest.as_deref().or(self.tag.as_deref()).unwrap_or("latest")
    }

    /// The host the API is served from (Docker Hub's API lives on another name).
    pub(super) fn api_host(&self) -> &str {
        if self.registry == "docker.io" {
            "registry-1.docker.io"
        } else {
            &self.registry
        }
    }
}

impl std::fmt::Display for Reference {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

/// `sha256:` and 64 lowercase hex digits: the only digest this client accepts.
pub fn check_digest(d: &str) -> Result<()> {
    let hex = d
        .strip_prefix("sha256:")
        .with_context(|| format!("`{d}`: only sha256 digests are supported"))?;
    anyhow::ensure!(
        hex.len() == 64 && hex.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b)),
        "`{d}` is not a sha256 digest"
    );
    Ok(())
}

/// Whether a reference's text names a tag (without one, a pull has nothing to ask for).
/// `http://REGISTRY/REPO` is `REGISTRY/REPO` over plain HTTP, as the binary cache's
/// references are: one spelling for every command (`plain_http` is a flag's word for the same).
pub fn plain(reference: &str, plain_http: bool) -> (&str, bool) {
    match reference.strip_prefix("http://") {
        Some(rest) => (rest, true),
        None => (reference, plain_http),
    }
}

pub fn explicit_tag(s: &str) -> bool {
    let before_digest = s.split('@').next().unwrap_or(s);
    !s.contains('@') && before_digest.rsplit('/').next().is_some_and(|last| last.contains(':'))
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
    Ok((Reference::parse(rest)?, plain))
}
