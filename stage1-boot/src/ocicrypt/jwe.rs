//! JWE decryption (RFC 7516) of ocicrypt's wrapped layer options, as go-jose writes them for
//! `skopeo copy --encryption-key jwe:PUBKEY`.
//!
//! Accepts the general and the flattened JSON serialization (go-jose flattens when there is a
//! single recipient, moving that recipient's header into the protected header). Key management:
//! `RSA-OAEP`, `RSA-OAEP-256`, `ECDH-ES+A128KW`, `ECDH-ES+A192KW`, `ECDH-ES+A256KW` (P-256,
//! P-384, P-521); content encryption: `A128GCM`, `A192GCM`, `A256GCM`.

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::AesGcm;
use base64::Engine as _;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use rsa::{Oaep, RsaPrivateKey};
use serde::Deserialize;
use serde_json::{Map, Value};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{KeyMaterial, PrivateKey, B64URL};

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

/// What the content encryption authenticates besides the ciphertext.
#[derive(Clone, Copy)]
enum Aad {
    /// RFC 7516 §5.1 step 14: the protected header, then `.` and the `aad` member if any.
    Rfc7516,
    /// The protected header only (trustee's KBS responses).
    ProtectedOnly,
}

/// The JSON serialization: general (`recipients`) or flattened (`header`, `encrypted_key`).
#[derive(Deserialize)]
struct RawJwe {
    protected: Option<String>,
    unprotected: Option<Map<String, Value>>,
    recipients: Option<Vec<RawRecipient>>,
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
    iv: String,
    ciphertext: String,
    tag: String,
    aad: Option<String>,
}

#[derive(Deserialize)]
struct RawRecipient {
    header: Option<Map<String, Value>>,
    encrypted_key: Option<String>,
}

type Recipient = (Option<Map<String, Value>>, Vec<u8>);

impl RawJwe {
    fn recipients(&self) -> Result<Vec<Recipient>, JweError> {
        let decode_key = |key: Option<&String>| match key {
            Some(key) => b64(key, "encrypted_key is not base64url"),
            None => Ok(Vec::new()),
        };
        // As go-jose parses: a non-empty `recipients` wins (go-jose also writes the first
        // recipient's key at the top level then); otherwise the flattened members are used.
        match self.recipients.as_deref() {
            Some(list) if !list.is_empty() => list
                .iter()
                .map(|r| Ok((r.header.clone(), decode_key(r.encrypted_key.as_ref())?)))
                .collect(),
            _ => Ok(vec![(
                self.header.clone(),
                decode_key(self.encrypted_key.as_ref())?,
            )]),
        }
    }
}

/// The shared, decoded parts of the JWE.
struct Content {
    protected: Map<String, Value>,
    aad: Vec<u8>,
    iv: Vec<u8>,
    ciphertext: Vec<u8>,
    tag: Vec<u8>,
}

impl Content {
    fn parse(raw: &RawJwe, mode: Aad) -> Result<Self, JweError> {
        let protected_b64 = raw.protected.as_deref().unwrap_or("");
        let protected = if protected_b64.is_empty() {
            Map::new()
        } else {
            let json = b64(protected_b64, "protected header is not base64url")?;
            serde_json::from_slice(&json)
                .map_err(|_| JweError::Malformed("protected header is not a JSON object"))?
        };
        // RFC 7516 §5.1 step 14: ASCII(BASE64URL(protected) [ '.' BASE64URL(aad) ]).
        let mut aad = protected_b64.as_bytes().to_vec();
        if let (Aad::Rfc7516, Some(extra)) = (mode, &raw.aad) {
            b64(extra, "aad is not base64url")?;
            aad.push(b'.');
            aad.extend_from_slice(extra.as_bytes());
        }
        let iv = b64(&raw.iv, "iv is not base64url")?;
        let tag = b64(&raw.tag, "tag is not base64url")?;
        if iv.len() != 12 {
            return Err(JweError::Malformed("iv is not 96 bits"));
        }
        if tag.len() != 16 {
            return Err(JweError::Malformed("tag is not 128 bits"));
        }
        Ok(Self {
            protected,
            aad,
            iv,
            ciphertext: b64(&raw.ciphertext, "ciphertext is not base64url")?,
            tag,
        })
    }
}

fn b64(value: &str, what: &'static str) -> Result<Vec<u8>, JweError> {
    B64URL.decode(value).map_err(|_| JweError::Malformed(what))
}

/// The JOSE header of one recipient: protected ∪ unprotected ∪ per-recipient.
struct Header(Map<String, Value>);

impl Header {
    fn merge(
        protected: &Map<String, Value>,
        unprotected: Option<&Map<String, Value>>,
        recipient: Option<&Map<String, Value>>,
    ) -> Result<Self, JweError> {
        let mut merged = protected.clone();
        for part in [unprotected, recipient].into_iter().flatten() {
            for (name, value) in part {
                if merged.insert(name.clone(), value.clone()).is_some() {
                    return Err(JweError::Malformed("header parameter appears twice"));
                }
            }
        }
        if merged.contains_key("zip") {
            return Err(JweError::UnsupportedHeader("zip"));
        }
        if merged.contains_key("crit") {
            return Err(JweError::UnsupportedHeader("crit"));
        }
        Ok(Self(merged))
    }

    fn str(&self, name: &str) -> Result<Option<&str>, JweError> {
        match self.0.get(name) {
            None => Ok(None),
            Some(Value::String(s)) => Ok(Some(s)),
            Some(_) => Err(JweError::Malformed("header parameter is not a string")),
        }
    }

    fn b64(&self, name: &str) -> Result<Vec<u8>, JweError> {
        match self.str(name)? {
            Some(value) => b64(value, "apu/apv is not base64url"),
            None => Ok(Vec::new()),
        }
    }
}

/// Key management: RSA-OAEP (SHA-1 or SHA-256), or ECDH-ES with an AES key wrap of this many bytes.
#[derive(Clone, Copy)]
enum KeyAlg {
    RsaOaep,
    RsaOaep256,
    EcdhEsKw(usize),
}

impl KeyAlg {
    fn parse(alg: &str) -> Result<Self, JweError> {
        Ok(match alg {
            "RSA-OAEP" => Self::RsaOaep,
            "RSA-OAEP-256" => Self::RsaOaep256,
            "ECDH-ES+A128KW" => Self::EcdhEsKw(16),
            "ECDH-ES+A192KW" => Self::EcdhEsKw(24),
            "ECDH-ES+A256KW" => Self::EcdhEsKw(32),
            other => return Err(JweError::UnsupportedAlg(other.to_owned())),
        })
    }
}

/// Content encryption: AES-GCM with a 128, 192 or 256-bit key.
#[derive(Clone, Copy)]
enum Enc {
    A128,
    A192,
    A256,
}

impl Enc {
    fn parse(enc: &str) -> Result<Self, JweError> {
        Ok(match enc {
            "A128GCM" => Self::A128,
            "A192GCM" => Self::A192,
            "A256GCM" => Self::A256,
            other => return Err(JweError::UnsupportedEnc(other.to_owned())),
        })
    }

    fn key_len(self) -> usize {
        match self {
            Self::A128 => 16,
            Self::A192 => 24,
            Self::A256 => 32,
        }
    }

    /// Decrypts and authenticates; `None` when authentication fails.
    fn open(self, cek: &[u8], content: &Content) -> Option<Zeroizing<Vec<u8>>> {
        match self {
            Self::A128 => gcm_open::<AesGcm<Aes128, U12>>(cek, content),
            Self::A192 => gcm_open::<AesGcm<Aes192, U12>>(cek, content),
            Self::A256 => gcm_open::<AesGcm<Aes256, U12>>(cek, content),
        }
    }
}

fn gcm_open<C>(cek: &[u8], content: &Content) -> Option<Zeroizing<Vec<u8>>>
where
    C: KeyInit + AeadInPlace<NonceSize = U12, TagSize = U16>,
{
    let cipher = C::new_from_slice(cek).ok()?;
    // Lengths were checked in `Content::parse` (12 and 16 bytes), so `from_slice` cannot panic.
    let nonce = GenericArray::from_slice(&content.iv);
    let tag = GenericArray::from_slice(&content.tag);
    let mut buf = Zeroizing::new(content.ciphertext.clone());
    cipher
        .decrypt_in_place_detached(nonce, &content.aad, &mut buf, tag)
        .ok()?;
    Some(buf)
}

enum Opened {
    Plaintext(Zeroizing<Vec<u8>>),
    AuthFailed,
    NoKey,
}

fn open_recipient(
    content: &Content,
    header: &Header,
    encrypted_key: &[u8],
    keys: &[PrivateKey],
) -> Result<Opened, JweError> {
    let alg_name = header
        .str("alg")?
        .ok_or(JweError::Malformed("recipient has no \"alg\""))?;
    let alg = KeyAlg::parse(alg_name)?;
    let enc = Enc::parse(
        header
            .str("enc")?
            .ok_or(JweError::Malformed("header has no \"enc\""))?,
    )?;
    let mut opened = Opened::NoKey;
    for key in keys {
        let Some(cek) = unwrap_cek(alg, alg_name, header, encrypted_key, key)? else {
            continue;
        };
        if cek.len() != enc.key_len() {
            continue;
        }
        match enc.open(&cek, content) {
            Some(plaintext) => return Ok(Opened::Plaintext(plaintext)),
            None => opened = Opened::AuthFailed,
        }
    }
    Ok(opened)
}

/// Unwraps the content key with one private key; `None` when the key does not fit or open it.
fn unwrap_cek(
    alg: KeyAlg,
    alg_name: &str,
    header: &Header,
    encrypted_key: &[u8],
    key: &PrivateKey,
) -> Result<Option<Zeroizing<Vec<u8>>>, JweError> {
    match (alg, &key.material) {
        (KeyAlg::RsaOaep, KeyMaterial::Rsa(rsa)) => {
            Ok(rsa_oaep(rsa, Oaep::new::<sha1::Sha1>(), encrypted_key))
        }
        (KeyAlg::RsaOaep256, KeyMaterial::Rsa(rsa)) => {
            Ok(rsa_oaep(rsa, Oaep::new::<Sha256>(), encrypted_key))
        }
        (KeyAlg::EcdhEsKw(kek_len), _) => {
            let epk = header
                .0
                .get("epk")
                .ok_or(JweError::Malformed("ECDH-ES recipient has no \"epk\""))?;
            let epk: Epk = serde_json::from_value(epk.clone())
                .map_err(|_| JweError::Malformed("\"epk\" is not an EC JWK"))?;
            let z = match &key.material {
                KeyMaterial::P256(sk) if epk.crv == "P-256" => ecdh(sk, &epk)?,
                KeyMaterial::P384(sk) if epk.crv == "P-384" => ecdh(sk, &epk)?,
                KeyMaterial::P521(sk) if epk.crv == "P-521" => ecdh(sk, &epk)?,
                _ => return Ok(None),
            };
            let kek = concat_kdf(
                &z,
                alg_name,
                &header.b64("apu")?,
                &header.b64("apv")?,
                kek_len,
            )?;
            Ok(aes_key_unwrap(&kek, encrypted_key))
        }
        _ => Ok(None),
    }
}

fn rsa_oaep(
    key: &RsaPrivateKey,
    padding: Oaep,
    encrypted_key: &[u8],
) -> Option<Zeroizing<Vec<u8>>> {
    key.decrypt(padding, encrypted_key).ok().map(Zeroizing::new)
}

#[derive(Deserialize)]
struct Epk {
    kty: String,
    crv: String,
    x: String,
    y: String,
}

/// The ECDH shared secret Z (the x coordinate) between `sk` and the ephemeral public key.
fn ecdh<C>(sk: &SecretKey<C>, epk: &Epk) -> Result<Zeroizing<Vec<u8>>, JweError>
where
    C: CurveArithmetic,
    AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
    FieldBytesSize<C>: ModulusSize,
{
    if epk.kty != "EC" {
        return Err(JweError::Malformed("\"epk\" is not an EC JWK"));
    }
    let x = b64(&epk.x, "\"epk\" x is not base64url")?;
    let y = b64(&epk.y, "\"epk\" y is not base64url")?;
    if x.len() != y.len() {
        return Err(JweError::Malformed("\"epk\" coordinates differ in length"));
    }
    let mut sec1 = Vec::with_capacity(1 + x.len() + y.len());
    sec1.push(0x04);
    sec1.extend_from_slice(&x);
    sec1.extend_from_slice(&y);
    let public = PublicKey::<C>::from_sec1_bytes(&sec1)
        .map_err(|_| JweError::Malformed("\"epk\" is not a point on its curve"))?;
    let shared =
        p256::elliptic_curve::ecdh::diffie_hellman(sk.to_nonzero_scalar(), public.as_affine());
    Ok(Zeroizing::new(shared.raw_secret_bytes().to_vec()))
}

/// Concat KDF (NIST SP 800-56A, RFC 7518 §4.6.2) with SHA-256; `key_len` ≤ 32 needs one round.
fn concat_kdf(
    z: &[u8],
    alg: &str,
    apu: &[u8],
    apv: &[u8],
    key_len: usize,
) -> Result<Zeroizing<Vec<u8>>, JweError> {
    let len32 = |bytes: &[u8]| {
        u32::try_from(bytes.len())
            .map(u32::to_be_bytes)
            .map_err(|_| JweError::Malformed("apu/apv too long"))
    };
    let bits = u32::try_from(key_len * 8).map_err(|_| JweError::Malformed("key too long"))?;
    let mut hash = Sha256::new();
    hash.update(1u32.to_be_bytes());
    hash.update(z);
    for part in [alg.as_bytes(), apu, apv] {
        hash.update(len32(part)?);
        hash.update(part);
    }
    hash.update(bits.to_be_bytes());
    let mut out = Zeroizing::new(hash.finalize().to_vec());
    out.truncate(key_len);
    Ok(out)
}

/// AES key unwrap (RFC 3394); `None` when the integrity check fails.
fn aes_key_unwrap(kek: &[u8], wrapped: &[u8]) -> Option<Zeroizing<Vec<u8>>> {
    let unwrapped = match kek.len() {
        16 => aes_kw::KekAes128::try_from(kek).ok()?.unwrap_vec(wrapped),
        24 => aes_kw::KekAes192::try_from(kek).ok()?.unwrap_vec(wrapped),
        32 => aes_kw::KekAes256::try_from(kek).ok()?.unwrap_vec(wrapped),
        _ => return None,
    };
    unwrapped.ok().map(Zeroizing::new)
}

#[cfg(test)]
mod tests {
    use super::*;
    use base64::engine::general_purpose::URL_SAFE_NO_PAD;
    use p256::elliptic_curve::ecdh::diffie_hellman;
    use rand_core::OsRng;
    use rsa::RsaPublicKey;
    use serde_json::json;
    use std::sync::OnceLock;

    const PLAINTEXT: &[u8] = br#"{"symkey":"c2VjcmV0","cipheroptions":{"nonce":"AAAA"}}"#;

    fn e64(bytes: &[u8]) -> String {
        URL_SAFE_NO_PAD.encode(bytes)
    }

    fn rsa_key(i: usize) -> PrivateKey {
        static KEYS: OnceLock<Vec<RsaPrivateKey>> = OnceLock::new();
        let keys = KEYS.get_or_init(|| {
            (0..2)
                .map(|_| RsaPrivateKey::new(&mut OsRng, 2048).unwrap())
                .collect()
        });
        PrivateKey {
            material: KeyMaterial::Rsa(Box::new(keys[i].clone())),
        }
    }

    fn ec_key(crv: &str) -> PrivateKey {
        let material = match crv {
            "P-256" => KeyMaterial::P256(p256::SecretKey::random(&mut OsRng)),
            "P-384" => KeyMaterial::P384(p384::SecretKey::random(&mut OsRng)),
            _ => KeyMaterial::P521(p521::SecretKey::random(&mut OsRng)),
        };
        PrivateKey { material }
    }

    /// Concat KDF written out as a single buffer, independently of `concat_kdf`.
    fn kdf(z: &[u8], alg: &str, apu: &[u8], apv: &[u8], len: usize) -> Vec<u8> {
        let mut info = vec![0, 0, 0, 1];
        info.extend_from_slice(z);
        for part in [alg.as_bytes(), apu, apv] {
            info.extend_from_slice(&(part.len() as u32).to_be_bytes());
            info.extend_from_slice(part);
        }
        info.extend_from_slice(&((len * 8) as u32).to_be_bytes());
        Sha256::digest(&info)[..len].to_vec()
    }

    /// RFC 3394 key wrap written from the spec, using only the raw AES block cipher.
    fn wrap(kek: &[u8], key: &[u8]) -> Vec<u8> {
        fn run<A: KeyInit + aes_gcm::aes::cipher::BlockEncrypt>(kek: &[u8], key: &[u8]) -> Vec<u8> {
            let aes = A::new_from_slice(kek).unwrap();
            let n = key.len() / 8;
            let mut a = [0xa6u8; 8];
            let mut r: Vec<[u8; 8]> = key.chunks(8).map(|c| c.try_into().unwrap()).collect();
            for j in 0..6 {
                for (i, ri) in r.iter_mut().enumerate() {
                    let mut b = GenericArray::clone_from_slice(&[a, *ri].concat());
                    aes.encrypt_block(&mut b);
                    let t = (n * j + i + 1) as u64;
                    a = (u64::from_be_bytes(b[..8].try_into().unwrap()) ^ t).to_be_bytes();
                    ri.copy_from_slice(&b[8..]);
                }
            }
            [a.to_vec(), r.concat()].concat()
        }
        match kek.len() {
            16 => run::<Aes128>(kek, key),
            24 => run::<Aes192>(kek, key),
            _ => run::<Aes256>(kek, key),
        }
    }

    fn ecdh_recipient<C>(
        public: &PublicKey<C>,
        crv: &str,
        alg: &str,
        cek: &[u8],
    ) -> (Value, Vec<u8>)
    where
        C: CurveArithmetic,
        AffinePoint<C>: FromEncodedPoint<C> + ToEncodedPoint<C>,
        FieldBytesSize<C>: ModulusSize,
    {
        let eph = SecretKey::<C>::random(&mut OsRng);
        let z = diffie_hellman(eph.to_nonzero_scalar(), public.as_affine());
        let point = eph.public_key().to_encoded_point(false);
        let kw_len = match alg {
            "ECDH-ES+A128KW" => 16,
            "ECDH-ES+A192KW" => 24,
            _ => 32,
        };
        let (apu, apv) = (b"alice".as_slice(), b"bob".as_slice());
        let kek = kdf(z.raw_secret_bytes(), alg, apu, apv, kw_len);
        let header = json!({
            "alg": alg,
            "apu": e64(apu),
            "apv": e64(apv),
            "epk": {"kty": "EC", "crv": crv, "x": e64(point.x().unwrap()), "y": e64(point.y().unwrap())},
        });
        (header, wrap(&kek, cek))
    }

    /// Wraps `cek` for `key` with `alg`; returns the recipient header and encrypted key.
    fn recipient(key: &PrivateKey, alg: &str, cek: &[u8]) -> (Value, Vec<u8>) {
        match &key.material {
            KeyMaterial::Rsa(k) => {
                let public = RsaPublicKey::from(k.as_ref());
                let padding = match alg {
                    "RSA-OAEP" => Oaep::new::<sha1::Sha1>(),
                    _ => Oaep::new::<Sha256>(),
                };
                let ek = public.encrypt(&mut OsRng, padding, cek).unwrap();
                (json!({ "alg": alg }), ek)
            }
            KeyMaterial::P256(k) => ecdh_recipient(&k.public_key(), "P-256", alg, cek),
            KeyMaterial::P384(k) => ecdh_recipient(&k.public_key(), "P-384", alg, cek),
            KeyMaterial::P521(k) => ecdh_recipient(&k.public_key(), "P-521", alg, cek),
        }
    }

    fn seal(enc: &str, cek: &[u8], iv: &[u8], aad: &[u8], buf: &mut [u8]) -> Vec<u8> {
        fn run<C: KeyInit + AeadInPlace<NonceSize = U12>>(
            k: &[u8],
            iv: &[u8],
            aad: &[u8],
            buf: &mut [u8],
        ) -> Vec<u8> {
            let c = C::new_from_slice(k).unwrap();
            c.encrypt_in_place_detached(GenericArray::from_slice(iv), aad, buf)
                .unwrap()
                .to_vec()
        }
        match enc {
            "A128GCM" => run::<AesGcm<Aes128, U12>>(cek, iv, aad, buf),
            "A192GCM" => run::<AesGcm<Aes192, U12>>(cek, iv, aad, buf),
            _ => run::<AesGcm<Aes256, U12>>(cek, iv, aad, buf),
        }
    }

    /// Builds a general-serialization JWE for `targets` (key, alg), with `enc` protected.
    fn build(targets: &[(&PrivateKey, &str)], enc: &str) -> Value {
        let cek: Vec<u8> = (0..Enc::parse(enc).unwrap().key_len() as u8).collect();
        let protected = e64(json!({ "enc": enc }).to_string().as_bytes());
        let iv = [7u8; 12];
        let mut ct = PLAINTEXT.to_vec();
        let tag = seal(enc, &cek, &iv, protected.as_bytes(), &mut ct);
        let recipients: Vec<Value> = targets
            .iter()
            .map(|(key, alg)| {
                let (header, ek) = recipient(key, alg, &cek);
                json!({ "header": header, "encrypted_key": e64(&ek) })
            })
            .collect();
        json!({
            "protected": protected,
            "recipients": recipients,
            "iv": e64(&iv),
            "ciphertext": e64(&ct),
            "tag": e64(&tag),
        })
    }

    /// Builds a flattened JWE with the recipient header moved into the protected one, as
    /// go-jose does for a single recipient, plus an `aad` member.
    fn build_flattened(key: &PrivateKey, alg: &str, enc: &str) -> Value {
        let cek: Vec<u8> = (100..100 + Enc::parse(enc).unwrap().key_len() as u8).collect();
        let (mut header, ek) = recipient(key, alg, &cek);
        header["enc"] = json!(enc);
        let protected = e64(header.to_string().as_bytes());
        let aad = e64(b"extra");
        let iv = [9u8; 12];
        let mut ct = PLAINTEXT.to_vec();
        let tag = seal(
            enc,
            &cek,
            &iv,
            format!("{protected}.{aad}").as_bytes(),
            &mut ct,
        );
        json!({
            "protected": protected,
            "encrypted_key": e64(&ek),
            "aad": aad,
            "iv": e64(&iv),
            "ciphertext": e64(&ct),
            "tag": e64(&tag),
        })
    }

    fn open(jwe: &Value, keys: &[PrivateKey]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        decrypt(jwe.to_string().as_bytes(), keys)
    }

    const ENCS: [&str; 3] = ["A128GCM", "A192GCM", "A256GCM"];
    const ECDH_ALGS: [&str; 3] = ["ECDH-ES+A128KW", "ECDH-ES+A192KW", "ECDH-ES+A256KW"];

    #[test]
    fn rsa_oaep_all_encs() {
        let key = rsa_key(0);
        for alg in ["RSA-OAEP", "RSA-OAEP-256"] {
            for enc in ENCS {
                let keys = std::slice::from_ref(&key);
                assert_eq!(
                    &*open(&build(&[(&key, alg)], enc), keys).unwrap(),
                    PLAINTEXT,
                    "{alg} {enc}"
                );
                assert_eq!(
                    &*open(&build_flattened(&key, alg, enc), keys).unwrap(),
                    PLAINTEXT,
                    "{alg} {enc}"
                );
            }
        }
    }

    #[test]
    fn ecdh_es_all_curves_algs_encs() {
        for crv in ["P-256", "P-384", "P-521"] {
            let key = ec_key(crv);
            let keys = std::slice::from_ref(&key);
            for alg in ECDH_ALGS {
                for enc in ENCS {
                    assert_eq!(
                        &*open(&build(&[(&key, alg)], enc), keys).unwrap(),
                        PLAINTEXT,
                        "{crv} {alg} {enc}"
                    );
                    let flat = build_flattened(&key, alg, enc);
                    assert_eq!(&*open(&flat, keys).unwrap(), PLAINTEXT, "{crv} {alg} {enc}");
                }
            }
        }
    }

    #[test]
    fn only_second_recipient_opens() {
        let (other_ec, ec, rsa) = (ec_key("P-256"), ec_key("P-256"), rsa_key(0));
        let jwe = build(
            &[(&other_ec, "ECDH-ES+A256KW"), (&ec, "ECDH-ES+A128KW")],
            "A256GCM",
        );
        assert_eq!(&*open(&jwe, &[rsa_key(1), ec]).unwrap(), PLAINTEXT);
        let jwe = build(
            &[(&other_ec, "ECDH-ES+A256KW"), (&rsa, "RSA-OAEP")],
            "A128GCM",
        );
        assert_eq!(&*open(&jwe, &[ec_key("P-384"), rsa]).unwrap(), PLAINTEXT);
    }

    #[test]
    fn wrong_key_is_an_error() {
        let jwe = build(
            &[
                (&rsa_key(0), "RSA-OAEP"),
                (&ec_key("P-256"), "ECDH-ES+A256KW"),
            ],
            "A256GCM",
        );
        let err = open(&jwe, &[rsa_key(1), ec_key("P-256"), ec_key("P-521")]).unwrap_err();
        assert!(
            matches!(
                err,
                JweError::NoMatchingKey {
                    keys: 3,
                    recipients: 2
                }
            ),
            "{err:?}"
        );
        assert!(matches!(
            open(&jwe, &[]),
            Err(JweError::NoMatchingKey { keys: 0, .. })
        ));
    }

    #[test]
    fn tampering_is_detected() {
        let key = ec_key("P-384");
        let keys = std::slice::from_ref(&key);
        let good = build_flattened(&key, "ECDH-ES+A192KW", "A256GCM");
        let flip = |field: &str| {
            let mut jwe = good.clone();
            let mut bytes = URL_SAFE_NO_PAD
                .decode(jwe[field].as_str().unwrap())
                .unwrap();
            bytes[0] ^= 1;
            jwe[field] = json!(e64(&bytes));
            jwe
        };
        for field in ["ciphertext", "tag", "aad", "iv"] {
            let err = open(&flip(field), keys).unwrap_err();
            assert!(
                matches!(err, JweError::ContentAuthentication),
                "{field}: {err:?}"
            );
        }
        // A protected header that still parses but differs: authentication must fail.
        let mut jwe = good.clone();
        let header = URL_SAFE_NO_PAD
            .decode(jwe["protected"].as_str().unwrap())
            .unwrap();
        let mut header: Value = serde_json::from_slice(&header).unwrap();
        header["kid"] = json!("x");
        jwe["protected"] = json!(e64(header.to_string().as_bytes()));
        assert!(matches!(
            open(&jwe, keys),
            Err(JweError::ContentAuthentication)
        ));
        // A flipped encrypted key fails the AES-KW integrity check.
        let err = open(&flip("encrypted_key"), keys).unwrap_err();
        assert!(matches!(err, JweError::NoMatchingKey { .. }), "{err:?}");
    }

    #[test]
    fn malformed_and_unsupported_inputs_are_errors() {
        let key = rsa_key(0);
        let keys = std::slice::from_ref(&key);
        let good = build(&[(&key, "RSA-OAEP")], "A128GCM");
        assert!(matches!(decrypt(b"not json", keys), Err(JweError::Json(_))));
        assert!(matches!(decrypt(b"[]", keys), Err(JweError::Json(_))));
        let mut missing = good.clone();
        missing.as_object_mut().unwrap().remove("iv");
        assert!(matches!(open(&missing, keys), Err(JweError::Json(_))));
        let cases: [(&str, Value); 6] = [
            ("/iv", json!("!!")),
            ("/iv", json!(e64(&[0; 8]))),
            ("/tag", json!(e64(&[0; 15]))),
            ("/protected", json!("e30!")),
            ("/protected", json!(e64(b"[1]"))),
            ("/recipients/0/encrypted_key", json!("%%")),
        ];
        for (path, value) in cases {
            let mut jwe = good.clone();
            *jwe.pointer_mut(path).unwrap() = value;
            let err = open(&jwe, keys).unwrap_err();
            assert!(matches!(err, JweError::Malformed(_)), "{path}: {err:?}");
        }
        let with_header = |pointer: &str, value: Value| {
            let mut jwe = good.clone();
            jwe.pointer_mut("/recipients/0/header").unwrap()[pointer] = value;
            open(&jwe, keys).unwrap_err()
        };
        assert!(
            matches!(with_header("alg", json!("dir")), JweError::UnsupportedAlg(a) if a == "dir")
        );
        assert!(matches!(
            with_header("alg", json!(1)),
            JweError::Malformed(_)
        ));
        assert!(matches!(
            with_header("enc", json!("A128GCM")),
            JweError::Malformed(_)
        ));
        assert!(matches!(
            with_header("zip", json!("DEF")),
            JweError::UnsupportedHeader("zip")
        ));
        let mut jwe = good.clone();
        jwe["protected"] = json!(e64(br#"{"enc":"A128CBC-HS256"}"#));
        assert!(
            matches!(open(&jwe, keys), Err(JweError::UnsupportedEnc(e)) if e == "A128CBC-HS256")
        );
        let ec = ec_key("P-256");
        let mut jwe = build(&[(&ec, "ECDH-ES+A128KW")], "A128GCM");
        jwe["recipients"][0]["header"]["epk"]["x"] = json!(e64(&[1; 32]));
        let err = open(&jwe, std::slice::from_ref(&ec)).unwrap_err();
        assert!(matches!(err, JweError::Malformed(_)), "{err:?}");
    }

    #[test]
    fn truncated_and_mutated_inputs_never_panic() {
        let key = ec_key("P-256");
        let keys = std::slice::from_ref(&key);
        let jwe = build_flattened(&key, "ECDH-ES+A256KW", "A256GCM")
            .to_string()
            .into_bytes();
        for len in 0..jwe.len() {
            assert!(decrypt(&jwe[..len], keys).is_err());
        }
        for i in 0..jwe.len() {
            for delta in [1u8, 0x20, 0x80] {
                let mut bad = jwe.clone();
                bad[i] ^= delta;
                let _ = decrypt(&bad, keys);
            }
        }
    }
}
