//! Cosign (sigstore) signatures, key-based: the `sha256-<hex>.sig` tag next to the image
//! holds one layer per signature, of media type
//! `application/vnd.dev.cosign.simplesigning.v1+json`, whose blob is the payload
//! `{"critical": {"identity": {"docker-reference": …}, "image": {"docker-manifest-digest": …},
//! "type": "cosign container image signature"}, …}` and whose annotation
//! `dev.cosignproject.cosign/signature` is the base64 DER ECDSA P-256 SHA-256 signature of
//! that payload. No transparency log is consulted.

use base64::Engine as _;
use p256::ecdsa::signature::Verifier;
use p256::ecdsa::{Signature, VerifyingKey};
use p256::pkcs8::DecodePublicKey;

use crate::digest::Digest;
use crate::manifest::{Manifest, MAX_DOCUMENT_BYTES};
use crate::policy::{check_claims, SignedIdentity};
use crate::reference::DockerRef;
use crate::source::{read_document, Source};

/// Media type of a cosign signature layer.
pub const SIMPLESIGNING: &str = "application/vnd.dev.cosign.simplesigning.v1+json";
/// Annotation holding the signature.
pub const SIGNATURE_ANNOTATION: &str = "dev.cosignproject.cosign/signature";
/// The payload type cosign writes.
pub const PAYLOAD_TYPE: &str = "cosign container image signature";

/// Why no cosign signature was accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CosignError {
    /// The public key cannot be used.
    #[error("the sigstoreSigned public key is not a PEM P-256 public key")]
    Key,
    /// No signature tag, or it holds no signature layers.
    #[error("no cosign signature ({tag} not found or empty)")]
    NoSignature {
        /// The tag looked up.
        tag: String,
    },
    /// Signatures exist, but none is acceptable; the reasons, one per signature.
    #[error("no acceptable cosign signature: {0}")]
    Rejected(String),
}

/// The signature tag for a manifest digest.
pub fn signature_tag(digest: &Digest) -> String {
    format!("sha256-{}.sig", digest.hex())
}

/// Accepts the image (manifest `digest`, reference `image`) if a cosign signature in the
/// same repository verifies under `public_key_pem`, names `digest` and claims an identity
/// that `identity` accepts.
pub fn verify(
    source: &dyn Source,
    image: &DockerRef,
    digest: &Digest,
    public_key_pem: &str,
    identity: &SignedIdentity,
) -> Result<(), CosignError> {
    let key =
        VerifyingKey::from_public_key_pem(public_key_pem.trim()).map_err(|_| CosignError::Key)?;
    let tag = signature_tag(digest);
    let no_signature = || CosignError::NoSignature { tag: tag.clone() };
    let fetched = source
        .manifest_by_tag(&tag)
        .map_err(|_| no_signature())?
        .ok_or_else(no_signature)?;
    let manifest: Manifest = serde_json::from_slice(&fetched.bytes).map_err(|_| no_signature())?;
    let mut reasons = Vec::new();
    for layer in manifest
        .layers
        .iter()
        .filter(|l| l.media_type == SIMPLESIGNING)
    {
        let short = &layer.digest.hex()[..12];
        let Some(sig_b64) = layer.annotations.get(SIGNATURE_ANNOTATION) else {
            reasons.push(format!("{short}: no signature annotation"));
            continue;
        };
        if layer.size > MAX_DOCUMENT_BYTES {
            reasons.push(format!("{short}: payload too large"));
            continue;
        }
        let payload = match source
            .blob(layer, 0)
            .map_err(|e| e.to_string())
            .and_then(|r| {
                read_document(r, source.reference(), "cosign payload").map_err(|e| e.to_string())
            }) {
            Ok(p) if Digest::of(&p) == layer.digest => p,
            Ok(_) => {
                reasons.push(format!("{short}: payload does not match its digest"));
                continue;
            }
            Err(e) => {
                reasons.push(format!("{short}: {e}"));
                continue;
            }
        };
        let sig = base64::engine::general_purpose::STANDARD
            .decode(sig_b64.trim())
            .ok()
            .and_then(|der| Signature::from_der(&der).ok());
        let Some(sig) = sig else {
            reasons.push(format!("{short}: signature is not base64 DER ECDSA"));
            continue;
        };
        if key.verify(&payload, &sig).is_err() {
            reasons.push(format!(
                "{short}: signature does not verify with the policy key"
            ));
            continue;
        }
        match check_claims(&payload, PAYLOAD_TYPE, image, digest, identity) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(format!("{short}: {reason}")),
        }
    }
    if reasons.is_empty() {
        return Err(no_signature());
    }
    Err(CosignError::Rejected(reasons.join("; ")))
}
