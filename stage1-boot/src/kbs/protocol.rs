//! The RCAR messages of trustee's KBS protocol 0.4.0, as trustee (`kbs/src/attestation/
//! backend.rs`) and `kbs-types` define them:
//!
//! - `Request` (POST /kbs/v0/auth): `{"version": "0.4.0", "tee": "sample", "extra-params": ""}`;
//! - `Challenge`: `{"nonce": "…", "extra-params": …}` (and the `kbs-session-id` cookie);
//! - `Attestation` (POST /kbs/v0/attest): `{"runtime-data": {"nonce", "tee-pubkey"},
//!   "tee-evidence": {"primary_evidence": …, "additional_evidence": ""}}`;
//! - attestation result `{"token": "…"}`; errors are RFC 7807 `{"type", "detail"}`.
//!
//! The evidence binds the primary runtime data `{"tee-pubkey", "nonce",
//! "additional-evidence"}` (what trustee rebuilds and hands to its verifier): its RFC 8785
//! canonical JSON hashed with the challenge's `selected-hash-algorithm` (SHA-384 when the
//! KBS names none) is the report data.

use serde::{Deserialize, Serialize};
use serde_json::{json, Value};
use sha2::Digest as _;

use super::jcs::canonicalize;

/// The protocol version encc speaks; trustee requires an exact match.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// The challenge member that names the runtime data hash.
const SELECTED_HASH: &str = "selected-hash-algorithm";

/// `Request`.
#[derive(Debug, Serialize)]
pub struct Request<'a> {
    /// Protocol version.
    pub version: &'a str,
    /// TEE type (`sample`, `sgx`, …).
    pub tee: &'a str,
    /// Unused by run-time attestation: the empty string.
    #[serde(rename = "extra-params")]
    pub extra_params: Value,
}

/// `Challenge`.
#[derive(Debug, Deserialize)]
pub struct Challenge {
    /// Freshness nonce (base64 in trustee, used verbatim).
    pub nonce: String,
    /// TEE-specific parameters; may select the hash algorithm.
    #[serde(rename = "extra-params", default)]
    pub extra_params: Value,
}

/// `Attestation`.
#[derive(Debug, Serialize)]
pub struct Attestation {
    /// `{"nonce", "tee-pubkey"}`.
    #[serde(rename = "runtime-data")]
    pub runtime_data: Value,
    /// The evidence.
    #[serde(rename = "tee-evidence")]
    pub tee_evidence: CompositeEvidence,
}

/// `CompositeEvidence`: the primary TEE's evidence; no additional devices.
#[derive(Debug, Serialize)]
pub struct CompositeEvidence {
    /// The attester's evidence JSON.
    pub primary_evidence: Value,
    /// A JSON string mapping additional TEEs to evidence; empty when there are none.
    pub additional_evidence: String,
}

/// The attest response.
#[derive(Deserialize)]
pub struct AttestResponse {
    /// The attestation results token (a JWT).
    pub token: String,
}

/// An RFC 7807 problem document (trustee's `ErrorInformation`).
#[derive(Debug, Default, Deserialize)]
pub struct Problem {
    /// Problem type URI.
    #[serde(rename = "type", default)]
    pub kind: Option<String>,
    /// Short summary.
    #[serde(default)]
    pub title: Option<String>,
    /// What went wrong.
    #[serde(default)]
    pub detail: Option<String>,
}

impl Problem {
    /// `": detail (type)"` for messages, or the start of a non-JSON body.
    pub fn describe(body: &[u8]) -> String {
        match serde_json::from_slice::<Problem>(body) {
            Ok(p) if p.detail.is_some() || p.title.is_some() || p.kind.is_some() => {
                let text = p.detail.or(p.title).unwrap_or_default();
                match p.kind {
                    Some(kind) => format!(": {text} ({kind})"),
                    None => format!(": {text}"),
                }
            }
            _ => {
                let text = String::from_utf8_lossy(&body[..body.len().min(200)]);
                let text = text.trim();
                if text.is_empty() {
                    String::new()
                } else {
                    format!(": {text}")
                }
            }
        }
    }
}

/// Hash algorithms a KBS may select for the runtime data binding.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HashAlgorithm {
    /// SHA-256.
    Sha256,
    /// SHA-384 (the default).
    Sha384,
    /// SHA-512.
    Sha512,
}

impl HashAlgorithm {
    /// The algorithm a challenge selects: `selected-hash-algorithm`, else SHA-384.
    pub fn from_challenge(extra_params: &Value) -> Result<Self, String> {
        match extra_params.get(SELECTED_HASH) {
            None => Ok(Self::Sha384),
            Some(Value::String(name)) => match name.to_ascii_lowercase().as_str() {
                "sha256" => Ok(Self::Sha256),
                "sha384" => Ok(Self::Sha384),
                "sha512" => Ok(Self::Sha512),
                _ => Err(format!("the KBS selected unknown hash algorithm {name:?}")),
            },
            Some(other) => Err(format!("{SELECTED_HASH} is not a string: {other}")),
        }
    }

    fn digest(self, bytes: &[u8]) -> Vec<u8> {
        match self {
            Self::Sha256 => sha2::Sha256::digest(bytes).to_vec(),
            Self::Sha384 => sha2::Sha384::digest(bytes).to_vec(),
            Self::Sha512 => sha2::Sha512::digest(bytes).to_vec(),
        }
    }
}

/// The `runtime-data` member: the challenge nonce and the TEE public key.
pub fn runtime_data(nonce: &str, tee_pubkey: &Value) -> Value {
    json!({"nonce": nonce, "tee-pubkey": tee_pubkey})
}

/// The report data the evidence must carry: the hash of the canonical primary runtime
/// data (runtime data plus the empty `additional-evidence`).
pub fn report_data(nonce: &str, tee_pubkey: &Value, hash: HashAlgorithm) -> Vec<u8> {
    let primary = json!({
        "tee-pubkey": tee_pubkey,
        "nonce": nonce,
        "additional-evidence": "",
    });
    hash.digest(canonicalize(&primary).as_bytes())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn report_data_is_sha384_of_the_canonical_primary_runtime_data() {
        let jwk =
            json!({"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAA", "y": "BBB"});
        let canonical = r#"{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"AAA","y":"BBB"}}"#;
        let got = report_data("bm9uY2U=", &jwk, HashAlgorithm::Sha384);
        assert_eq!(got, sha2::Sha384::digest(canonical.as_bytes()).to_vec());
        assert_eq!(got.len(), 48);
        assert_eq!(
            report_data("bm9uY2U=", &jwk, HashAlgorithm::Sha512).len(),
            64
        );
        // Another nonce, another binding.
        assert_ne!(got, report_data("other", &jwk, HashAlgorithm::Sha384));
    }

    #[test]
    fn hash_selection() {
        assert_eq!(
            HashAlgorithm::from_challenge(&json!("")),
            Ok(HashAlgorithm::Sha384)
        );
        assert_eq!(
            HashAlgorithm::from_challenge(&json!({"selected-hash-algorithm": "Sha256"})),
            Ok(HashAlgorithm::Sha256)
        );
        assert!(HashAlgorithm::from_challenge(&json!({"selected-hash-algorithm": "md5"})).is_err());
    }

    #[test]
    fn messages_have_the_published_field_names() {
        let request = Request {
            version: PROTOCOL_VERSION,
            tee: "sample",
            extra_params: json!(""),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"version": "0.4.0", "tee": "sample", "extra-params": ""})
        );
        let attestation = Attestation {
            runtime_data: runtime_data("n", &json!({"kty": "EC"})),
            tee_evidence: CompositeEvidence {
                primary_evidence: json!({"svn": "1"}),
                additional_evidence: String::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(&attestation).unwrap(),
            json!({
                "runtime-data": {"nonce": "n", "tee-pubkey": {"kty": "EC"}},
                "tee-evidence": {"primary_evidence": {"svn": "1"}, "additional_evidence": ""},
            })
        );
        let challenge: Challenge =
            serde_json::from_str(r#"{"nonce": "abc", "extra-params": ""}"#).unwrap();
        assert_eq!(challenge.nonce, "abc");
    }

    #[test]
    fn problems_are_described() {
        let body = br#"{"type": "https://github.com/confidential-containers/kbs/errors/PolicyDeny", "detail": "Resource policy denied"}"#;
        assert_eq!(
            Problem::describe(body),
            ": Resource policy denied (https://github.com/confidential-containers/kbs/errors/PolicyDeny)"
        );
        assert_eq!(Problem::describe(b"plain text"), ": plain text");
        assert_eq!(Problem::describe(b""), "");
    }
}
