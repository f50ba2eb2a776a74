//! Layer keys from the provider annotation; authenticated decryption.

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

fn key_for(ciphertext: &[u8], symkey: [u8; 32], nonce: [u8; 16]) -> LayerKey {
    let mut mac = <Hmac<Sha256> as Mac>::new_from_slice(&symkey).unwrap();
    mac.update(ciphertext);
    LayerKey {
        symkey: Zeroizing::new(symkey),
        nonce,
        hmac: mac.finalize().into_bytes().to_vec(),
        plain_digest: Digest::of(b""),
    }
}

#[test]
fn decrypts_only_authenticated_ciphertext() {
    let (symkey, nonce) = ([5u8; 32], [6u8; 16]);
    let plain: Vec<u8> = (0..5000u32).map(|i| (i % 251) as u8).collect();
    let mut ciphertext = plain.clone();
    Aes256Ctr::new(&symkey.into(), &nonce.into()).apply_keystream(&mut ciphertext);
    let key = key_for(&ciphertext, symkey, nonce);
    let mut auth = Authenticator::new(&key);
    for chunk in ciphertext.chunks(777) {
        auth.update(chunk);
    }
    let mut out = Vec::new();
    Decryptor::new(ciphertext.as_slice(), &key, auth)
        .unwrap()
        .read_to_end(&mut out)
        .unwrap();
    assert_eq!(out, plain);

    for at in [0, 2500, 4999] {
        let mut flipped = ciphertext.clone();
        flipped[at] ^= 0x10;
        let mut auth = Authenticator::new(&key);
        auth.update(&flipped);
        assert!(Decryptor::new(flipped.as_slice(), &key, auth).is_none());
    }
    let mut auth = Authenticator::new(&key);
    auth.update(&ciphertext[..4000]);
    assert!(!auth.verify(), "a truncated ciphertext fails");
}
