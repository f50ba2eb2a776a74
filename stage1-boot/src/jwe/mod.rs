//! JWE decryption (RFC 7516) of ocicrypt's wrapped layer options, as go-jose writes them for
//! `skopeo copy --encryption-key jwe:PUBKEY`.
//!
//! Accepts the general and the flattened JSON serialization (go-jose flattens when there is a
//! single recipient, moving that recipient's header into the protected header). Key management:
//! `RSA-OAEP`, `RSA-OAEP-256`, `ECDH-ES+A128KW`, `ECDH-ES+A192KW`, `ECDH-ES+A256KW` (P-256,
//! P-384, P-521); content encryption: `A128GCM`, `A192GCM`, `A256GCM`.
//!
//! Kept hand-written on the RustCrypto primitives: `josekit` needs OpenSSL, `jsonwebtoken` has no
//! JWE, and `biscuit` implements only AES-GCM key wrap and direct keys, not the ECDH-ES+A*KW and
//! RSA-OAEP that ocicrypt and trustee use.

//! Used by [`crate::ocicrypt`] (layer keys wrapped for the image owner's keys) and by
//! [`crate::kbs`] (resource responses sealed to the ephemeral TEE key); [`PrivateKey`] loads the
//! recipient keys.

mod alg;
mod keys;
mod serial;

use zeroize::Zeroizing;

pub use keys::{KeyError, PrivateKey};

use alg::{open_recipient, Opened};
use serial::{Aad, Content, Header, RawJwe};

/// Errors from decrypting a JWE.
#[derive(Debug, thiserror::Error)]
pub enum JweError {
    /// The input is not JSON of the JWE JSON serialization's shape.
    #[error("JWE is not a valid JSON serialization")]
    Json(#[source] serde_json::Error),
    /// The JWE is structurally invalid.
    #[error("malformed JWE: {0}")]
    Malformed(&'static str),
    /// A recipient uses a key management algorithm that is not supported.
    #[error("unsupported JWE key management algorithm {0:?}")]
    UnsupportedAlg(String),
    /// The content encryption algorithm is not supported.
    #[error("unsupported JWE content encryption algorithm {0:?}")]
    UnsupportedEnc(String),
    /// The JWE uses a header parameter (`zip`, `crit`) whose processing is not supported.
    #[error("unsupported JWE header parameter {0:?}")]
    UnsupportedHeader(&'static str),
    /// None of the private keys opens any recipient.
    #[error("none of the {keys} private key(s) opens any of the {recipients} JWE recipient(s)")]
    NoMatchingKey {
        /// Number of keys tried.
        keys: usize,
        /// Number of recipients in the JWE.
        recipients: usize,
    },
    /// A content key was unwrapped but the ciphertext failed authentication.
    #[error("JWE content failed authentication (tampered or corrupt ciphertext, tag or header)")]
    ContentAuthentication,
}

/// Decrypts a JWE in JSON serialization with the first recipient/key pair that opens it.
pub fn decrypt(jwe_json: &[u8], keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let raw: RawJwe = serde_json::from_slice(jwe_json).map_err(JweError::Json)?;
    let content = Content::parse(&raw, Aad::Rfc7516)?;
    open(&raw, &content, keys)
}

/// Decrypts a Key Broker Service resource response: the flattened serialization with the
/// key agreement in the protected header, authenticated over the ASCII of the encoded
/// protected header alone. (Trustee repeats that value in `aad`; kbs_protocol ignores the
/// member, and so does this.)
pub fn decrypt_kbs_response(
    jwe_json: &[u8],
    key: &PrivateKey,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let raw: RawJwe = serde_json::from_slice(jwe_json).map_err(JweError::Json)?;
    if raw.recipients.is_some() {
        return Err(JweError::Malformed(
            "a KBS response uses the flattened serialization",
        ));
    }
    let content = Content::parse(&raw, Aad::ProtectedOnly)?;
    open(&raw, &content, std::slice::from_ref(key))
}

fn open(
    raw: &RawJwe,
    content: &Content,
    keys: &[PrivateKey],
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let recipients = raw.recipients()?;
    let mut first_error = None;
    let mut auth_failed = false;
    let mut usable = false;
    for (header, encrypted_key) in &recipients {
        let result = Header::merge(
            &content.protected,
            raw.unprotected.as_ref(),
            header.as_ref(),
        )
        .and_then(|header| open_recipient(content, &header, encrypted_key, keys));
        match result {
            Ok(Opened::Plaintext(plaintext)) => return Ok(plaintext),
            Ok(Opened::AuthFailed) => auth_failed = true,
            Ok(Opened::NoKey) => usable = true,
            Err(e) => {
                log::debug!("JWE recipient skipped: {e}");
                first_error.get_or_insert(e);
            }
        }
    }
    if auth_failed {
        return Err(JweError::ContentAuthentication);
    }
    match first_error {
        Some(e) if !usable => Err(e),
        _ => Err(JweError::NoMatchingKey {
            keys: keys.len(),
            recipients: recipients.len(),
        }),
    }
}

#[cfg(test)]
mod tests;
