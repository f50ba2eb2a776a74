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
//! block) with HMAC-SHA256 over the ciphertext under the same key. The HMAC is checked when
//! the stream ends, and the plaintext's digest against `digest`, before a layer is committed.

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

/// Decrypts a layer blob as it streams; at the end of the ciphertext the HMAC is checked and
/// a mismatch is an `InvalidData` error (so nothing after it is taken as valid).
pub struct DecryptingReader<R> {
    inner: R,
    cipher: Aes256Ctr,
    state: MacState,
    expected: Vec<u8>,
}

/// Where the HMAC check stands; a mismatch stays an error on every later read.
enum MacState {
    Reading(Hmac<Sha256>),
    Verified,
    Failed,
}

impl<R: Read> DecryptingReader<R> {
    /// Wraps the ciphertext stream `inner`.
    pub fn new(inner: R, key: &LayerKey) -> Self {
        let cipher = Aes256Ctr::new(key.symkey.as_slice().into(), key.nonce.as_slice().into());
        // HMAC accepts keys of any length, so this cannot fail for 32 bytes; if it did,
        // the stream would report a mismatch rather than pass unchecked.
        let state = match <Hmac<Sha256> as Mac>::new_from_slice(key.symkey.as_slice()) {
            Ok(mac) => MacState::Reading(mac),
            Err(_) => MacState::Failed,
        };
        Self {
            inner,
            cipher,
            state,
            expected: key.hmac.clone(),
        }
    }
}

impl<R: Read> Read for DecryptingReader<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let mismatch = || io::Error::new(io::ErrorKind::InvalidData, HmacMismatch);
        let mac = match &mut self.state {
            MacState::Reading(mac) => mac,
            MacState::Verified => return Ok(0),
            MacState::Failed => return Err(mismatch()),
        };
        if buf.is_empty() {
            return Ok(0);
        }
        let n = self.inner.read(buf)?;
        if n == 0 {
            // End of the ciphertext: the HMAC must match before anyone sees an end.
            let ok = mac.clone().verify_slice(&self.expected).is_ok();
            self.state = if ok {
                MacState::Verified
            } else {
                MacState::Failed
            };
            return if ok { Ok(0) } else { Err(mismatch()) };
        }
        mac.update(&buf[..n]);
        self.cipher.apply_keystream(&mut buf[..n]);
        Ok(n)
    }
}

/// The error inside the `io::Error` a [`DecryptingReader`] returns on an HMAC mismatch.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("layer HMAC mismatch")]
pub struct HmacMismatch;

/// Whether `e` (possibly passed through a decompressor) is an HMAC mismatch.
pub fn is_hmac_mismatch(e: &io::Error) -> bool {
    e.get_ref().is_some_and(|inner| inner.is::<HmacMismatch>())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kbs::ResourceUri;
    use crate::ocicrypt::keyprovider::tests::annotation;
    use base64::engine::general_purpose::STANDARD;

    const KID: &str = "kbs:///default/image-kek/layer";

    struct Keks(Option<[u8; 32]>);

    impl KekSource for Keks {
        fn kek(&self, kid: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbsError> {
            assert_eq!(kid.to_string(), KID);
            self.0
                .map(|k| Zeroizing::new(k.to_vec()))
                .ok_or_else(|| KbsError::Status {
                    url: "http://kbs/kbs/v0/resource/default/image-kek/layer".into(),
                    status: 403,
                    problem: ": denied".into(),
                })
        }
    }

    fn provider_only(kek: &[u8; 32], wrap: &str) -> BTreeMap<String, String> {
        let options = format!(
            r#"{{"symkey":"{}","digest":"sha256:{}","cipheroptions":{{"nonce":"{}"}}}}"#,
            STANDARD.encode([1u8; 32]),
            "ab".repeat(32),
            STANDARD.encode([2u8; 16])
        );
        let pubopts = format!(
            r#"{{"cipher":"{AES_256_CTR_HMAC_SHA256}","hmac":"{}","cipheroptions":{{}}}}"#,
            STANDARD.encode([3u8; 32])
        );
        BTreeMap::from([
            (PUBOPTS.to_owned(), STANDARD.encode(pubopts)),
            (
                PROVIDER_ATTESTATION_AGENT.to_owned(),
                annotation(KID, kek, options.as_bytes(), wrap),
            ),
        ])
    }

    #[test]
    fn provider_annotation_opens_with_the_kbs_kek() {
        let kek = [7u8; 32];
        for wrap in ["A256GCM", "A256CTR"] {
            let key = layer_key(&provider_only(&kek, wrap), &[], Some(&Keks(Some(kek)))).unwrap();
            assert_eq!(key.plain_digest.hex(), "ab".repeat(32));
            assert!(format!("{key:?}").contains("redacted"));
        }
    }

    #[test]
    fn provider_annotation_errors_name_the_kid() {
        let annotations = provider_only(&[7u8; 32], "A256GCM");
        let err = layer_key(&annotations, &[], None).unwrap_err();
        assert!(matches!(err, LayerKeyError::NoKbs { .. }), "{err}");
        assert!(
            err.to_string().contains(KID) && err.to_string().contains("--kbs"),
            "{err}"
        );
        let err = layer_key(&annotations, &[], Some(&Keks(None))).unwrap_err();
        assert!(
            matches!(err, LayerKeyError::Kek { .. }) && err.to_string().contains(KID),
            "{err}"
        );
        let err = layer_key(&annotations, &[], Some(&Keks(Some([8u8; 32])))).unwrap_err();
        assert!(err.to_string().contains(KID), "{err}");
        assert!(matches!(
            layer_key(&BTreeMap::new(), &[], None),
            Err(LayerKeyError::NoJwe)
        ));
    }
}
