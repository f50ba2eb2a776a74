//! Verification of containers "simple signing" signatures: the OpenPGP signed messages that
//! `skopeo copy --sign-by FINGERPRINT` writes (as `gpg --sign` does: a one-pass-signed literal
//! data packet, usually inside a ZIP/ZLIB compressed data packet) whose literal data is the JSON
//! payload.
//!
//! [`verify_signed_message`] returns the payload only once a signature in the message verifies
//! with a key of the trusted keyring (a primary key, or a signing subkey whose binding to its
//! primary key verifies). Interpreting the payload is the caller's job.

use std::io::Read;

use pgp::composed::{Deserializable, Message, SignedPublicKey};
use pgp::packet::{Signature, SignatureType};
use pgp::types::{KeyDetails, VerifyingKey};

/// Largest payload accepted (simple-signing payloads are a few hundred bytes); bounds the memory
/// a compressed message can make us allocate.
const MAX_PAYLOAD: u64 = 4 << 20;

/// Compressed data packets nested deeper than this are refused.
const MAX_COMPRESSION_NESTING: usize = 4;

/// A verified signed message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// The literal data of the message (for simple signing, the JSON payload).
    pub payload: Vec<u8>,
    /// Upper-case hex fingerprint of the key (primary key or subkey) that verified the signature.
    pub signer: String,
}

/// Errors of [`verify_signed_message`].
#[derive(Debug, thiserror::Error)]
pub enum GpgError {
    /// The keyring holds no public key that could be parsed.
    #[error("the trusted keyring contains no usable OpenPGP public key")]
    EmptyKeyring,
    /// The keyring could not be read at all (neither binary nor armored OpenPGP data).
    #[error("failed to parse the trusted keyring")]
    Keyring(#[source] pgp::errors::Error),
    /// The message is not a well-formed OpenPGP message (includes detached signatures, which
    /// carry no literal data).
    #[error("malformed OpenPGP signed message (no literal data, or invalid packets)")]
    Malformed(#[source] pgp::errors::Error),
    /// A compressed data packet could not be decompressed (ZIP and ZLIB are supported; BZip2
    /// is not).
    #[error("failed to decompress OpenPGP compressed data (ZIP and ZLIB are supported)")]
    Decompress(#[source] pgp::errors::Error),
    /// The message structure parsed, but its data could not be read (corrupt compressed data,
    /// truncated packets, trailing garbage).
    #[error("malformed OpenPGP signed message: failed to read its literal data")]
    ReadData(#[source] std::io::Error),
    /// The literal data exceeds [`MAX_PAYLOAD`] bytes.
    #[error("OpenPGP signed message payload exceeds {limit} bytes")]
    TooLarge {
        /// The limit in bytes.
        limit: u64,
    },
    /// The message is a plain literal data message without any signature.
    #[error("OpenPGP message carries no signature")]
    NoSignature,
    /// No signature was made by a key of the keyring.
    #[error("OpenPGP message is signed by key {key_id}, which is not in the trusted keyring")]
    UnknownSigner {
        /// Issuer of the (first) signature: fingerprint or key id in hex, `unknown` if the
        /// signature names no issuer.
        key_id: String,
    },
    /// A signature names a key of the keyring but does not verify with it.
    #[error("OpenPGP signature by key {key_id} does not verify")]
    BadSignature {
        /// Fingerprint of the keyring key that was tried.
        key_id: String,
        /// Why verification failed.
        #[source]
        source: pgp::errors::Error,
    },
    /// The message uses a feature that simple signing does not (e.g. encryption).
    #[error("unsupported OpenPGP message: {0}")]
    Unsupported(&'static str),
}

/// Verifies an OpenPGP signed message (binary or armored) against `keyring` (the output of
/// `gpg --export`, binary or `--armor`, possibly several keys) and returns its literal data.
pub fn verify_signed_message(message: &[u8], keyring: &[u8]) -> Result<Verified, GpgError> {
    let certs = parse_keyring(keyring)?;
    let keys = verifying_keys(&certs);
    let (mut msg, _headers) = Message::from_reader(message).map_err(GpgError::Malformed)?;
    let mut nesting = 0;
    while msg.is_compressed() {
        nesting += 1;
        if nesting > MAX_COMPRESSION_NESTING {
            return Err(GpgError::Unsupported("too deeply nested compressed data"));
        }
        msg = msg.decompress().map_err(GpgError::Decompress)?;
    }
    match msg {
        Message::Signed { .. } => {}
        Message::Literal { .. } => return Err(GpgError::NoSignature),
        Message::Encrypted { .. } => return Err(GpgError::Unsupported("encrypted message")),
        Message::Compressed { .. } => {
            return Err(GpgError::Unsupported("too deeply nested compressed data"))
        }
    }
    let payload = read_payload(&mut msg)?;
    let signer = verify_any(&msg, &keys)?;
    Ok(Verified { payload, signer })
}

/// Parses every transferable public key of `keyring`; keys that fail to parse are skipped.
fn parse_keyring(keyring: &[u8]) -> Result<Vec<SignedPublicKey>, GpgError> {
    let (parsed, _headers) =
        SignedPublicKey::from_reader_many(keyring).map_err(GpgError::Keyring)?;
    let mut certs = Vec::new();
    for cert in parsed {
        match cert {
            Ok(cert) => certs.push(cert),
            Err(err) => log::warn!("skipping unparsable key in the trusted keyring: {err}"),
        }
    }
    if certs.is_empty() {
        return Err(GpgError::EmptyKeyring);
    }
    Ok(certs)
}

/// The keys allowed to sign: every primary key, and every signing-capable subkey whose binding
/// signatures (including the primary-key binding back-signature) verify.
fn verifying_keys(certs: &[SignedPublicKey]) -> Vec<&dyn VerifyingKey> {
    let mut keys: Vec<&dyn VerifyingKey> = Vec::new();
    for cert in certs {
        keys.push(&cert.primary_key);
        for sub in &cert.public_subkeys {
            let can_sign = sub.signatures.iter().any(|s| s.key_flags().sign());
            match sub.verify_bindings(&cert.primary_key) {
                Ok(()) if can_sign => keys.push(&sub.key),
                Ok(()) => {}
                Err(err) => log::warn!(
                    "ignoring subkey {:X} of {:X}: binding does not verify: {err}",
                    sub.key.fingerprint(),
                    cert.primary_key.fingerprint()
                ),
            }
        }
    }
    keys
}

/// Reads the literal data to its end (required before the signatures can be checked).
fn read_payload(msg: &mut Message<'_>) -> Result<Vec<u8>, GpgError> {
    let mut payload = Vec::new();
    msg.take(MAX_PAYLOAD + 1)
        .read_to_end(&mut payload)
        .map_err(GpgError::ReadData)?;
    if payload.len() as u64 > MAX_PAYLOAD {
        return Err(GpgError::TooLarge { limit: MAX_PAYLOAD });
    }
    Ok(payload)
}

/// Returns the fingerprint of the first keyring key that verifies one of the signatures of the
/// fully read signed message `msg`.
fn verify_any(msg: &Message<'_>, keys: &[&dyn VerifyingKey]) -> Result<String, GpgError> {
    let Message::Signed { reader, .. } = msg else {
        return Err(GpgError::NoSignature);
    };
    let mut bad = None;
    let mut unknown = None;
    for index in 0..reader.num_signatures() {
        let Some(sig) = reader.signature(index) else {
            continue;
        };
        if !matches!(sig.typ(), Some(SignatureType::Binary | SignatureType::Text)) {
            continue;
        }
        let mut named = false;
        for key in keys.iter().filter(|k| is_issuer(sig, **k)) {
            named = true;
            match msg.verify_nested_explicit(index, *key) {
                Ok(_) => return Ok(format!("{:X}", key.fingerprint())),
                Err(source) => {
                    bad.get_or_insert(GpgError::BadSignature {
                        key_id: format!("{:X}", key.fingerprint()),
                        source,
                    });
                }
            }
        }
        if !named {
            unknown.get_or_insert_with(|| issuer_name(sig));
        }
    }
    Err(match (bad, unknown) {
        (Some(bad), _) => bad,
        (None, Some(key_id)) => GpgError::UnknownSigner { key_id },
        (None, None) => GpgError::NoSignature,
    })
}

/// Whether `sig` names `key` as its issuer; a signature naming no issuer matches every key.
fn is_issuer(sig: &Signature, key: &dyn VerifyingKey) -> bool {
    let fingerprints = sig.issuer_fingerprint();
    let key_ids = sig.issuer_key_id();
    if fingerprints.is_empty() && key_ids.is_empty() {
        return true;
    }
    let fingerprint = key.fingerprint();
    let key_id = key.legacy_key_id();
    fingerprints.iter().any(|f| **f == fingerprint) || key_ids.iter().any(|k| **k == key_id)
}

/// The issuer named by `sig`, for error messages.
fn issuer_name(sig: &Signature) -> String {
    if let Some(fingerprint) = sig.issuer_fingerprint().first() {
        return format!("{fingerprint:X}");
    }
    match sig.issuer_key_id().first() {
        Some(key_id) => hex::encode_upper(key_id),
        None => "unknown".to_owned(),
    }
}

#[cfg(test)]
mod tests {
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
}
