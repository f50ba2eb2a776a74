//! A Key Broker Service client for Confidential Containers' trustee, protocol 0.4.0
//! (Request-Challenge-Attestation-Response):
//!
//! 1. `POST /kbs/v0/auth` with the TEE type → a nonce and the `kbs-session-id` cookie;
//! 2. `POST /kbs/v0/attest` with the runtime data (nonce and an ephemeral P-256 `tee-pubkey`)
//!    and evidence whose report data is the hash of its canonical JSON → a token;
//! 3. `GET /kbs/v0/resource/REPO/TYPE/TAG` (cookie, or the token as bearer) → a flattened
//!    JWE to the tee-pubkey (`ECDH-ES+A256KW`, `A256GCM`).
//!
//! Errors are RFC 7807 problem documents and their detail is part of the error message.
//! A 401 on a resource means the session ended: the client attests again, once.

mod client;
mod protocol;
mod tee_key;

pub use client::{KbsClient, KbsConfig};
pub use tee_key::TeeKey;

/// Fuzzing entry point (not an API): parses `data` as each KBS answer encc reads before it
/// holds a session: the RCAR challenge (and the hash it selects), the attestation result and
/// an RFC 7807 problem.
#[doc(hidden)]
pub fn fuzz_kbs_answers(data: &[u8]) {
    if let Ok(challenge) = serde_json::from_slice::<protocol::Challenge>(data) {
        let _ = protocol::selected_hash(&challenge.extra_params);
    }
    let _ = serde_json::from_slice::<protocol::AttestResponse>(data);
    let _ = protocol::Problem::describe(data);
}
// The URI type lives with the boot-config schema, which holds it typed.
pub use encc_interface::resource::{ResourceUri, UriError, SCHEME};

use crate::attester::AttesterError;
use crate::jwe::JweError;

/// Errors of the KBS client. Each names the URL or the resource.
#[derive(Debug, thiserror::Error)]
pub enum KbsError {
    /// The KBS URL cannot be used.
    #[error("KBS URL {url:?} cannot be used: {reason}")]
    Url {
        /// The URL.
        url: String,
        /// Why.
        reason: &'static str,
    },
    /// The CA certificate for the KBS cannot be read.
    #[error("cannot read the KBS CA certificate {path}")]
    Cert {
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The request could not be made or the connection failed.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The KBS answered with an error status (its problem detail appended).
    #[error("{url} answered HTTP {status}{problem}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// `": detail (type)"` from the RFC 7807 body, if any.
        problem: String,
    },
    /// The KBS answered something the protocol does not allow.
    #[error("{url} sent an invalid answer: {reason}")]
    Protocol {
        /// The URL.
        url: String,
        /// What is wrong.
        reason: String,
    },
    /// No randomness for the ephemeral key.
    #[error("cannot generate the ephemeral TEE key (no randomness)")]
    Random,
    /// The attester failed.
    #[error("cannot produce {tee} evidence")]
    Evidence {
        /// The TEE.
        tee: kbs_types::Tee,
        /// The cause.
        #[source]
        source: AttesterError,
    },
    /// The resource response does not open with the TEE key.
    #[error("cannot decrypt the KBS response")]
    Decrypt(#[source] JweError),
    /// Fetching a resource failed.
    #[error("cannot fetch {uri} from the KBS {kbs}")]
    Resource {
        /// The resource.
        uri: String,
        /// The KBS URL.
        kbs: String,
        /// The cause.
        #[source]
        source: Box<KbsError>,
    },
}
