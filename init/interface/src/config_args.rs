//! Command-line flags that compose a boot config, shared by `encc boot-config init` and
//! `encc-launch run`, named like the pull flags (and skopeo's).

use std::path::PathBuf;

use clap::Args;

use crate::config::{BootConfig, ConfigError, KbsConfig, DEFAULT_TMPFS_SIZE};

/// Flags for a boot config.
#[derive(Debug, Clone, Args)]
pub struct BootConfigArgs {
    /// Directory on host storage for the protected rootfs image.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/encc")]
    pub store: PathBuf,
    /// Signature policy: a containers-policy.json file or kbs:///REPO/TYPE/TAG (default: the
    /// usual policy.json, $HOME/.config/containers then /etc/containers, when one exists).
    #[arg(long, value_name = "FILE|kbs:///…", conflicts_with = "insecure_policy")]
    pub policy: Option<String>,
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
    pub decryption_keys: Vec<String>,
    /// Key Broker Service URL.
    #[arg(long, value_name = "URL")]
    pub kbs: Option<String>,
    /// Registry (HOST[:PORT]) reached over plain HTTP or without certificate checks; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
    /// Let host arguments replace the image's Cmd.
    #[arg(long = "allow-host-args")]
    pub allow_host_args: bool,
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
    /// Log level inside the enclave.
    #[arg(long = "log-level", default_value = "info")]
    pub log_level: String,
}

impl BootConfigArgs {
    /// The boot config these flags describe (validated).
    pub fn to_config(&self) -> Result<BootConfig, ConfigError> {
        // Like skopeo: without a policy flag, the usual policy.json applies when one exists.
        let policy = self.policy.clone().or_else(|| {
            (!self.insecure_policy)
                .then(|| {
                    crate::names::default_policy_paths()
                        .into_iter()
                        .find(|p| p.is_file())
                        .map(|p| p.display().to_string())
                })
                .flatten()
        });
        let config = BootConfig {
            policy,
            insecure_policy: self.insecure_policy,
            registries_d: self.registries_d.clone(),
            kbs: self.kbs.clone().map(|url| KbsConfig {
                url,
                attester: "sample".into(),
            }),
            decryption_keys: self.decryption_keys.clone(),
            insecure_registries: self.insecure_registries.clone(),
            allow_host_args: self.allow_host_args,
            env_allowlist: self.env_allowlist.clone(),
            env: self.env.clone(),
            tmpfs_size: self.tmpfs_size_mib << 20,
            hostname: self.hostname.clone(),
            log_level: self.log_level.clone(),
            seal_key_file: self.seal_key_file.clone(),
            ..BootConfig::debugging(self.store.clone())
        };
        config.validate("from the command line")?;
        Ok(config)
    }
}
