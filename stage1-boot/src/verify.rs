//! Enforcing the signature policy on a resolved image, before any layer is fetched.

use base64::Engine as _;

use crate::cosign;
use crate::policy::{Policy, Requirement};
use crate::pull::{PullError, ResolvedImage};
use crate::reference::ImageRef;
use crate::source::Source;

/// Checks every requirement of the scope that applies to the source's reference. A
/// rejection names the reference, the scope and why.
pub fn check_policy(
    policy: &Policy,
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
            Requirement::SignedBy { .. } => {
                return Err(reject(
                    "signedBy (GPG simple signing) is not supported by this build of encc".into(),
                ))
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
                    (Some(path), _) => std::fs::read_to_string(path).map_err(|e| {
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
