//! Enforcing the signature policy on a resolved image, before any layer is fetched.

use base64::Engine as _;

use encc_interface::error_chain;

use crate::cosign;
use crate::gpg;
use crate::lookaside::{self, RegistriesD};
use crate::policy::{check_claims, Policy, Requirement, SignedIdentity};
use crate::pull::{PullError, ResolvedImage};
use crate::reference::ImageRef;
use crate::resources::Resources;
use crate::source::Source;

/// The payload type of a simple signature.
pub(crate) const SIMPLE_SIGNING_TYPE: &str = "atomic container signature";

/// Checks every requirement of the scope that applies to the source's reference. A
/// rejection names the reference, the scope and why. Key paths may be `kbs:///` URIs,
/// read through `resources`.
pub fn check_policy(
    policy: &Policy,
    resources: &Resources,
    registries: &RegistriesD,
    source: &dyn Source,
    resolved: &ResolvedImage,
) -> Result<(), PullError> {
    let image = source.reference();
    let applicable = policy.requirements_for(image);
    let reject = |reason: String| PullError::Rejected {
        reference: image.to_string(),
        scope: applicable.scope.clone(),
        reason,
    };
    for requirement in applicable.requirements {
        match requirement {
            Requirement::InsecureAcceptAnything {} => {}
            Requirement::Reject {} => {
                return Err(reject("the policy rejects everything in this scope".into()))
            }
            Requirement::SignedBy {
                key_path,
                key_paths,
                key_data,
                signed_identity,
                ..
            } => {
                let ImageRef::Docker(docker) = image else {
                    return Err(reject(
                        "simple signatures are looked up for docker:// references only".into(),
                    ));
                };
                let mut keyring = Vec::new();
                for path in key_path.iter().chain(key_paths.iter().flatten()) {
                    let bytes = resources.read(path).map_err(|e| {
                        reject(format!(
                            "cannot read signedBy key {path}: {}",
                            error_chain(&e)
                        ))
                    })?;
                    keyring.extend_from_slice(&bytes);
                }
                if let Some(data) = key_data {
                    let bytes = base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .map_err(|_| reject("signedBy keyData is not base64".into()))?;
                    keyring.extend_from_slice(&bytes);
                }
                let digest = resolved.index_digest.unwrap_or(resolved.manifest_digest);
                let base = registries.lookaside_for(docker).ok_or_else(|| {
                    reject(format!(
                        "no lookaside is configured in registries.d for {}/{}",
                        docker.registry, docker.repository
                    ))
                })?;
                let signatures = lookaside::signatures(base, docker, &digest)
                    .map_err(|e| reject(e.to_string()))?;
                if signatures.is_empty() {
                    return Err(reject(format!(
                        "no signature in the lookaside {base} for {digest}"
                    )));
                }
                check_simple_signatures(&signatures, &keyring, docker, &digest, signed_identity)
                    .map_err(reject)?;
                log::info!(
                    "{image}: simple signature accepted (scope {})",
                    applicable.scope
                );
            }
            Requirement::SigstoreSigned {
                key_path,
                key_data,
                signed_identity,
            } => {
                let ImageRef::Docker(docker) = image else {
                    return Err(reject(
                        "sigstore signatures are looked up for docker:// references only".into(),
                    ));
                };
                let pem = match (key_path, key_data) {
                    (Some(path), _) => resources
                        .read(path)
                        .map_err(|e| error_chain(&e))
                        .and_then(|b| {
                            String::from_utf8(b.to_vec()).map_err(|_| "not UTF-8 PEM".to_owned())
                        })
                        .map_err(|e| {
                            reject(format!("cannot read sigstoreSigned key {path}: {e}"))
                        })?,
                    (None, Some(data)) => base64::engine::general_purpose::STANDARD
                        .decode(data.trim())
                        .ok()
                        .and_then(|b| String::from_utf8(b).ok())
                        .ok_or_else(|| {
                            reject("sigstoreSigned keyData is not base64 of a PEM key".into())
                        })?,
                    (None, None) => return Err(reject("sigstoreSigned has no key".into())),
                };
                // Cosign signs the digest the reference resolves to: the index when there is one.
                let digest = resolved.index_digest.unwrap_or(resolved.manifest_digest);
                cosign::verify(source, docker, &digest, &pem, signed_identity)
                    .map_err(|e| reject(e.to_string()))?;
                log::info!(
                    "{image}: cosign signature accepted (scope {})",
                    applicable.scope
                );
            }
        }
    }
    Ok(())
}

/// Accepts if one signature verifies with the keyring, signs `digest` and claims an
/// identity `identity` accepts; otherwise the reasons, one per signature.
fn check_simple_signatures(
    signatures: &[Vec<u8>],
    keyring: &[u8],
    image: &crate::reference::DockerRef,
    digest: &crate::digest::Digest,
    identity: &SignedIdentity,
) -> Result<(), String> {
    let mut reasons = Vec::new();
    for (i, sig) in signatures.iter().enumerate() {
        let n = i + 1;
        let verified = match gpg::verify_signed_message(sig, keyring) {
            Ok(v) => v,
            Err(e) => {
                reasons.push(format!("signature-{n}: {e}"));
                continue;
            }
        };
        match check_claims(
            &verified.payload,
            SIMPLE_SIGNING_TYPE,
            image,
            digest,
            identity,
        ) {
            Ok(()) => return Ok(()),
            Err(reason) => reasons.push(format!("signature-{n}: {reason}")),
        }
    }
    Err(format!("no acceptable signature: {}", reasons.join("; ")))
}
