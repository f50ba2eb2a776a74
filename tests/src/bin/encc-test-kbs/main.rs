//! encc-test-kbs: a TEST DOUBLE of Confidential Containers' trustee Key Broker Service,
//! for encc's integration tests. Trustee cannot be built here; this speaks the same wire
//! format (KBS protocol 0.4.0, RCAR) so that encc's client is tested against the protocol
//! rather than against itself. It is NOT a KBS: it verifies no hardware evidence, accepts
//! only the insecure `sample` TEE, speaks HTTP or HTTPS (a given certificate) on 127.0.0.1
//! and has no policies.
//!
//! What it checks like trustee does: the protocol version (exactly 0.4.0), the session
//! cookie (`kbs-session-id`) on attest and resource requests (or the token as bearer), the
//! nonce in the runtime data, and the sample evidence's `report_data` against the SHA-384
//! of the canonical JSON of `{"tee-pubkey", "nonce", "additional-evidence"}` it expects.
//! Resources are files `DIR/REPO/TYPE/TAG`, sent as a flattened JWE to the tee-pubkey
//! (`ECDH-ES+A256KW` with the epk in the protected header, `A256GCM`, AAD = the encoded
//! protected header). Errors are RFC 7807 problem documents.
//!
//! Usage: `encc-test-kbs --resources DIR [--refuse REPO/TYPE/TAG]... [--session-requests N]
//! [--tls-cert PEM --tls-key PEM]` prints `127.0.0.1:PORT` on stdout and serves until killed,
//! over HTTPS with the certificate chain and key when given. `--session-requests N` ends
//! a session (401) after N resources, to exercise re-attestation. `GET /test/stats` returns
//! request counts as JSON.

use std::collections::HashMap;
use std::io::Write;
use std::net::TcpListener;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::Aes256Gcm;
use anyhow::{bail, Context, Result};
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};
use sha2::{Digest, Sha256, Sha384};

mod http;
mod tls;

const VERSION: &str = "0.4.0";
const COOKIE: &str = "kbs-session-id";
const ERRORS: &str = "https://github.com/confidential-containers/kbs/errors/";

struct Session {
    nonce: String,
    pubkey: Option<Value>,
    token: Option<String>,
    served: usize,
}

#[derive(Default)]
struct State {
    sessions: HashMap<String, Session>,
    stats: HashMap<&'static str, u64>,
}

struct Kbs {
    resources: PathBuf,
    refuse: Vec<String>,
    session_requests: Option<usize>,
    state: Mutex<State>,
}

struct Response {
    status: u16,
    content_type: &'static str,
    headers: Vec<String>,
    body: Vec<u8>,
}

fn json_response(status: u16, body: &Value) -> Response {
    Response {
        status,
        content_type: "application/json",
        headers: Vec::new(),
        body: body.to_string().into_bytes(),
    }
}

/// An RFC 7807 problem, as trustee's `ErrorInformation`.
fn problem(status: u16, kind: &str, detail: &str) -> Response {
    let mut r = json_response(
        status,
        &json!({"type": format!("{ERRORS}{kind}"), "detail": detail}),
    );
    r.content_type = "application/problem+json";
    r
}

fn random<const N: usize>() -> Result<[u8; N]> {
    let mut bytes = [0u8; N];
    getrandom::fill(&mut bytes).context("getrandom")?;
    Ok(bytes)
}

impl Kbs {
    fn count(&self, what: &'static str) {
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        *state.stats.entry(what).or_default() += 1;
    }

    fn handle(
        &self,
        method: &str,
        path: &str,
        headers: &HashMap<String, String>,
        body: &[u8],
    ) -> Result<Response> {
        let cookie = headers.get("cookie").and_then(|c| {
            c.split(';')
                .filter_map(|p| p.trim().split_once('='))
                .find(|(k, _)| *k == COOKIE)
                .map(|(_, v)| v.to_owned())
        });
        match (method, path) {
            ("POST", "/kbs/v0/auth") => self.auth(body),
            ("POST", "/kbs/v0/attest") => self.attest(cookie, body),
            ("GET", "/test/stats") => {
                let state = self.state.lock().unwrap_or_else(|e| e.into_inner());
                Ok(json_response(200, &json!(state.stats)))
            }
            ("GET", p) if p.starts_with("/kbs/v0/resource/") => {
                let bearer = headers
                    .get("authorization")
                    .and_then(|a| a.strip_prefix("Bearer "))
                    .map(str::to_owned);
                self.resource(&p["/kbs/v0/resource/".len()..], cookie, bearer)
            }
            _ => Ok(problem(
                404,
                "NotFound",
                &format!("no endpoint {method} {path}"),
            )),
        }
    }

    fn auth(&self, body: &[u8]) -> Result<Response> {
        self.count("auth");
        let request: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return Ok(problem(400, "ParseRequest", &e.to_string())),
        };
        if request["version"] != VERSION {
            return Ok(problem(
                401,
                "RcarAuthFailed",
                &format!(
                "KBS Client Protocol Version Mismatch: expect ={VERSION} while the request is {}",
                request["version"]
            ),
            ));
        }
        if request["tee"] != "sample" || request.get("extra-params").is_none() {
            return Ok(problem(
                401,
                "RcarAuthFailed",
                "only the sample TEE is supported",
            ));
        }
        let id = hex(&random::<16>()?);
        let nonce = STANDARD.encode(random::<32>()?);
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        state.sessions.insert(
            id.clone(),
            Session {
                nonce: nonce.clone(),
                pubkey: None,
                token: None,
                served: 0,
            },
        );
        let mut r = json_response(200, &json!({"nonce": nonce, "extra-params": ""}));
        r.headers
            .push(format!("Set-Cookie: {COOKIE}={id}; Path=/kbs; HttpOnly"));
        Ok(r)
    }

    fn attest(&self, cookie: Option<String>, body: &[u8]) -> Result<Response> {
        self.count("attest");
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let Some(id) = cookie.filter(|c| state.sessions.contains_key(c)) else {
            return Ok(problem(401, "RcarAttestFailed", "cookie not found"));
        };
        let fail = |detail: String| Ok(problem(401, "RcarAttestFailed", &detail));
        let attestation: Value = match serde_json::from_slice(body) {
            Ok(v) => v,
            Err(e) => return fail(format!("deserialize Attestation: {e}")),
        };
        let runtime = &attestation["runtime-data"];
        let evidence = &attestation["tee-evidence"];
        let Some(session) = state.sessions.get_mut(&id) else {
            return fail("no session".into());
        };
        if runtime["nonce"] != session.nonce.as_str() {
            return fail("the nonce in the handshake session is different".into());
        }
        let pubkey = &runtime["tee-pubkey"];
        if pubkey["kty"] != "EC" || pubkey["crv"] != "P-256" || pubkey["alg"] != "ECDH-ES+A256KW" {
            return fail(format!("unsupported tee-pubkey {pubkey}"));
        }
        let Some(additional) = evidence["additional_evidence"].as_str() else {
            return fail("tee-evidence has no additional_evidence string".into());
        };
        // serde_json's maps are sorted and every member here is an ASCII string, so its
        // compact output is the RFC 8785 canonical form.
        let primary = json!({"tee-pubkey": pubkey, "nonce": session.nonce, "additional-evidence": additional});
        let expected = Sha384::digest(primary.to_string().as_bytes());
        let sample = &evidence["primary_evidence"];
        let reported = sample["report_data"]
            .as_str()
            .and_then(|r| STANDARD.decode(r).ok());
        if sample["svn"] != "1" || reported.as_deref() != Some(expected.as_slice()) {
            return fail("REPORT_DATA is different from that in Sample Quote".into());
        }
        let claims =
            json!({"tee-pubkey": pubkey, "tcb-status": {"svn": "1"}, "iss": "encc-test-kbs"});
        let token = format!(
            "{}.{}.{}",
            URL_SAFE_NO_PAD.encode(r#"{"alg":"none","typ":"JWT"}"#),
            URL_SAFE_NO_PAD.encode(claims.to_string()),
            URL_SAFE_NO_PAD.encode(b"test-double-unsigned")
        );
        session.pubkey = Some(pubkey.clone());
        session.token = Some(token.clone());
        let mut r = json_response(200, &json!({"token": token}));
        r.headers
            .push(format!("Set-Cookie: {COOKIE}={id}; Path=/kbs; HttpOnly"));
        Ok(r)
    }

    fn resource(
        &self,
        path: &str,
        cookie: Option<String>,
        bearer: Option<String>,
    ) -> Result<Response> {
        self.count("resource");
        let mut state = self.state.lock().unwrap_or_else(|e| e.into_inner());
        let id = cookie
            .filter(|c| state.sessions.contains_key(c))
            .or_else(|| {
                let token = bearer?;
                state
                    .sessions
                    .iter()
                    .find(|(_, s)| s.token.as_ref() == Some(&token))
                    .map(|(id, _)| id.clone())
            });
        let Some(id) = id else {
            self.count("unauthorized");
            return Ok(problem(
                401,
                "UnAuthorized",
                "The session is not authorized",
            ));
        };
        let limit = self.session_requests;
        let Some(session) = state.sessions.get_mut(&id) else {
            return Ok(problem(401, "UnAuthorized", "session not found"));
        };
        let Some(pubkey) = session.pubkey.clone() else {
            drop(state);
            self.count("unauthorized");
            return Ok(problem(401, "UnAuthorized", "The session is not attested"));
        };
        if limit.is_some_and(|n| session.served >= n) {
            state.sessions.remove(&id);
            drop(state);
            self.count("unauthorized");
            return Ok(problem(401, "UnAuthorized", "The session is expired"));
        }
        session.served += 1;
        drop(state);
        if self.refuse.iter().any(|r| r == path) {
            self.count("refused");
            return Ok(problem(
                403,
                "PolicyDeny",
                &format!("Resource policy denied access to {path}"),
            ));
        }
        let parts: Vec<&str> = path.split('/').collect();
        let valid = parts.len() == 3
            && parts
                .iter()
                .all(|p| !p.is_empty() && *p != "." && *p != "..");
        let data = if valid {
            std::fs::read(self.resources.join(path)).ok()
        } else {
            None
        };
        let Some(data) = data else {
            self.count("missing");
            return Ok(problem(
                404,
                "ResourceNotFound",
                &format!("resource {path} not found"),
            ));
        };
        self.count("served");
        Ok(json_response(200, &seal(&pubkey, data)?))
    }
}

/// Concat KDF (RFC 7518 §4.6.2) for ECDH-ES+A256KW, empty apu/apv, written out here.
fn concat_kdf(z: &[u8]) -> [u8; 32] {
    let alg = b"ECDH-ES+A256KW";
    let mut hash = Sha256::new();
    hash.update(1u32.to_be_bytes());
    hash.update(z);
    hash.update((alg.len() as u32).to_be_bytes());
    hash.update(alg);
    hash.update(0u32.to_be_bytes());
    hash.update(0u32.to_be_bytes());
    hash.update(256u32.to_be_bytes());
    hash.finalize().into()
}

/// A flattened JWE of `payload` to the EC JWK `pubkey`, as trustee writes it.
fn seal(pubkey: &Value, mut payload: Vec<u8>) -> Result<Value> {
    let coord = |c: &str| {
        URL_SAFE_NO_PAD
            .decode(pubkey[c].as_str().unwrap_or(""))
            .context("JWK coordinate")
    };
    let mut sec1 = vec![4u8];
    sec1.extend(coord("x")?);
    sec1.extend(coord("y")?);
    let public =
        p256::PublicKey::from_sec1_bytes(&sec1).context("tee-pubkey is not a P-256 point")?;
    let eph = loop {
        if let Ok(k) = p256::SecretKey::from_slice(&random::<32>()?) {
            break k;
        }
    };
    let z = p256::elliptic_curve::ecdh::diffie_hellman(eph.to_nonzero_scalar(), public.as_affine());
    let kek = concat_kdf(z.raw_secret_bytes());
    let cek = random::<32>()?;
    let encrypted_key = aes_kw::KekAes256::from(kek)
        .wrap_vec(&cek)
        .map_err(|e| anyhow::anyhow!("wrap: {e}"))?;
    let point = eph.public_key().to_encoded_point(false);
    let (Some(x), Some(y)) = (point.x(), point.y()) else {
        bail!("ephemeral point has no coordinates");
    };
    let header = json!({
        "alg": "ECDH-ES+A256KW",
        "enc": "A256GCM",
        "epk": {"kty": "EC", "crv": "P-256", "x": URL_SAFE_NO_PAD.encode(x), "y": URL_SAFE_NO_PAD.encode(y)},
    });
    let protected = URL_SAFE_NO_PAD.encode(header.to_string());
    let iv = random::<12>()?;
    let tag = Aes256Gcm::new_from_slice(&cek)
        .context("cek")?
        .encrypt_in_place_detached((&iv).into(), protected.as_bytes(), &mut payload)
        .map_err(|e| anyhow::anyhow!("seal: {e}"))?;
    Ok(json!({
        "protected": protected,
        "encrypted_key": URL_SAFE_NO_PAD.encode(encrypted_key),
        "aad": protected,
        "iv": URL_SAFE_NO_PAD.encode(iv),
        "ciphertext": URL_SAFE_NO_PAD.encode(payload),
        "tag": URL_SAFE_NO_PAD.encode(tag),
    }))
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn main() -> Result<()> {
    let mut resources = None;
    let mut refuse = Vec::new();
    let mut session_requests = None;
    let (mut cert, mut key) = (None, None);
    let mut args = std::env::args().skip(1);
    while let Some(arg) = args.next() {
        let mut value = || args.next().with_context(|| format!("{arg} needs a value"));
        match arg.as_str() {
            "--resources" => resources = Some(PathBuf::from(value()?)),
            "--refuse" => refuse.push(value()?),
            "--session-requests" => session_requests = Some(value()?.parse()?),
            "--tls-cert" => cert = Some(PathBuf::from(value()?)),
            "--tls-key" => key = Some(PathBuf::from(value()?)),
            other => bail!("unknown argument {other}"),
        }
    }
    let tls = match (cert, key) {
        (Some(cert), Some(key)) => Some(tls::server_config(&cert, &key)?),
        (None, None) => None,
        _ => bail!("--tls-cert and --tls-key go together"),
    };
    let kbs = Arc::new(Kbs {
        resources: resources.context("--resources DIR is required")?,
        refuse,
        session_requests,
        state: Mutex::new(State::default()),
    });
    let listener = TcpListener::bind("127.0.0.1:0")?;
    println!("{}", listener.local_addr()?);
    std::io::stdout().flush()?;
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        let kbs = Arc::clone(&kbs);
        let tls = tls.clone();
        std::thread::spawn(move || {
            let mut stream = stream;
            let served = match tls {
                Some(config) => tls::serve(config, stream, |s| http::serve(&kbs, s)),
                None => http::serve(&kbs, &mut stream),
            };
            if let Err(e) = served {
                eprintln!("encc-test-kbs: {e:#}");
            }
        });
    }
    Ok(())
}
