//! The trusted boot config: everything the enclave decides without asking the host. On
//! Occlum it is a file in the measured initfs; on the native platform it is a file the
//! launcher names, and its sha256 is logged as part of the simulated measurement.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};

/// Default size of the tmpfs holding the container's writable layer.
pub const DEFAULT_TMPFS_SIZE: u64 = 256 << 20;
/// Default size of the container's `/tmp`.
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;

/// The boot config (JSON).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BootConfig {
    /// Directory on (untrusted) host storage for the protected rootfs image.
    pub store: PathBuf,
    /// Signature policy: a containers-policy.json path or a `kbs:///REPO/TYPE/TAG` URI.
    /// Exactly one of `policy` and `insecure_policy: true` must be given.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub policy: Option<String>,
    /// Accept any image without checking signatures (debugging only).
    #[serde(default, skip_serializing_if = "is_false")]
    pub insecure_policy: bool,
    /// registries.d directory (signature lookaside, use-sigstore-attachments).
    #[serde(default = "default_registries_d")]
    pub registries_d: PathBuf,
    /// Key Broker Service.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kbs: Option<KbsConfig>,
    /// Private keys for encrypted layers: files or `kbs:///` URIs. Files are for native
    /// debugging only: on a real enclave, keys come from the KBS.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub decryption_keys: Vec<String>,
    /// Registries (`HOST[:PORT]`) reached over plain HTTP or without certificate checks.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub insecure_registries: Vec<String>,
    /// Whether host-supplied arguments may replace the image's `Cmd`.
    #[serde(default, skip_serializing_if = "is_false")]
    pub allow_host_args: bool,
    /// Names of host environment variables that may pass into the container.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env_allowlist: Vec<String>,
    /// Trusted environment added after the image's (`NAME=value`).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub env: Vec<String>,
    /// Size of the tmpfs that holds the container's writable layer, in bytes.
    #[serde(default = "default_tmpfs_size")]
    pub tmpfs_size: u64,
    /// Container hostname.
    #[serde(default = "default_hostname")]
    pub hostname: String,
    /// Extra `/etc/hosts` lines.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub hosts: Vec<String>,
    /// Name servers for `/etc/resolv.conf` (none: the image's file is kept).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub dns: Vec<String>,
    /// After the pull, give the container its own network namespace with only `lo` up.
    #[serde(default, skip_serializing_if = "is_false")]
    pub net_namespace: bool,
    /// Log level: error, warn, info, debug, trace.
    #[serde(default = "default_log_level")]
    pub log_level: String,
    /// Native platform: a key file (64 hex characters) standing in for SGX sealing. With
    /// it, pulled images stay in the store with their data key sealed beside them and are
    /// reused by later starts; without it each start pulls again and the image is deleted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seal_key_file: Option<PathBuf>,
}

/// A Key Broker Service.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KbsConfig {
    /// Base URL, e.g. `http://127.0.0.1:8080`.
    pub url: String,
    /// Attester: `sample` (native platform) or `sgx`.
    #[serde(default = "default_attester")]
    pub attester: String,
}

fn is_false(b: &bool) -> bool {
    !*b
}
fn default_registries_d() -> PathBuf {
    PathBuf::from(crate::names::DEFAULT_REGISTRIES_D)
}
fn default_tmpfs_size() -> u64 {
    DEFAULT_TMPFS_SIZE
}
fn default_hostname() -> String {
    "encc".into()
}
fn default_log_level() -> String {
    "info".into()
}
fn default_attester() -> String {
    "sample".into()
}

/// Why a boot config is refused.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    /// The file cannot be read.
    #[error("cannot read boot config {}", path.display())]
    Read {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Not JSON of the boot config's shape (unknown fields included).
    #[error("boot config {name} is invalid")]
    Parse {
        /// File name.
        name: String,
        /// The cause.
        #[source]
        source: serde_json::Error,
    },
    /// A field value is invalid.
    #[error("boot config {name}: {field}: {reason}")]
    Field {
        /// File name.
        name: String,
        /// The field.
        field: &'static str,
        /// Why.
        reason: String,
    },
}

/// A loaded boot config with its measurement.
#[derive(Debug, Clone)]
pub struct LoadedConfig {
    /// The config.
    pub config: BootConfig,
    /// sha256 of the file's bytes (hex).
    pub sha256: String,
}

impl BootConfig {
    /// Defaults for debugging tools: the given store, any image accepted, nothing from
    /// the host allowed in.
    pub fn debugging(store: PathBuf) -> Self {
        Self {
            store,
            policy: None,
            insecure_policy: true,
            registries_d: default_registries_d(),
            kbs: None,
            decryption_keys: Vec::new(),
            insecure_registries: Vec::new(),
            allow_host_args: false,
            env_allowlist: Vec::new(),
            env: Vec::new(),
            tmpfs_size: DEFAULT_TMPFS_SIZE,
            hostname: default_hostname(),
            hosts: Vec::new(),
            dns: Vec::new(),
            net_namespace: false,
            log_level: default_log_level(),
            seal_key_file: None,
        }
    }

    /// Reads and validates a boot config file.
    pub fn load(path: &Path) -> Result<LoadedConfig, ConfigError> {
        let bytes = std::fs::read(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        let config = Self::parse(&bytes, &path.display().to_string())?;
        Ok(LoadedConfig {
            config,
            sha256: hex::encode(Sha256::digest(&bytes)),
        })
    }

    /// Parses and validates boot config JSON; `name` names it in errors.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, ConfigError> {
        let config: Self = serde_json::from_slice(bytes).map_err(|source| ConfigError::Parse {
            name: name.to_owned(),
            source,
        })?;
        config.validate(name)?;
        Ok(config)
    }

    /// Checks the rules serde cannot express.
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        let field = |field, reason: String| ConfigError::Field {
            name: name.to_owned(),
            field,
            reason,
        };
        if !self.store.is_absolute() {
            return Err(field(
                "store",
                format!("{} is not an absolute path", self.store.display()),
            ));
        }
        match (&self.policy, self.insecure_policy) {
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
            _ => {}
        }
        for entry in &self.env {
            match entry.split_once('=') {
                Some((n, _)) if valid_env_name(n) => {}
                _ => return Err(field("env", format!("{entry:?} is not NAME=value"))),
            }
        }
        if let Some(bad) = self.env_allowlist.iter().find(|n| !valid_env_name(n)) {
            return Err(field(
                "env_allowlist",
                format!("{bad:?} is not a variable name"),
            ));
        }
        if self.tmpfs_size < (1 << 20) {
            return Err(field(
                "tmpfs_size",
                format!("{} bytes is below 1 MiB", self.tmpfs_size),
            ));
        }
        let hostname_ok = !self.hostname.is_empty()
            && self.hostname.len() <= 64
            && self
                .hostname
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.');
        if !hostname_ok {
            return Err(field(
                "hostname",
                format!("{:?} is not a host name", self.hostname),
            ));
        }
        if self.log_level.parse::<log::LevelFilter>().is_err() {
            return Err(field(
                "log_level",
                format!("{:?} is not a log level", self.log_level),
            ));
        }
        if let Some(seal) = self.seal_key_file.as_ref().filter(|p| !p.is_absolute()) {
            return Err(field(
                "seal_key_file",
                format!("{} is not an absolute path", seal.display()),
            ));
        }
        if let Some(kbs) = &self.kbs {
            if !(kbs.url.starts_with("http://") || kbs.url.starts_with("https://")) {
                return Err(field(
                    "kbs.url",
                    format!("{:?} is not an http(s) URL", kbs.url),
                ));
            }
            if !matches!(kbs.attester.as_str(), "sample" | "sgx") {
                return Err(field(
                    "kbs.attester",
                    format!("{:?} is not sample or sgx", kbs.attester),
                ));
            }
        }
        for line in self.hosts.iter().chain(&self.dns) {
            if line.contains('\n') {
                return Err(field("hosts/dns", format!("{line:?} contains a newline")));
            }
        }
        Ok(())
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, paths, numbers and bools always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn minimal_config_gets_defaults() {
        let c =
            BootConfig::parse(br#"{"store": "/var/lib/encc", "policy": "/p.json"}"#, "t").unwrap();
        assert_eq!(c.hostname, "encc");
        assert_eq!(c.tmpfs_size, DEFAULT_TMPFS_SIZE);
        assert!(!c.allow_host_args);
        assert!(c.env_allowlist.is_empty());
        let again = BootConfig::parse(c.to_json().as_bytes(), "t").unwrap();
        assert_eq!(again, c);
    }

    #[test]
    fn unknown_fields_and_bad_values_are_refused_with_the_field_named() {
        let cases: [(&str, &str); 8] = [
            (
                r#"{"store": "/s", "policy": "/p", "allow_host_arg": true}"#,
                "unknown field",
            ),
            (r#"{"store": "/s"}"#, "policy: no signature policy"),
            (
                r#"{"store": "/s", "policy": "/p", "insecure_policy": true}"#,
                "insecure_policy",
            ),
            (r#"{"store": "s", "insecure_policy": true}"#, "store"),
            (
                r#"{"store": "/s", "insecure_policy": true, "env": ["NOEQUALS"]}"#,
                "env",
            ),
            (
                r#"{"store": "/s", "insecure_policy": true, "env_allowlist": ["A-B"]}"#,
                "env_allowlist",
            ),
            (
                r#"{"store": "/s", "insecure_policy": true, "hostname": "a b"}"#,
                "hostname",
            ),
            (
                r#"{"store": "/s", "insecure_policy": true, "kbs": {"url": "ftp://x"}}"#,
                "kbs.url",
            ),
        ];
        for (json, needle) in cases {
            let err = BootConfig::parse(json.as_bytes(), "boot.json").unwrap_err();
            let text = format!(
                "{err}: {}",
                std::error::Error::source(&err)
                    .map(|s| s.to_string())
                    .unwrap_or_default()
            );
            assert!(
                text.contains(needle) && text.contains("boot.json"),
                "{json}: {text}"
            );
        }
    }

    #[test]
    fn env_names() {
        assert!(valid_env_name("PATH"));
        assert!(valid_env_name("_x1"));
        assert!(!valid_env_name("1X"));
        assert!(!valid_env_name(""));
        assert!(!valid_env_name("A=B"));
    }
}
