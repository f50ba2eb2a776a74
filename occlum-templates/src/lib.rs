//! Occlum.json and the initfs copy_bom file for the encc boot instance, rendered from a
//! [`RenderInput`] and checked before they are returned.
//!
//! The boot instance is an ordinary Occlum instance whose initfs holds encc's `init`, its
//! boot config at [`BOOT_CONFIG_PATH`] and a CA bundle. Occlum runs `init` first (stage 1:
//! pull, verify, unpack into a SEFS on the store); `init` then swaps the root with
//! MountRootFS and the host starts the image's entrypoint under the rendered `entry_points`.
//!
//! Field names follow Occlum 0.29–0.30's `Occlum.json` (`etc/template/Occlum.json`, the
//! configuration guide, and the `gen_internal_conf` tool that reads it). Not tried with
//! `occlum build` here: there is no Occlum SDK on this machine.

#![forbid(unsafe_code)]

mod copy_bom;
mod occlum_json;

use std::path::PathBuf;

pub use occlum_json::MIB;

/// Where the boot config lives in the initfs.
pub use encc_interface::names::INITFS_BOOT_CONFIG_PATH as BOOT_CONFIG_PATH;
/// Where `init` lives in the initfs (Occlum starts `/bin/init`).
pub const INIT_PATH: &str = "/bin/init";
/// Where the CA bundle lives in the initfs.
pub const CA_BUNDLE_PATH: &str = "/etc/ssl/certs/ca-certificates.crt";
/// The entry point when the image's entrypoint is not known at render time.
pub const DEFAULT_ENTRY_POINT: &str = "/bin";

/// Everything the templates need; plain values, filled from the boot config by the caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RenderInput {
    /// A name for the instance (letters, digits, '.', '_', '-'); used in the bom's header.
    pub instance_name: String,
    /// Host path of encc's `init` built for Occlum; copied to [`INIT_PATH`].
    pub init_binary: PathBuf,
    /// Host path of the boot config; copied to [`BOOT_CONFIG_PATH`].
    pub boot_config: PathBuf,
    /// Host path of a CA bundle for registry/KBS TLS; copied to [`CA_BUNDLE_PATH`].
    pub ca_bundle: Option<PathBuf>,
    /// The path prefix the host may start after stage 1 (Occlum's `entry_points`); None
    /// means [`DEFAULT_ENTRY_POINT`].
    pub entry_point: Option<String>,
    /// Names of host environment variables passed in (Occlum's `env.untrusted`); the boot
    /// config's allowlist.
    pub env_allowlist: Vec<String>,
    /// Trusted `NAME=value` entries added to `env.default` (after `OCCLUM=yes`).
    pub trusted_env: Vec<String>,
    /// Host directory of the image store (absolute).
    pub store_host_dir: PathBuf,
    /// Where the store appears inside the enclave (absolute).
    pub store_mount_point: PathBuf,
    /// Enclave memory for LibOS processes, in bytes (a whole number of MiB, ≥ 512 MiB).
    pub user_space_size: u64,
    /// The most LibOS threads at once (≥ 16: a streaming pull runs several).
    pub max_threads: u32,
    /// Whether the enclave may be debugged; must be false in production.
    pub debuggable: bool,
    /// SIGSTRUCT ISVPRODID.
    pub product_id: u16,
    /// SIGSTRUCT ISVSVN.
    pub version_number: u16,
}

/// Default `user_space_size`: room for init's streaming pull (layer buffers, decryption,
/// TLS) next to the container's processes.
pub const DEFAULT_USER_SPACE_SIZE: u64 = 2048 * MIB;
/// Default `max_threads`.
pub const DEFAULT_MAX_THREADS: u32 = 64;

impl RenderInput {
    /// An input with the default sizes, the default entry point, no env and not debuggable.
    pub fn new(
        instance_name: impl Into<String>,
        init_binary: impl Into<PathBuf>,
        boot_config: impl Into<PathBuf>,
        store_host_dir: impl Into<PathBuf>,
        store_mount_point: impl Into<PathBuf>,
    ) -> Self {
        Self {
            instance_name: instance_name.into(),
            init_binary: init_binary.into(),
            boot_config: boot_config.into(),
            ca_bundle: None,
            entry_point: None,
            env_allowlist: Vec::new(),
            trusted_env: Vec::new(),
            store_host_dir: store_host_dir.into(),
            store_mount_point: store_mount_point.into(),
            user_space_size: DEFAULT_USER_SPACE_SIZE,
            max_threads: DEFAULT_MAX_THREADS,
            debuggable: false,
            product_id: 0,
            version_number: 0,
        }
    }
}

/// The rendered files.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// `Occlum.json`.
    pub occlum_json: serde_json::Value,
    /// The initfs bom, for `copy_bom -f FILE --root initfs`.
    pub copy_bom: String,
}

impl Rendered {
    /// `Occlum.json` as text, pretty-printed with a final newline.
    pub fn occlum_json_text(&self) -> String {
        let mut text = format!("{:#}", self.occlum_json);
        text.push('\n');
        text
    }
}

/// Errors rendering the templates; each names the input field at fault.
#[derive(Debug, thiserror::Error)]
pub enum RenderError {
    /// An input field is out of range or malformed.
    #[error("invalid {field}: {reason}")]
    Invalid {
        /// The [`RenderInput`] field.
        field: &'static str,
        /// What is wrong.
        reason: String,
    },
    /// The built-in Occlum.json template does not parse (a build defect).
    #[error("the built-in Occlum.json template is not valid JSON")]
    Template(#[source] serde_json::Error),
    /// The built-in template lacks a field the renderer fills (a build defect).
    #[error("the built-in Occlum.json template has no {0}")]
    TemplateField(&'static str),
    /// The bom could not be serialized.
    #[error("failed to write the copy_bom file")]
    Bom(#[source] serde_yaml_ng::Error),
}

/// Renders `Occlum.json` and the initfs bom for `input`.
pub fn render(input: &RenderInput) -> Result<Rendered, RenderError> {
    Ok(Rendered {
        occlum_json: occlum_json::render(input)?,
        copy_bom: copy_bom::render(input)?,
    })
}

pub(crate) fn invalid(field: &'static str, reason: impl Into<String>) -> RenderError {
    RenderError::Invalid {
        field,
        reason: reason.into(),
    }
}

#[cfg(test)]
mod tests;
