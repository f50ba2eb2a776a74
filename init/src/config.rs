//! The trusted boot config on init's side. Its schema and typed values are shared with the
//! host side ([`encc_interface::config`], re-exported here); this module holds what init
//! alone does with it: checking the host's image reference against it, and keeping the
//! host's environment from steering init itself.

use encc_stage1::reference::{ImageRef, ReferenceError};

pub use encc_interface::config::*;

/// Why the image reference the host names is refused.
#[derive(Debug, thiserror::Error)]
pub enum HostReferenceError {
    /// Not an image reference (the error names what the host sent, once).
    #[error(transparent)]
    Invalid(ReferenceError),
    /// An `oci:` layout, and the boot config does not allow them.
    #[error(
        "image reference {reference:?} from the host names an oci: layout on host storage, \
         and the boot config does not allow local layouts (allow_local_layouts)"
    )]
    LocalLayout {
        /// What the host sent.
        reference: String,
    },
}

/// The image the host names, parsed and checked against the boot config: an `oci:`
/// layout (a directory the host controls) only when `allow_local_layouts` is set.
pub fn host_reference(config: &BootConfig, image: &str) -> Result<ImageRef, HostReferenceError> {
    let reference: ImageRef = image.parse().map_err(HostReferenceError::Invalid)?;
    if matches!(reference, ImageRef::Layout(_)) && !config.allow_local_layouts {
        return Err(HostReferenceError::LocalLayout {
            reference: image.to_owned(),
        });
    }
    Ok(reference)
}

/// Whether loopback and the network are the untrusted host's: on Occlum (where loopback
/// is the host) or when the attester is `sgx`. Then a loopback registry earns no trust of
/// its own, and a KBS is reached over https only.
pub fn host_owns_loopback(config: &BootConfig, on_occlum: bool) -> bool {
    on_occlum
        || config
            .kbs
            .as_ref()
            .is_some_and(|kbs| kbs.attester == AttesterKind::Sgx)
}

/// A KBS over plain http where the host owns loopback and the network.
#[derive(Debug, thiserror::Error)]
#[error(
    "boot config kbs.url {url:?} is not https: on Occlum or with the sgx attester the host \
     owns loopback and the network, so the KBS is reached over https only"
)]
pub struct PlainKbsError {
    /// The configured URL.
    pub url: String,
}

/// Removes from this process's environment every variable that steers init itself
/// ([`steers_init`]: TLS roots, proxies, logging, encc's own settings other than the
/// image reference) and returns their names. Call before logging is set up and before
/// stage 1, while the process is still single-threaded.
pub fn scrub_own_environment() -> Vec<String> {
    let names: Vec<String> = std::env::vars_os()
        .filter_map(|(name, _)| name.into_string().ok())
        .filter(|name| steers_init(name))
        .collect();
    for name in &names {
        std::env::remove_var(name);
    }
    let _ = SCRUBBED.set(names.clone());
    names
}

/// What [`scrub_own_environment`] removed, for [`report_scrubbed`].
static SCRUBBED: std::sync::OnceLock<Vec<String>> = std::sync::OnceLock::new();

/// Sets up the enclave's log on stderr: every record passes the logger (but fuser's
/// per-request lines), and the level is [`DEFAULT_LOG_LEVEL`] until the boot config's
/// `log_level` replaces it (`log::set_max_level`). The host's `RUST_LOG` is scrubbed before
/// this and has no say.
pub fn init_enclave_logging() {
    use std::io::Write as _;
    let _ = env_logger::Builder::new()
        .filter_level(log::LevelFilter::Trace)
        // fuser logs every FUSE request at debug level, from the threads that serve the
        // container's files: into a stderr the container also writes (`2>&1`, a splice from
        // a served file holding the pipe) such a line would stall the server for good.
        .filter_module("fuser", log::LevelFilter::Info)
        .format(|out, record| match record.level() {
            log::Level::Error => writeln!(out, "encc: error: {}", record.args()),
            log::Level::Warn => writeln!(out, "encc: warning: {}", record.args()),
            level => writeln!(
                out,
                "encc: {} {}: {}",
                level.as_str().to_ascii_lowercase(),
                record.target(),
                record.args()
            ),
        })
        .try_init();
    log::set_max_level(DEFAULT_LOG_LEVEL);
}

/// Logs, at info level, the host variables [`scrub_own_environment`] removed: called once
/// the boot config's log level is in force (the host's variables are no reason to speak
/// before that).
pub fn report_scrubbed() {
    if let Some(names) = SCRUBBED.get().filter(|n| !n.is_empty()) {
        log::info!(
            "ignored host variables that steer init: {}",
            names.join(", ")
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn config(extra: &str) -> BootConfig {
        let json = format!(r#"{{"store": "/s", "insecure_policy": true{extra}}}"#);
        BootConfig::parse(json.as_bytes(), "boot.json").unwrap()
    }

    #[test]
    fn oci_layouts_from_the_host_need_allow_local_layouts() {
        let strict = config("");
        let err = host_reference(&strict, "oci:/var/lib/x:latest").unwrap_err();
        assert!(matches!(err, HostReferenceError::LocalLayout { .. }));
        assert!(err.to_string().contains("allow_local_layouts"), "{err}");
        assert!(host_reference(&strict, "docker://reg.example/a/b:1").is_ok());
        assert!(matches!(
            host_reference(&strict, "docker://"),
            Err(HostReferenceError::Invalid(_))
        ));
        let open = config(r#", "allow_local_layouts": true"#);
        assert!(matches!(
            host_reference(&open, "oci:/var/lib/x:latest"),
            Ok(ImageRef::Layout(_))
        ));
    }

    #[test]
    fn variables_that_steer_init_cannot_be_allowlisted() {
        for name in [
            "SSL_CERT_FILE",
            "SSL_CERT_DIR",
            "HTTPS_PROXY",
            "https_proxy",
            "ALL_PROXY",
            "NO_PROXY",
            "no_proxy",
            "RUST_LOG",
            "RUST_LOG_STYLE",
            "ENCC_ENCLAVE_FD",
            "ENCC_INIT",
        ] {
            let json = format!(
                r#"{{"store": "/s", "insecure_policy": true, "env_allowlist": ["LANG", "{name}"]}}"#
            );
            let err = BootConfig::parse(json.as_bytes(), "boot.json").unwrap_err();
            assert!(
                err.to_string().contains("env_allowlist")
                    && err.to_string().contains(name)
                    && err.to_string().contains("steers init"),
                "{name}: {err}"
            );
        }
        // The image reference and ordinary variables are fine.
        let c = config(r#", "env_allowlist": ["ENCC_IMAGE", "LANG", "PROXY_MODE", "TZ"]"#);
        assert_eq!(c.env_allowlist.len(), 4);
    }

    #[test]
    fn the_sgx_attester_needs_an_https_kbs() {
        let json = r#"{"store": "/s", "insecure_policy": true,
                       "kbs": {"url": "http://127.0.0.1:8080", "attester": "sgx"}}"#;
        let err = BootConfig::parse(json.as_bytes(), "boot.json").unwrap_err();
        assert!(
            err.to_string().contains("kbs.url") && err.to_string().contains("https"),
            "{err}"
        );
        config(r#", "kbs": {"url": "https://kbs.example", "attester": "sgx"}"#);
        // The sample attester (native platform) may use a loopback KBS over http.
        config(r#", "kbs": {"url": "http://127.0.0.1:8080"}"#);
    }

    #[test]
    fn loopback_earns_no_trust_on_occlum_or_with_sgx() {
        use crate::stage1::stage1_config;
        let loopback = |c: &BootConfig, occlum| {
            stage1_config(c, occlum)
                .unwrap()
                .pull
                .registry
                .trust_loopback
        };
        let native = config(r#", "kbs": {"url": "http://127.0.0.1:8080"}"#);
        assert!(loopback(&native, false));
        assert!(loopback(&config(""), false));
        assert!(!loopback(&config(""), true));
        let sgx = config(r#", "kbs": {"url": "https://kbs.example", "attester": "sgx"}"#);
        assert!(!loopback(&sgx, false));
        assert!(!loopback(&sgx, true));
        // On Occlum a plain-http KBS is refused whatever the attester.
        let Err(err) = stage1_config(&native, true) else {
            panic!("a plain-http KBS was accepted on Occlum")
        };
        assert!(err.to_string().contains("http://127.0.0.1:8080"), "{err}");
        assert!(err.to_string().contains("https only"), "{err}");
    }
}
