//! The whole of stage 1 behind one call: load the signature policy and key material named
//! by the caller (a CLI's flags or the trusted boot config), open the source, and pull the
//! image into a protected rootfs, checking the policy before any layer is fetched.
//!
//! Anything that names a key or policy may be a `kbs:///REPO/TYPE/TAG` URI instead of a
//! path: the policy, the keys inside it, decryption keys, the registry auth file; and
//! layers may carry KEKs held by the KBS. All of those come from the KBS named by
//! [`Stage1Config::kbs`], after attestation.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use encc_rootfs::DataKey;

use crate::jwe::{KeyError, PrivateKey};
use crate::kbs::{KbsClient, KbsConfig, KbsError, ResourceUri};
use crate::lookaside::{LookasideError, RegistriesD};
use crate::policy::{Policy, PolicyError, Requirement};
use crate::pull::{self, PullError, PullOptions, PullSummary, ResolvedImage};
use crate::reference::ImageRef;
use crate::resources::{Location, ResourceError, Resources};
use crate::source::registry::AuthData;
use crate::source::{self, SourceError};
use crate::verify::check_policy;

/// Where the signature policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicySource {
    /// A containers-policy.json file.
    File(PathBuf),
    /// The usual places, as skopeo looks: `$HOME/.config/containers/policy.json`, then
    /// `/etc/containers/policy.json`. None found is an error.
    Default,
    /// Accept every image without checking signatures (`--insecure-policy`).
    InsecureAcceptAnything,
    /// A containers-policy.json held by the Key Broker Service
    /// (`--policy kbs:///default/security-policy/test`).
    Kbs(ResourceUri),
}

/// Where the policy file is looked for when none is named, most specific first.
pub use encc_interface::names::default_policy_paths;

/// What stage 1 needs besides the image reference.
#[derive(Clone)]
pub struct Stage1Config {
    /// Signature policy.
    pub policy: PolicySource,
    /// registries.d directory (signature lookaside, use-sigstore-attachments); read only
    /// when a policy is checked. A missing directory counts as empty.
    pub registries_d: PathBuf,
    /// Private keys for encrypted layers: files or KBS resources.
    pub decryption_keys: Vec<Location>,
    /// The Key Broker Service for `kbs:///` resources and key provider KEKs; none by default.
    pub kbs: Option<KbsConfig>,
    /// Platform, registry access, progress (its `decryption_keys` and `kbs` are replaced by
    /// those loaded from this config; a `kbs:///` `registry.authfile` is fetched).
    pub pull: PullOptions,
}

impl Default for Stage1Config {
    /// The skopeo defaults: the usual policy file, `/etc/containers/registries.d`, no keys.
    fn default() -> Self {
        Self {
            policy: PolicySource::Default,
            registries_d: PathBuf::from(encc_interface::names::DEFAULT_REGISTRIES_D),
            decryption_keys: Vec::new(),
            kbs: None,
            pull: PullOptions::default(),
        }
    }
}

/// Errors of stage 1 set-up; pull errors pass through unchanged.
#[derive(Debug, thiserror::Error)]
pub enum Stage1Error {
    /// No policy was named and none exists in the usual places.
    #[error("no signature policy: none given and none of {searched} exists (use --policy FILE, or --insecure-policy to accept any image)")]
    NoPolicy {
        /// The paths searched.
        searched: String,
    },
    /// The policy file cannot be read.
    #[error("cannot read policy {path}")]
    ReadPolicy {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The policy file is invalid.
    #[error(transparent)]
    Policy(#[from] PolicyError),
    /// The KBS client cannot be set up.
    #[error(transparent)]
    Kbs(#[from] KbsError),
    /// A resource named by the config (policy, key, auth file) cannot be read.
    #[error("cannot get the {what}")]
    Resource {
        /// Which resource.
        what: &'static str,
        /// The cause (names the path or URI).
        #[source]
        source: ResourceError,
    },
    /// registries.d is invalid.
    #[error(transparent)]
    Registries(#[from] LookasideError),
    /// A decryption key cannot be loaded.
    #[error(transparent)]
    Key(#[from] KeyError),
    /// The source cannot be opened.
    #[error(transparent)]
    Source(#[from] SourceError),
    /// The pull failed.
    #[error(transparent)]
    Pull(#[from] PullError),
}

/// Stage 1 with its policy and keys loaded, ready to pull.
pub struct Stage1 {
    policy: Option<Policy>,
    resources: Resources,
    registries: RegistriesD,
    pull: PullOptions,
}

impl Stage1 {
    /// Loads the policy, registries.d and decryption keys the config names (attesting to
    /// the KBS first when one of them is a `kbs:///` URI).
    pub fn prepare(config: &Stage1Config) -> Result<Self, Stage1Error> {
        let kbs = match &config.kbs {
            Some(kbs) => Some(Arc::new(KbsClient::new(kbs)?)),
            None => None,
        };
        let resources = Resources::new(kbs.clone());
        let fetch = |what, location: &Location| {
            resources
                .read(location)
                .map_err(|source| Stage1Error::Resource { what, source })
        };
        let policy =
            match &config.policy {
                PolicySource::Kbs(uri) => {
                    let bytes = fetch("signature policy", &Location::Kbs(uri.clone()))?;
                    Some(Policy::parse(&bytes, &uri.to_string())?)
                }
                PolicySource::InsecureAcceptAnything => {
                    log::warn!("signature policy: insecure, every image is accepted");
                    None
                }
                PolicySource::File(path) => Some(load_policy(path)?),
                PolicySource::Default => {
                    let searched = default_policy_paths();
                    let found = searched.iter().find(|p| p.is_file()).ok_or_else(|| {
                        Stage1Error::NoPolicy {
                            searched: searched
                                .iter()
                                .map(|p| p.display().to_string())
                                .collect::<Vec<_>>()
                                .join(", "),
                        }
                    })?;
                    Some(load_policy(found)?)
                }
            };
        let registries = if policy.is_some() && config.registries_d.is_dir() {
            RegistriesD::load(&config.registries_d)?
        } else {
            RegistriesD::default()
        };
        let mut keys = Vec::new();
        for location in &config.decryption_keys {
            let key = match location {
                Location::File(path) => PrivateKey::from_file(path)?,
                Location::Kbs(uri) => {
                    let bytes = fetch("decryption key", location)?;
                    PrivateKey::from_bytes(&bytes).map_err(|source| KeyError::File {
                        path: PathBuf::from(uri.to_string()),
                        source: Box::new(source),
                    })?
                }
            };
            keys.push(key);
        }
        let mut pull = config.pull.clone();
        // A registry read waits no longer than a download may make no progress.
        pull.registry.timeout = pull.registry.timeout.min(pull.stall_timeout);
        pull.decryption_keys = Arc::new(keys);
        pull.kbs = kbs;
        // The auth file is a path option shared with skopeo-like flags; it names a KBS
        // resource when it parses as one.
        if let Some(authfile) = &pull.registry.authfile {
            let location: Location = authfile.to_string_lossy().parse().map_err(
                |e: crate::resources::LocationError| Stage1Error::Resource {
                    what: "registry auth file",
                    source: e.into(),
                },
            )?;
            if let Location::Kbs(uri) = &location {
                let bytes = fetch("registry auth file", &location)?;
                pull.registry.auth_data = Some(Arc::new(AuthData::new(uri.to_string(), bytes)));
                pull.registry.authfile = None;
            }
        }
        Ok(Self {
            policy,
            resources,
            registries,
            pull,
        })
    }

    /// The pull options in force (registry access, keys, platform).
    pub fn pull_options(&self) -> &PullOptions {
        &self.pull
    }

    /// Resolves `image`'s manifest and config (every digest checked) and checks them
    /// against the policy; nothing of any layer is fetched.
    pub fn resolve(&self, image: &ImageRef) -> Result<Resolved, Stage1Error> {
        let source: Arc<dyn source::Source> = Arc::from(source::open(image, &self.pull.registry)?);
        let resolved = pull::resolve(&*source, self.pull.platform.as_ref())?;
        if let Some(policy) = &self.policy {
            check_policy(
                policy,
                &self.resources,
                &self.registries,
                &*source,
                &resolved,
            )?;
        }
        Ok(Resolved {
            source,
            image: resolved,
        })
    }

    /// Whether the policy accepts `image` without anything from the registry: the policy is
    /// insecure, or every requirement of the scope that applies is `insecureAcceptAnything`.
    /// A scope that rejects is the same error as from [`Self::resolve`]; one that needs
    /// signatures answers `false` (they come from the registry or its lookaside, so the image
    /// must be resolved and checked).
    pub fn accepts_without_registry(&self, image: &ImageRef) -> Result<bool, Stage1Error> {
        let Some(policy) = &self.policy else {
            return Ok(true);
        };
        let applicable = policy.requirements_for(image);
        let mut accepted = true;
        for requirement in applicable.requirements {
            match requirement {
                Requirement::InsecureAcceptAnything {} => {}
                Requirement::Reject {} => {
                    return Err(PullError::Rejected {
                        reference: image.to_string(),
                        scope: applicable.scope.clone(),
                        reason: "the policy rejects everything in this scope".into(),
                    }
                    .into())
                }
                Requirement::SignedBy { .. } | Requirement::SigstoreSigned { .. } => {
                    accepted = false
                }
            }
        }
        Ok(accepted)
    }

    /// Pulls a resolved, accepted image into a new protected rootfs at `output` under `key`.
    pub fn pull_resolved(
        &self,
        resolved: &Resolved,
        output: &Path,
        key: &DataKey,
    ) -> Result<PullSummary, Stage1Error> {
        Ok(pull::pull_resolved(
            Arc::clone(&resolved.source),
            &resolved.image,
            output,
            key,
            &self.pull,
        )?)
    }

    /// Pulls `image` into a new protected rootfs at `output` under `key`, checking the
    /// policy after the manifest is resolved and before any layer is fetched.
    pub fn pull(
        &self,
        image: &ImageRef,
        output: &Path,
        key: &DataKey,
    ) -> Result<PullSummary, Stage1Error> {
        let resolved = self.resolve(image)?;
        self.pull_resolved(&resolved, output, key)
    }
}

/// An image whose manifest and config were resolved and accepted by the policy.
pub struct Resolved {
    source: Arc<dyn source::Source>,
    /// The manifest, config and their digests.
    pub image: ResolvedImage,
}

fn load_policy(path: &Path) -> Result<Policy, Stage1Error> {
    let bytes = std::fs::read(path).map_err(|source| Stage1Error::ReadPolicy {
        path: path.to_owned(),
        source,
    })?;
    Ok(Policy::parse(&bytes, &path.display().to_string())?)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(policy: PolicySource) -> Stage1Config {
        Stage1Config {
            policy,
            registries_d: PathBuf::from("/nonexistent/registries.d"),
            decryption_keys: Vec::new(),
            kbs: None,
            pull: PullOptions::default(),
        }
    }

    #[test]
    fn kbs_uris_without_a_kbs_are_an_error_naming_them() {
        let uri: ResourceUri = "kbs:///default/security-policy/test".parse().unwrap();
        let err = Stage1::prepare(&config(PolicySource::Kbs(uri)))
            .err()
            .unwrap();
        let text = format!("{err}: {}", std::error::Error::source(&err).unwrap());
        assert!(
            text.contains("signature policy")
                && text.contains("kbs:///default/security-policy/test"),
            "{text}"
        );
        let mut c = config(PolicySource::InsecureAcceptAnything);
        c.decryption_keys = vec!["kbs:///default/key/one".parse().unwrap()];
        assert!(Stage1::prepare(&c).is_err());
    }

    #[test]
    fn a_named_policy_that_is_missing_is_an_error_naming_it() {
        let err = Stage1::prepare(&config(PolicySource::File("/nonexistent/p.json".into())))
            .err()
            .unwrap();
        assert!(err.to_string().contains("/nonexistent/p.json"), "{err}");
    }

    #[test]
    fn an_invalid_policy_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("policy.json");
        std::fs::write(&path, br#"{"default": [{"type": "sometimes"}]}"#).unwrap();
        assert!(Stage1::prepare(&config(PolicySource::File(path))).is_err());
    }

    #[test]
    fn insecure_needs_no_policy_file() {
        assert!(Stage1::prepare(&config(PolicySource::InsecureAcceptAnything)).is_ok());
    }
}
