//! Command-line flags that compose a boot config, shared by `encc boot-config init` and
//! `encc-launch run`, named like the pull flags (and skopeo's).

use std::path::PathBuf;

use clap::Args;

use log::LevelFilter;

use crate::config::{
    AttesterKind, BootConfig, ConfigError, KbsConfig, PolicyRef, DEFAULT_TMPFS_SIZE,
};
use crate::resource::Location;

/// Flags for a boot config.
#[derive(Debug, Clone, Args)]
pub struct BootConfigArgs {
    /// Directory on host storage for the protected rootfs image.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/encc")]
    pub store: PathBuf,
    /// Signature policy: a containers-policy.json file or kbs:///REPO/TYPE/TAG (default: the
    /// usual policy.json, $HOME/.config/containers then /etc/containers, when one exists).
    #[arg(long, value_name = "FILE|kbs:///…", conflicts_with = "insecure_policy")]
    pub policy: Option<Location>,
    /// Accept any image without checking signatures.
    #[arg(long = "insecure-policy")]
    pub insecure_policy: bool,
    /// registries.d directory (signature lookaside, use-sigstore-attachments).
    #[arg(
        long = "registries.d",
        value_name = "DIR",
        default_value = crate::names::DEFAULT_REGISTRIES_D
    )]
    pub registries_d: PathBuf,
    /// Private key for encrypted layers (file or kbs:///…); repeatable.
    #[arg(long = "decryption-key", value_name = "KEY")]
    pub decryption_keys: Vec<Location>,
    /// Key Broker Service URL.
    #[arg(long, value_name = "URL")]
    pub kbs: Option<String>,
    /// Registry (HOST[:PORT]) reached over plain HTTP or without certificate checks; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Let host arguments replace the image's Cmd.
    #[arg(long = "allow-host-args")]
    pub allow_host_args: bool,
    /// Let the host name an oci: layout (a directory on host storage) as the image.
    #[arg(long = "allow-local-layouts")]
    pub allow_local_layouts: bool,
    /// Host environment variables that may pass into the container.
    #[arg(long = "env-allowlist", value_name = "NAME,…", value_delimiter = ',')]
    pub env_allowlist: Vec<String>,
    /// Trusted environment for the container (NAME=value); repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    pub env: Vec<String>,
    /// Container hostname.
    #[arg(long, default_value = "encc")]
    pub hostname: String,
    /// Size of the in-memory writable layer, in MiB.
    #[arg(long = "tmpfs-size-mib", default_value_t = DEFAULT_TMPFS_SIZE >> 20)]
    pub tmpfs_size_mib: u64,
    /// Native platform: key file standing in for SGX sealing; pulled images are then kept
    /// in the store (data key sealed) and reused by later starts.
    #[arg(long = "seal-key-file", value_name = "KEYFILE")]
    pub seal_key_file: Option<PathBuf>,
    /// With --seal-key-file: after a successful start, remove the least recently used kept
    /// images until they hold at most this many bytes.
    #[arg(long = "store-max-bytes", value_name = "BYTES")]
    pub store_max_bytes: Option<u64>,
    /// Log level inside the enclave.
    #[arg(long = "log-level", default_value = "info", value_parser = parse_level)]
    pub log_level: LevelFilter,
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a log level (error, warn, info, debug, trace, off)"))
}

impl BootConfigArgs {
    /// The boot config these flags describe (validated).
    pub fn to_config(&self) -> Result<BootConfig, ConfigError> {
        // Like skopeo: without a policy flag, the usual policy.json applies when one exists.
        let policy = match (&self.policy, self.insecure_policy) {
            (Some(named), _) => PolicyRef::named(named.clone()),
            (None, true) => PolicyRef::Insecure,
            (None, false) => crate::names::default_policy_paths()
                .into_iter()
                .find(|p| p.is_file())
                .map(PolicyRef::File)
                .ok_or_else(|| ConfigError::Field {
                    name: "from the command line".into(),
                    field: "policy",
                    reason: "no signature policy: none given and none of the usual \
                             policy.json files exists (use --policy, or --insecure-policy)"
                        .into(),
                })?,
        };
        let config = BootConfig {
            policy,
            registries_d: self.registries_d.clone(),
            kbs: self.kbs.clone().map(|url| KbsConfig {
                url,
                attester: AttesterKind::Sample,
            }),
            decryption_keys: self.decryption_keys.clone(),
            insecure_registries: self.insecure_registries.clone(),
            allow_host_args: self.allow_host_args,
            allow_local_layouts: self.allow_local_layouts,
            env_allowlist: self.env_allowlist.clone(),
            env: self.env.clone(),
            tmpfs_size: self.tmpfs_size_mib << 20,
            hostname: self.hostname.clone(),
            log_level: self.log_level,
            seal_key_file: self.seal_key_file.clone(),
            store_max_bytes: self.store_max_bytes,
            ..BootConfig::debugging(self.store.clone())
        };
        config.validate("from the command line")?;
        Ok(config)
    }
}
