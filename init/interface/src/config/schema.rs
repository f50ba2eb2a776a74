//! The boot config's JSON shape: what `boot.json` holds, field by field, with
//! `deny_unknown_fields`. [`BootConfigJson::into_config`] is the one place its strings
//! become typed values.

use std::path::PathBuf;

use serde::{Deserialize, Serialize};

use super::{AttesterKind, BootConfig, ConfigError, KbsConfig, PolicyRef, DEFAULT_TMPFS_SIZE};
use crate::resource::Location;

pub(super) const DEFAULT_HOSTNAME: &str = "encc";

/// `boot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(super) struct BootConfigJson {
    store: PathBuf,
    /// A containers-policy.json path or a `kbs:///REPO/TYPE/TAG` URI.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    policy: Option<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    insecure_policy: bool,
    #[serde(default = "default_registries_d")]
    registries_d: PathBuf,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    kbs: Option<KbsJson>,
    /// Files or `kbs:///` URIs.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    decryption_keys: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    insecure_registries: Vec<String>,
    /// false: the image's registry (whichever the host names) is reached without
    /// certificate checks or over plain HTTP, as skopeo's `--tls-verify=false`.
    #[serde(default = "default_true", skip_serializing_if = "is_true")]
    tls_verify: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_host_args: bool,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_local_layouts: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env_allowlist: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    env: Vec<String>,
    #[serde(default = "default_tmpfs_size")]
    tmpfs_size: u64,
    #[serde(default = "default_hostname")]
    hostname: String,
    #[serde(default, skip_serializing_if = "is_false")]
    allow_host_hostname: bool,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    hosts: Vec<String>,
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    dns: Vec<String>,
    #[serde(default, skip_serializing_if = "is_false")]
    net_namespace: bool,
    /// error, warn, info, debug, trace, off.
    #[serde(default = "default_log_level")]
    log_level: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    seal_key_file: Option<PathBuf>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    store_max_bytes: Option<u64>,
}

/// `kbs` in `boot.json`.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct KbsJson {
    url: String,
    /// `sample` (native platform) or `sgx`.
    #[serde(default = "default_attester")]
    attester: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn is_true(b: &bool) -> bool {
    *b
}
fn default_true() -> bool {
    true
}
fn default_registries_d() -> PathBuf {
    PathBuf::from(crate::names::DEFAULT_REGISTRIES_D)
}
fn default_tmpfs_size() -> u64 {
    DEFAULT_TMPFS_SIZE
}
fn default_hostname() -> String {
    DEFAULT_HOSTNAME.into()
}
fn default_log_level() -> String {
    super::DEFAULT_LOG_LEVEL.as_str().to_ascii_lowercase()
}
fn default_attester() -> String {
    AttesterKind::Sample.to_string()
}

impl BootConfigJson {
    /// The typed config, checked; `name` names the config in errors.
    pub(super) fn into_config(self, name: &str) -> Result<BootConfig, ConfigError> {
        let field = |field, reason: String| ConfigError::Field {
            name: name.to_owned(),
            field,
            reason,
        };
        let policy = match (self.policy, self.insecure_policy) {
            (Some(policy), false) => PolicyRef::named(
                policy
                    .parse::<Location>()
                    .map_err(|e| field("policy", e.to_string()))?,
            ),
            (None, true) => PolicyRef::Insecure,
            (None, false) => {
                return Err(field(
                    "policy",
                    "no signature policy: name one, or set insecure_policy to true".into(),
                ))
            }
            (Some(_), true) => {
                return Err(field(
                    "insecure_policy",
                    "cannot be true when a policy is named".into(),
                ))
            }
        };
        let kbs = match self.kbs {
            Some(kbs) => Some(KbsConfig {
                attester: kbs
                    .attester
                    .parse()
                    .map_err(|e: super::UnknownAttester| field("kbs.attester", e.to_string()))?,
                url: kbs.url,
            }),
            None => None,
        };
        let decryption_keys = self
            .decryption_keys
            .iter()
            .map(|key| key.parse::<Location>())
            .collect::<Result<Vec<_>, _>>()
            .map_err(|e| field("decryption_keys", e.to_string()))?;
        let log_level = self.log_level.parse().map_err(|_| {
            field(
                "log_level",
                format!("{:?} is not a log level", self.log_level),
            )
        })?;
        let config = BootConfig {
            store: self.store,
            policy,
            registries_d: self.registries_d,
            kbs,
            decryption_keys,
            insecure_registries: self.insecure_registries,
            tls_verify: self.tls_verify,
            allow_host_args: self.allow_host_args,
            allow_local_layouts: self.allow_local_layouts,
            env_allowlist: self.env_allowlist,
            env: self.env,
            tmpfs_size: self.tmpfs_size,
            hostname: self.hostname,
            allow_host_hostname: self.allow_host_hostname,
            hosts: self.hosts,
            dns: self.dns,
            net_namespace: self.net_namespace,
            log_level,
            seal_key_file: self.seal_key_file,
            store_max_bytes: self.store_max_bytes,
        };
        config.validate(name)?;
        Ok(config)
    }
}

/// For serde (the control channel carries a config): errors name no file.
impl TryFrom<BootConfigJson> for BootConfig {
    type Error = ConfigError;

    fn try_from(json: BootConfigJson) -> Result<Self, ConfigError> {
        json.into_config("(received)")
    }
}

impl From<BootConfig> for BootConfigJson {
    fn from(c: BootConfig) -> Self {
        Self {
            store: c.store,
            insecure_policy: c.policy == PolicyRef::Insecure,
            policy: c.policy.location().map(|l| l.to_string()),
            registries_d: c.registries_d,
            kbs: c.kbs.map(|kbs| KbsJson {
                url: kbs.url,
                attester: kbs.attester.to_string(),
            }),
            decryption_keys: c.decryption_keys.iter().map(|l| l.to_string()).collect(),
            insecure_registries: c.insecure_registries,
            tls_verify: c.tls_verify,
            allow_host_args: c.allow_host_args,
            allow_local_layouts: c.allow_local_layouts,
            env_allowlist: c.env_allowlist,
            env: c.env,
            tmpfs_size: c.tmpfs_size,
            hostname: c.hostname,
            allow_host_hostname: c.allow_host_hostname,
            hosts: c.hosts,
            dns: c.dns,
            net_namespace: c.net_namespace,
            log_level: c.log_level.as_str().to_ascii_lowercase(),
            seal_key_file: c.seal_key_file,
            store_max_bytes: c.store_max_bytes,
        }
    }
}
