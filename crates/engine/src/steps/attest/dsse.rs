//! DSSE envelopes: signing a Statement with a cache key, opening an envelope against the
//! trusted keys with typed refusals, and checking its subjects against output bytes.

use super::*;

/// Sign a Statement (its exact bytes) into a DSSE envelope with a cache key (`cache keygen`).
/// Ed25519 is deterministic: the same Statement and key give the same envelope.
pub(crate) fn sign_envelope(key: &SecretKey, statement: &[u8]) -> Envelope {
    let sig = key.sign_raw(&pae(IN_TOTO_PAYLOAD, statement));
    Envelope {
        payload_type: IN_TOTO_PAYLOAD.into(),
        payload: B64.encode(statement),
        signatures: vec![Signature { keyid: key.name.clone(), sig: B64.encode(sig) }],
    }
}

/// Why `verify` refuses an envelope: one line each.
#[derive(Debug, thiserror::Error)]
pub(crate) enum Refusal {
    #[error("not a DSSE envelope: {0}")]
    NotAnEnvelope(String),
    #[error("payload type `{0}`, not {IN_TOTO_PAYLOAD}")]
    PayloadType(String),
    #[error("the envelope carries no signature by a trusted key: {0}")]
    Untrusted(String),
    #[error("the payload is not an in-toto Statement v1: {0}")]
    NotAStatement(String),
    #[error("{what} in {dir} is not a subject of the statement")]
    NotASubject { what: String, dir: String },
    #[error("subject {name}: not in {dir}")]
    SubjectMissing { name: String, dir: String },
    #[error("subject {name}: the statement says sha256 {statement}, {dir} has {found}")]
    SubjectDiffers { name: String, statement: String, found: String, dir: String },
}

/// A verified envelope: who signed it and what it says.
#[derive(Debug)]
pub(crate) struct Verified {
    pub key: keys::Signer,
    pub statement: Statement<serde_json::Value>,
}

/// Check an envelope's signatures against the trusted keys (one that verifies is enough) and
/// read its Statement, which must name at least one subject, each once, by name and sha256.
/// A signature without a `keyid` (optional in DSSE) is tried against every trusted key;
/// base64 may be standard or URL-safe (DSSE allows both).
pub(crate) fn open_envelope(trusted: &[PublicKey], bytes: &[u8]) -> Result<Verified, Refusal> {
    let env: Envelope =
        serde_json::from_slice(bytes).map_err(|e| Refusal::NotAnEnvelope(e.to_string()))?;
    if env.payload_type != IN_TOTO_PAYLOAD {
        return Err(Refusal::PayloadType(env.payload_type));
    }
    let payload =
        decode_base64(&env.payload).map_err(|e| Refusal::NotAnEnvelope(format!("payload: {e}")))?;
    let message = pae(&env.payload_type, &payload);
    let mut why = vec![];
    let mut key = None;
    'signatures: for s in &env.signatures {
        let Ok(sig) = decode_base64(&s.sig) else {
            why.push(keys::Untrusted::Malformed.to_string());
            continue;
        };
        let sig = B64.encode(sig);
        let names: Vec<&str> = if s.keyid.is_empty() {
            trusted.iter().map(|k| k.name.as_str()).collect()
        } else {
            vec![s.keyid.as_str()]
        };
        for name in names {
            match keys::verify(trusted, Some(&format!("{name}:{sig}")), &message) {
                Ok(k) => {
                    key = Some(k);
                    break 'signatures;
                }
                Err(e) => why.push(e.to_string()),
            }
        }
    }
    let Some(key) = key else {
        if why.is_empty() {
            why.push(keys::Untrusted::Unsigned.to_string());
        }
        why.dedup();
        return Err(Refusal::Untrusted(why.join("; ")));
    };
    let statement: Statement<serde_json::Value> =
        serde_json::from_slice(&payload).map_err(|e| Refusal::NotAStatement(e.to_string()))?;
    if statement.statement_type != STATEMENT_TYPE {
        return Err(Refusal::NotAStatement(format!("_type {}", statement.statement_type)));
    }
    if statement.subject.is_empty() {
        return Err(Refusal::NotAStatement("it names no subject".into()));
    }
    let mut names = BTreeSet::new();
    for s in &statement.subject {
        let name = s.name.as_deref().unwrap_or_default();
        let sha = s.digest.get("sha256").map(String::as_str).unwrap_or_default();
        if name.is_empty() || !reprovm_fs::hash::is_sha256_hex(sha) {
            return Err(Refusal::NotAStatement(format!(
                "subject `{name}` lacks a name or a sha256 digest"
            )));
        }
        if !names.insert(name) {
            return Err(Refusal::NotAStatement(format!("subject `{name}` is named twice")));
        }
    }
    Ok(Verified { key, statement })
}

pub(super) fn decode_base64(s: &str) -> Result<Vec<u8>, base64::DecodeError> {
    B64.decode(s).or_else(|_| base64::engine::general_purpose::URL_SAFE.decode(s))
}

/// Check a Statement's subjects against `dir`.
///
/// An output directory: every regular file in it must be a subject, and every subject a
/// regular file with the digest the Statement names (read beneath `dir`; a symlink, a device,
/// a FIFO or a path out of `dir` is refused, never followed or opened).
///
/// An OCI layout (as `pull` writes one: some of the tags, the referrers, its own index.json):
/// the layout must verify, and every image in it must be a subject by digest. Only an untagged
/// manifest whose `subject` is another manifest of the layout counts as a referrer and is left
/// out; a tagged manifest is always an image to check. Returns how many were checked.
pub(crate) fn check_subjects(
    statement: &Statement<serde_json::Value>,
    dir: &Path,
) -> Result<usize> {
    let shown = dir.display().to_string();
    if dir.join("oci-layout").is_file() {
        let layout = reprovm_oci::layout::Layout::open(dir)?;
        layout.verify().with_context(|| format!("{shown}: the layout does not verify"))?;
        let manifests = layout.manifests();
        let in_layout: BTreeSet<String> = manifests.iter().map(|(_, d)| d.digest.clone()).collect();
        let mut checked = 0;
        for (tag, d) in &manifests {
            let m: reprovm_oci::spec::ImageManifest = serde_json::from_slice(&layout.blob(d)?)
                .with_context(|| format!("{}: manifest {}", shown, d.digest))?;
            let referrer =
                tag.is_none() && m.subject.as_ref().is_some_and(|s| in_layout.contains(&s.digest));
            if referrer {
                continue;
            }
            let named = statement.subject.iter().any(|s| {
                s.name.as_deref().is_some_and(|n| n.starts_with("oci-manifest:"))
                    && s.digest.get("sha256").map(String::as_str) == Some(d.hex())
            });
            if !named {
                let what = format!(
                    "image {} ({})",
                    d.digest,
                    tag.clone().unwrap_or_else(|| "untagged".into())
                );
                return Err(Refusal::NotASubject { what, dir: shown }.into());
            }
            checked += 1;
        }
        anyhow::ensure!(checked > 0, "{shown}: the layout holds no image to check");
        return Ok(checked);
    }
    let root = Dir::open(dir)?;
    let mut named = BTreeSet::new();
    for s in &statement.subject {
        let name = s.name.clone().unwrap_or_default();
        named.insert(PathBuf::from(&name));
        let want = s.digest.get("sha256").cloned().unwrap_or_default();
        let rel = Path::new(&name);
        let meta = match root.metadata(rel) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => None,
            Err(e) => return Err(anyhow::Error::new(e).context(format!("subject {name}"))),
        };
        match meta.map(|m| m.kind) {
            None => return Err(Refusal::SubjectMissing { name, dir: shown }.into()),
            Some(Kind::File) => {}
            Some(k) => anyhow::bail!("subject {name}: a {k:?} in {shown}, not a regular file"),
        }
        let mut f = root.open_file(rel).with_context(|| format!("subject {name}"))?;
        let found = reprovm_fs::hash::sha256_reader(&mut f)?.0;
        if found != want {
            return Err(Refusal::SubjectDiffers { name, statement: want, found, dir: shown }.into());
        }
    }
    for e in root.walk()? {
        if e.kind == Kind::File && !named.contains(&e.path) {
            let what = format!("file {}", e.path.display());
            return Err(Refusal::NotASubject { what, dir: shown }.into());
        }
    }
    Ok(statement.subject.len())
}
