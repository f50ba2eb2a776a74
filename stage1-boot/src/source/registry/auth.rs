//! Registry authentication: answering `WWW-Authenticate` challenges (Bearer tokens per the
//! Docker token spec, Basic) and finding credentials in containers/Docker auth files.

use std::collections::HashMap;
use std::fmt;
use std::path::{Path, PathBuf};

use base64::Engine as _;
use serde::Deserialize;
use ureq::Agent;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::{basic, RegistryError};
use crate::reference::{DockerRef, DOCKER_HUB};
use crate::source::SourceError;

/// A username and password for a registry. `Debug` never shows the password.
#[derive(Clone)]
pub struct Credentials {
    /// User name.
    pub username: String,
    /// Password or token.
    pub password: Zeroizing<String>,
}

impl fmt::Debug for Credentials {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Credentials({}, <redacted>)", self.username)
    }
}

/// An auth file's contents held in memory (e.g. fetched from a Key Broker Service), used
/// instead of any auth file on disk. Zeroized on drop; `Debug` shows only its name.
pub struct AuthData {
    name: String,
    bytes: Zeroizing<Vec<u8>>,
}

impl AuthData {
    /// Contents of the auth file called `name` (for messages).
    pub fn new(name: impl Into<String>, bytes: Zeroizing<Vec<u8>>) -> Self {
        Self {
            name: name.into(),
            bytes,
        }
    }
}

impl fmt::Debug for AuthData {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "AuthData({}, <redacted>)", self.name)
    }
}

/// What to send in `Authorization`; the values are wiped on drop.
pub(super) enum AuthState {
    None,
    Basic(Zeroizing<String>),
    Bearer(Zeroizing<String>),
}

impl AuthState {
    pub fn header(&self) -> Option<Zeroizing<String>> {
        match self {
            Self::None => None,
            Self::Basic(value) => Some(value.clone()),
            Self::Bearer(token) => {
                let mut value = Zeroizing::new(String::with_capacity(7 + token.len()));
                value.push_str("Bearer ");
                value.push_str(token);
                Some(value)
            }
        }
    }
}

/// Answers a challenge: fetches a pull token from the realm (with Basic credentials when
/// known and `may_send_credentials` allows it for the realm's URL), or switches to Basic.
pub(super) fn answer(
    agent: &Agent,
    image: &DockerRef,
    challenge: &str,
    credentials: Option<&Credentials>,
    may_send_credentials: &dyn Fn(&str) -> bool,
) -> Result<AuthState, RegistryError> {
    let auth_err = |reason: String| RegistryError::Auth {
        registry: image.registry.clone(),
        reason,
    };
    let (scheme, params) = parse_challenge(challenge)
        .ok_or_else(|| auth_err(format!("unparsable challenge {challenge:?}")))?;
    match scheme.to_ascii_lowercase().as_str() {
        "basic" => {
            let creds = credentials
                .ok_or_else(|| auth_err("Basic auth required and no credentials found".into()))?;
            Ok(AuthState::Basic(basic(creds)))
        }
        "bearer" => {
            let realm = params
                .get("realm")
                .ok_or_else(|| auth_err("Bearer challenge without realm".into()))?;
            if !(realm.starts_with("https://") || realm.starts_with("http://")) {
                return Err(auth_err(format!(
                    "token realm {realm:?} is not an http(s) URL"
                )));
            }
            let scope = format!("repository:{}:pull", image.repository);
            let mut req = agent.get(realm.as_str()).query("scope", &scope);
            if let Some(service) = params.get("service") {
                req = req.query("service", service);
            }
            match credentials {
                Some(creds) if may_send_credentials(realm) => {
                    req = req.header("Authorization", basic(creds).as_str());
                }
                Some(_) => log::warn!(
                    "asking the token realm {realm} without the credentials for {}: plain HTTP \
                     to a host not listed in insecure_registries",
                    image.registry
                ),
                None => {}
            }
            let resp = req.call().map_err(|source| RegistryError::Http {
                url: realm.clone(),
                source: Box::new(source),
            })?;
            let status = resp.status().as_u16();
            if status != 200 {
                return Err(auth_err(format!(
                    "token server {realm} answered HTTP {status}"
                )));
            }
            let body = resp
                .into_body()
                .with_config()
                .limit(1 << 20)
                .read_to_vec()
                .map(Zeroizing::new)
                .map_err(|source| RegistryError::Http {
                    url: realm.clone(),
                    source: Box::new(source),
                })?;
            let token = token_of_response(&body)
                .map_err(|reason| auth_err(format!("token server {realm} sent {reason}")))?;
            Ok(AuthState::Bearer(token))
        }
        other => Err(auth_err(format!("unsupported auth scheme {other:?}"))),
    }
}

/// The pull token of a token server's answer: `token`, else `access_token` (the OAuth 2
/// name), not empty. The error completes "token server REALM sent …".
pub(crate) fn token_of_response(body: &[u8]) -> Result<Zeroizing<String>, String> {
    /// Wiped on drop: the tokens are secrets.
    #[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
    struct TokenResponse {
        token: Option<String>,
        access_token: Option<String>,
    }
    let mut parsed: TokenResponse =
        serde_json::from_slice(body).map_err(|e| format!("invalid JSON: {e}"))?;
    parsed
        .token
        .take()
        .or_else(|| parsed.access_token.take())
        .filter(|t| !t.is_empty())
        .map(Zeroizing::new)
        .ok_or_else(|| "no token".to_owned())
}

/// Parses `Scheme k1="v1",k2=v2`.
pub(crate) fn parse_challenge(s: &str) -> Option<(String, HashMap<String, String>)> {
    let s = s.trim();
    let (scheme, rest) = s.split_once(' ').unwrap_or((s, ""));
    let mut params = HashMap::new();
    let mut chars = rest.chars().peekable();
    loop {
        while matches!(chars.peek(), Some(' ' | ',')) {
            chars.next();
        }
        let key: String = chars.by_ref().take_while(|&c| c != '=').collect();
        if key.is_empty() {
            break;
        }
        let mut value = String::new();
        if chars.peek() == Some(&'"') {
            chars.next();
            while let Some(c) = chars.next() {
                match c {
                    '\\' => value.extend(chars.next()),
                    '"' => break,
                    c => value.push(c),
                }
            }
        } else {
            while let Some(&c) = chars.peek() {
                if c == ',' {
                    break;
                }
                value.push(c);
                chars.next();
            }
        }
        params.insert(key.trim().to_ascii_lowercase(), value);
    }
    (!scheme.is_empty()).then(|| (scheme.to_owned(), params))
}

/// Credentials for `image` from the first auth file that has them: `authfile`, else
/// `$REGISTRY_AUTH_FILE`, `$XDG_RUNTIME_DIR/containers/auth.json`, `~/.docker/config.json`.
pub(super) fn find_credentials(
    image: &DockerRef,
    authfile: Option<&Path>,
    data: Option<&AuthData>,
) -> Result<Option<Credentials>, SourceError> {
    if let Some(data) = data {
        return lookup(&data.bytes, image).map_err(|reason| SourceError::Invalid {
            reference: image.to_string(),
            reason: format!("auth file {}: {reason}", data.name),
        });
    }
    let files: Vec<PathBuf> = match authfile {
        Some(f) => vec![f.to_owned()],
        None => {
            let env = |k: &str| {
                std::env::var_os(k)
                    .filter(|v| !v.is_empty())
                    .map(PathBuf::from)
            };
            [
                env("REGISTRY_AUTH_FILE"),
                env("XDG_RUNTIME_DIR").map(|d| d.join("containers/auth.json")),
                env("HOME").map(|h| h.join(".docker/config.json")),
            ]
            .into_iter()
            .flatten()
            .collect()
        }
    };
    for file in files {
        let bytes = match std::fs::read(&file) {
            Ok(b) => Zeroizing::new(b),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && authfile.is_none() => continue,
            Err(source) => {
                return Err(RegistryError::Config { path: file, source }.into());
            }
        };
        if let Some(creds) = lookup(&bytes, image).map_err(|reason| SourceError::Invalid {
            reference: image.to_string(),
            reason: format!("auth file {}: {reason}", file.display()),
        })? {
            log::debug!(
                "using credentials for {} from {}",
                image.registry,
                file.display()
            );
            return Ok(Some(creds));
        }
    }
    Ok(None)
}

/// The most specific entry of an auth file for `image`.
pub(crate) fn lookup(bytes: &[u8], image: &DockerRef) -> Result<Option<Credentials>, String> {
    #[derive(Deserialize)]
    struct AuthFile {
        #[serde(default)]
        auths: HashMap<String, AuthEntry>,
    }
    /// Wiped on drop: `auth` and `password` are secrets.
    #[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
    struct AuthEntry {
        auth: Option<String>,
        username: Option<String>,
        password: Option<String>,
    }
    let file: AuthFile = serde_json::from_slice(bytes).map_err(|e| format!("invalid JSON: {e}"))?;
    let entries: HashMap<String, AuthEntry> = file
        .auths
        .into_iter()
        .map(|(k, v)| (normalize_key(&k), v))
        .collect();
    // host/a/b/c, host/a/b, host/a, host
    let mut candidates = Vec::new();
    let parts: Vec<&str> = image.repository.split('/').collect();
    for n in (1..=parts.len()).rev() {
        candidates.push(format!("{}/{}", image.registry, parts[..n].join("/")));
    }
    candidates.push(image.registry.clone());
    for key in candidates {
        let Some(entry) = entries.get(&key) else {
            continue;
        };
        if let Some(auth) = &entry.auth {
            let decoded = Zeroizing::new(
                base64::engine::general_purpose::STANDARD
                    .decode(auth.trim())
                    .map_err(|_| format!("entry {key:?} has invalid base64"))?,
            );
            let text =
                std::str::from_utf8(&decoded).map_err(|_| format!("entry {key:?} is not UTF-8"))?;
            let (user, pass) = text
                .split_once(':')
                .ok_or_else(|| format!("entry {key:?} is not user:password"))?;
            return Ok(Some(Credentials {
                username: user.to_owned(),
                password: Zeroizing::new(pass.to_owned()),
            }));
        }
        if let (Some(u), Some(p)) = (&entry.username, &entry.password) {
            return Ok(Some(Credentials {
                username: u.clone(),
                password: Zeroizing::new(p.clone()),
            }));
        }
    }
    Ok(None)
}

/// `https://index.docker.io/v1/` → `docker.io`; `http://host:5000/` → `host:5000`.
fn normalize_key(key: &str) -> String {
    let k = key
        .trim_start_matches("https://")
        .trim_start_matches("http://")
        .trim_end_matches('/');
    let k = k
        .strip_suffix("/v1")
        .or_else(|| k.strip_suffix("/v2"))
        .unwrap_or(k);
    match k {
        "index.docker.io" | "registry-1.docker.io" => DOCKER_HUB.to_owned(),
        _ => k.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(s: &str) -> DockerRef {
        match s.parse().unwrap() {
            crate::reference::ImageRef::Docker(d) => d,
            _ => panic!(),
        }
    }

    #[test]
    fn challenges() {
        let (s, p) = parse_challenge(
            r#"Bearer realm="https://auth.example/token",service="reg, with comma",scope="repository:a/b:pull""#,
        )
        .unwrap();
        assert_eq!(s, "Bearer");
        assert_eq!(p["realm"], "https://auth.example/token");
        assert_eq!(p["service"], "reg, with comma");
        let (s, p) = parse_challenge(r#"Basic realm=reg"#).unwrap();
        assert_eq!((s.as_str(), p["realm"].as_str()), ("Basic", "reg"));
    }

    #[test]
    fn auth_file_most_specific_first() {
        let b64 = |s: &str| base64::engine::general_purpose::STANDARD.encode(s);
        let file = format!(
            r#"{{"auths":{{"reg.example:5000":{{"auth":"{}"}},
            "reg.example:5000/team":{{"auth":"{}"}},
            "https://index.docker.io/v1/":{{"auth":"{}"}}}}}}"#,
            b64("host:h"),
            b64("team:t"),
            b64("hub:p:with:colons")
        );
        let c = lookup(file.as_bytes(), &image("reg.example:5000/team/app"))
            .unwrap()
            .unwrap();
        assert_eq!((c.username.as_str(), c.password.as_str()), ("team", "t"));
        let c = lookup(file.as_bytes(), &image("reg.example:5000/other"))
            .unwrap()
            .unwrap();
        assert_eq!(c.username, "host");
        let c = lookup(file.as_bytes(), &image("busybox")).unwrap().unwrap();
        assert_eq!(
            (c.username.as_str(), c.password.as_str()),
            ("hub", "p:with:colons")
        );
        assert!(lookup(file.as_bytes(), &image("quay.io/x"))
            .unwrap()
            .is_none());
        assert!(format!("{c:?}").contains("redacted"));
        assert!(lookup(b"{", &image("busybox")).is_err());
    }
}
