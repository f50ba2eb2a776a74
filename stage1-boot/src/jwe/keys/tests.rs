use super::*;
use rsa::traits::PrivateKeyParts;

fn openssl(dir: &Path, args: &[&str]) {
    crate::jwe::tests::openssl(dir, args);
}

/// Converts the key in `input` to unencrypted PKCS#8, as `pkcs8.pem` and `pkcs8.der`.
fn to_pkcs8(dir: &Path, input: &str) {
    for (form, out) in [("PEM", "pkcs8.pem"), ("DER", "pkcs8.der")] {
        openssl(
            dir,
            &[
                "pkcs8", "-topk8", "-nocrypt", "-in", input, "-outform", form, "-out", out,
            ],
        );
    }
}

fn load(dir: &Path, name: &str) -> PrivateKey {
    PrivateKey::from_file(dir.join(name)).unwrap_or_else(|e| panic!("{name}: {e:?}"))
}

#[test]
fn loads_rsa_pem_and_der_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, &["genrsa", "-traditional", "-out", "pkcs1.pem", "2048"]);
    to_pkcs8(d, "pkcs1.pem");
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "pkcs1.pem",
            "-traditional",
            "-outform",
            "DER",
            "-out",
            "pkcs1.der",
        ],
    );
    for name in ["pkcs1.pem", "pkcs8.pem", "pkcs8.der", "pkcs1.der"] {
        assert_eq!(load(d, name).kind(), "RSA-2048", "{name}");
    }
    assert!(std::fs::read_to_string(d.join("pkcs1.pem"))
        .unwrap()
        .contains("BEGIN RSA PRIVATE KEY"));
}

#[test]
fn loads_ec_pem_and_der_formats() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    for (curve, kind) in [
        ("prime256v1", "EC P-256"),
        ("secp384r1", "EC P-384"),
        ("secp521r1", "EC P-521"),
    ] {
        // Without -noout, ecparam writes an EC PARAMETERS block before the key.
        openssl(
            d,
            &["ecparam", "-genkey", "-name", curve, "-out", "sec1.pem"],
        );
        to_pkcs8(d, "sec1.pem");
        openssl(
            d,
            &[
                "ec", "-in", "sec1.pem", "-outform", "DER", "-out", "sec1.der",
            ],
        );
        let sec1 = std::fs::read_to_string(d.join("sec1.pem")).unwrap();
        assert!(sec1.contains("BEGIN EC PARAMETERS") && sec1.contains("BEGIN EC PRIVATE KEY"));
        for name in ["sec1.pem", "pkcs8.pem", "pkcs8.der", "sec1.der"] {
            assert_eq!(load(d, name).kind(), kind, "{curve} {name}");
        }
    }
}

#[test]
fn refuses_encrypted_keys() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    openssl(d, &["genrsa", "-out", "k.pem", "2048"]);
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-in", "k.pem", "-passout", "pass:pw", "-out", "enc.pem",
        ],
    );
    openssl(
        d,
        &[
            "pkcs8", "-topk8", "-in", "k.pem", "-passout", "pass:pw", "-outform", "DER", "-out",
            "enc.der",
        ],
    );
    openssl(
        d,
        &[
            "rsa",
            "-in",
            "k.pem",
            "-traditional",
            "-aes128",
            "-passout",
            "pass:pw",
            "-out",
            "legacy.pem",
        ],
    );
    for name in ["enc.pem", "enc.der", "legacy.pem"] {
        let err = PrivateKey::from_bytes(&std::fs::read(d.join(name)).unwrap()).unwrap_err();
        assert!(matches!(err, KeyError::Encrypted), "{name}: {err:?}");
    }
    let err = PrivateKey::from_file(d.join("enc.pem")).unwrap_err();
    assert!(err.to_string().contains("enc.pem"), "{err}");
}

#[test]
fn loads_jwks() {
    let dir = tempfile::tempdir().unwrap();
    openssl(dir.path(), &["genrsa", "-out", "k.pem", "2048"]);
    let rsa = rsa::PrivateKey::from_pkcs8_pem(
        &String::from_utf8(std::fs::read(dir.path().join("k.pem")).unwrap()).unwrap(),
    )
    .unwrap();
    // Big-endian without leading zero bytes, as JWK writes integers.
    let b = |x: &BoxedUint| {
        let bytes = x.to_be_bytes();
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        B64URL.encode(&bytes[start..])
    };
    let primes = rsa.primes();
    let jwk = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}","d":"{}","p":"{}","q":"{}"}}"#,
        b(rsa.n()),
        b(rsa.e()),
        b(rsa.d()),
        b(primes[0].as_ref()),
        b(primes[1].as_ref())
    );
    assert_eq!(
        PrivateKey::from_bytes(jwk.as_bytes()).unwrap().kind(),
        "RSA-2048"
    );
    let without_primes = format!(
        r#"{{"kty":"RSA","n":"{}","e":"{}","d":"{}"}}"#,
        b(rsa.n()),
        b(rsa.e()),
        b(rsa.d())
    );
    assert_eq!(
        PrivateKey::from_bytes(without_primes.as_bytes())
            .unwrap()
            .kind(),
        "RSA-2048"
    );

    let ec = p384::SecretKey::random(&mut rand_core::OsRng);
    let jwk = format!(
        r#" {{"kty":"EC","crv":"P-384","d":"{}"}}"#,
        B64URL.encode(ec.to_bytes())
    );
    assert_eq!(
        PrivateKey::from_bytes(jwk.as_bytes()).unwrap().kind(),
        "EC P-384"
    );

    let public_only = r#"{"kty":"EC","crv":"P-256","x":"AA","y":"AA"}"#;
    assert!(matches!(
        PrivateKey::from_bytes(public_only.as_bytes()),
        Err(KeyError::Jwk(_))
    ));
    let okp = r#"{"kty":"OKP","crv":"X25519","d":"AA"}"#;
    assert!(matches!(
        PrivateKey::from_bytes(okp.as_bytes()),
        Err(KeyError::UnsupportedJwk { .. })
    ));
}

#[test]
fn garbage_is_an_error_and_debug_is_redacted() {
    for input in [
        &b""[..],
        b"\x30",
        b"\x30\x82",
        b"not a key",
        b"{",
        b"-----BEGIN PRIVATE KEY-----\n!!\n-----END PRIVATE KEY-----\n",
    ] {
        assert!(PrivateKey::from_bytes(input).is_err(), "{input:?}");
    }
    let key = PrivateKey::new(KeyMaterial::P256(p256::SecretKey::random(
        &mut rand_core::OsRng,
    )));
    let shown = format!("{key:?}");
    assert_eq!(shown, "PrivateKey { kind: \"EC P-256\", .. }");
}
