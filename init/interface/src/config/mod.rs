//! The trusted boot config: everything the enclave decides without asking the host. On
//! Occlum it is a file in the measured initfs; on the native platform it is a file the
//! launcher names, and its sha256 is logged as part of the simulated measurement.
//!
//! It is parsed once, when it is read, into typed values ([`PolicyRef`], [`Location`],
//! [`AttesterKind`], a [`LevelFilter`]); nothing downstream looks at its strings again.
//! The JSON shape (with `deny_unknown_fields`) is the private `schema` module.

mod schema;
#[cfg(test)]
mod tests;
mod validate;

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use log::LevelFilter;
use sha2::{Digest as _, Sha256};

use crate::resource::{Location, ResourceUri};

pub use validate::{is_host_name, steers_init, valid_env_name};

/// Default size of the tmpfs holding the container's writable layer.
pub const DEFAULT_TMPFS_SIZE: u64 = 256 << 20;
/// The log level inside the enclave when the boot config names none: warnings that need a
/// person (an insecure policy, sample attestation) and errors only.
pub const DEFAULT_LOG_LEVEL: LevelFilter = LevelFilter::Warn;
/// Default size of the container's `/tmp`.
pub const DEFAULT_TMP_SIZE: u64 = 64 << 20;

/// The boot config, parsed. Serialized as the JSON of the schema (`boot.json`).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(try_from = "schema::BootConfigJson", into = "schema::BootConfigJson")]
pub struct BootConfig {
    /// Directory on (untrusted) host storage for the protected rootfs image.
    pub store: PathBuf,
    /// Signature policy (JSON: `policy` or `insecure_policy: true`, exactly one).
    pub policy: PolicyRef,
    /// registries.d directory (signature lookaside, use-sigstore-attachments).
    pub registries_d: PathBuf,
    /// Key Broker Service.
    pub kbs: Option<KbsConfig>,
    /// Private keys for encrypted layers. Files are for native debugging only: on a real
    /// enclave, keys come from the KBS.
    pub decryption_keys: Vec<Location>,
    /// Registries (`HOST[:PORT]`) reached over plain HTTP or without certificate checks.
    pub insecure_registries: Vec<String>,
    /// false: the image's registry, whichever the host names, is reached over plain HTTP
    /// or without certificate checks (skopeo's `--tls-verify=false`; JSON default true).
    pub tls_verify: bool,
    /// Whether host-supplied arguments may replace the image's `Cmd`.
    pub allow_host_args: bool,
    /// Whether the host may name an `oci:` layout (a directory on host storage) as the
    /// image; off by default: the host names registry images only.
    pub allow_local_layouts: bool,
    /// Names of host environment variables that may pass into the container.
    pub env_allowlist: Vec<String>,
    /// Trusted environment added after the image's (`NAME=value`).
    pub env: Vec<String>,
    /// Size of the tmpfs that holds the container's writable layer, in bytes.
    pub tmpfs_size: u64,
    /// Container hostname.
    pub hostname: String,
    /// Whether the container takes the hostname of the UTS namespace the enclave starts in
    /// (a pod's, set by the host) instead of `hostname`; it must still be a host name.
    pub allow_host_hostname: bool,
    /// Extra `/etc/hosts` lines.
    pub hosts: Vec<String>,
    /// Name servers for `/etc/resolv.conf` (none: the image's file is kept).
    pub dns: Vec<String>,
    /// After the pull, give the container its own network namespace with only `lo` up.
    pub net_namespace: bool,
    /// Log level inside the enclave (JSON: error, warn, info, debug, trace or off).
    pub log_level: LevelFilter,
    /// Native platform: a key file (64 hex characters) standing in for SGX sealing. With
    /// it, pulled images stay in the store with their data key sealed beside them and are
    /// reused by later starts; without it each start pulls again and the image is deleted.
    pub seal_key_file: Option<PathBuf>,
    /// Native platform, with `seal_key_file`: after a successful start, the least recently
    /// used kept images (never the one just started, nor one in use) are removed until the
    /// kept images hold at most this many bytes.
    pub store_max_bytes: Option<u64>,
}

/// Where the signature policy comes from.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PolicyRef {
    /// A containers-policy.json file.
    File(PathBuf),
    /// A containers-policy.json held by the Key Broker Service.
    Kbs(ResourceUri),
    /// Accept any image without checking signatures (debugging only).
    Insecure,
}

impl PolicyRef {
    /// A named policy: a file or a KBS resource.
    pub fn named(location: Location) -> Self {
        match location {
            Location::File(path) => Self::File(path),
            Location::Kbs(uri) => Self::Kbs(uri),
        }
    }

    /// The named policy, or None for [`PolicyRef::Insecure`].
    pub fn location(&self) -> Option<Location> {
        match self {
            Self::File(path) => Some(Location::File(path.clone())),
            Self::Kbs(uri) => Some(Location::Kbs(uri.clone())),
            Self::Insecure => None,
        }
    }
}

/// A Key Broker Service.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KbsConfig {
    /// Base URL, e.g. `https://kbs.example:8080`.
    pub url: String,
    /// The attester whose evidence the KBS gets.
    pub attester: AttesterKind,
}

/// Which attester produces evidence for the KBS. (Here rather than in stage 1 so the
/// schema can hold it typed; `encc_stage1::attester` re-exports it.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AttesterKind {
    /// Trustee's sample TEE (insecure; the native platform's only choice).
    #[default]
    Sample,
    /// SGX DCAP quotes through Occlum's `/dev/sgx`.
    Sgx,
}

/// An attester name that is not `sample` or `sgx`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown attester {0:?} (sample or sgx)")]
pub struct UnknownAttester(pub String);

impl FromStr for AttesterKind {
    type Err = UnknownAttester;

    fn from_str(s: &str) -> Result<Self, UnknownAttester> {
        match s {
            "sample" => Ok(Self::Sample),
            "sgx" => Ok(Self::Sgx),
            other => Err(UnknownAttester(other.to_owned())),
        }
    }
}

impl fmt::Display for AttesterKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Self::Sample => "sample",
            Self::Sgx => "sgx",
        })
    }
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
            policy: PolicyRef::Insecure,
            registries_d: PathBuf::from(crate::names::DEFAULT_REGISTRIES_D),
            kbs: None,
            decryption_keys: Vec::new(),
            insecure_registries: Vec::new(),
            tls_verify: true,
            allow_host_args: false,
            allow_local_layouts: false,
            env_allowlist: Vec::new(),
            env: Vec::new(),
            tmpfs_size: DEFAULT_TMPFS_SIZE,
            hostname: schema::DEFAULT_HOSTNAME.into(),
            allow_host_hostname: false,
            hosts: Vec::new(),
            dns: Vec::new(),
            net_namespace: false,
            log_level: DEFAULT_LOG_LEVEL,
            seal_key_file: None,
            store_max_bytes: None,
        }
    }

    /// Reads and parses a boot config file.
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

    /// Parses boot config JSON into typed values and checks it; `name` names it in errors.
    pub fn parse(bytes: &[u8], name: &str) -> Result<Self, ConfigError> {
        let json: schema::BootConfigJson =
            serde_json::from_slice(bytes).map_err(|source| ConfigError::Parse {
                name: name.to_owned(),
                source,
            })?;
        json.into_config(name)
    }

    /// Checks the rules the types cannot express (for configs built in code).
    pub fn validate(&self, name: &str) -> Result<(), ConfigError> {
        validate::check(self, name)
    }

    /// Pretty JSON.
    pub fn to_json(&self) -> String {
        // A struct of strings, paths, numbers and bools always serializes.
        serde_json::to_string_pretty(self).unwrap_or_default()
    }
}
