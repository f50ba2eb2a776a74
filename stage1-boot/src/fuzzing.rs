//! Entry points of the fuzz targets in `tests/fuzz` for parsers that are private to this
//! crate: registry authentication, `registries.d`, and the signature formats. Hidden from
//! the documentation; nothing else calls them. Each takes the fuzz input, ignores every
//! error the library returns, and must not panic, hang or exhaust memory.

use std::io::Read;

use crate::digest::Digest;
use crate::lookaside::RegistriesD;
use crate::manifest::{Descriptor, DocumentKind, LayerType, Manifest, Platform};
use crate::policy::{check_claims, SignedIdentity};
use crate::pull::{checked_config, index_entry};
use crate::reference::{DockerRef, ImageRef};
use crate::source::registry::auth;
use crate::source::{Fetched, Source, SourceError};

/// The image the targets check input against.
const IMAGE: &str = "registry.example:5000/team/app:1.0";

fn image() -> Option<(ImageRef, DockerRef)> {
    let reference: ImageRef = IMAGE.parse().ok()?;
    let ImageRef::Docker(docker) = reference.clone() else {
        return None;
    };
    Some((reference, docker))
}

/// `WWW-Authenticate` challenges, token server answers and auth files (`auth.json`,
/// `~/.docker/config.json`): the same input through all three.
pub fn registry_auth(data: &[u8]) {
    let Some((_, image)) = image() else {
        return;
    };
    if let Ok(text) = std::str::from_utf8(data) {
        let _ = auth::parse_challenge(text);
    }
    let _ = auth::token_of_response(data);
    let _ = auth::lookup(data, &image);
}

/// Registry documents as `resolve` reads them. The input is split at 0xFF bytes (never part
/// of UTF-8 JSON) into up to three documents, and each is read as every kind: an index
/// searched for several platforms, a manifest whose media types are classified, and a config
/// checked against each manifest's layers.
pub fn image_documents(data: &[u8]) {
    let parts: Vec<&[u8]> = data.splitn(3, |&b| b == 0xff).collect();
    let platforms: Vec<Option<Platform>> = [
        None,
        Some("linux/amd64"),
        Some("linux/arm64/v8"),
        Some("windows/amd64"),
    ]
    .into_iter()
    .map(|p| p.and_then(Platform::parse))
    .collect();
    let mut manifests = Vec::new();
    for part in &parts {
        for platform in &platforms {
            let _ = index_entry(IMAGE, part, platform.as_ref());
        }
        if let Ok(manifest) = serde_json::from_slice::<Manifest>(part) {
            for layer in &manifest.layers {
                let _ = LayerType::from_media_type(&layer.media_type);
            }
            if let Some(media_type) = &manifest.media_type {
                let _ = DocumentKind::from_media_type(media_type);
            }
            manifests.push(manifest);
        }
        if let Ok(text) = std::str::from_utf8(part) {
            let _ = Platform::parse(text);
        }
    }
    for manifest in &manifests {
        for part in &parts {
            let _ = checked_config(IMAGE, manifest, part);
        }
    }
}

/// `registries.d` YAML: the input split at its first NUL into two files merged in turn (so
/// that duplicate scopes are met), then the lookaside URL of images at several depths.
pub fn registries_d(data: &[u8]) {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let mut merged = RegistriesD::default();
    for file in text.splitn(2, '\0') {
        if merged.merge(file).is_err() {
            return;
        }
    }
    for reference in [IMAGE, "registry.example:5000/team/app@sha256:0000000000000000000000000000000000000000000000000000000000000000", "docker.io/library/busybox:latest", "other.example/x"] {
        if let Ok(ImageRef::Docker(docker)) = reference.parse() {
            let _ = merged.lookaside_for(&docker);
        }
    }
}

/// The digest every signature target claims to sign.
fn signed_digest() -> Digest {
    Digest::of(b"encc fuzz manifest")
}

/// The identity rules of a policy, picked by a byte.
fn identity(selector: u8) -> SignedIdentity {
    match selector % 6 {
        0 => SignedIdentity::MatchExact {},
        1 => SignedIdentity::MatchRepoDigestOrExact {},
        2 => SignedIdentity::MatchRepository {},
        3 => SignedIdentity::ExactReference {
            docker_reference: IMAGE.into(),
        },
        4 => SignedIdentity::ExactRepository {
            docker_repository: "registry.example:5000/team/app".into(),
        },
        _ => SignedIdentity::RemapIdentity {
            prefix: "registry.example:5000/team".into(),
            signed_prefix: "mirror.example/team".into(),
        },
    }
}

/// Signatures. The first byte picks the format, the second the identity rule:
/// - 0: an OpenPGP signed message and the keyring it is checked against (two bytes of
///   little-endian keyring length, the keyring, the message), then the claims of what it
///   signed, as simple signing does;
/// - 1: the claims of a payload (simple signing's or cosign's type);
/// - 2: a cosign signature manifest (two bytes of length, the manifest, then the payload
///   every layer serves), checked against a fixed P-256 key. The harness rewrites each
///   layer's digest to the payload's, so mutations reach the annotation and DER parsing
///   behind the digest check.
pub fn signatures(data: &[u8]) {
    let [format, rule, rest @ ..] = data else {
        return;
    };
    let Some((reference, image)) = image() else {
        return;
    };
    let digest = signed_digest();
    let identity = identity(*rule);
    match format % 3 {
        0 => {
            let Some((keyring, message)) = split_prefixed(rest) else {
                return;
            };
            if let Ok(verified) = crate::gpg::verify_signed_message(message, keyring) {
                let _ = check_claims(
                    &verified.payload,
                    crate::verify::SIMPLE_SIGNING_TYPE,
                    &image,
                    &digest,
                    &identity,
                );
            }
        }
        1 => {
            for kind in [
                crate::verify::SIMPLE_SIGNING_TYPE,
                crate::cosign::PAYLOAD_TYPE,
            ] {
                let _ = check_claims(rest, kind, &image, &digest, &identity);
            }
        }
        _ => {
            let Some((manifest, payload)) = split_prefixed(rest) else {
                return;
            };
            let source = SignatureSource {
                reference,
                manifest: with_layer_digests(manifest, &Digest::of(payload)),
                payload: payload.to_vec(),
            };
            let _ = crate::cosign::verify(&source, &image, &digest, COSIGN_KEY, &identity);
        }
    }
}

/// A P-256 public key (fuzzing only; its private key is not kept anywhere).
const COSIGN_KEY: &str = "-----BEGIN PUBLIC KEY-----
MFkwEwYHKoZIzj0CAQYIKoZIzj0DAQcDQgAEjSCZmNnnMF/uFM7wAcbxaR7bUln9
o5s7OXrpV+1XU3kEqNsgdvG52iAtq/Sj6myndPU10G9p+SvMUyUHEMHhlw==
-----END PUBLIC KEY-----
";

/// `[len: u16 LE][len bytes][rest]`.
fn split_prefixed(data: &[u8]) -> Option<(&[u8], &[u8])> {
    let [lo, hi, rest @ ..] = data else {
        return None;
    };
    let len = usize::from(u16::from_le_bytes([*lo, *hi]));
    (len <= rest.len()).then(|| rest.split_at(len))
}

/// The manifest with every layer's `digest` set to `digest`; the input unchanged when it is
/// not a JSON object with a `layers` array.
fn with_layer_digests(manifest: &[u8], digest: &Digest) -> Vec<u8> {
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(manifest) else {
        return manifest.to_vec();
    };
    let Some(layers) = value.get_mut("layers").and_then(|l| l.as_array_mut()) else {
        return manifest.to_vec();
    };
    for layer in layers.iter_mut().filter_map(|l| l.as_object_mut()) {
        layer.insert("digest".into(), digest.to_string().into());
    }
    serde_json::to_vec(&value).unwrap_or_else(|_| manifest.to_vec())
}

/// A repository holding only the signature manifest, whose layers all serve one payload.
struct SignatureSource {
    reference: ImageRef,
    manifest: Vec<u8>,
    payload: Vec<u8>,
}

impl Source for SignatureSource {
    fn reference(&self) -> &ImageRef {
        &self.reference
    }

    fn root_manifest(&self) -> Result<Fetched, SourceError> {
        Err(self.missing("the root manifest"))
    }

    fn expected_root_digest(&self) -> Option<Digest> {
        None
    }

    fn manifest_by_tag(&self, _tag: &str) -> Result<Option<Fetched>, SourceError> {
        Ok(Some(Fetched {
            bytes: self.manifest.clone(),
            media_type: crate::manifest::OCI_MANIFEST.into(),
        }))
    }

    fn manifest(&self, descriptor: &Descriptor) -> Result<Fetched, SourceError> {
        Err(self.missing(&descriptor.digest.to_string()))
    }

    fn blob(
        &self,
        _descriptor: &Descriptor,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let start = usize::try_from(offset)
            .unwrap_or(usize::MAX)
            .min(self.payload.len());
        Ok(Box::new(std::io::Cursor::new(
            self.payload[start..].to_vec(),
        )))
    }
}

impl SignatureSource {
    fn missing(&self, what: &str) -> SourceError {
        SourceError::Invalid {
            reference: self.reference.to_string(),
            reason: format!("the fuzz source serves no {what}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The fixed parts the targets lean on are valid, so no input is thrown away early.
    #[test]
    fn the_fixed_image_and_key_are_usable() {
        assert!(image().is_some());
        use p256::pkcs8::DecodePublicKey as _;
        assert!(p256::ecdsa::VerifyingKey::from_public_key_pem(COSIGN_KEY.trim()).is_ok());
    }

    /// The cosign harness makes every layer name the payload, so the digest check passes
    /// and the signature is what is judged.
    #[test]
    fn a_cosign_input_reaches_the_signature_check() {
        let manifest = br#"{"schemaVersion":2,"config":{"mediaType":"application/vnd.oci.image.config.v1+json","digest":"sha256:0000000000000000000000000000000000000000000000000000000000000000","size":2},"layers":[{"mediaType":"application/vnd.dev.cosign.simplesigning.v1+json","digest":"sha256:1111111111111111111111111111111111111111111111111111111111111111","size":7,"annotations":{"dev.cosignproject.cosign/signature":"MEUCIQ=="}}]}"#;
        let payload = b"payload";
        let (reference, image) = image().unwrap();
        let source = SignatureSource {
            reference,
            manifest: with_layer_digests(manifest, &Digest::of(payload)),
            payload: payload.to_vec(),
        };
        let err =
            crate::cosign::verify(&source, &image, &signed_digest(), COSIGN_KEY, &identity(0))
                .unwrap_err()
                .to_string();
        assert!(err.contains("not base64 DER ECDSA"), "{err}");
    }

    #[test]
    fn prefixed_splits() {
        assert_eq!(
            split_prefixed(&[2, 0, 7, 8, 9]),
            Some((&[7u8, 8][..], &[9u8][..]))
        );
        assert_eq!(split_prefixed(&[4, 0, 7]), None);
        assert_eq!(split_prefixed(&[1]), None);
    }

    /// The committed gpg seeds of the `signatures` target verify, and what they sign passes
    /// the claims check, so the fuzzer starts past both (and the wrong-key seed does not).
    #[test]
    fn the_gpg_seeds_verify_and_their_claims_hold() {
        let (_, image) = image().unwrap();
        let seed = |bytes: &'static [u8]| {
            let (keyring, message) = split_prefixed(&bytes[2..]).unwrap();
            crate::gpg::verify_signed_message(message, keyring).map(|v| {
                check_claims(
                    &v.payload,
                    crate::verify::SIMPLE_SIGNING_TYPE,
                    &image,
                    &signed_digest(),
                    &identity(bytes[1]),
                )
            })
        };
        let corpus = |name| match name {
            "gpg-ed25519" => &include_bytes!("../../tests/fuzz/corpus/signatures/gpg-ed25519")[..],
            "gpg-rsa-uncompressed" => {
                &include_bytes!("../../tests/fuzz/corpus/signatures/gpg-rsa-uncompressed")[..]
            }
            "gpg-armored-both-keys" => {
                &include_bytes!("../../tests/fuzz/corpus/signatures/gpg-armored-both-keys")[..]
            }
            _ => &include_bytes!("../../tests/fuzz/corpus/signatures/gpg-wrong-key")[..],
        };
        for name in [
            "gpg-ed25519",
            "gpg-rsa-uncompressed",
            "gpg-armored-both-keys",
        ] {
            assert!(matches!(seed(corpus(name)), Ok(Ok(()))), "{name}");
        }
        assert!(seed(corpus("gpg-wrong-key")).is_err());
    }
}
