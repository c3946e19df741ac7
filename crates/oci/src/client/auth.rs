//! Authentication: credentials from docker's config (for the registry's own origin only),
//! Basic and Bearer challenges, token realms (the rules on which realm may be asked, and
//! with what).

use super::*;

/// Credentials for one registry, from docker's config.
#[derive(Clone)]
pub(super) enum Credentials {
    Basic {
        user: String,
        password: String,
    },
    /// An OAuth2 refresh token (`identitytoken`), exchanged at the token realm.
    IdentityToken(String),
}

impl std::fmt::Debug for Credentials {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Credentials::Basic { .. } => "Basic(..)",
            Credentials::IdentityToken(_) => "IdentityToken(..)",
        })
    }
}

/// Credentials for `host` from the docker config; None when it names none.
pub(super) fn credentials(host: &str) -> Result<Option<Credentials>> {
    use docker_credential::{CredentialRetrievalError as E, DockerCredential};
    match docker_credential::get_credential(host) {
        Ok(DockerCredential::UsernamePassword(user, password)) => {
            Ok(Some(Credentials::Basic { user, password }))
        }
        Ok(DockerCredential::IdentityToken(t)) => Ok(Some(Credentials::IdentityToken(t))),
        Err(E::ConfigNotFound | E::NoCredentialConfigured | E::ConfigReadError) => Ok(None),
        Err(e) => bail!(
            "credentials for {host} from the docker config.json ($DOCKER_CONFIG or ~/.docker): {e}"
        ),
    }
}

impl Registry {
    /// Answer a 401's challenge: a Basic one with the configured credentials; a Bearer one
    /// by getting a token from its realm, which sees credentials only when it is the
    /// registry's origin or an allowed realm.
    pub(super) fn authenticate(&self, challenge: &str, scope: &str) -> Result<(), RegistryError> {
        let refused = |why: String| RegistryError::Refused(format!("{}: {why}", self.name));
        let (kind, params) = parse_challenge(challenge).ok_or_else(|| {
            refused(format!(
                "an authentication challenge it does not understand: `{}`",
                challenge.chars().take(200).collect::<String>()
            ))
        })?;
        let store = |key: &str, value: String| {
            if let Ok(mut t) = self.tokens.lock() {
                t.insert(key.to_string(), value);
            }
        };
        match kind.as_str() {
            "basic" => match &self.credentials {
                Some(Credentials::Basic { user, password }) => {
                    if self.origin.scheme == "http" && !self.origin.loopback() {
                        return Err(refused("credentials over plain HTTP".into()));
                    }
                    store("", format!("Basic {}", basic(user, password)));
                    Ok(())
                }
                _ => Err(refused(
                    "it asks for a user name and password, and docker's config.json has none for it".into(),
                )),
            },
            "bearer" => {
                let realm = params.get("realm").cloned().unwrap_or_default();
                let to = Origin::of(&realm)
                    .ok_or_else(|| refused(format!("token realm `{realm}` is not a URL")))?;
                // A registry off this machine chooses no request to it, and no plain HTTP.
                if !self.origin.loopback() && (to.loopback() || to.scheme == "http") {
                    return Err(refused(format!(
                        "token realm {realm} refused: plain HTTP and realms on this machine are only for a registry on this machine"
                    )));
                }
                if to.host != self.origin.host {
                    reprovm_fs::progress::say(&format!(
                        "{}: token realm {realm} is on another host than the registry",
                        self.name
                    ));
                }
                let trusted = to == self.origin || self.realms.contains(&to);
                let mut query = Vec::new();
                if let Some(s) = params.get("service") {
                    query.push(format!("service={}", urlencode(s)));
                }
                let scope_asked = params.get("scope").cloned().unwrap_or_else(|| scope.to_string());
                if !scope_asked.is_empty() {
                    query.push(format!("scope={}", urlencode(&scope_asked)));
                }
                let sep = if realm.contains('?') { '&' } else { '?' };
                let url = if query.is_empty() { realm.clone() } else { format!("{realm}{sep}{}", query.join("&")) };
                let credentials = if trusted { self.credentials.clone() } else { None };
                if self.credentials.is_some() && !trusted {
                    reprovm_fs::progress::say(&format!(
                        "{}: token realm {realm} is not the registry's origin: asking it anonymously (allow it with {REALMS_ENV})",
                        self.name
                    ));
                }
                let resp = match credentials {
                    Some(Credentials::IdentityToken(refresh)) => {
                        let mut form = vec![
                            ("grant_type", "refresh_token".to_string()),
                            ("client_id", "reprovm".to_string()),
                            ("refresh_token", refresh),
                            ("scope", scope_asked.clone()),
                        ];
                        if let Some(s) = params.get("service") {
                            form.push(("service", s.clone()));
                        }
                        let pairs: Vec<(&str, &str)> = form.iter().map(|(k, v)| (*k, v.as_str())).collect();
                        self.agent.post(&realm).timeout(self.deadline(SMALL_LIMIT)).send_form(&pairs)
                    }
                    Some(Credentials::Basic { user, password }) => self
                        .agent
                        .get(&url)
                        .timeout(self.deadline(SMALL_LIMIT))
                        .set("Authorization", &format!("Basic {}", basic(&user, &password)))
                        .call(),
                    None => self.agent.get(&url).timeout(self.deadline(SMALL_LIMIT)).call(),
                };
                let resp = resp.map_err(|e| {
                    RegistryError::Transfer(format!("{}: token from {realm}: {}", self.name, e.to_string().replace('\n', " ")))
                })?;
                let mut text = Vec::new();
                resp.into_reader()
                    .take(SMALL_LIMIT + 1)
                    .read_to_end(&mut text)
                    .map_err(|e| RegistryError::Transfer(format!("token from {realm}: {e}")))?;
                if text.len() as u64 > SMALL_LIMIT {
                    return Err(refused(format!("the token response from {realm} is larger than {SMALL_LIMIT} bytes")));
                }
                #[derive(serde::Deserialize)]
                struct Token {
                    token: Option<String>,
                    access_token: Option<String>,
                }
                let t: Token = serde_json::from_slice(&text)
                    .map_err(|e| refused(format!("the token response from {realm} does not parse: {e}")))?;
                let token = t.token.or(t.access_token).ok_or_else(|| refused(format!("{realm} sent no token")))?;
                store(scope, format!("Bearer {token}"));
                Ok(())
            }
            other => Err(refused(format!("unsupported authentication scheme `{other}`"))),
        }
    }
}

/// `user:password` in base64, as Basic authentication sends it.
pub(super) fn basic(user: &str, password: &str) -> String {
    use base64::Engine;
    base64::engine::general_purpose::STANDARD.encode(format!("{user}:{password}"))
}

/// `Bearer realm="https://…",service="…",scope="…"` -> ("bearer", {realm, service, scope}).
pub(super) fn parse_challenge(h: &str) -> Option<(String, BTreeMap<String, String>)> {
    let h = h.trim();
    let (kind, rest) = h.split_once(' ').unwrap_or((h, ""));
    if kind.is_empty() {
        return None;
    }
    let mut params = BTreeMap::new();
    let mut rest = rest.trim();
    while !rest.is_empty() {
        let (key, after) = rest.split_once('=')?;
        let after = after.trim_start();
        let (value, tail) = match after.strip_prefix('"') {
            Some(q) => {
                let end = q.find('"')?;
                (&q[..end], &q[end + 1..])
            }
            None => after.split_once(',').unwrap_or((after, "")),
        };
        params.insert(key.trim().to_ascii_lowercase(), value.to_string());
        rest = tail.trim_start().trim_start_matches(',').trim_start();
    }
    Some((kind.to_ascii_lowercase(), params))
}
