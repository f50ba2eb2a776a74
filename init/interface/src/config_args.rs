//! Command-line flags shared by `encc image pull`, `encc-launch run` and `encc boot-config
//! init`, defined once so the three commands take the same names with the same meaning and
//! show the same help (clap `flatten`), named like skopeo's:
//!
//! - [`TrustArgs`]: the signature policy, registries.d and decryption keys (all three);
//! - [`KbsArgs`]: the Key Broker Service and the attester (all three);
//! - [`RegistryArgs`]: `--tls-verify` and `--insecure-registry` (all three);
//! - [`BootConfigArgs`]: those plus what only a boot config holds (`encc-launch run`,
//!   `encc boot-config init`).

use std::path::PathBuf;

use clap::Args;

use log::LevelFilter;

use crate::config::{
    AttesterKind, BootConfig, ConfigError, KbsConfig, PolicyRef, DEFAULT_TMPFS_SIZE,
};
use crate::resource::Location;

/// Which images are accepted and how encrypted layers are opened.
#[derive(Debug, Clone, Args)]
pub struct TrustArgs {
    /// Signature policy (containers-policy.json) checked before any layer is fetched: a
    /// file or kbs:///REPO/TYPE/TAG. Default: $HOME/.config/containers/policy.json, then
    /// /etc/containers/policy.json; with neither, images are refused unless
    /// --insecure-policy is given.
    #[arg(long, value_name = "FILE|URI", conflicts_with = "insecure_policy")]
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
    /// Private key for encrypted layers (PEM or DER: PKCS#1, PKCS#8, SEC1; or a JWK), a
    /// file or kbs:///REPO/TYPE/TAG; repeat for several. The first key that opens a
    /// layer's key envelope is used.
    #[arg(long = "decryption-key", value_name = "KEYFILE|URI")]
    pub decryption_keys: Vec<Location>,
}

/// The Key Broker Service (Confidential Containers' trustee, KBS protocol 0.4.0).
#[derive(Debug, Clone, Args)]
pub struct KbsArgs {
    /// KBS URL (https://…, or http:// to a loopback KBS). kbs:///REPO/TYPE/TAG names in
    /// --policy, --decryption-key and inside the policy are fetched from it after
    /// attestation, and so are the KEKs of layers encrypted for CoCo's key provider.
    #[arg(long, value_name = "URL")]
    pub kbs: Option<String>,
    /// Evidence presented to the KBS: sample (insecure, for test KBSes; the native
    /// platform's only choice) or sgx (DCAP quote via Occlum's /dev/sgx).
    #[arg(long, value_name = "TEE", default_value = "sample", requires = "kbs")]
    pub attester: AttesterKind,
}

impl KbsArgs {
    /// The KBS these flags name.
    pub fn config(&self) -> Option<KbsConfig> {
        self.kbs.as_ref().map(|url| KbsConfig {
            url: url.clone(),
            attester: self.attester,
        })
    }
}

/// How the image's registry is reached.
#[derive(Debug, Clone, Args)]
pub struct RegistryArgs {
    /// Require HTTPS with verified certificates for the image's registry (false, as in
    /// skopeo: skip certificate checks and allow plain HTTP).
    #[arg(
        long = "tls-verify",
        value_name = "BOOL",
        default_value_t = true,
        action = clap::ArgAction::Set
    )]
    pub tls_verify: bool,
    /// Registry (HOST[:PORT]) reached over plain HTTP or without certificate checks, while
    /// others keep them; repeatable.
    #[arg(long = "insecure-registry", value_name = "HOST:PORT")]
    pub insecure_registries: Vec<String>,
}

/// Flags for a boot config.
#[derive(Debug, Clone, Args)]
pub struct BootConfigArgs {
    /// Directory on host storage for the protected rootfs image.
    #[arg(long, value_name = "DIR", default_value = "/var/lib/encc")]
    pub store: PathBuf,
    #[command(flatten)]
    pub trust: TrustArgs,
    #[command(flatten)]
    pub kbs: KbsArgs,
    #[command(flatten)]
    pub registry: RegistryArgs,
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
    /// Let the container take the hostname of the UTS namespace encc starts in (a pod's)
    /// instead of --hostname.
    #[arg(long = "allow-host-hostname")]
    pub allow_host_hostname: bool,
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
    /// Log level inside the enclave (the boot config's log_level): error, warn, info,
    /// debug, trace or off. The default shows only what needs a person.
    #[arg(
        long = "log-level",
        value_name = "LEVEL",
        default_value = "warn",
        value_parser = parse_level
    )]
    pub log_level: LevelFilter,
}

fn parse_level(s: &str) -> Result<LevelFilter, String> {
    s.parse()
        .map_err(|_| format!("{s:?} is not a log level (error, warn, info, debug, trace, off)"))
}

impl BootConfigArgs {
    /// The boot config these flags describe (validated).
    pub fn to_config(&self) -> Result<BootConfig, ConfigError> {
        let trust = &self.trust;
        // Like skopeo: without a policy flag, the usual policy.json applies when one exists.
        let policy = match (&trust.policy, trust.insecure_policy) {
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
            registries_d: trust.registries_d.clone(),
            kbs: self.kbs.config(),
            decryption_keys: trust.decryption_keys.clone(),
            insecure_registries: self.registry.insecure_registries.clone(),
            tls_verify: self.registry.tls_verify,
            allow_host_args: self.allow_host_args,
            allow_local_layouts: self.allow_local_layouts,
            env_allowlist: self.env_allowlist.clone(),
            env: self.env.clone(),
            tmpfs_size: self.tmpfs_size_mib << 20,
            hostname: self.hostname.clone(),
            allow_host_hostname: self.allow_host_hostname,
            log_level: self.log_level,
            seal_key_file: self.seal_key_file.clone(),
            store_max_bytes: self.store_max_bytes,
            ..BootConfig::debugging(self.store.clone())
        };
        config.validate("from the command line")?;
        Ok(config)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        args: BootConfigArgs,
    }

    fn config(flags: &[&str]) -> BootConfig {
        let argv = ["t", "--store", "/s", "--insecure-policy"]
            .iter()
            .chain(flags);
        Cli::try_parse_from(argv).unwrap().args.to_config().unwrap()
    }

    #[test]
    fn defaults_are_quiet_and_verify_tls() {
        let c = config(&[]);
        assert_eq!(c.log_level, crate::config::DEFAULT_LOG_LEVEL);
        assert!(c.tls_verify);
        assert!(c.insecure_registries.is_empty());
        assert_eq!(c.kbs, None);
    }

    #[test]
    fn tls_verify_false_and_insecure_registry_reach_the_boot_config() {
        let c = config(&["--tls-verify=false"]);
        assert!(!c.tls_verify);
        let json = c.to_json();
        assert!(json.contains(r#""tls_verify": false"#), "{json}");
        let back = BootConfig::parse(json.as_bytes(), "t").unwrap();
        assert!(!back.tls_verify);
        let c = config(&[
            "--insecure-registry",
            "r.example:5000",
            "--tls-verify",
            "true",
        ]);
        assert!(c.tls_verify);
        assert_eq!(c.insecure_registries, ["r.example:5000"]);
        assert!(!c.to_json().contains("tls_verify"));
    }

    #[test]
    fn kbs_attester_and_log_level_reach_the_boot_config() {
        let c = config(&[
            "--kbs",
            "https://kbs.example",
            "--attester",
            "sgx",
            "--log-level",
            "debug",
        ]);
        assert_eq!(
            c.kbs,
            Some(KbsConfig {
                url: "https://kbs.example".into(),
                attester: AttesterKind::Sgx
            })
        );
        assert_eq!(c.log_level, LevelFilter::Debug);
        assert!(Cli::try_parse_from(["t", "--attester", "sgx"]).is_err());
    }
}
