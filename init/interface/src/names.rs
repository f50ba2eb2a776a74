//! Names two processes (or the host and the enclave) must agree on: one home for each.

use std::path::{Path, PathBuf};

/// The host environment variable naming the image reference (untrusted): set by the host
/// launcher, read by `occlum_pal_init` and by `init` under Occlum, passed by Occlum.json's
/// `env.untrusted`.
pub const IMAGE_ENV: &str = "ENCC_IMAGE";

/// The environment variable naming the control fd of a native enclave process.
pub const CONTROL_FD_ENV: &str = "ENCC_ENCLAVE_FD";

/// The file name of the boot config in an instance directory (`occlum_pal_init`'s
/// `instance_dir/boot.json`) and in temporary dirs of the launchers.
pub const BOOT_CONFIG_FILE: &str = "boot.json";

/// Where the boot config lives in Occlum's initfs (measured with it).
pub const INITFS_BOOT_CONFIG_PATH: &str = "/etc/encc/boot.json";

/// registries.d when none is named (skopeo's default).
pub const DEFAULT_REGISTRIES_D: &str = "/etc/containers/registries.d";

/// The per-user signature policy, relative to `$HOME` (skopeo's first choice).
pub const USER_POLICY_PATH: &str = ".config/containers/policy.json";

/// The system-wide signature policy (skopeo's second choice).
pub const SYSTEM_POLICY_PATH: &str = "/etc/containers/policy.json";

/// Where the policy file is looked for when none is named, most specific first:
/// `$HOME/`[`USER_POLICY_PATH`], then [`SYSTEM_POLICY_PATH`].
pub fn default_policy_paths() -> Vec<PathBuf> {
    let mut paths = Vec::new();
    if let Some(home) = std::env::var_os("HOME") {
        paths.push(Path::new(&home).join(USER_POLICY_PATH));
    }
    paths.push(PathBuf::from(SYSTEM_POLICY_PATH));
    paths
}
