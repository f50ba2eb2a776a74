//! Verification of containers "simple signing" signatures: the OpenPGP signed messages that
//! `skopeo copy --sign-by FINGERPRINT` writes (as `gpg --sign` does: a one-pass-signed literal
//! data packet, usually inside a ZIP/ZLIB compressed data packet) whose literal data is the JSON
//! payload.
//!
//! [`verify_signed_message`] returns the payload only once a signature in the message verifies
//! with a key of the trusted keyring (a primary key, or a signing subkey whose binding to its
//! primary key verifies) that is neither revoked nor expired. Interpreting the payload is the
//! caller's job.

mod validity;

use std::io::Read;

use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

/// Largest payload accepted (simple-signing payloads are a few hundred bytes); bounds the memory
/// a compressed message can make us allocate.
const MAX_PAYLOAD: u64 = 4 << 20;

/// Compressed data packets nested deeper than this are refused.
const MAX_COMPRESSION_NESTING: usize = 4;

/// A verified signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The literal data of the message (for simple signing, the JSON payload).
    pub payload: Vec<u8>,
    /// Upper-case hex fingerprint of the key (primary key or subkey) that verified the signature.
    pub signer: String,
}

/// Errors of [`verify_signed_message`].
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    /// The keyring holds no public key that could be parsed.
    #[error("the trusted keyring contains no usable OpenPGP public key")]
    EmptyKeyring,
    /// The keyring could not be read at all (neither binary nor armored OpenPGP data).
    #[error("failed to parse the trusted keyring")]
    Keyring(#[source] pgp::errors::Error),
    /// The message is not a well-formed OpenPGP message (includes detached signatures, which
    /// carry no literal data).
    #[error("malformed OpenPGP signed message (no literal data, or invalid packets)")]
    Malformed(#[source] pgp::errors::Error),
    /// A compressed data packet could not be decompressed (ZIP and ZLIB are supported; BZip2
    /// is not).
    #[error("failed to decompress OpenPGP compressed data (ZIP and ZLIB are supported)")]
    Decompress(#[source] pgp::errors::Error),
    /// The message structure parsed, but its data could not be read (corrupt compressed data,
    /// truncated packets, trailing garbage).
    #[error("malformed OpenPGP signed message: failed to read its literal data")]
    ReadData(#[source] std::io::Error),
    /// The literal data exceeds [`MAX_PAYLOAD`] bytes.
    #[error("OpenPGP signed message payload exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The message is a plain literal data message without any signature.
    #[error("OpenPGP message carries no signature")]
    NoSignature,
    /// No signature was made by a key of the keyring.
    #[error("OpenPGP message is signed by key {key_id}, which is not in the trusted keyring")]
    UnknownSigner {
        /// Issuer of the (first) signature: fingerprint or key id in hex, `unknown` if the
        /// signature names no issuer.
        key_id: String,
    },
    /// A signature names a key of the keyring but does not verify with it.
    #[error("OpenPGP signature by key {key_id} does not verify")]
    BadSignature {
        /// Fingerprint of the keyring key that was tried.
        key_id: String,
        /// Why verification failed.
        #[source]
        source: pgp::errors::Error,
    },
    /// The signature names a keyring key that may not sign any more.
    #[error("OpenPGP message is signed by key {key_id}, which is {reason}")]
    UnusableKey {
        /// Fingerprint of the key.
        key_id: String,
        /// `revoked` or `expired at …`.
        reason: String,
    },
    /// The message uses a feature that simple signing does not (e.g. encryption).
    #[error("unsupported OpenPGP message: {0}")]
    Unsupported(&'static str),
}

/// Verifies an OpenPGP signed message (binary or armored) against `keyring` (the output of
/// `gpg --export`, binary or `--armor`, possibly several keys) and returns its literal data.
pub fn verify_signed_message(message: &[u8], keyring: &[u8]) -> Result<Verified, GpgError> {
    let certs = parse_keyring(keyring)?;
    let keys = verifying_keys(&certs, validity::now());
    let (mut msg, _headers) = Message::from_reader(message).map_err(GpgError::Malformed)?;
    let mut nesting = 0;
    while msg.is_compressed() {
        nesting += 1;
        if nesting > MAX_COMPRESSION_NESTING {
            return Err(GpgError::Unsupported("too deeply nested compressed data"));
        }
        msg = msg.decompress().map_err(GpgError::Decompress)?;
    }
    match msg {
        Message::Signed { .. } => {}
        Message::Literal { .. } => return Err(GpgError::NoSignature),
        Message::Encrypted { .. } => return Err(GpgError::Unsupported("encrypted message")),
        Message::Compressed { .. } => {
            return Err(GpgError::Unsupported("too deeply nested compressed data"))
        }
    }
    let payload = read_payload(&mut msg)?;
    let signer = verify_any(&msg, &keys)?;
    Ok(Verified { payload, signer })
}

/// Parses every transferable public key of `keyring`; keys that fail to parse are skipped.
fn parse_keyring(keyring: &[u8]) -> Result<Vec<SignedPublicKey>, GpgError> {
    let (parsed, _headers) =
        SignedPublicKey::from_reader_many(keyring).map_err(GpgError::Keyring)?;
    let mut certs = Vec::new();
    for cert in parsed {
        match cert {
            Ok(cert) => certs.push(cert),
            Err(err) => log::warn!("skipping unparsable key in the trusted keyring: {err}"),
        }
    }
    if certs.is_empty() {
        return Err(GpgError::EmptyKeyring);
    }
    Ok(certs)
}

/// Keyring keys by whether they may sign now.
struct Keys<'a> {
    /// Primary keys and signing-capable subkeys whose bindings verify, neither revoked nor
    /// expired.
    usable: Vec<&'a dyn VerifyingKey>,
    /// Keys that would sign but are revoked or expired, with the reason.
    unusable: Vec<(&'a dyn VerifyingKey, String)>,
}

/// Sorts the keyring's keys by whether they may sign at `now`.
fn verifying_keys(certs: &[SignedPublicKey], now: u64) -> Keys<'_> {
    let mut keys = Keys {
        usable: Vec::new(),
        unusable: Vec::new(),
    };
    for cert in certs {
        let primary_problem = validity::primary_unusable(cert, now);
        match &primary_problem {
            None => keys.usable.push(&cert.primary_key),
            Some(reason) => keys.unusable.push((&cert.primary_key, reason.clone())),
        }
        for sub in &cert.public_subkeys {
            let can_sign = sub.signatures.iter().any(|s| s.key_flags().sign());
            match sub.verify_bindings(&cert.primary_key) {
                Ok(()) if can_sign => {
                    // A subkey of a revoked or expired primary key is unusable too.
                    let problem = primary_problem
                        .clone()
                        .map(|r| format!("{r} (its primary key)"))
                        .or_else(|| validity::subkey_unusable(cert, sub, now));
                    match problem {
                        None => keys.usable.push(&sub.key),
                        Some(reason) => keys.unusable.push((&sub.key, reason)),
                    }
                }
                Ok(()) => {}
                Err(err) => log::warn!(
                    "ignoring subkey {:X} of {:X}: binding does not verify: {err}",
                    sub.key.fingerprint(),
                    cert.primary_key.fingerprint()
                ),
            }
        }
    }
    keys
}

/// Reads the literal data to its end (required before the signatures can be checked).
fn read_payload(msg: &mut Message<'_>) -> Result<Vec<u8>, GpgError> {
    let mut payload = Vec::new();
    msg.take(MAX_PAYLOAD + 1)
        .read_to_end(&mut payload)
        .map_err(GpgError::ReadData)?;
    if payload.len() as u64 > MAX_PAYLOAD {
        return Err(GpgError::TooLarge { limit: MAX_PAYLOAD });
    }
    Ok(payload)
}

/// Returns the fingerprint of the first keyring key that verifies one of the signatures of the
/// fully read signed message `msg`.
fn verify_any(msg: &Message<'_>, keys: &Keys<'_>) -> Result<String, GpgError> {
    let Message::Signed { reader, .. } = msg else {
        return Err(GpgError::NoSignature);
    };
    let mut bad = None;
    let mut unusable = None;
    let mut unknown = None;
    for index in 0..reader.num_signatures() {
        let Some(sig) = reader.signature(index) else {
            continue;
        };
        if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
            continue;
        }
        let mut named = false;
        for key in keys.usable.iter().filter(|k| is_issuer(sig, **k)) {
            named = true;
            match msg.verify_nested_explicit(index, *key) {
                Ok(_) => return Ok(format!("{:X}", key.fingerprint())),
                Err(source) => {
                    bad.get_or_insert(GpgError::BadSignature {
                        key_id: format!("{:X}", key.fingerprint()),
                        source,
                    });
                }
            }
        }
        if !named {
            match keys.unusable.iter().find(|(k, _)| is_issuer(sig, *k)) {
                Some((key, reason)) => {
                    unusable.get_or_insert_with(|| GpgError::UnusableKey {
                        key_id: format!("{:X}", key.fingerprint()),
                        reason: reason.clone(),
                    });
                }
                None => {
                    unknown.get_or_insert_with(|| issuer_name(sig));
                }
            }
        }
    }
    Err(match (bad, unusable, unknown) {
        (Some(bad), _, _) => bad,
        (None, Some(unusable), _) => unusable,
        (None, None, Some(key_id)) => GpgError::UnknownSigner { key_id },
        (None, None, None) => GpgError::NoSignature,
    })
}

/// Whether `sig` names `key` as its issuer; a signature naming no issuer matches every key.
fn is_issuer(sig: &Signature, key: &dyn VerifyingKey) -> bool {
    let fingerprints = sig.issuer_fingerprint();
    let key_ids = sig.issuer_key_id();
    if fingerprints.is_empty() && key_ids.is_empty() {
        return true;
    }
    let fingerprint = key.fingerprint();
    let key_id = key.legacy_key_id();
    fingerprints.iter().any(|f| **f == fingerprint) || key_ids.iter().any(|k| **k == key_id)
}

/// The issuer named by `sig`, for error messages.
fn issuer_name(sig: &Signature) -> String {
    if let Some(fingerprint) = sig.issuer_fingerprint().first() {
        return format!("{fingerprint:X}");
    }
    match sig.issuer_key_id().first() {
        Some(key_id) => hex::encode_upper(key_id),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests;
