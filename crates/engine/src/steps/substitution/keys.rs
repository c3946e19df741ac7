//! Signing keys of the binary cache, in Nix's format: a secret key file holds
//! `NAME:BASE64(seed ‖ public key)` (64 bytes, libsodium's layout, as
//! `nix-store --generate-binary-cache-key` writes it), the public key file `NAME:BASE64(public key)`.
//! Ed25519 through `ring` (already the TLS stack's crypto): signatures are deterministic, so
//! a re-push of the same entry carries the same signature.

use anyhow::{bail, Context, Result};
use base64::Engine;
use ring::signature::{Ed25519KeyPair, KeyPair, UnparsedPublicKey, ED25519};
use std::path::Path;

const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

/// A secret key, loaded.
pub struct SecretKey {
    pub name: String,
    pair: Ed25519KeyPair,
}

/// A trusted public key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct PublicKey {
    pub name: String,
    bytes: Vec<u8>,
}

/// Key names: what a signature says it was made with.
fn check_name(name: &str) -> Result<()> {
    if name.is_empty() || !name.bytes().all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b)) {
        bail!("key name `{name}`: use letters, digits, '.', '_' and '-'");
    }
    Ok(())
}

/// `NAME:BASE64` from a key file.
fn read_key_file(path: &Path) -> Result<(String, Vec<u8>)> {
    let text =
        std::fs::read_to_string(path).with_context(|| format!("reading {}", path.display()))?;
    let (name, data) = text
        .trim()
        .split_once(':')
        .with_context(|| format!("{}: not a key file (NAME:BASE64)", path.display()))?;
    check_name(name)?;
    let bytes =
        B64.decode(data).with_context(|| format!("{}: the key is not base64", path.display()))?;
    Ok((name.to_string(), bytes))
}

/// Make a key pair named `name`: the secret key at `path` (mode 0600, never overwritten), the
/// public key at `path.pub`, and the public key as cosign reads it (PEM) at `path.pub.pem`.
/// Returns the public key line.
pub(crate) fn generate(name: &str, path: &Path) -> Result<String> {
    check_name(name)?;
    let rng = ring::rand::SystemRandom::new();
    let seed: [u8; 32] = ring::rand::generate(&rng)
        .map_err(|_| anyhow::anyhow!("no randomness from the system"))?
        .expose();
    let pair =
        Ed25519KeyPair::from_seed_unchecked(&seed).map_err(|e| anyhow::anyhow!("ed25519: {e}"))?;
    let public = pair.public_key().as_ref().to_vec();
    let mut secret = seed.to_vec();
    secret.extend_from_slice(&public);
    let pub_path = path.with_extension("pub");
    if pub_path == path {
        bail!(
            "{}: the secret key's file would be its own public key's (FILE.pub is where the public key goes); name it e.g. ci.key",
            path.display()
        );
    }
    let pem_path = pem_path(path);
    for p in [path, pub_path.as_path(), pem_path.as_path()] {
        if p.exists() {
            bail!("{} exists; keys are never overwritten (remove it first)", p.display());
        }
    }
    write_new(path, format!("{name}:{}\n", B64.encode(&secret)).as_bytes(), 0o600)?;
    let line = format!("{name}:{}", B64.encode(&public));
    write_new(&pub_path, format!("{line}\n").as_bytes(), 0o644)?;
    write_new(&pem_path, pem_of(&public)?.as_bytes(), 0o644).with_context(|| {
        format!(
            "the key pair was written; `cargo xtask cache cosign-key {}` prints its PEM",
            path.display()
        )
    })?;
    Ok(line)
}

/// Create `path` with `mode` (it must not exist), write, fsync.
fn write_new(path: &Path, data: &[u8], mode: u32) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut f = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(mode)
        .open(path)
        .with_context(|| format!("creating {}", path.display()))?;
    f.write_all(data)?;
    f.sync_all()?;
    Ok(())
}

impl SecretKey {
    pub fn load(path: &Path) -> Result<SecretKey> {
        let (name, bytes) = read_key_file(path)?;
        if bytes.len() != 64 {
            bail!(
                "{}: a secret key is 64 bytes (seed and public key), this one {}",
                path.display(),
                bytes.len()
            );
        }
        let pair = Ed25519KeyPair::from_seed_and_public_key(&bytes[..32], &bytes[32..])
            .map_err(|e| anyhow::anyhow!("{}: not an ed25519 key pair: {e}", path.display()))?;
        Ok(SecretKey { name, pair })
    }

    /// `NAME:BASE64(signature)` over `message`.
    pub fn sign(&self, message: &[u8]) -> String {
        format!("{}:{}", self.name, B64.encode(self.sign_raw(message)))
    }

    /// The 64 bytes of an ed25519 signature over `message` (DSSE carries them beside the
    /// key's name).
    pub(crate) fn sign_raw(&self, message: &[u8]) -> Vec<u8> {
        self.pair.sign(message).as_ref().to_vec()
    }
}

impl PublicKey {
    pub(crate) fn load(path: &Path) -> Result<PublicKey> {
        let (name, bytes) = read_key_file(path)?;
        if bytes.len() != 32 {
            bail!("{}: a public key is 32 bytes, this one {}", path.display(), bytes.len());
        }
        Ok(PublicKey { name, bytes })
    }
}

impl PublicKey {
    /// The key's fingerprint: `sha256:` and the first 16 hex digits of the sha256 of its 32
    /// bytes. Names are chosen by whoever makes a key; this says which key it is.
    pub(crate) fn fingerprint(&self) -> String {
        format!("sha256:{}", &reprovm_fs::hash::sha256_bytes(&self.bytes)[..16])
    }
}

/// The trusted key a signature verified with: its name and fingerprint.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Signer {
    pub name: String,
    pub fingerprint: String,
}

impl std::fmt::Display for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "`{}` (key {})", self.name, self.fingerprint)
    }
}

/// Load the trusted public keys in `paths`. The same key given twice counts once. Two keys
/// that share a name (a key being rotated: either may sign) are accepted with a warning that
/// names both by fingerprint, since a signature names its key by name only.
pub(crate) fn load_trusted(paths: &[std::path::PathBuf]) -> Result<Vec<PublicKey>> {
    let mut keys: Vec<PublicKey> = Vec::new();
    for p in paths {
        let k = PublicKey::load(p)?;
        if keys.contains(&k) {
            continue;
        }
        if let Some(same) = keys.iter().find(|o| o.name == k.name) {
            reprovm_fs::progress::say(&format!(
                "warning: two trusted keys are named `{}` ({} and {}, from {}): a signature by either is accepted, and each \"signed by\" names the key's fingerprint",
                k.name,
                same.fingerprint(),
                k.fingerprint(),
                p.display()
            ));
        }
        keys.push(k);
    }
    Ok(keys)
}

/// Why a signature does not make an entry trusted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub(crate) enum Untrusted {
    #[error("it is not signed")]
    Unsigned,
    #[error("it is signed by `{0}`, which is not a trusted key")]
    UnknownKey(String),
    #[error("its signature by `{0}` does not verify")]
    BadSignature(String),
    #[error("its signature is malformed")]
    Malformed,
}

/// Check `signature` (`NAME:BASE64`) over `message` against the trusted keys; the key that
/// verified it.
pub(crate) fn verify(
    trusted: &[PublicKey],
    signature: Option<&str>,
    message: &[u8],
) -> Result<Signer, Untrusted> {
    let sig = signature.ok_or(Untrusted::Unsigned)?;
    let (name, data) = sig.split_once(':').ok_or(Untrusted::Malformed)?;
    let bytes = B64.decode(data).map_err(|_| Untrusted::Malformed)?;
    // Several trusted keys may share a name (a key being rotated): any of them may verify.
    let mut named = trusted.iter().filter(|k| k.name == name).peekable();
    if named.peek().is_none() {
        return Err(Untrusted::UnknownKey(name.to_string()));
    }
    match named.find(|k| UnparsedPublicKey::new(&ED25519, &k.bytes).verify(message, &bytes).is_ok())
    {
        Some(k) => Ok(Signer { name: k.name.clone(), fingerprint: k.fingerprint() }),
        None => Err(Untrusted::BadSignature(name.to_string())),
    }
}

/// Check a bare signature (64 bytes, no key name: cosign's signatures name no key) over
/// `message` against every trusted key; the key that verified it.
pub(crate) fn verify_any(
    trusted: &[PublicKey],
    signature: &[u8],
    message: &[u8],
) -> Result<Signer, Untrusted> {
    trusted
        .iter()
        .find(|k| UnparsedPublicKey::new(&ED25519, &k.bytes).verify(message, signature).is_ok())
        .map(|k| Signer { name: k.name.clone(), fingerprint: k.fingerprint() })
        .ok_or_else(|| Untrusted::BadSignature("any trusted key".into()))
}

/// The PEM (`-----BEGIN PUBLIC KEY-----`: an RFC 8410 SubjectPublicKeyInfo) of an ed25519
/// public key, the form `cosign verify --key` reads.
fn pem_of(public: &[u8]) -> Result<String> {
    use ed25519::pkcs8::spki::der::pem::LineEnding;
    use ed25519::pkcs8::EncodePublicKey;
    let bytes: [u8; 32] = public.try_into().context("an ed25519 public key is 32 bytes")?;
    ed25519::pkcs8::PublicKeyBytes(bytes)
        .to_public_key_pem(LineEnding::LF)
        .map_err(|e| anyhow::anyhow!("encoding the public key as PEM: {e}"))
}

/// The PEM public key of a key file: a secret key (`ci.key`) or a public key (`ci.pub`),
/// told apart by their lengths (64 and 32 bytes).
pub(crate) fn public_pem(path: &Path) -> Result<String> {
    let (_, bytes) = read_key_file(path)?;
    match bytes.len() {
        64 => {
            SecretKey::load(path)?;
            pem_of(&bytes[32..])
        }
        32 => pem_of(&bytes),
        n => bail!(
            "{}: {n} bytes is neither a secret key (64) nor a public key (32) written by `cargo xtask cache keygen`",
            path.display()
        ),
    }
}

/// Where `cache keygen FILE` writes the PEM public key: `FILE` with `.pub.pem`.
pub(crate) fn pem_path(path: &Path) -> std::path::PathBuf {
    path.with_extension("pub.pem")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pem_public_key_is_rfc_8410_and_bare_signatures_verify() {
        let t = tempfile::tempdir().unwrap();
        let k = t.path().join("k.key");
        generate("k", &k).unwrap();
        let pem = std::fs::read_to_string(t.path().join("k.pub.pem")).unwrap();
        assert!(pem.starts_with("-----BEGIN PUBLIC KEY-----\n"), "{pem}");
        assert!(pem.ends_with("-----END PUBLIC KEY-----\n"), "{pem}");
        let body: String = pem.lines().filter(|l| !l.starts_with("-----")).collect();
        let (_, public) = read_key_file(&k.with_extension("pub")).unwrap();
        // RFC 8410 section 4: SEQUENCE { SEQUENCE { OID 1.3.101.112 }, BIT STRING key }.
        let mut want = vec![0x30, 0x2a, 0x30, 0x05, 0x06, 0x03, 0x2b, 0x65, 0x70, 0x03, 0x21, 0x00];
        want.extend_from_slice(&public);
        assert_eq!(B64.decode(body).unwrap(), want);
        assert_eq!(public_pem(&k).unwrap(), pem, "from the secret key");
        assert_eq!(public_pem(&k.with_extension("pub")).unwrap(), pem, "from the public key");
        let trusted = vec![PublicKey::load(&k.with_extension("pub")).unwrap()];
        let sig = SecretKey::load(&k).unwrap().sign_raw(b"payload");
        assert_eq!(verify_any(&trusted, &sig, b"payload").unwrap().name, "k");
        assert!(verify_any(&trusted, &sig, b"other payload").is_err());
        assert!(verify_any(&[], &sig, b"payload").is_err());
    }

    #[test]
    fn sign_verify_and_every_refusal() {
        let t = tempfile::tempdir().unwrap();
        let (a, b) = (t.path().join("a.key"), t.path().join("b.key"));
        let line = generate("ci-1", &a).unwrap();
        generate("other", &b).unwrap();
        assert!(line.starts_with("ci-1:"));
        assert!(generate("ci-1", &a).unwrap_err().to_string().contains("never overwritten"));
        let mode =
            std::os::unix::fs::PermissionsExt::mode(&std::fs::metadata(&a).unwrap().permissions());
        assert_eq!(mode & 0o777, 0o600);

        let secret = SecretKey::load(&a).unwrap();
        let trusted = vec![PublicKey::load(&a.with_extension("pub")).unwrap()];
        let sig = secret.sign(b"entry");
        assert_eq!(secret.sign(b"entry"), sig, "ed25519 signatures are deterministic");
        let signer = |k: &PublicKey| Signer { name: k.name.clone(), fingerprint: k.fingerprint() };
        assert_eq!(verify(&trusted, Some(&sig), b"entry"), Ok(signer(&trusted[0])));
        assert_eq!(verify(&trusted, None, b"entry"), Err(Untrusted::Unsigned));
        assert_eq!(
            verify(&trusted, Some(&sig), b"another entry"),
            Err(Untrusted::BadSignature("ci-1".into()))
        );
        let other = SecretKey::load(&b).unwrap().sign(b"entry");
        assert_eq!(
            verify(&trusted, Some(&other), b"entry"),
            Err(Untrusted::UnknownKey("other".into()))
        );
        assert_eq!(verify(&trusted, Some("ci-1:***"), b"entry"), Err(Untrusted::Malformed));
        // A public key file is not a secret key.
        assert!(SecretKey::load(&a.with_extension("pub")).is_err());
        // Key rotation: two trusted keys named alike; a signature by either verifies.
        let c = t.path().join("c.key");
        generate("ci-1", &c).unwrap();
        let rotated = SecretKey::load(&c).unwrap().sign(b"entry");
        assert_eq!(
            verify(&trusted, Some(&rotated), b"entry"),
            Err(Untrusted::BadSignature("ci-1".into()))
        );
        let paths = [a.with_extension("pub"), c.with_extension("pub"), a.with_extension("pub")];
        let both = load_trusted(&paths).unwrap();
        assert_eq!(both.len(), 2, "the same key twice counts once");
        assert_ne!(both[0].fingerprint(), both[1].fingerprint());
        // "signed by" says which of the two keys named alike signed.
        assert_eq!(verify(&both, Some(&rotated), b"entry"), Ok(signer(&both[1])));
        assert_eq!(verify(&both, Some(&sig), b"entry"), Ok(signer(&both[0])));
        assert_eq!(signer(&both[1]).to_string(), format!("`ci-1` (key {})", both[1].fingerprint()));
    }
}
