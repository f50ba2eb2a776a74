//! The ephemeral TEE key pair of one attestation: an EC P-256 key whose public half goes
//! to the KBS as the `tee-pubkey` JWK (bound into the evidence) and whose private half
//! opens the KBS's resource responses (`ECDH-ES+A256KW`, `A256GCM`). It never leaves
//! memory and is zeroized on drop.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use kbs_types::TeePubKey;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use serde_json::{json, Value};
use zeroize::Zeroizing;

use crate::jwe::{self, JweError, PrivateKey};

/// The key agreement the KBS is asked to use (the JWK's `alg`).
pub const KEY_ALGORITHM: &str = "ECDH-ES+A256KW";

/// An ephemeral P-256 key pair. `Debug` shows only the public key.
pub struct TeeKey {
    private: PrivateKey,
    jwk: Value,
    /// The same key as `kbs-types` carries it in the runtime data.
    pubkey: TeePubKey,
}

impl std::fmt::Debug for TeeKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "TeeKey({})", self.jwk)
    }
}

impl TeeKey {
    /// A fresh key from the operating system's random source; `None` if that fails.
    pub fn generate() -> Option<Self> {
        // A random 32-byte string is a valid scalar except with probability ~2^-32.
        for _ in 0..8 {
            let mut bytes = Zeroizing::new([0u8; 32]);
            getrandom::fill(bytes.as_mut_slice()).ok()?;
            if let Ok(secret) = p256::SecretKey::from_slice(bytes.as_slice()) {
                return Some(Self::from_secret(secret));
            }
        }
        None
    }

    fn from_secret(secret: p256::SecretKey) -> Self {
        let point = secret.public_key().to_encoded_point(false);
        let coordinate =
            |c: Option<&p256::FieldBytes>| c.map(|c| URL_SAFE_NO_PAD.encode(c)).unwrap_or_default();
        let (x, y) = (coordinate(point.x()), coordinate(point.y()));
        let jwk = json!({"kty": "EC", "crv": "P-256", "alg": KEY_ALGORITHM, "x": x, "y": y});
        let pubkey = TeePubKey::EC {
            crv: "P-256".into(),
            alg: KEY_ALGORITHM.into(),
            x,
            y,
        };
        Self {
            private: PrivateKey::from_p256(secret),
            jwk,
            pubkey,
        }
    }

    /// The public key as the `tee-pubkey` JWK.
    pub fn public_jwk(&self) -> &Value {
        &self.jwk
    }

    /// The public key as `kbs-types`' `tee-pubkey`.
    pub fn tee_pubkey(&self) -> &TeePubKey {
        &self.pubkey
    }

    /// Opens a resource response sent to this key.
    pub fn open(&self, response: &[u8]) -> Result<Zeroizing<Vec<u8>>, JweError> {
        jwe::decrypt_kbs_response(response, &self.private)
    }
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use aes_gcm::aead::{AeadInPlace, KeyInit};
    use aes_gcm::Aes256Gcm;
    use p256::elliptic_curve::ecdh::diffie_hellman;
    use rand_core::OsRng;
    use sha2::{Digest, Sha256};

    /// Seals `payload` to `jwk` as trustee does: ECDH-ES+A256KW with the epk in the
    /// protected header, A256GCM over ASCII(protected), `aad` repeating the header.
    pub(crate) fn seal_to(jwk: &Value, payload: &[u8]) -> Vec<u8> {
        let b = |s: &str| URL_SAFE_NO_PAD.decode(s).unwrap();
        let mut sec1 = vec![4u8];
        sec1.extend(b(jwk["x"].as_str().unwrap()));
        sec1.extend(b(jwk["y"].as_str().unwrap()));
        let public = p256::PublicKey::from_sec1_bytes(&sec1).unwrap();
        let eph = p256::SecretKey::random(&mut OsRng);
        let z = diffie_hellman(eph.to_nonzero_scalar(), public.as_affine());
        let mut info = vec![0, 0, 0, 1];
        info.extend_from_slice(z.raw_secret_bytes());
        for part in [KEY_ALGORITHM.as_bytes(), b"", b""] {
            info.extend_from_slice(&(part.len() as u32).to_be_bytes());
            info.extend_from_slice(part);
        }
        info.extend_from_slice(&256u32.to_be_bytes());
        let kek: [u8; 32] = Sha256::digest(&info).into();
        let cek = [0x42u8; 32];
        let wrapped = aes_kw::KekAes256::from(kek).wrap_vec(&cek).unwrap();
        let point = eph.public_key().to_encoded_point(false);
        let protected = json!({
            "alg": KEY_ALGORITHM,
            "enc": "A256GCM",
            "epk": {"kty": "EC", "crv": "P-256",
                    "x": URL_SAFE_NO_PAD.encode(point.x().unwrap()),
                    "y": URL_SAFE_NO_PAD.encode(point.y().unwrap())},
        });
        let protected = URL_SAFE_NO_PAD.encode(protected.to_string());
        let iv = [3u8; 12];
        let mut ct = payload.to_vec();
        let tag = Aes256Gcm::new_from_slice(&cek)
            .unwrap()
            .encrypt_in_place_detached((&iv).into(), protected.as_bytes(), &mut ct)
            .unwrap();
        json!({
            "protected": protected,
            "encrypted_key": URL_SAFE_NO_PAD.encode(wrapped),
            "aad": protected,
            "iv": URL_SAFE_NO_PAD.encode(iv),
            "ciphertext": URL_SAFE_NO_PAD.encode(ct),
            "tag": URL_SAFE_NO_PAD.encode(tag),
        })
        .to_string()
        .into_bytes()
    }

    #[test]
    fn jwk_is_a_p256_ecdh_key() {
        let key = TeeKey::generate().unwrap();
        let jwk = key.public_jwk();
        assert_eq!(jwk["kty"], "EC");
        assert_eq!(jwk["crv"], "P-256");
        assert_eq!(jwk["alg"], "ECDH-ES+A256KW");
        assert_eq!(
            URL_SAFE_NO_PAD
                .decode(jwk["x"].as_str().unwrap())
                .unwrap()
                .len(),
            32
        );
        assert!(!format!("{key:?}").contains("\"d\""));
        assert_ne!(TeeKey::generate().unwrap().public_jwk(), jwk);
    }

    #[test]
    fn opens_responses_sealed_to_it_only() {
        let key = TeeKey::generate().unwrap();
        let sealed = seal_to(key.public_jwk(), b"the resource");
        assert_eq!(&*key.open(&sealed).unwrap(), b"the resource");
        let other = TeeKey::generate().unwrap();
        assert!(other.open(&sealed).is_err());
        // Tampered ciphertext or header fails authentication.
        let mut v: Value = serde_json::from_slice(&sealed).unwrap();
        let mut ct = URL_SAFE_NO_PAD
            .decode(v["ciphertext"].as_str().unwrap())
            .unwrap();
        ct[0] ^= 1;
        v["ciphertext"] = json!(URL_SAFE_NO_PAD.encode(ct));
        assert!(matches!(
            key.open(v.to_string().as_bytes()),
            Err(JweError::ContentAuthentication)
        ));
        // A general-serialization JWE is not a KBS response.
        let mut v: Value = serde_json::from_slice(&sealed).unwrap();
        v["recipients"] = json!([]);
        assert!(key.open(v.to_string().as_bytes()).is_err());
        for len in 0..sealed.len() {
            assert!(key.open(&sealed[..len]).is_err());
        }
    }
}
