//! Private keys for unwrapping ocicrypt layer keys, loaded from the formats that skopeo's
//! `--decryption-key` accepts: PEM or DER in PKCS#1 (`RSA PRIVATE KEY`), PKCS#8 (`PRIVATE KEY`,
//! RSA or EC) or SEC1 (`EC PRIVATE KEY`), and JWK (JSON with `kty` `RSA` or `EC` and `d`).
//!
//! Password-protected keys are refused. Key material is zeroized on drop and never shown by
//! `Debug`.

use std::fmt;
use std::path::{Path, PathBuf};

use base64::engine::general_purpose::{GeneralPurpose, GeneralPurposeConfig};
use base64::engine::DecodePaddingMode;
use base64::Engine as _;
use p256::pkcs8::DecodePrivateKey as _;
use rsa::pkcs1::DecodeRsaPrivateKey;
use rsa::pkcs8::der::pem;
use rsa::pkcs8::DecodePrivateKey as _;
use rsa::traits::PublicKeyParts;
use rsa::BoxedUint;
use serde::Deserialize;
use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Base64url as JOSE writes it, accepting input with or without `=` padding.
pub(super) const B64URL: GeneralPurpose = GeneralPurpose::new(
    &base64::alphabet::URL_SAFE,
    GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent),
);

/// Errors from loading a private key.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("failed to read private key file {path}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file was read but its contents are not a usable private key.
    #[error("failed to load private key from {path}")]
    File {
        /// The file.
        path: PathBuf,
        /// Why the contents were refused.
        #[source]
        source: Box<KeyError>,
    },
    /// The key is password-protected (encrypted PKCS#8 or a legacy encrypted PEM).
    #[error("password-protected private keys are not supported; decrypt the key first")]
    Encrypted,
    /// A PEM block could not be decoded.
    #[error("malformed PEM block: {0}")]
    Pem(pem::Error),
    /// The PEM input has no block labelled as a private key.
    #[error("no private key PEM block found (labels seen: {labels:?})")]
    NoPemKey {
        /// Labels of the blocks that were found.
        labels: Vec<String>,
    },
    /// A PKCS#1 `RSA PRIVATE KEY` structure is invalid.
    #[error("invalid PKCS#1 RSA private key")]
    Pkcs1(#[source] rsa::pkcs1::Error),
    /// A PKCS#8 `PRIVATE KEY` is neither a valid RSA key nor an EC key on P-256, P-384 or P-521.
    #[error("PKCS#8 private key is not a valid RSA or EC P-256/P-384/P-521 key")]
    Pkcs8,
    /// A SEC1 `EC PRIVATE KEY` is invalid or on an unsupported curve.
    #[error("SEC1 EC private key is not a valid P-256/P-384/P-521 key")]
    Sec1,
    /// Binary input is not a DER private key in any supported encoding.
    #[error("input is not a PEM, DER or JWK private key")]
    Unrecognized,
    /// JWK input is not valid JSON of the expected shape.
    #[error("malformed JWK")]
    JwkJson(#[source] serde_json::Error),
    /// A JWK member is missing or invalid.
    #[error("invalid JWK: {0}")]
    Jwk(&'static str),
    /// The JWK key type or curve is not supported.
    #[error("unsupported JWK key type {kty:?} (curve {crv:?}); RSA and EC P-256/P-384/P-521 are")]
    UnsupportedJwk {
        /// The `kty` member.
        kty: String,
        /// The `crv` member, if any.
        crv: Option<String>,
    },
    /// The RSA key components are inconsistent.
    #[error("invalid RSA private key")]
    Rsa(#[source] rsa::Error),
}

/// A private key that can open ocicrypt JWE recipients.
pub struct PrivateKey {
    pub(super) material: KeyMaterial,
}

/// The key itself; every variant zeroizes on drop.
pub(super) enum KeyMaterial {
    Rsa(Box<rsa::PrivateKey>),
    P256(p256::SecretKey),
    P384(p384::SecretKey),
    P521(p521::SecretKey),
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("PrivateKey")
            .field("kind", &self.kind())
            .finish_non_exhaustive()
    }
}

impl PrivateKey {
    /// Reads and parses a private key file (see [`PrivateKey::from_bytes`]).
    pub fn from_file(path: impl AsRef<Path>) -> Result<Self, KeyError> {
        let path = path.as_ref();
        let bytes = Zeroizing::new(std::fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_path_buf(),
            source,
        })?);
        Self::from_bytes(&bytes).map_err(|source| KeyError::File {
            path: path.to_path_buf(),
            source: Box::new(source),
        })
    }

    /// A P-256 key held in memory (the KBS client's ephemeral TEE key).
    pub(crate) fn from_p256(key: p256::SecretKey) -> Self {
        Self {
            material: KeyMaterial::P256(key),
        }
    }

    /// Parses a private key from PEM, DER (PKCS#1, PKCS#8 or SEC1) or JWK.
    pub fn from_bytes(bytes: &[u8]) -> Result<Self, KeyError> {
        let trimmed = bytes.trim_ascii_start();
        if trimmed.starts_with(b"{") {
            return from_jwk(trimmed);
        }
        if contains(bytes, b"-----BEGIN ") {
            return from_pem(bytes);
        }
        from_der(bytes)
    }

    /// A short description of the key type, e.g. `RSA-2048` or `EC P-256`.
    pub fn kind(&self) -> String {
        match &self.material {
            KeyMaterial::Rsa(key) => format!("RSA-{}", key.size() * 8),
            KeyMaterial::P256(_) => "EC P-256".to_owned(),
            KeyMaterial::P384(_) => "EC P-384".to_owned(),
            KeyMaterial::P521(_) => "EC P-521".to_owned(),
        }
    }

    fn new(material: KeyMaterial) -> Self {
        Self { material }
    }
}

fn contains(haystack: &[u8], needle: &[u8]) -> bool {
    haystack.windows(needle.len()).any(|w| w == needle)
}

/// Parses the first private-key block of a PEM file, skipping others such as `EC PARAMETERS`
/// (which `openssl ecparam -genkey` writes before the key).
fn from_pem(bytes: &[u8]) -> Result<PrivateKey, KeyError> {
    if contains(bytes, b"Proc-Type: 4,ENCRYPTED") {
        return Err(KeyError::Encrypted);
    }
    let mut labels = Vec::new();
    for block in pem_blocks(bytes) {
        let label = pem::decode_label(block).map_err(KeyError::Pem)?;
        match label {
            "ENCRYPTED PRIVATE KEY" => return Err(KeyError::Encrypted),
            "PRIVATE KEY" | "RSA PRIVATE KEY" | "EC PRIVATE KEY" => {}
            other => {
                labels.push(other.to_owned());
                continue;
            }
        }
        let (label, der) = pem::decode_vec(block).map_err(KeyError::Pem)?;
        let der = Zeroizing::new(der);
        return match label {
            "RSA PRIVATE KEY" => from_pkcs1(&der),
            "EC PRIVATE KEY" => from_sec1(&der),
            _ => from_pkcs8(&der),
        };
    }
    Err(KeyError::NoPemKey { labels })
}

/// Splits PEM text into `-----BEGIN …-----` … `-----END …-----` blocks.
fn pem_blocks(bytes: &[u8]) -> impl Iterator<Item = &[u8]> {
    let mut rest = bytes;
    std::iter::from_fn(move || {
        let start = find(rest, b"-----BEGIN ")?;
        let from_begin = &rest[start..];
        let end_marker = find(from_begin, b"-----END ")?;
        let after_end = &from_begin[end_marker + b"-----END ".len()..];
        let close = find(after_end, b"-----")?;
        let block_len = end_marker + b"-----END ".len() + close + b"-----".len();
        let block = &from_begin[..block_len];
        rest = &from_begin[block_len..];
        Some(block)
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    haystack.windows(needle.len()).position(|w| w == needle)
}

fn from_der(der: &[u8]) -> Result<PrivateKey, KeyError> {
    if looks_like_encrypted_pkcs8(der) {
        return Err(KeyError::Encrypted);
    }
    from_pkcs8(der)
        .or_else(|_| from_pkcs1(der))
        .or_else(|_| from_sec1(der))
        .map_err(|_| KeyError::Unrecognized)
}

/// `EncryptedPrivateKeyInfo` is a SEQUENCE whose first element is a SEQUENCE (the algorithm);
/// the unencrypted structures all start with an INTEGER version.
fn looks_like_encrypted_pkcs8(der: &[u8]) -> bool {
    if der.first() != Some(&0x30) {
        return false;
    }
    let header_len = match der.get(1) {
        Some(&len) if len < 0x80 => 2,
        Some(&len) => 2 + usize::from(len & 0x7f),
        None => return false,
    };
    der.get(header_len) == Some(&0x30)
}

fn from_pkcs1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let key = rsa::PrivateKey::from_pkcs1_der(der).map_err(KeyError::Pkcs1)?;
    Ok(PrivateKey::new(KeyMaterial::Rsa(Box::new(key))))
}

fn from_pkcs8(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let material = if let Ok(key) = rsa::PrivateKey::from_pkcs8_der(der) {
        KeyMaterial::Rsa(Box::new(key))
    } else if let Ok(key) = p256::SecretKey::from_pkcs8_der(der) {
        KeyMaterial::P256(key)
    } else if let Ok(key) = p384::SecretKey::from_pkcs8_der(der) {
        KeyMaterial::P384(key)
    } else if let Ok(key) = p521::SecretKey::from_pkcs8_der(der) {
        KeyMaterial::P521(key)
    } else {
        return Err(KeyError::Pkcs8);
    };
    Ok(PrivateKey::new(material))
}

fn from_sec1(der: &[u8]) -> Result<PrivateKey, KeyError> {
    let material = if let Ok(key) = p256::SecretKey::from_sec1_der(der) {
        KeyMaterial::P256(key)
    } else if let Ok(key) = p384::SecretKey::from_sec1_der(der) {
        KeyMaterial::P384(key)
    } else if let Ok(key) = p521::SecretKey::from_sec1_der(der) {
        KeyMaterial::P521(key)
    } else {
        return Err(KeyError::Sec1);
    };
    Ok(PrivateKey::new(material))
}

/// The JWK members used here; private members are zeroized on drop.
#[derive(Deserialize, Zeroize, ZeroizeOnDrop)]
struct Jwk {
    kty: String,
    crv: Option<String>,
    d: Option<String>,
    n: Option<String>,
    e: Option<String>,
    p: Option<String>,
    q: Option<String>,
}

fn from_jwk(json: &[u8]) -> Result<PrivateKey, KeyError> {
    let jwk: Jwk = serde_json::from_slice(json).map_err(KeyError::JwkJson)?;
    let d = b64_member(jwk.d.as_deref(), "missing private member \"d\"")?;
    let material = match (jwk.kty.as_str(), jwk.crv.as_deref()) {
        ("RSA", _) => KeyMaterial::Rsa(Box::new(rsa_from_jwk(&jwk, &d)?)),
        ("EC", Some("P-256")) => KeyMaterial::P256(
            p256::SecretKey::from_slice(&d).map_err(|_| KeyError::Jwk("invalid EC \"d\""))?,
        ),
        ("EC", Some("P-384")) => KeyMaterial::P384(
            p384::SecretKey::from_slice(&d).map_err(|_| KeyError::Jwk("invalid EC \"d\""))?,
        ),
        ("EC", Some("P-521")) => KeyMaterial::P521(
            p521::SecretKey::from_slice(&d).map_err(|_| KeyError::Jwk("invalid EC \"d\""))?,
        ),
        (kty, crv) => {
            return Err(KeyError::UnsupportedJwk {
                kty: kty.to_owned(),
                crv: crv.map(str::to_owned),
            })
        }
    };
    Ok(PrivateKey::new(material))
}

fn rsa_from_jwk(jwk: &Jwk, d: &[u8]) -> Result<rsa::PrivateKey, KeyError> {
    let n = b64_member(jwk.n.as_deref(), "missing RSA member \"n\"")?;
    let e = b64_member(jwk.e.as_deref(), "missing RSA member \"e\"")?;
    // The private values get the modulus's width, as rsa's own PKCS#1 decoder gives them.
    let width = |bytes: &[u8]| u32::try_from(bytes.len() * 8).ok();
    let n_bits = width(&n).ok_or(KeyError::Jwk("RSA member \"n\" is too long"))?;
    let uint = |bytes: &[u8], bits: u32| {
        BoxedUint::from_be_slice(bytes, bits)
            .map_err(|_| KeyError::Jwk("RSA member is longer than the modulus"))
    };
    let e_bits = width(&e).ok_or(KeyError::Jwk("RSA member \"e\" is too long"))?;
    let primes = match (jwk.p.as_deref(), jwk.q.as_deref()) {
        (Some(p), Some(q)) => vec![
            uint(&b64_member(Some(p), "")?, n_bits)?,
            uint(&b64_member(Some(q), "")?, n_bits)?,
        ],
        _ => Vec::new(),
    };
    let key = rsa::PrivateKey::from_components(
        uint(&n, n_bits)?,
        uint(&e, e_bits)?,
        uint(d, n_bits)?,
        primes,
    )
    .map_err(KeyError::Rsa)?;
    key.validate().map_err(KeyError::Rsa)?;
    Ok(key)
}

fn b64_member(value: Option<&str>, missing: &'static str) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let value = value.ok_or(KeyError::Jwk(missing))?;
    B64URL
        .decode(value)
        .map(Zeroizing::new)
        .map_err(|_| KeyError::Jwk("member is not base64url"))
}

#[cfg(test)]
mod tests;
