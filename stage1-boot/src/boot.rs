//! The whole of stage 1 behind one call: load the signature policy and key material named
//! by the caller (a CLI's flags or the trusted boot config), open the source, and pull the
//! image into a protected rootfs, checking the policy before any layer is fetched.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use encc_rootfs::DataKey;

use crate::lookaside::{LookasideError, RegistriesD};
use crate::ocicrypt::keys::{KeyError, PrivateKey};
use crate::policy::{Policy, PolicyError};
use crate::pull::{self, PullError, PullOptions, PullSummary, ResolvedImage};
use crate::reference::ImageRef;
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
}

/// Where the policy file is looked for when none is named, most specific first.
pub fn default_policy_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(".config/containers/policy.json"));
    }
    paths.push(PathBuf::from("/etc/containers/policy.json"));
    paths
}

/// What stage 1 needs besides the image reference.
#[derive(Clone)]
pub struct Stage1Config {
    /// Signature policy.
    pub policy: PolicySource,
    /// registries.d directory (signature lookaside, use-sigstore-attachments); read only
    /// when a policy is checked. A missing directory counts as empty.
    pub registries_d: PathBuf,
    /// Private keys for encrypted layers.
    pub decryption_keys: Vec<PathBuf>,
    /// Platform, registry access, progress (its `decryption_keys` are replaced by the keys
    /// loaded from `decryption_keys`).
    pub pull: PullOptions,
}

impl Default for Stage1Config {
    /// The skopeo defaults: the usual policy file, `/etc/containers/registries.d`, no keys.
    fn default() -> Self {
        Self {
            policy: PolicySource::Default,
            registries_d: PathBuf::from("/etc/containers/registries.d"),
            decryption_keys: Vec::new(),
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
    registries: RegistriesD,
    pull: PullOptions,
}

impl Stage1 {
    /// Loads the policy, registries.d and decryption keys the config names.
    pub fn prepare(config: &Stage1Config) -> Result<Self, Stage1Error> {
        let policy =
            match &config.policy {
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
        let keys = config
            .decryption_keys
            .iter()
            .map(PrivateKey::from_file)
            .collect::<Result<Vec<_>, _>>()?;
        let mut pull = config.pull.clone();
        pull.decryption_keys = Arc::new(keys);
        Ok(Self {
            policy,
            registries,
            pull,
        })
    }

    /// The pull options in force (registry access, keys, platform).
    pub fn pull_options(&self) -> &PullOptions {
        &self.pull
    }

    /// Pulls `image` into a new protected rootfs at `output` under `key`, checking the
    /// policy after the manifest is resolved and before any layer is fetched.
    pub fn pull(
        &self,
        image: &ImageRef,
        output: &Path,
        key: &DataKey,
    ) -> Result<PullSummary, Stage1Error> {
        let src: Arc<dyn source::Source> = Arc::from(source::open(image, &self.pull.registry)?);
        let checked = Arc::clone(&src);
        let check = |resolved: &ResolvedImage| match &self.policy {
            Some(policy) => check_policy(policy, &self.registries, &*checked, resolved),
            None => Ok(()),
        };
        Ok(pull::pull(src, output, key, &self.pull, &check)?)
    }
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
            pull: PullOptions::default(),
        }
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
