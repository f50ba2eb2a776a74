//! What the trusted configuration lets the transport do: which schemes a registry is tried
//! with, which token realms may receive credentials over plain HTTP, and which CAs count.

use std::sync::Arc;

use ureq::tls::{Certificate, RootCerts, TlsConfig};

use crate::reference::DockerRef;

use super::{RegistryError, RegistryOptions};

/// The schemes to try for `image`, in order. Plain HTTP only for a registry listed in
/// `insecure_registries`, with `tls_verify` off, or on loopback while `trust_loopback` holds
/// (tests and debug setups: tried first there).
pub(super) fn schemes(image: &DockerRef, options: &RegistryOptions) -> &'static [&'static str] {
    let trusted_loopback = options.trust_loopback && image.is_loopback();
    let plain_allowed = trusted_loopback
        || options.insecure_registries.contains(&image.registry)
        || !options.tls_verify;
    match (trusted_loopback, plain_allowed) {
        (true, _) => &["http", "https"],
        (false, true) => &["https", "http"],
        (false, false) => &["https"],
    }
}

/// Whether the registry's credentials may go to the token realm `realm`: over HTTPS, or over
/// plain HTTP to a `host:port` listed in `insecure_registries` or to the registry itself when
/// it is already reached over plain HTTP (`base`, e.g. `http://127.0.0.1:5000`). A realm on
/// another host over plain HTTP gets none: anyone on the path would read them.
pub(super) fn credentials_may_go_to(realm: &str, base: &str, insecure: &[String]) -> bool {
    let Ok(uri) = realm.parse::<ureq::http::Uri>() else {
        return false;
    };
    let Some(authority) = uri.authority().map(|a| a.as_str()) else {
        return false;
    };
    match uri.scheme_str() {
        Some("https") => true,
        Some("http") => {
            insecure.iter().any(|r| r == authority)
                || base.strip_prefix("http://") == Some(authority)
        }
        _ => false,
    }
}

/// System roots plus `*.crt` files of the cert dir; verification off with `tls_verify=false`
/// and for a registry listed in `insecure_registries` (as containers' `insecure = true`).
/// The system roots are only read when certificates are checked: reading them opens every
/// file of the system's certificate directory (about 15 ms with Debian's bundle), on every
/// start.
pub(super) fn tls_config(
    image: &DockerRef,
    options: &RegistryOptions,
) -> Result<TlsConfig, RegistryError> {
    let verify = verifies_certificates(image, options);
    let mut roots = if verify { system_roots() } else { Vec::new() };
    if let Some(dir) = &options.cert_dir {
        let config_err = |source| RegistryError::Config {
            path: dir.clone(),
            source,
        };
        for entry in std::fs::read_dir(dir).map_err(config_err)? {
            let path = entry.map_err(config_err)?.path();
            if path.extension().is_some_and(|e| e == "crt") {
                let pem = std::fs::read(&path).map_err(|source| RegistryError::Config {
                    path: path.clone(),
                    source,
                })?;
                let cert = Certificate::from_pem(&pem).map_err(|e| RegistryError::Config {
                    path: path.clone(),
                    source: std::io::Error::new(std::io::ErrorKind::InvalidData, e.to_string()),
                })?;
                roots.push(cert);
            }
        }
    }
    Ok(TlsConfig::builder()
        .root_certs(RootCerts::Specific(Arc::new(roots)))
        .disable_verification(!verify)
        .build())
}

/// The system's CA roots (`SSL_CERT_FILE`, `SSL_CERT_DIR`, else the distribution's bundle);
/// those that cannot be read are left out, as TLS clients do.
pub(crate) fn system_roots() -> Vec<Certificate<'static>> {
    rustls_native_certs::load_native_certs()
        .certs
        .into_iter()
        .map(|c| Certificate::from_der(c.as_ref()).to_owned())
        .collect()
}

/// Whether the registry's certificate is checked: unless `tls_verify` is false or the
/// registry is listed in `insecure_registries`.
pub(super) fn verifies_certificates(image: &DockerRef, options: &RegistryOptions) -> bool {
    options.tls_verify && !options.insecure_registries.contains(&image.registry)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(s: &str) -> DockerRef {
        match s.parse().unwrap() {
            crate::reference::ImageRef::Docker(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn certificates_are_checked_unless_turned_off_or_listed() {
        let image = docker("registry.example:5000/app");
        let mut options = RegistryOptions::default();
        assert!(verifies_certificates(&image, &options));
        options.insecure_registries = vec!["other.example".into()];
        assert!(verifies_certificates(&image, &options));
        options.insecure_registries = vec!["registry.example:5000".into()];
        assert!(!verifies_certificates(&image, &options));
        let options = RegistryOptions {
            tls_verify: false,
            ..RegistryOptions::default()
        };
        assert!(!verifies_certificates(&image, &options));
    }

    #[test]
    fn system_roots_are_read_only_when_certificates_are_checked() {
        let roots = |c: &TlsConfig| match c.root_certs() {
            RootCerts::Specific(r) => r.len(),
            other => panic!("{other:?}"),
        };
        assert!(
            !system_roots().is_empty(),
            "no system CA roots to tell apart"
        );
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(dir.path().join("extra.crt"), TEST_CA).unwrap();
        let image = docker("registry.example:5000/app");
        let mut options = RegistryOptions {
            cert_dir: Some(dir.path().to_owned()),
            ..RegistryOptions::default()
        };
        let checked = tls_config(&image, &options).unwrap();
        assert_eq!(roots(&checked), system_roots().len() + 1);
        assert!(!checked.disable_verification());
        options.insecure_registries = vec!["registry.example:5000".into()];
        let unchecked = tls_config(&image, &options).unwrap();
        assert!(unchecked.disable_verification());
        // The cert dir's own CA only: no system root was read.
        assert_eq!(roots(&unchecked), 1);
    }

    /// A self-signed CA (`openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256`).
    const TEST_CA: &str = include_str!("../../../tests/data/test-ca.pem");

    #[test]
    fn loopback_speaks_plain_http_only_while_trusted_or_listed() {
        let local = docker("127.0.0.1:5000/app");
        let mut options = RegistryOptions::default();
        assert_eq!(schemes(&local, &options), ["http", "https"]);
        options.trust_loopback = false;
        assert_eq!(schemes(&local, &options), ["https"]);
        assert_eq!(schemes(&docker("localhost/app"), &options), ["https"]);
        options.insecure_registries = vec!["127.0.0.1:5000".into()];
        assert_eq!(schemes(&local, &options), ["https", "http"]);
        assert_eq!(schemes(&docker("quay.io/app"), &options), ["https"]);
    }

    #[test]
    fn credentials_go_to_https_realms_listed_hosts_and_the_plain_registry_itself() {
        let listed = ["auth.local:8080".to_owned()];
        let base = "http://127.0.0.1:5000";
        assert!(credentials_may_go_to(
            "https://auth.example/token",
            base,
            &[]
        ));
        assert!(credentials_may_go_to(
            "http://127.0.0.1:5000/token",
            base,
            &[]
        ));
        assert!(credentials_may_go_to(
            "http://auth.local:8080/t",
            base,
            &listed
        ));
        for realm in [
            "http://127.0.0.1:5001/token",
            "http://auth.example/token",
            "http://user@127.0.0.1:5000/token",
            "ftp://auth.example/token",
            "not a url",
        ] {
            assert!(!credentials_may_go_to(realm, base, &listed), "{realm}");
        }
        // A registry reached over HTTPS shares nothing with a plain realm on its own host.
        let tls_base = "https://127.0.0.1:5000";
        assert!(!credentials_may_go_to(
            "http://127.0.0.1:5000/token",
            tls_base,
            &[]
        ));
    }
}
