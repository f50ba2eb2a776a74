//! The rules of a boot config that its types do not express.

use super::{AttesterKind, BootConfig, ConfigError};
use crate::names::IMAGE_ENV;

/// Checks `config`; `name` names it in errors.
pub(super) fn check(config: &BootConfig, name: &str) -> Result<(), ConfigError> {
    let field = |field, reason: String| ConfigError::Field {
        name: name.to_owned(),
        field,
        reason,
    };
    if !config.store.is_absolute() {
        return Err(field(
            "store",
            format!("{} is not an absolute path", config.store.display()),
        ));
    }
    for entry in &config.env {
        match entry.split_once('=') {
            Some((n, _)) if valid_env_name(n) => {}
            _ => return Err(field("env", format!("{entry:?} is not NAME=value"))),
        }
    }
    if let Some(bad) = config.env_allowlist.iter().find(|n| !valid_env_name(n)) {
        return Err(field(
            "env_allowlist",
            format!("{bad:?} is not a variable name"),
        ));
    }
    if let Some(bad) = config.env_allowlist.iter().find(|n| steers_init(n)) {
        return Err(field(
            "env_allowlist",
            format!(
                "{bad:?} steers init itself (TLS roots, proxies, logging or encc's own \
                 settings) and cannot come from the host"
            ),
        ));
    }
    if config.tmpfs_size < (1 << 20) {
        return Err(field(
            "tmpfs_size",
            format!("{} bytes is below 1 MiB", config.tmpfs_size),
        ));
    }
    if !is_host_name(&config.hostname) {
        return Err(field(
            "hostname",
            format!("{:?} is not a host name", config.hostname),
        ));
    }
    if let Some(seal) = config.seal_key_file.as_ref().filter(|p| !p.is_absolute()) {
        return Err(field(
            "seal_key_file",
            format!("{} is not an absolute path", seal.display()),
        ));
    }
    match (config.store_max_bytes, &config.seal_key_file) {
        (Some(0), _) => {
            return Err(field(
                "store_max_bytes",
                "0 bytes would keep nothing".into(),
            ))
        }
        (Some(_), None) => {
            return Err(field(
                "store_max_bytes",
                "has no effect without seal_key_file (nothing is kept in the store)".into(),
            ))
        }
        _ => {}
    }
    if let Some(kbs) = &config.kbs {
        if !(kbs.url.starts_with("http://") || kbs.url.starts_with("https://")) {
            return Err(field(
                "kbs.url",
                format!("{:?} is not an http(s) URL", kbs.url),
            ));
        }
        if kbs.attester == AttesterKind::Sgx && !kbs.url.starts_with("https://") {
            return Err(field(
                "kbs.url",
                format!(
                    "{:?}: with the sgx attester the KBS must be reached over https \
                     (the host controls the network and loopback)",
                    kbs.url
                ),
            ));
        }
    }
    for line in config.hosts.iter().chain(&config.dns) {
        if line.contains('\n') {
            return Err(field("hosts/dns", format!("{line:?} contains a newline")));
        }
    }
    Ok(())
}

/// `[A-Za-z_][A-Za-z0-9_]*`.
pub fn valid_env_name(name: &str) -> bool {
    let mut bytes = name.bytes();
    matches!(bytes.next(), Some(b) if b.is_ascii_alphabetic() || b == b'_')
        && bytes.all(|b| b.is_ascii_alphanumeric() || b == b'_')
}

/// Whether a variable steers init itself rather than the container: TLS roots
/// (`SSL_CERT_FILE`, `SSL_CERT_DIR`), proxies (`*_PROXY`, `*_proxy`, `NO_PROXY`), logging
/// (`RUST_LOG*`) and encc's own settings (`ENCC_*`, except the image reference
/// [`IMAGE_ENV`]). Such a variable never comes from the host: the boot config cannot allow
/// it, and init removes it from its own environment before stage 1.
pub fn steers_init(name: &str) -> bool {
    let upper = name.to_ascii_uppercase();
    matches!(
        upper.as_str(),
        "SSL_CERT_FILE" | "SSL_CERT_DIR" | "NO_PROXY"
    ) || upper.ends_with("_PROXY")
        || upper.starts_with("RUST_LOG")
        || (name.starts_with("ENCC_") && name != IMAGE_ENV)
}

/// A name `/etc/hostname` and `/etc/hosts` may hold: 1 to 64 letters, digits, `-` and `.`
/// (the kernel's limit; nothing that could end a line or start another field).
pub fn is_host_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}
