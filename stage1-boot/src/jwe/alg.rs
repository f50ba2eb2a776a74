//! Key management (RSA-OAEP, ECDH-ES with AES key wrap) and content decryption (AES-GCM).

use aes_gcm::aead::consts::{U12, U16};
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::AesGcm;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use rsa::Oaep;
use serde::Deserialize;
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use super::keys::{KeyMaterial, PrivateKey};
use super::serial::{b64, Content, Header};
use super::JweError;

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
pub(super) enum Enc {
    A128,
    A192,
    A256,
}

impl Enc {
    pub(super) fn parse(enc: &str) -> Result<Self, JweError> {
        Ok(match enc {
            "A128GCM" => Self::A128,
            "A192GCM" => Self::A192,
            "A256GCM" => Self::A256,
            other => return Err(JweError::UnsupportedEnc(other.to_owned())),
        })
    }

    pub(super) fn key_len(self) -> usize {
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

pub(super) enum Opened {
    Plaintext(Zeroizing<Vec<u8>>),
    AuthFailed,
    NoKey,
}

pub(super) fn open_recipient(
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
            Ok(rsa_oaep(rsa, Oaep::<sha1::Sha1>::new(), encrypted_key))
        }
        (KeyAlg::RsaOaep256, KeyMaterial::Rsa(rsa)) => Ok(rsa_oaep(
            rsa,
            Oaep::<rsa::sha2::Sha256>::new(),
            encrypted_key,
        )),
        (KeyAlg::EcdhEsKw(kek_len), _) => {
            let epk = header
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

/// RSA-OAEP decryption with rsa 0.10: constant-time modular exponentiation (crypto-bigint),
/// base, exponent and modulus blinding from the system RNG, and a constant-time OAEP padding
/// check (RUSTSEC-2023-0071, the Marvin timing attack, was rsa 0.9's variable-time path).
fn rsa_oaep<D>(
    key: &rsa::PrivateKey,
    padding: Oaep<D>,
    encrypted_key: &[u8],
) -> Option<Zeroizing<Vec<u8>>>
where
    D: rsa::sha2::Digest + rsa::sha2::digest::FixedOutputReset,
{
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
