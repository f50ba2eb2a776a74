use super::alg::Enc;
use super::keys::KeyMaterial;
use super::*;
use aes_gcm::aead::consts::U12;
use aes_gcm::aead::generic_array::GenericArray;
use aes_gcm::aead::{AeadInPlace, KeyInit};
use aes_gcm::aes::{Aes128, Aes192, Aes256};
use aes_gcm::AesGcm;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use p256::elliptic_curve::ecdh::diffie_hellman;
use p256::elliptic_curve::sec1::{FromEncodedPoint, ModulusSize, ToEncodedPoint};
use p256::elliptic_curve::{AffinePoint, CurveArithmetic, FieldBytesSize, PublicKey, SecretKey};
use rand_core::OsRng;
use rsa::pkcs8::EncodePrivateKey;
use serde_json::json;
use serde_json::Value;
use sha2::{Digest, Sha256};
use std::process::Command;
use std::sync::OnceLock;

const PLAINTEXT: &[u8] = br#"{"symkey":"c2VjcmV0","cipheroptions":{"nonce":"AAAA"}}"#;

fn e64(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Runs openssl in `dir`; its standard output. Shared with the key tests.
pub(super) fn openssl(dir: &std::path::Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("openssl")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run openssl");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "openssl {args:?} failed: {stderr}");
    out.stdout
}

/// RSA-2048 keys made by openssl, as PEM.
fn rsa_key(i: usize) -> PrivateKey {
    static KEYS: OnceLock<Vec<Vec<u8>>> = OnceLock::new();
    let keys = KEYS.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        (0..2)
            .map(|_| openssl(dir.path(), &["genrsa", "2048"]))
            .collect()
    });
    PrivateKey::from_bytes(&keys[i]).unwrap()
}

/// `cek` wrapped for `key` by openssl (not by the rsa crate that unwraps it), with OAEP over
/// SHA-1 (`RSA-OAEP`) or SHA-256 (`RSA-OAEP-256`, MGF1 with SHA-256 too, as RFC 7518 says).
fn openssl_oaep(key: &rsa::PrivateKey, alg: &str, cek: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    let pem = key.to_pkcs8_pem(Default::default()).unwrap();
    std::fs::write(dir.path().join("k.pem"), pem.as_bytes()).unwrap();
    std::fs::write(dir.path().join("cek"), cek).unwrap();
    let md = if alg == "RSA-OAEP" { "sha1" } else { "sha256" };
    let (oaep_md, mgf1_md) = (format!("rsa_oaep_md:{md}"), format!("rsa_mgf1_md:{md}"));
    let args = ["pkeyutl", "-encrypt", "-inkey", "k.pem", "-in", "cek"];
    let opts = ["-pkeyopt", "rsa_padding_mode:oaep", "-pkeyopt", &oaep_md];
    openssl(
        dir.path(),
        &[&args[..], &opts[..], &["-pkeyopt", &mgf1_md]].concat(),
    )
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

fn ecdh_recipient<C>(public: &PublicKey<C>, crv: &str, alg: &str, cek: &[u8]) -> (Value, Vec<u8>)
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
        KeyMaterial::Rsa(k) => (json!({ "alg": alg }), openssl_oaep(k, alg, cek)),
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
    assert!(matches!(with_header("alg", json!("dir")), JweError::UnsupportedAlg(a) if a == "dir"));
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
    assert!(matches!(open(&jwe, keys), Err(JweError::UnsupportedEnc(e)) if e == "A128CBC-HS256"));
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
