//! ocicrypt's layer cipher `AES_256_CTR_HMAC_SHA256` and the per-layer key material
//! carried in a layer descriptor's annotations.
//!
//! - `org.opencontainers.image.enc.keys.jwe`: comma-separated base64 JWEs, each opening (with
//!   one of the decryption keys) to the private options JSON
//!   `{"symkey": b64, "digest": "sha256:…", "cipheroptions": {"nonce": b64}}`;
//! - `org.opencontainers.image.enc.keys.provider.attestation-agent`: the same private
//!   options wrapped with a KEK held by a Key Broker Service (see [`super::keyprovider`]);
//! - `org.opencontainers.image.enc.pubopts`: base64 of the public options JSON
//!   `{"cipher": "AES_256_CTR_HMAC_SHA256", "hmac": b64, "cipheroptions": {}}`.
//!
//! The layer blob is AES-256 in CTR mode (16-byte nonce as the initial big-endian counter
//! block) with HMAC-SHA256 over the ciphertext under the same key. CTR is malleable (a flipped
//! ciphertext bit flips the same plaintext bit), so the HMAC over the whole ciphertext is
//! checked ([`Authenticator`]) before the first byte is decrypted ([`Decryptor`]); the
//! plaintext's digest is checked against `digest` before a layer is committed.

use std::collections::BTreeMap;
use std::io::{self, Read};

use aes::cipher::{KeyIvInit, StreamCipher};
use base64::Engine as _;
use hmac::{Hmac, Mac};
use serde::Deserialize;
use sha2::Sha256;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

use super::keyprovider::{
    AnnotationPacket, KekSource, KeyProviderError, PROVIDER_ATTESTATION_AGENT,
};
use crate::digest::Digest;
use crate::jwe::{self, PrivateKey};
use crate::kbs::KbsError;

/// Annotation holding the JWE-wrapped private options.
pub const KEYS_JWE: &str = "org.opencontainers.image.enc.keys.jwe";
/// Annotation holding the public options.
pub const PUBOPTS: &str = "org.opencontainers.image.enc.pubopts";
/// The only layer cipher ocicrypt defines.
pub const AES_256_CTR_HMAC_SHA256: &str = "AES_256_CTR_HMAC_SHA256";

type Aes256Ctr = ctr::Ctr128BE<aes::Aes256>;

/// What decrypting one layer needs. Zeroized on drop; `Debug` shows no key.
pub struct LayerKey {
    symkey: Zeroizing<[u8; 32]>,
    nonce: [u8; 16],
    hmac: Vec<u8>,
    /// Digest of the plaintext layer blob (what the manifest would name unencrypted).
    pub plain_digest: Digest,
}

impl std::fmt::Debug for LayerKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "LayerKey(<redacted>, plain {})", self.plain_digest)
    }
}

/// Why a layer's key material could not be obtained. Each names the annotation or part.
#[derive(Debug, thiserror::Error)]
pub enum LayerKeyError {
    /// The layer carries none of the annotations encc can use.
    #[error("the layer has neither a {KEYS_JWE} nor a {PROVIDER_ATTESTATION_AGENT} annotation")]
    NoJwe,
    /// The layer's key is wrapped with a KEK from a KBS, and no KBS is configured.
    #[error("the layer key is wrapped with the KEK {kid} from a Key Broker Service, and no KBS is configured (--kbs URL)")]
    NoKbs {
        /// The KBS resource named by the annotation.
        kid: String,
    },
    /// The key provider annotation cannot be used.
    #[error(transparent)]
    Provider(#[from] KeyProviderError),
    /// The KEK could not be fetched from the KBS.
    #[error("cannot get the layer KEK {kid}")]
    Kek {
        /// The KBS resource.
        kid: String,
        /// The cause.
        #[source]
        source: KbsError,
    },
    /// No decryption key was given.
    #[error("no decryption key is configured")]
    NoKeys,
    /// An annotation is not what ocicrypt writes.
    #[error("annotation {annotation} is malformed: {reason}")]
    Malformed {
        /// The annotation.
        annotation: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// None of the keys opens any of the JWEs.
    #[error(
        "none of the {keys} decryption keys opens any of the layer's {recipients} key envelopes"
    )]
    NoMatchingKey {
        /// Keys tried.
        keys: usize,
        /// JWEs tried.
        recipients: usize,
        /// The last JWE error.
        #[source]
        source: jwe::JweError,
    },
    /// The layer uses another cipher.
    #[error("layer cipher {0:?} is not supported (only {AES_256_CTR_HMAC_SHA256})")]
    Cipher(String),
}

/// The private options; the base64 `symkey` is wiped on drop.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct PrivateOptions {
    symkey: String,
    #[zeroize(skip)]
    digest: Digest,
    #[serde(default)]
    #[zeroize(skip)]
    cipheroptions: BTreeMap<String, String>,
}

#[derive(Deserialize)]
struct PublicOptions {
    cipher: String,
    hmac: String,
}

fn b64(annotation: &'static str, what: &str, s: &str) -> Result<Vec<u8>, LayerKeyError> {
    base64::engine::general_purpose::STANDARD
        .decode(s.trim())
        .map_err(|e| LayerKeyError::Malformed {
            annotation,
            reason: format!("{what} is not base64: {e}"),
        })
}

/// The layer key for a descriptor's annotations: from the JWE recipients with the first
/// private key that opens one, else from the key provider annotation with its KEK from
/// `kbs`.
pub fn layer_key(
    annotations: &BTreeMap<String, String>,
    keys: &[PrivateKey],
    kbs: Option<&dyn KekSource>,
) -> Result<LayerKey, LayerKeyError> {
    let jwes = annotations.get(KEYS_JWE);
    let provider = annotations.get(PROVIDER_ATTESTATION_AGENT);
    if jwes.is_none() && provider.is_none() {
        return Err(LayerKeyError::NoJwe);
    }
    let hmac = public_hmac(annotations)?;
    let jwe_error = match (jwes, provider) {
        (Some(jwes), _) if !keys.is_empty() => match open_jwes(jwes, keys) {
            Ok(plain) => return parse_private(&plain, hmac, KEYS_JWE),
            Err(e) => Some(e),
        },
        (Some(_), None) => return Err(LayerKeyError::NoKeys),
        _ => None,
    };
    let Some(value) = provider else {
        return Err(jwe_error.unwrap_or(LayerKeyError::NoKeys));
    };
    if let Some(e) = &jwe_error {
        log::debug!("layer key: no local key opens the JWE recipients ({e}); trying the KBS");
    }
    let packet = AnnotationPacket::parse(value)?;
    let kid = packet.kid.to_string();
    let Some(kbs) = kbs else {
        return Err(jwe_error.unwrap_or(LayerKeyError::NoKbs { kid }));
    };
    let kek = kbs.kek(&packet.kid).map_err(|source| LayerKeyError::Kek {
        kid: kid.clone(),
        source,
    })?;
    let plain = packet.unwrap(&kek)?;
    parse_private(&plain, hmac, PROVIDER_ATTESTATION_AGENT)
}

/// The HMAC from the public options; the cipher must be ocicrypt's only one.
fn public_hmac(annotations: &BTreeMap<String, String>) -> Result<Vec<u8>, LayerKeyError> {
    let pubopts = annotations
        .get(PUBOPTS)
        .ok_or_else(|| LayerKeyError::Malformed {
            annotation: PUBOPTS,
            reason: "missing".into(),
        })?;
    let public: PublicOptions = serde_json::from_slice(&b64(PUBOPTS, "the value", pubopts)?)
        .map_err(|e| LayerKeyError::Malformed {
            annotation: PUBOPTS,
            reason: e.to_string(),
        })?;
    if public.cipher != AES_256_CTR_HMAC_SHA256 {
        return Err(LayerKeyError::Cipher(public.cipher));
    }
    b64(PUBOPTS, "hmac", &public.hmac)
}

/// The private options from the first JWE entry a key opens.
fn open_jwes(jwes: &str, keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, LayerKeyError> {
    let entries: Vec<&str> = jwes.split(',').filter(|s| !s.trim().is_empty()).collect();
    let mut last = None;
    for entry in &entries {
        let json = b64(KEYS_JWE, "an entry", entry)?;
        match jwe::decrypt(&json, keys) {
            Ok(plain) => return Ok(plain),
            Err(e) => last = Some(e),
        }
    }
    Err(match last {
        Some(source) => LayerKeyError::NoMatchingKey {
            keys: keys.len(),
            recipients: entries.len(),
            source,
        },
        None => LayerKeyError::Malformed {
            annotation: KEYS_JWE,
            reason: "empty".into(),
        },
    })
}

fn parse_private(
    plain: &[u8],
    hmac: Vec<u8>,
    annotation: &'static str,
) -> Result<LayerKey, LayerKeyError> {
    let bad = |reason: String| LayerKeyError::Malformed { annotation, reason };
    let opts: PrivateOptions =
        serde_json::from_slice(plain).map_err(|e| bad(format!("private options: {e}")))?;
    let symkey = Zeroizing::new(b64(annotation, "symkey", &opts.symkey)?);
    let nonce = opts
        .cipheroptions
        .get("nonce")
        .ok_or_else(|| bad("private options have no nonce".into()))?;
    let nonce = b64(annotation, "nonce", nonce)?;
    let mut key = Zeroizing::new([0u8; 32]);
    if symkey.len() != 32 {
        return Err(bad(format!("symkey is {} bytes, not 32", symkey.len())));
    }
    key.copy_from_slice(&symkey);
    let nonce: [u8; 16] = nonce
        .as_slice()
        .try_into()
        .map_err(|_| bad(format!("nonce is {} bytes, not 16", nonce.len())))?;
    Ok(LayerKey {
        symkey: key,
        nonce,
        hmac,
        plain_digest: opts.digest,
    })
}

/// The HMAC over a layer's whole ciphertext. Nothing of a layer is decrypted before this
/// matched: [`Decryptor`] takes the ciphertext only together with a passed [`Authenticator`].
pub struct Authenticator {
    mac: Option<Hmac<Sha256>>,
    expected: Vec<u8>,
}

impl Authenticator {
    /// A fresh check under `key`'s HMAC key, against the HMAC from its public options.
    pub fn new(key: &LayerKey) -> Self {
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes; if it did,
        // `verify` would report a mismatch rather than pass unchecked.
        Self {
            mac: <Hmac<Sha256> as Mac>::new_from_slice(key.symkey.as_slice()).ok(),
            expected: key.hmac.clone(),
        }
    }

    /// Adds the next ciphertext bytes.
    pub fn update(&mut self, ciphertext: &[u8]) {
        if let Some(mac) = &mut self.mac {
            mac.update(ciphertext);
        }
    }

    /// Whether the ciphertext seen, as a whole, carries the expected HMAC (constant time).
    pub fn verify(self) -> bool {
        self.mac
            .is_some_and(|mac| mac.verify_slice(&self.expected).is_ok())
    }
}

/// AES-256-CTR decryption of a layer blob whose HMAC already matched: build it from the
/// [`Authenticator`] that verified the same bytes (the caller reads them from a store the
/// host cannot alter unnoticed, such as an authenticated spool).
pub struct Decryptor<R> {
    inner: R,
    cipher: Aes256Ctr,
}

impl<R: Read> Decryptor<R> {
    /// Decrypts `inner`, the ciphertext `verified` authenticated. `None` when it did not.
    pub fn new(inner: R, key: &LayerKey, verified: Authenticator) -> Option<Self> {
        verified.verify().then(|| Self {
            inner,
            cipher: Aes256Ctr::new(key.symkey.as_slice().into(), key.nonce.as_slice().into()),
        })
    }
}

impl<R: Read> Read for Decryptor<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let n = self.inner.read(buf)?;
        self.cipher.apply_keystream(&mut buf[..n]);
        Ok(n)
    }
}

#[cfg(test)]
mod tests;
