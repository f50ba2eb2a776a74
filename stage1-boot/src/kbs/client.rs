//! The RCAR exchange over HTTP(S) with ureq, and resource requests on the session.

use std::collections::HashMap;
use std::io::Read as _;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use serde_json::json;
use ureq::tls::{Certificate, RootCerts, TlsConfig};
use ureq::Agent;
use zeroize::Zeroizing;

use super::protocol::{self, AttestResponse, Challenge, Problem};
use super::tee_key::TeeKey;
use super::{KbsError, ResourceUri};
use crate::attester::{Attester, AttesterKind};

/// Largest response body accepted from a KBS.
const MAX_BODY: u64 = 16 << 20;

/// How to reach the KBS.
#[derive(Debug, Clone)]
pub struct KbsConfig {
    /// Base URL, e.g. `https://kbs.example:8080`. Plain `http://` only to loopback, and never
    /// with the `sgx` attester (loopback is the host's under Occlum: a KBS is HTTPS there).
    pub url: String,
    /// Which evidence to present.
    pub attester: AttesterKind,
    /// Extra CA certificate (PEM) for the KBS's TLS certificate.
    pub ca_cert: Option<PathBuf>,
    /// Timeout to connect and for each response.
    pub timeout: Duration,
}

impl KbsConfig {
    /// A KBS at `url` with the sample attester and a 30 s timeout.
    pub fn new(url: impl Into<String>) -> Self {
        Self {
            url: url.into(),
            attester: AttesterKind::Sample,
            ca_cert: None,
            timeout: Duration::from_secs(30),
        }
    }

    /// Checks the URL against the attester; the base URL (without a trailing `/`).
    pub fn validate(&self) -> Result<String, KbsError> {
        check_url(&self.url, self.attester)
    }
}

/// A session cookie's value, wiped on drop.
type Cookie = Zeroizing<String>;

/// An attested session: the cookie and token the KBS gave, and the key it encrypts to.
struct Session {
    cookie: Option<Zeroizing<String>>,
    token: Zeroizing<String>,
    key: TeeKey,
}

/// A KBS client. Attests on first use; the session is shared by all requests.
pub struct KbsClient {
    base: String,
    agent: Agent,
    attester: Box<dyn Attester>,
    session: Mutex<Option<Session>>,
    /// Resources already fetched by this client (one pull): a KEK shared by several layers
    /// is fetched once.
    fetched: Mutex<HashMap<String, Zeroizing<Vec<u8>>>>,
}

impl std::fmt::Debug for KbsClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "KbsClient({}, {})", self.base, self.attester.tee())
    }
}

impl KbsClient {
    /// A client for `config` (no request is made yet).
    pub fn new(config: &KbsConfig) -> Result<Self, KbsError> {
        Self::with_attester(config, crate::attester::attester_for(config.attester))
    }

    /// A client that presents `attester`'s evidence.
    pub fn with_attester(
        config: &KbsConfig,
        attester: Box<dyn Attester>,
    ) -> Result<Self, KbsError> {
        let base = config.validate()?;
        // The system roots only for a KBS reached over HTTPS (see `trust::system_roots`).
        let mut roots = if base.starts_with("https://") {
            crate::source::registry::trust::system_roots()
        } else {
            Vec::new()
        };
        if let Some(path) = &config.ca_cert {
            let cert_err = |source| KbsError::Cert {
                path: path.clone(),
                source,
            };
            let pem = std::fs::read(path).map_err(cert_err)?;
            let cert = Certificate::from_pem(&pem).map_err(|e| {
                cert_err(std::io::Error::new(
                    std::io::ErrorKind::InvalidData,
                    e.to_string(),
                ))
            })?;
            roots.push(cert);
        }
        let tls = TlsConfig::builder()
            .root_certs(RootCerts::Specific(Arc::new(roots)))
            .build();
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(config.timeout))
            .timeout_recv_response(Some(config.timeout))
            .timeout_per_read(Some(config.timeout))
            .max_redirects(0)
            .user_agent(concat!("encc/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        Ok(Self {
            base,
            agent,
            attester,
            session: Mutex::new(None),
            fetched: Mutex::new(HashMap::new()),
        })
    }

    /// The KBS base URL.
    pub fn url(&self) -> &str {
        &self.base
    }

    /// Fetches and decrypts a resource, attesting first if there is no session and once
    /// more if the KBS answers 401.
    pub fn resource(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        let key = uri.to_string();
        if let Some(known) = self.lock_fetched().get(&key) {
            return Ok(known.clone());
        }
        let value = self.fetch(uri).map_err(|source| KbsError::Resource {
            uri: key.clone(),
            kbs: self.base.clone(),
            source: Box::new(source),
        })?;
        self.lock_fetched().insert(key, value.clone());
        Ok(value)
    }

    fn lock_fetched(&self) -> MutexGuard<'_, HashMap<String, Zeroizing<Vec<u8>>>> {
        self.fetched.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn fetch(&self, uri: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        let url = format!("{}/kbs/v0/resource/{}", self.base, uri.path());
        let mut session = self.lock_session();
        for attempt in 0..2 {
            if session.is_none() || attempt == 1 {
                *session = Some(self.attest()?);
            }
            let Some(current) = session.as_ref() else {
                continue;
            };
            let mut req = self.agent.get(&url);
            req = match &current.cookie {
                Some(cookie) => req.header("Cookie", cookie_header(cookie).as_str()),
                None => req.header(
                    "Authorization",
                    secret_concat(&["Bearer ", &current.token]).as_str(),
                ),
            };
            let resp = req.call().map_err(|source| http_err(&url, source))?;
            let status = resp.status().as_u16();
            let body = read_body(&url, resp)?;
            match status {
                200 => {
                    let plain = current.key.open(&body).map_err(KbsError::Decrypt)?;
                    log::info!("KBS: got {uri} ({} bytes)", plain.len());
                    return Ok(plain);
                }
                401 if attempt == 0 => {
                    log::warn!(
                        "KBS {url} answered 401{}; attesting again",
                        Problem::describe(&body)
                    );
                }
                _ => {
                    return Err(KbsError::Status {
                        url,
                        status,
                        problem: Problem::describe(&body),
                    })
                }
            }
        }
        Err(KbsError::Protocol {
            url,
            reason: "still unauthorized after attesting again".into(),
        })
    }

    fn lock_session(&self) -> MutexGuard<'_, Option<Session>> {
        // A session is replaced whole, so a poisoned lock still holds a valid value.
        self.session.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// auth → attest with a fresh key.
    fn attest(&self) -> Result<Session, KbsError> {
        let tee = self.attester.tee();
        let key = TeeKey::generate().ok_or(KbsError::Random)?;
        let url = format!("{}/kbs/v0/auth", self.base);
        let request = protocol::Request {
            version: protocol::PROTOCOL_VERSION.into(),
            tee,
            extra_params: json!(""),
        };
        let (body, mut cookie) = self.post(&url, &request, None)?;
        let challenge: Challenge =
            serde_json::from_slice(&body).map_err(|e| KbsError::Protocol {
                url: url.clone(),
                reason: format!("the challenge is not {{\"nonce\", \"extra-params\"}}: {e}"),
            })?;
        let hash = protocol::selected_hash(&challenge.extra_params).map_err(|reason| {
            KbsError::Protocol {
                url: url.clone(),
                reason,
            }
        })?;
        let Some(session_cookie) = cookie.take() else {
            return Err(KbsError::Protocol {
                url,
                reason: format!("no {} cookie was set", protocol::SESSION_COOKIE),
            });
        };
        let report_data =
            protocol::report_data(&challenge.nonce, key.tee_pubkey(), hash).map_err(|reason| {
                KbsError::Protocol {
                    url: url.clone(),
                    reason,
                }
            })?;
        let evidence = self
            .attester
            .evidence(&report_data)
            .map_err(|source| KbsError::Evidence { tee, source })?;
        let attestation = protocol::Attestation {
            init_data: None,
            runtime_data: protocol::runtime_data(&challenge.nonce, key.tee_pubkey()),
            tee_evidence: protocol::CompositeEvidence {
                primary_evidence: evidence,
                additional_evidence: String::new(),
            },
        };
        let url = format!("{}/kbs/v0/attest", self.base);
        let (body, renewed) = self.post(&url, &attestation, Some(&session_cookie))?;
        let response: AttestResponse =
            serde_json::from_slice(&body).map_err(|e| KbsError::Protocol {
                url: url.clone(),
                reason: format!("the attestation result is not {{\"token\"}}: {e}"),
            })?;
        log::info!("KBS {}: attested as TEE {tee}", self.base);
        Ok(Session {
            cookie: Some(renewed.unwrap_or(session_cookie)),
            token: Zeroizing::new(response.token),
            key,
        })
    }

    /// POSTs JSON; returns the body of a 200 answer and the session cookie it set, if any.
    fn post(
        &self,
        url: &str,
        body: &impl serde::Serialize,
        cookie: Option<&Zeroizing<String>>,
    ) -> Result<(Zeroizing<Vec<u8>>, Option<Cookie>), KbsError> {
        let json = serde_json::to_vec(body).map_err(|e| KbsError::Protocol {
            url: url.to_owned(),
            reason: format!("cannot encode the request: {e}"),
        })?;
        let mut req = self
            .agent
            .post(url)
            .header("Content-Type", "application/json");
        if let Some(cookie) = cookie {
            req = req.header("Cookie", cookie_header(cookie).as_str());
        }
        let resp = req
            .send(&json[..])
            .map_err(|source| http_err(url, source))?;
        let status = resp.status().as_u16();
        let set_cookie = session_cookie(&resp);
        let body = read_body(url, resp)?;
        if status != 200 {
            return Err(KbsError::Status {
                url: url.to_owned(),
                status,
                problem: Problem::describe(&body),
            });
        }
        Ok((body, set_cookie))
    }
}

fn http_err(url: &str, source: ureq::Error) -> KbsError {
    KbsError::Http {
        url: url.to_owned(),
        source: Box::new(source),
    }
}

/// `kbs-session-id=VALUE`, wiped on drop.
fn cookie_header(cookie: &str) -> Zeroizing<String> {
    secret_concat(&[protocol::SESSION_COOKIE, "=", cookie])
}

/// The parts joined into a string allocated at its final size (no reallocation leaves a copy
/// behind), wiped on drop.
fn secret_concat(parts: &[&str]) -> Zeroizing<String> {
    let mut joined = Zeroizing::new(String::with_capacity(parts.iter().map(|p| p.len()).sum()));
    parts.iter().for_each(|part| joined.push_str(part));
    joined
}

/// The body (at most [`MAX_BODY`] bytes), wiped on drop: an attestation answer holds the
/// session token. Room for a typical answer is reserved so that growing leaves no copies.
fn read_body(
    url: &str,
    resp: ureq::http::Response<ureq::Body>,
) -> Result<Zeroizing<Vec<u8>>, KbsError> {
    let mut body = Zeroizing::new(Vec::with_capacity(64 << 10));
    resp.into_body()
        .into_reader()
        .take(MAX_BODY + 1)
        .read_to_end(&mut body)
        .map_err(|e| KbsError::Protocol {
            url: url.to_owned(),
            reason: format!("cannot read the answer: {e}"),
        })?;
    if body.len() as u64 > MAX_BODY {
        return Err(KbsError::Protocol {
            url: url.to_owned(),
            reason: format!("the answer is larger than {MAX_BODY} bytes"),
        });
    }
    Ok(body)
}

/// The value of the `kbs-session-id` cookie a response sets.
fn session_cookie(resp: &ureq::http::Response<ureq::Body>) -> Option<Zeroizing<String>> {
    resp.headers()
        .get_all("set-cookie")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .filter_map(|v| v.split(';').next())
        .filter_map(|pair| pair.split_once('='))
        .find(|(name, _)| name.trim() == protocol::SESSION_COOKIE)
        .map(|(_, value)| Zeroizing::new(value.trim().trim_matches('"').to_owned()))
}

/// `https://…`, or `http://…` to a loopback host: a resource is encrypted to the TEE key,
/// but only TLS tells the client that the policy and keys come from the right KBS.
fn check_url(url: &str, attester: AttesterKind) -> Result<String, KbsError> {
    let err = |reason| KbsError::Url {
        url: url.to_owned(),
        reason,
    };
    let base = url.trim_end_matches('/');
    let (scheme, rest) = base.split_once("://").ok_or(err("not an http(s) URL"))?;
    let authority = rest.split('/').next().unwrap_or("");
    if authority.is_empty() || authority.contains('@') {
        return Err(err("no host, or user info in the URL"));
    }
    if rest.contains(['?', '#']) {
        return Err(err("a query or fragment in the URL"));
    }
    let host = match authority.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None => authority.split(':').next().unwrap_or(""),
    };
    match scheme {
        "https" => Ok(base.to_owned()),
        "http" if attester == AttesterKind::Sgx => Err(err(
            "plain HTTP is refused with the sgx attester (loopback is the host's there); use https://",
        )),
        "http" if matches!(host, "127.0.0.1" | "localhost" | "::1") => Ok(base.to_owned()),
        "http" => Err(err(
            "plain HTTP is allowed only to a loopback KBS; use https://",
        )),
        _ => Err(err("not an http(s) URL")),
    }
}

#[cfg(test)]
mod tests;
