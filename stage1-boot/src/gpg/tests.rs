//! Tests of simple-signing verification against messages and keys made by gpg.
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::OnceLock;

use super::*;

const PAYLOAD: &[u8] = br#"{"critical":{"identity":{"docker-reference":"example.com/app:1"},"image":{"docker-manifest-digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000"},"type":"atomic container signature"},"optional":{"creator":"encc test"}}"#;

/// Keys and messages made once by the `gpg` CLI; the GnuPG home and its agent are gone
/// by the time tests use them.
struct Fixture {
    rsa_fpr: String,
    rsa_key: Vec<u8>,
    rsa_key_armored: Vec<u8>,
    ed_fpr: String,
    ed_sub_fpr: String,
    ed_key: Vec<u8>,
    other_key: Vec<u8>,
    signed_default: Vec<u8>,
    signed_none: Vec<u8>,
    signed_zip: Vec<u8>,
    signed_zlib: Vec<u8>,
    signed_bzip2: Vec<u8>,
    signed_armored: Vec<u8>,
    signed_ed: Vec<u8>,
    signed_ed_sub: Vec<u8>,
    detached: Vec<u8>,
    clearsigned: Vec<u8>,
    encrypted: Vec<u8>,
    stored: Vec<u8>,
    /// A key that expired in 2020, and a message it signed while it was valid.
    expired_key: Vec<u8>,
    signed_expired: Vec<u8>,
    /// A key before and after its revocation certificate was imported, and a message
    /// it signed before.
    unrevoked_key: Vec<u8>,
    revoked_key: Vec<u8>,
    signed_revoked: Vec<u8>,
}

fn gpg(home: &Path, args: &[&str], stdin: &[u8]) -> Vec<u8> {
    let mut child = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args([
            "--batch",
            "--no-tty",
            "--pinentry-mode",
            "loopback",
            "--passphrase",
            "",
        ])
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    std::io::Write::write_all(&mut input, stdin).unwrap();
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// Generates a key and returns the fingerprints (primary first) of the new key.
fn gen_key(home: &Path, uid: &str, algo: &str, usage: &str) -> Vec<String> {
    gpg(home, &["--quick-gen-key", uid, algo, usage, "never"], b"");
    fingerprints(home, uid)
}

fn fingerprints(home: &Path, uid: &str) -> Vec<String> {
    let listing = gpg(home, &["--with-colons", "--list-keys", uid], b"");
    String::from_utf8(listing)
        .unwrap()
        .lines()
        .filter_map(|l| l.strip_prefix("fpr:"))
        .map(|l| l.trim_matches(':').to_owned())
        .collect()
}

fn fixture() -> &'static Fixture {
    static FIXTURE: OnceLock<Fixture> = OnceLock::new();
    FIXTURE.get_or_init(|| {
        let dir = tempfile::tempdir().unwrap();
        let home = dir.path();
        let fixture = make_fixture(home);
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", home)
            .args(["--kill", "gpg-agent"])
            .status();
        fixture
    })
}

fn make_fixture(home: &Path) -> Fixture {
    let rsa = gen_key(home, "encc test <t@example.com>", "default", "default");
    let ed = gen_key(home, "encc ed <ed@example.com>", "ed25519", "sign");
    let other = gen_key(home, "other <o@example.com>", "ed25519", "sign");
    gpg(
        home,
        &["--quick-add-key", &ed[0], "ed25519", "sign", "never"],
        b"",
    );
    let ed_sub = fingerprints(home, "ed@example.com")[1].clone();
    // gpg's own clock moved back to 2020: a key valid for one day, used while valid.
    let past = ["--faked-system-time", "20200101T000000!"];
    let mut args = past.to_vec();
    args.extend([
        "--quick-gen-key",
        "expired <x@example.com>",
        "ed25519",
        "sign",
        "1d",
    ]);
    gpg(home, &args, b"");
    let expired = fingerprints(home, "x@example.com")[0].clone();
    let expired_pinned = format!("{expired}!");
    let mut args = past.to_vec();
    args.extend(["--local-user", &expired_pinned, "--sign"]);
    let signed_expired = gpg(home, &args, PAYLOAD);
    // A key revoked with the revocation certificate gpg wrote when it made the key.
    let revoked = gen_key(home, "revoked <r@example.com>", "ed25519", "sign")[0].clone();
    let signed_revoked = gpg(
        home,
        &["--local-user", &format!("{revoked}!"), "--sign"],
        PAYLOAD,
    );
    let unrevoked_key = gpg(home, &["--export", &revoked], b"");
    let cert = std::fs::read_to_string(home.join(format!("openpgp-revocs.d/{revoked}.rev")))
        .unwrap()
        .replace(":-----BEGIN", "-----BEGIN");
    gpg(home, &["--import"], cert.as_bytes());
    let revoked_key = gpg(home, &["--export", &revoked], b"");
    let sign = |key: &str, extra: &[&str]| {
        let mut args = vec!["--local-user", key, "--sign"];
        args.extend_from_slice(extra);
        gpg(home, &args, PAYLOAD)
    };
    let rsa_pinned = format!("{}!", rsa[0]);
    let ed_pinned = format!("{}!", ed[0]);
    let sub_pinned = format!("{ed_sub}!");
    Fixture {
        rsa_key: gpg(home, &["--export", &rsa[0]], b""),
        rsa_key_armored: gpg(home, &["--export", "--armor", &rsa[0]], b""),
        ed_key: gpg(home, &["--export", &ed[0]], b""),
        other_key: gpg(home, &["--export", &other[0]], b""),
        signed_default: sign(&rsa_pinned, &[]),
        signed_none: sign(&rsa_pinned, &["--compress-algo", "none"]),
        signed_zip: sign(&rsa_pinned, &["--compress-algo", "zip"]),
        signed_zlib: sign(&rsa_pinned, &["--compress-algo", "zlib"]),
        signed_bzip2: sign(&rsa_pinned, &["--compress-algo", "bzip2"]),
        signed_armored: sign(&rsa_pinned, &["--armor"]),
        signed_ed: sign(&ed_pinned, &[]),
        signed_ed_sub: sign(&sub_pinned, &[]),
        detached: gpg(
            home,
            &["--local-user", &rsa_pinned, "--detach-sign"],
            PAYLOAD,
        ),
        clearsigned: gpg(home, &["--local-user", &rsa_pinned, "--clearsign"], PAYLOAD),
        encrypted: gpg(
            home,
            &[
                "--trust-model",
                "always",
                "--encrypt",
                "--recipient",
                &rsa[0],
            ],
            PAYLOAD,
        ),
        stored: gpg(home, &["--store"], PAYLOAD),
        expired_key: gpg(home, &["--export", &expired], b""),
        signed_expired,
        unrevoked_key,
        revoked_key,
        signed_revoked,
        rsa_fpr: rsa[0].clone(),
        ed_fpr: ed[0].clone(),
        ed_sub_fpr: ed_sub,
    }
}

#[test]
fn gpg_verifies_rsa_signed_messages() {
    let f = fixture();
    for (name, msg) in [
        ("default", &f.signed_default),
        ("none", &f.signed_none),
        ("zip", &f.signed_zip),
        ("zlib", &f.signed_zlib),
        ("armored", &f.signed_armored),
    ] {
        for keyring in [&f.rsa_key, &f.rsa_key_armored] {
            let verified = verify_signed_message(msg, keyring)
                .unwrap_or_else(|e| panic!("{name}: {e} ({e:?})"));
            assert_eq!(verified.payload, PAYLOAD, "{name}");
            assert_eq!(verified.signer, f.rsa_fpr, "{name}");
        }
    }
}

#[test]
fn gpg_verifies_ed25519_primary_and_subkey() {
    let f = fixture();
    let verified = verify_signed_message(&f.signed_ed, &f.ed_key).unwrap();
    assert_eq!(verified.payload, PAYLOAD);
    assert_eq!(verified.signer, f.ed_fpr);
    let verified = verify_signed_message(&f.signed_ed_sub, &f.ed_key).unwrap();
    assert_eq!(verified.payload, PAYLOAD);
    assert_eq!(verified.signer, f.ed_sub_fpr);
}

#[test]
fn gpg_keyring_with_several_keys() {
    let f = fixture();
    let keyring = [f.other_key.as_slice(), &f.ed_key, &f.rsa_key].concat();
    assert_eq!(
        verify_signed_message(&f.signed_default, &keyring)
            .unwrap()
            .signer,
        f.rsa_fpr
    );
    assert_eq!(
        verify_signed_message(&f.signed_ed_sub, &keyring)
            .unwrap()
            .signer,
        f.ed_sub_fpr
    );
}

#[test]
fn gpg_unknown_signer() {
    let f = fixture();
    match verify_signed_message(&f.signed_default, &f.other_key) {
        Err(GpgError::UnknownSigner { key_id }) => assert_eq!(key_id, f.rsa_fpr),
        other => panic!("expected UnknownSigner, got {other:?}"),
    }
    match verify_signed_message(&f.signed_ed, &f.rsa_key) {
        Err(GpgError::UnknownSigner { key_id }) => assert_eq!(key_id, f.ed_fpr),
        other => panic!("expected UnknownSigner, got {other:?}"),
    }
}

#[test]
fn gpg_tampered_payload_is_a_bad_signature() {
    let f = fixture();
    let mut msg = f.signed_none.clone();
    let at = msg
        .windows(PAYLOAD.len())
        .position(|w| w == PAYLOAD)
        .unwrap();
    msg[at + 20] ^= 0x01;
    let err = verify_signed_message(&msg, &f.rsa_key).unwrap_err();
    assert!(matches!(err, GpgError::BadSignature { .. }), "{err:?}");
    assert!(err.to_string().contains(&f.rsa_fpr), "{err}");
}

#[test]
fn gpg_flipped_bytes_never_panic_nor_change_the_payload() {
    let f = fixture();
    for msg in [&f.signed_none, &f.signed_default, &f.signed_ed] {
        for at in 0..msg.len() {
            let mut flipped = msg.clone();
            flipped[at] ^= 0x40;
            // Bytes outside the signed data (literal file name and date, unhashed
            // subpackets) may change without invalidating the signature.
            if let Ok(v) =
                verify_signed_message(&flipped, &[f.rsa_key.as_slice(), &f.ed_key].concat())
            {
                assert_eq!(v.payload, PAYLOAD, "flip at {at}");
            }
        }
        for len in 0..msg.len() {
            assert!(
                verify_signed_message(&msg[..len], &f.rsa_key).is_err(),
                "truncated to {len}"
            );
        }
    }
    let last = f.signed_none.len() - 1;
    let mut msg = f.signed_none.clone();
    msg[last] ^= 0x01;
    assert!(verify_signed_message(&msg, &f.rsa_key).is_err());
}

#[test]
fn gpg_rejects_garbage_and_other_shapes() {
    let f = fixture();
    for garbage in [&b""[..], b"not a pgp message", &[0xff; 64], &f.rsa_key] {
        let err = verify_signed_message(garbage, &f.rsa_key).unwrap_err();
        assert!(!matches!(err, GpgError::BadSignature { .. }), "{err:?}");
    }
    let err = verify_signed_message(&f.detached, &f.rsa_key).unwrap_err();
    assert!(matches!(err, GpgError::Malformed(_)), "detached: {err:?}");
    let err = verify_signed_message(&f.clearsigned, &f.rsa_key).unwrap_err();
    assert!(
        matches!(err, GpgError::Malformed(_)),
        "clearsigned: {err:?}"
    );
    let err = verify_signed_message(&f.encrypted, &f.rsa_key).unwrap_err();
    assert!(
        matches!(err, GpgError::Unsupported(_)),
        "encrypted: {err:?}"
    );
    let err = verify_signed_message(&f.stored, &f.rsa_key).unwrap_err();
    assert!(matches!(err, GpgError::NoSignature), "stored: {err:?}");
    let err = verify_signed_message(&f.signed_default, b"garbage").unwrap_err();
    assert!(
        matches!(err, GpgError::Keyring(_) | GpgError::EmptyKeyring),
        "{err:?}"
    );
}

#[test]
fn gpg_bzip2_is_an_error() {
    let f = fixture();
    let err = verify_signed_message(&f.signed_bzip2, &f.rsa_key).unwrap_err();
    assert!(matches!(err, GpgError::Decompress(_)), "{err:?}");
}

#[test]
fn gpg_refuses_expired_and_revoked_keys() {
    let f = fixture();
    match verify_signed_message(&f.signed_expired, &f.expired_key) {
        Err(GpgError::UnusableKey { reason, .. }) => {
            assert!(reason.contains("expired"), "{reason}")
        }
        other => panic!("expired key accepted: {other:?}"),
    }
    // The same signature verifies with the key as it was before its revocation ...
    assert_eq!(
        verify_signed_message(&f.signed_revoked, &f.unrevoked_key)
            .unwrap()
            .payload,
        PAYLOAD
    );
    // ... and not once the keyring carries the revocation.
    let err = verify_signed_message(&f.signed_revoked, &f.revoked_key).unwrap_err();
    assert!(
        matches!(&err, GpgError::UnusableKey { reason, .. } if reason == "revoked"),
        "{err:?}"
    );
    assert!(err.to_string().contains("which is revoked"), "{err}");
}
