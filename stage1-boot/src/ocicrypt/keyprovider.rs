//! Confidential Containers' key provider annotation,
//! `org.opencontainers.image.enc.keys.provider.attestation-agent`: base64 of the JSON
//! `AnnotationPacket` `{"kid", "wrapped_data", "iv", "wrap_type"}` that CoCo's
//! `coco_keyprovider` writes. `wrapped_data` is ocicrypt's private options JSON encrypted
//! with a key-encryption key (KEK); `kid` (`kbs:///REPO/TYPE/TAG`) names the KBS resource
//! holding the 32-byte KEK. `wrap_type` `A256GCM` (12-byte iv, tag appended to the
//! ciphertext) or `A256CTR` (16-byte iv as the big-endian initial counter block).

use aes::cipher::{KeyIvInit, StreamCipher};
use aes_gcm::aead::Aead;
use aes_gcm::{Aes256Gcm, KeyInit, Nonce};
use base64::engine::general_purpose::STANDARD;
use base64::Engine as _;
use serde::Deserialize;
use zeroize::Zeroizing;

use crate::kbs::{KbsClient, KbsError, ResourceUri, UriError};

/// The annotation.
pub const PROVIDER_ATTESTATION_AGENT: &str =
    "org.opencontainers.image.enc.keys.provider.attestation-agent";

/// Something that hands out KEKs by resource URI: the KBS client, or a test double.
pub trait KekSource: Send + Sync {
    /// The KEK named by `kid`.
    fn kek(&self, kid: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbsError>;
}

impl KekSource for KbsClient {
    fn kek(&self, kid: &ResourceUri) -> Result<Zeroizing<Vec<u8>>, KbsError> {
        self.resource(kid)
    }
}

/// How the private options are wrapped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WrapType {
    /// AES-256-GCM.
    A256Gcm,
    /// AES-256-CTR.
    A256Ctr,
}

/// A parsed annotation packet.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AnnotationPacket {
    /// The KBS resource holding the KEK.
    pub kid: ResourceUri,
    /// The wrap algorithm.
    pub wrap_type: WrapType,
    wrapped: Vec<u8>,
    iv: Vec<u8>,
}

/// Why a packet cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum KeyProviderError {
    /// Not base64 of a JSON packet of the expected shape.
    #[error("the {PROVIDER_ATTESTATION_AGENT} annotation is malformed: {0}")]
    Malformed(String),
    /// The kid is not a `kbs:///` URI.
    #[error("the {PROVIDER_ATTESTATION_AGENT} annotation's kid is unusable")]
    Kid(#[source] UriError),
    /// The KEK is not 32 bytes.
    #[error("the KEK {kid} is {len} bytes, not 32")]
    KekLength {
        /// The resource.
        kid: String,
        /// Its length.
        len: usize,
    },
    /// The wrapped options fail authentication under the KEK.
    #[error(
        "the private options do not open with the KEK {kid} (wrong KEK or tampered annotation)"
    )]
    Unwrap {
        /// The resource.
        kid: String,
    },
}

#[derive(Deserialize)]
struct RawPacket {
    kid: String,
    wrapped_data: String,
    iv: String,
    wrap_type: String,
}

impl AnnotationPacket {
    /// Parses the annotation's value.
    pub fn parse(value: &str) -> Result<Self, KeyProviderError> {
        let bad = |reason: String| KeyProviderError::Malformed(reason);
        let json = STANDARD
            .decode(value.trim())
            .map_err(|e| bad(format!("not base64: {e}")))?;
        let raw: RawPacket =
            serde_json::from_slice(&json).map_err(|e| bad(format!("not a packet: {e}")))?;
        let kid = raw.kid.parse().map_err(KeyProviderError::Kid)?;
        let decode = |what: &str, s: &str| {
            STANDARD
                .decode(s)
                .map_err(|e| bad(format!("{what} is not base64: {e}")))
        };
        let (wrapped, iv) = (
            decode("wrapped_data", &raw.wrapped_data)?,
            decode("iv", &raw.iv)?,
        );
        let wrap_type = match raw.wrap_type.as_str() {
            "A256GCM" if iv.len() == 12 && wrapped.len() >= 16 => WrapType::A256Gcm,
            "A256CTR" if iv.len() == 16 => WrapType::A256Ctr,
            "A256GCM" | "A256CTR" => {
                return Err(bad(format!(
                    "{} with a {}-byte iv and {} bytes of wrapped data",
                    raw.wrap_type,
                    iv.len(),
                    wrapped.len()
                )))
            }
            other => return Err(bad(format!("unsupported wrap_type {other:?}"))),
        };
        Ok(Self {
            kid,
            wrap_type,
            wrapped,
            iv,
        })
    }

    /// The private options JSON, unwrapped with `kek`.
    pub fn unwrap(&self, kek: &[u8]) -> Result<Zeroizing<Vec<u8>>, KeyProviderError> {
        let kid = self.kid.to_string();
        let key: &[u8; 32] = kek.try_into().map_err(|_| KeyProviderError::KekLength {
            kid: kid.clone(),
            len: kek.len(),
        })?;
        match self.wrap_type {
            WrapType::A256Gcm => Aes256Gcm::new(key.into())
                .decrypt(Nonce::from_slice(&self.iv), self.wrapped.as_slice())
                .map(Zeroizing::new)
                .map_err(|_| KeyProviderError::Unwrap { kid }),
            WrapType::A256Ctr => {
                let mut buf = Zeroizing::new(self.wrapped.clone());
                let mut cipher =
                    ctr::Ctr128BE::<aes::Aes256>::new(key.into(), self.iv.as_slice().into());
                cipher.apply_keystream(&mut buf);
                // CTR has no integrity check: a wrong KEK shows as options that are not JSON.
                match serde_json::from_slice::<serde_json::Map<String, serde_json::Value>>(&buf) {
                    Ok(_) => Ok(buf),
                    Err(_) => Err(KeyProviderError::Unwrap { kid }),
                }
            }
        }
    }
}

/// The AES-CTR state (key schedule and keystream buffer) is wiped on drop: this stops
/// compiling if `aes` or `ctr` loses its `zeroize` feature (workspace Cargo.toml).
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<ctr::Ctr128BE<aes::Aes256>>();
};

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use serde_json::json;

    /// An annotation value for `options` wrapped with `kek`, as coco_keyprovider makes it.
    pub(crate) fn annotation(kid: &str, kek: &[u8; 32], options: &[u8], wrap: &str) -> String {
        let (wrapped, iv) = match wrap {
            "A256GCM" => {
                let iv = [5u8; 12];
                let ct = Aes256Gcm::new(kek.into())
                    .encrypt(Nonce::from_slice(&iv), options)
                    .unwrap();
                (ct, iv.to_vec())
            }
            _ => {
                let iv = [6u8; 16];
                let mut buf = options.to_vec();
                ctr::Ctr128BE::<aes::Aes256>::new(kek.into(), (&iv).into())
                    .apply_keystream(&mut buf);
                (buf, iv.to_vec())
            }
        };
        let packet = json!({
            "kid": kid,
            "wrapped_data": STANDARD.encode(wrapped),
            "iv": STANDARD.encode(iv),
            "wrap_type": wrap,
        });
        STANDARD.encode(packet.to_string())
    }

    #[test]
    fn both_wrap_types_open_with_the_kek_only() {
        let kek = [9u8; 32];
        for wrap in ["A256GCM", "A256CTR"] {
            let value = annotation(
                "kbs:///default/image-kek/one",
                &kek,
                b"{\"symkey\":1}",
                wrap,
            );
            let packet = AnnotationPacket::parse(&value).unwrap();
            assert_eq!(packet.kid.to_string(), "kbs:///default/image-kek/one");
            assert_eq!(&*packet.unwrap(&kek).unwrap(), b"{\"symkey\":1}");
            assert!(matches!(
                packet.unwrap(&[9u8; 16]),
                Err(KeyProviderError::KekLength { len: 16, .. })
            ));
            assert!(matches!(
                packet.unwrap(&[1u8; 32]),
                Err(KeyProviderError::Unwrap { .. })
            ));
        }
        let gcm =
            AnnotationPacket::parse(&annotation("kbs:///a/b/c", &kek, b"x", "A256GCM")).unwrap();
        assert!(matches!(
            gcm.unwrap(&[1u8; 32]),
            Err(KeyProviderError::Unwrap { .. })
        ));
    }

    #[test]
    fn malformed_packets_are_errors() {
        let kek = [9u8; 32];
        let good: serde_json::Value = serde_json::from_slice(
            &STANDARD
                .decode(annotation("kbs:///a/b/c", &kek, b"x", "A256GCM"))
                .unwrap(),
        )
        .unwrap();
        let with = |field: &str, value: serde_json::Value| {
            let mut v = good.clone();
            v[field] = value;
            STANDARD.encode(v.to_string())
        };
        assert!(AnnotationPacket::parse("%%%").is_err());
        assert!(AnnotationPacket::parse(&STANDARD.encode("[]")).is_err());
        for (field, value) in [
            ("kid", json!("https://host/a/b/c")),
            ("kid", json!("kbs://host/a/b/c")),
            ("wrap_type", json!("A128GCM")),
            ("iv", json!(STANDARD.encode([0u8; 16]))),
            ("iv", json!("!!")),
            ("wrapped_data", json!(STANDARD.encode([0u8; 4]))),
        ] {
            let err = AnnotationPacket::parse(&with(field, value.clone())).unwrap_err();
            assert!(
                err.to_string().contains(PROVIDER_ATTESTATION_AGENT),
                "{field}={value}: {err}"
            );
        }
    }
}
