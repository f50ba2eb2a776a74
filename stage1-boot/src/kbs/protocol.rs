//! The RCAR messages of trustee's KBS protocol 0.4.0. The request, challenge, attestation
//! (runtime data, composite evidence), TEE names and the runtime data hash are `kbs-types`
//! 0.18's, the crate trustee itself builds on (built without its `std` feature, which pulls
//! the EAR token crate encc does not need):
//!
//! - `Request` (POST /kbs/v0/auth): `{"version": "0.4.0", "tee": "sample", "extra-params": ""}`;
//! - `Challenge`: `{"nonce": "…", "extra-params": …}` (and the `kbs-session-id` cookie);
//! - `Attestation` (POST /kbs/v0/attest): `{"init-data": null, "runtime-data": {"nonce",
//!   "tee-pubkey"}, "tee-evidence": {"primary_evidence": …, "additional_evidence": ""}}`;
//! - attestation result `{"token": "…"}`; errors are RFC 7807 `{"type", "detail"}`.
//!
//! `kbs-types` has no attestation result type, and its `ErrorInformation` requires both
//! `type` and `detail`, so [`AttestResponse`] and the lenient [`Problem`] stay here.
//!
//! The evidence binds the primary runtime data `{"tee-pubkey", "nonce",
//! "additional-evidence"}` (what trustee rebuilds and hands to its verifier): its RFC 8785
//! canonical JSON (`serde_json_canonicalizer`) hashed with the challenge's
//! `selected-hash-algorithm` (SHA-384 when the KBS names none) is the report data.

use kbs_types::TeePubKey;
pub use kbs_types::{
    Attestation, Challenge, CompositeEvidence, HashAlgorithm, Request, RuntimeData,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

/// The protocol version encc speaks; trustee requires an exact match.
pub const PROTOCOL_VERSION: &str = "0.4.0";

/// Name of the session cookie.
pub const SESSION_COOKIE: &str = "kbs-session-id";

/// The challenge member that names the runtime data hash.
const SELECTED_HASH: &str = "selected-hash-algorithm";

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

/// The algorithm a challenge selects: `selected-hash-algorithm` (any case), else SHA-384.
pub fn selected_hash(extra_params: &Value) -> Result<HashAlgorithm, String> {
    match extra_params.get(SELECTED_HASH) {
        None => Ok(HashAlgorithm::Sha384),
        Some(Value::String(name)) => name
            .parse()
            .map_err(|_| format!("the KBS selected unknown hash algorithm {name:?}")),
        Some(other) => Err(format!("{SELECTED_HASH} is not a string: {other}")),
    }
}

/// The `runtime-data` member: the challenge nonce and the TEE public key.
pub fn runtime_data(nonce: &str, tee_pubkey: &TeePubKey) -> RuntimeData {
    RuntimeData {
        nonce: nonce.to_owned(),
        tee_pubkey: tee_pubkey.clone(),
    }
}

/// What trustee rebuilds from the runtime data and binds to the evidence.
#[derive(Serialize)]
struct PrimaryRuntimeData<'a> {
    #[serde(rename = "tee-pubkey")]
    tee_pubkey: &'a TeePubKey,
    nonce: &'a str,
    #[serde(rename = "additional-evidence")]
    additional_evidence: &'a str,
}

/// The report data the evidence must carry: the hash of the canonical primary runtime
/// data (runtime data plus the empty `additional-evidence`).
pub fn report_data(
    nonce: &str,
    tee_pubkey: &TeePubKey,
    hash: HashAlgorithm,
) -> Result<Vec<u8>, String> {
    let primary = PrimaryRuntimeData {
        tee_pubkey,
        nonce,
        additional_evidence: "",
    };
    let canonical = serde_json_canonicalizer::to_vec(&primary)
        .map_err(|e| format!("cannot canonicalize the runtime data: {e}"))?;
    Ok(hash.digest(&canonical))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kbs_types::Tee;
    use serde_json::json;
    use sha2::Digest as _;

    fn ec_key() -> TeePubKey {
        TeePubKey::EC {
            crv: "P-256".into(),
            alg: "ECDH-ES+A256KW".into(),
            x: "AAA".into(),
            y: "BBB".into(),
        }
    }

    #[test]
    fn report_data_is_sha384_of_the_canonical_primary_runtime_data() {
        let jwk = ec_key();
        let canonical = r#"{"additional-evidence":"","nonce":"bm9uY2U=","tee-pubkey":{"alg":"ECDH-ES+A256KW","crv":"P-256","kty":"EC","x":"AAA","y":"BBB"}}"#;
        let got = report_data("bm9uY2U=", &jwk, HashAlgorithm::Sha384).unwrap();
        assert_eq!(got, sha2::Sha384::digest(canonical.as_bytes()).to_vec());
        assert_eq!(got.len(), 48);
        let sha512 = report_data("bm9uY2U=", &jwk, HashAlgorithm::Sha512).unwrap();
        assert_eq!(sha512.len(), 64);
        // Another nonce, another binding.
        assert_ne!(
            got,
            report_data("other", &jwk, HashAlgorithm::Sha384).unwrap()
        );
    }

    #[test]
    fn hash_selection() {
        assert_eq!(selected_hash(&json!("")), Ok(HashAlgorithm::Sha384));
        assert_eq!(
            selected_hash(&json!({"selected-hash-algorithm": "Sha256"})),
            Ok(HashAlgorithm::Sha256)
        );
        assert!(selected_hash(&json!({"selected-hash-algorithm": "md5"})).is_err());
        assert!(selected_hash(&json!({"selected-hash-algorithm": 256})).is_err());
    }

    #[test]
    fn messages_have_the_published_field_names() {
        let request = Request {
            version: PROTOCOL_VERSION.into(),
            tee: Tee::Sample,
            extra_params: json!(""),
        };
        assert_eq!(
            serde_json::to_value(&request).unwrap(),
            json!({"version": "0.4.0", "tee": "sample", "extra-params": ""})
        );
        assert_eq!(serde_json::to_value(Tee::Sgx).unwrap(), json!("sgx"));
        let attestation = Attestation {
            init_data: None,
            runtime_data: runtime_data("n", &ec_key()),
            tee_evidence: CompositeEvidence {
                primary_evidence: json!({"svn": "1"}),
                additional_evidence: String::new(),
            },
        };
        assert_eq!(
            serde_json::to_value(&attestation).unwrap(),
            json!({
                "init-data": null,
                "runtime-data": {"nonce": "n", "tee-pubkey":
                    {"kty": "EC", "crv": "P-256", "alg": "ECDH-ES+A256KW", "x": "AAA", "y": "BBB"}},
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

    /// RFC 8785 through `serde_json_canonicalizer`: the vectors the hand-written
    /// canonicalizer was tested with.
    mod jcs {
        use serde_json::{json, Value};

        fn canon(value: &Value) -> String {
            serde_json_canonicalizer::to_string(value).unwrap()
        }

        fn canon_text(text: &str) -> String {
            canon(&serde_json::from_str(text).unwrap())
        }

        #[test]
        fn members_sort_by_utf16_code_units() {
            // RFC 8785 §3.2.3's sorting example.
            let input = r#"{"\u20ac": "Euro Sign", "\r": "Carriage Return", "\ufb33": "Hebrew Letter Dalet With Dagesh",
                "1": "One", "\ud83d\ude00": "Emoji: Grinning Face", "\u0080": "Control", "\u00f6": "Latin Small Letter O With Diaeresis"}"#;
            let out = canon_text(input);
            let order = [
                "Carriage Return",
                "One",
                "Control",
                "Latin Small",
                "Euro Sign",
                "Emoji",
                "Hebrew",
            ];
            let positions: Vec<usize> = order.iter().map(|s| out.find(s).unwrap()).collect();
            assert!(positions.windows(2).all(|w| w[0] < w[1]), "{out}");
        }

        #[test]
        // RFC 8785's test vector is written with more digits than a double holds.
        #[allow(clippy::excessive_precision)]
        fn rfc8785_example_and_escapes() {
            // RFC 8785 §3.2.2's example, numbers and literals included.
            let input = r#"{
                "numbers": [333333333.33333329, 1E30, 4.50, 2e-3, 0.000000000000000000000000001],
                "string": "\u20ac$\u000F\u000aA'\u0042\u0022\u005c\\\"\/",
                "literals": [null, true, false]
            }"#;
            assert_eq!(
                canon_text(input),
                "{\"literals\":[null,true,false],\"numbers\":[333333333.3333333,1e+30,4.5,0.002,1e-27],\
                 \"string\":\"€$\\u000f\\nA'B\\\"\\\\\\\\\\\"/\"}"
            );
        }

        #[test]
        fn numbers_in_ecmascript_form() {
            for (input, want) in [
                ("0", "0"),
                ("1", "1"),
                ("-17", "-17"),
                ("9007199254740992", "9007199254740992"),
            ] {
                assert_eq!(canon_text(input), want, "{input}");
            }
            for (input, want) in [
                (-0.0, "0"),
                (1e21, "1e+21"),
                (1e20, "100000000000000000000"),
                (0.000001, "0.000001"),
                (0.0000001, "1e-7"),
                (-1.5e-9, "-1.5e-9"),
                (0.5, "0.5"),
                (123.456, "123.456"),
                (5e-324, "5e-324"),
                (1.7976931348623157e308, "1.7976931348623157e+308"),
            ] {
                assert_eq!(canon(&json!(input)), want, "{input}");
            }
        }

        #[test]
        fn runtime_data_shape() {
            let value = json!({"tee-pubkey": {"kty": "EC", "y": "b", "x": "a"}, "nonce": "n"});
            assert_eq!(
                canon(&value),
                r#"{"nonce":"n","tee-pubkey":{"kty":"EC","x":"a","y":"b"}}"#
            );
        }
    }
}
