//! A client for the distribution v2 API: manifests, blobs (streamed, resumable with Range),
//! Bearer token and Basic authentication with credentials from containers/Docker auth files.
//!
//! Kept on ureq: `oci-client` (formerly `oci-distribution`) and `dkregistry` are async on
//! reqwest/tokio, and `docker_credential` covers only the auth files.

use std::io::Read;
use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use ureq::Agent;
use zeroize::Zeroizing;

use super::{embedded_media_type, read_document, Fetched, Source, SourceError};
use crate::manifest::{Descriptor, MANIFEST_ACCEPT};
use crate::reference::{DockerRef, ImageRef};

pub(crate) mod auth;
pub(crate) mod trust;

pub use auth::{AuthData, Credentials};

/// How to reach registries.
#[derive(Debug, Clone)]
pub struct RegistryOptions {
    /// Verify TLS certificates and refuse plain HTTP to non-loopback hosts (skopeo's
    /// `--tls-verify`). When false, HTTPS is tried without verification, then plain HTTP.
    pub tls_verify: bool,
    /// Extra CA certificates (`*.crt` files), like containers' `--cert-dir`.
    pub cert_dir: Option<PathBuf>,
    /// Auth file to use instead of the default search.
    pub authfile: Option<PathBuf>,
    /// Auth file contents to use instead of any file (wins over `authfile`).
    pub auth_data: Option<Arc<AuthData>>,
    /// Registries (`host:port`) that may be reached over plain HTTP or over HTTPS without
    /// certificate checks, and token realms (`host:port`) that may get credentials over
    /// plain HTTP.
    pub insecure_registries: Vec<String>,
    /// Whether a loopback registry (`localhost`, `127.0.0.0/8`, `::1`) is trusted to speak
    /// plain HTTP without being listed in `insecure_registries`. True by default (tests and
    /// debug setups on the native platform). Set it to false where loopback is the host's
    /// (Occlum, or the `sgx` attester): then a loopback registry is reached over plain HTTP
    /// only when listed in `insecure_registries`, so a host-supplied reference never
    /// downgrades a registry to HTTP on its own.
    pub trust_loopback: bool,
    /// Timeout to connect and to wait for each response.
    pub timeout: Duration,
}

impl Default for RegistryOptions {
    fn default() -> Self {
        Self {
            tls_verify: true,
            cert_dir: None,
            authfile: None,
            auth_data: None,
            insecure_registries: Vec::new(),
            trust_loopback: true,
            timeout: Duration::from_secs(30),
        }
    }
}

/// Errors talking to a registry. Each names the URL or registry.
#[derive(Debug, thiserror::Error)]
pub enum RegistryError {
    /// The request could not be made or the connection failed.
    #[error("request to {url} failed")]
    Http {
        /// The URL.
        url: String,
        /// The transport error.
        #[source]
        source: Box<ureq::Error>,
    },
    /// The registry answered with an error status.
    #[error("{url} answered HTTP {status}{detail}")]
    Status {
        /// The URL.
        url: String,
        /// The status code.
        status: u16,
        /// The registry's error message, if it sent one (prefixed with ": ").
        detail: String,
    },
    /// Authentication failed or was refused.
    #[error("authentication to {registry} failed: {reason}")]
    Auth {
        /// The registry.
        registry: String,
        /// What went wrong.
        reason: String,
    },
    /// The CA certificates or auth file could not be read.
    #[error("cannot read {path}")]
    Config {
        /// The file or directory.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
}

/// An image in a registry.
pub struct RegistrySource {
    reference: ImageRef,
    image: DockerRef,
    agent: Agent,
    base: String,
    auth: Mutex<auth::AuthState>,
    credentials: Option<Credentials>,
    insecure_registries: Vec<String>,
}

impl RegistrySource {
    /// Connects (a `GET /v2/` ping decides between HTTPS and plain HTTP).
    pub fn new(image: DockerRef, options: &RegistryOptions) -> Result<Self, SourceError> {
        let reference = ImageRef::Docker(image.clone());
        let schemes = trust::schemes(&image, options);
        let credentials = auth::find_credentials(
            &image,
            options.authfile.as_deref(),
            options.auth_data.as_deref(),
        )?;
        let tls = trust::tls_config(&image, options)?;
        let agent: Agent = Agent::config_builder()
            .http_status_as_error(false)
            .timeout_connect(Some(options.timeout))
            .timeout_recv_response(Some(options.timeout))
            .timeout_per_read(Some(options.timeout))
            .max_redirects(5)
            .user_agent(concat!("encc/", env!("CARGO_PKG_VERSION")))
            .tls_config(tls)
            .build()
            .into();
        let host = image.api_host().to_owned();
        let mut source = Self {
            reference,
            image,
            agent,
            base: format!("https://{host}"),
            auth: Mutex::new(auth::AuthState::None),
            credentials,
            insecure_registries: options.insecure_registries.clone(),
        };
        // A scheme that is the wrong one shows as a transport error (a plain port failing
        // the TLS handshake) or HTTP 400 (a TLS port answering plain HTTP): then the next
        // scheme is tried. Any other answer (auth refused, …) is final.
        let mut last = None;
        for scheme in schemes {
            source.base = format!("{scheme}://{host}");
            match source.ping() {
                Ok(()) => return Ok(source),
                Err(
                    e @ (RegistryError::Http { .. } | RegistryError::Status { status: 400, .. }),
                ) => last = Some(e),
                Err(e) => return Err(e.into()),
            }
        }
        Err(last
            .map(SourceError::from)
            .unwrap_or_else(|| SourceError::Invalid {
                reference: source.reference.to_string(),
                reason: "no scheme to try".into(),
            }))
    }

    /// `GET /v2/`: checks the API is there and learns the auth challenge.
    fn ping(&self) -> Result<(), RegistryError> {
        let url = format!("{}/v2/", self.base);
        let resp = self.get(&url, &[])?;
        match resp.status().as_u16() {
            200 | 401 => Ok(()),
            status => Err(status_error(&url, resp, status)),
        }
    }

    /// A GET with the current credentials; on 401 answers the challenge once and retries.
    fn get(
        &self,
        url: &str,
        headers: &[(&str, String)],
    ) -> Result<ureq::http::Response<ureq::Body>, RegistryError> {
        for attempt in 0..2 {
            let mut req = self.agent.get(url);
            for (k, v) in headers {
                req = req.header(*k, v);
            }
            if let Some(value) = self.lock_auth().header() {
                req = req.header("Authorization", value.as_str());
            }
            let resp = req.call().map_err(|source| RegistryError::Http {
                url: url.to_owned(),
                source: Box::new(source),
            })?;
            if resp.status().as_u16() != 401 || attempt == 1 {
                return Ok(resp);
            }
            let challenge = resp
                .headers()
                .get("www-authenticate")
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned);
            let Some(challenge) = challenge else {
                return Ok(resp);
            };
            let credentials = self.credentials.as_ref();
            let state = auth::answer(
                &self.agent,
                &self.image,
                &challenge,
                credentials,
                &|realm| trust::credentials_may_go_to(realm, &self.base, &self.insecure_registries),
            )?;
            *self.lock_auth() = state;
        }
        Err(RegistryError::Auth {
            registry: self.image.registry.clone(),
            reason: "unreachable retry loop".into(),
        })
    }

    fn lock_auth(&self) -> std::sync::MutexGuard<'_, auth::AuthState> {
        // The state is replaced whole, so a poisoned lock still holds a valid value.
        self.auth.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn manifest_by(&self, reference: &str) -> Result<Fetched, SourceError> {
        let url = format!(
            "{}/v2/{}/manifests/{reference}",
            self.base, self.image.repository
        );
        let resp = self.get(&url, &[("Accept", MANIFEST_ACCEPT.to_owned())])?;
        let status = resp.status().as_u16();
        if status == 404 {
            return Err(SourceError::NotFound {
                reference: self.reference.to_string(),
                what: format!("manifest {reference}"),
            });
        }
        if status != 200 {
            return Err(status_error(&url, resp, status).into());
        }
        let content_type = resp
            .headers()
            .get("content-type")
            .and_then(|v| v.to_str().ok())
            .map(|v| v.split(';').next().unwrap_or("").trim().to_owned())
            .unwrap_or_default();
        let bytes = read_document(
            resp.into_body().into_reader(),
            &self.reference,
            &format!("manifest {reference}"),
        )?;
        let media_type = match content_type.as_str() {
            "" | "application/json" | "text/plain" => {
                embedded_media_type(&bytes).unwrap_or(content_type)
            }
            _ => content_type,
        };
        Ok(Fetched { bytes, media_type })
    }
}

impl Source for RegistrySource {
    fn reference(&self) -> &ImageRef {
        &self.reference
    }

    fn expected_root_digest(&self) -> Option<crate::digest::Digest> {
        self.image.digest
    }

    fn root_manifest(&self) -> Result<Fetched, SourceError> {
        self.manifest_by(&self.image.manifest_reference())
    }

    fn manifest(&self, descriptor: &Descriptor) -> Result<Fetched, SourceError> {
        self.manifest_by(&descriptor.digest.to_string())
    }

    fn manifest_by_tag(&self, tag: &str) -> Result<Option<Fetched>, SourceError> {
        match self.manifest_by(tag) {
            Ok(f) => Ok(Some(f)),
            Err(SourceError::NotFound { .. }) => Ok(None),
            Err(e) => Err(e),
        }
    }

    fn blob(
        &self,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let url = format!(
            "{}/v2/{}/blobs/{}",
            self.base, self.image.repository, descriptor.digest
        );
        let headers: Vec<(&str, String)> = if offset > 0 {
            vec![("Range", format!("bytes={offset}-"))]
        } else {
            Vec::new()
        };
        let resp = self.get(&url, &headers)?;
        let status = resp.status().as_u16();
        match status {
            200 | 206 => {}
            404 => {
                return Err(SourceError::NotFound {
                    reference: self.reference.to_string(),
                    what: format!("blob {}", descriptor.digest),
                })
            }
            _ => return Err(status_error(&url, resp, status).into()),
        }
        let mut reader: Box<dyn Read + Send> = Box::new(resp.into_body().into_reader());
        if offset > 0 && status == 200 {
            // The registry ignored the Range header: skip what we already have.
            let skipped = std::io::copy(&mut (&mut reader).take(offset), &mut std::io::sink())
                .map_err(|source| SourceError::Io {
                    reference: self.reference.to_string(),
                    what: format!("blob {}", descriptor.digest),
                    source,
                })?;
            if skipped != offset {
                return Err(SourceError::Invalid {
                    reference: self.reference.to_string(),
                    reason: format!("blob {} ended before offset {offset}", descriptor.digest),
                });
            }
        }
        Ok(reader)
    }
}

/// An error for an unexpected status, with the registry's first error message if any.
fn status_error(url: &str, resp: ureq::http::Response<ureq::Body>, status: u16) -> RegistryError {
    let mut body = Vec::new();
    let _ = resp
        .into_body()
        .into_reader()
        .take(4096)
        .read_to_end(&mut body);
    #[derive(serde::Deserialize)]
    struct Errors {
        errors: Vec<ErrorItem>,
    }
    #[derive(serde::Deserialize)]
    struct ErrorItem {
        code: Option<String>,
        message: Option<String>,
    }
    let detail = serde_json::from_slice::<Errors>(&body)
        .ok()
        .and_then(|e| e.errors.into_iter().next())
        .map(|e| {
            format!(
                ": {} {}",
                e.code.unwrap_or_default(),
                e.message.unwrap_or_default()
            )
        })
        .unwrap_or_default();
    RegistryError::Status {
        url: url.to_owned(),
        status,
        detail,
    }
}

/// `user:password` → Basic header value. Both strings are allocated at their final size
/// (no reallocation leaves a copy behind) and wiped on drop.
fn basic(credentials: &Credentials) -> Zeroizing<String> {
    let (user, password) = (&credentials.username, credentials.password.as_str());
    let mut raw = Zeroizing::new(String::with_capacity(user.len() + 1 + password.len()));
    raw.push_str(user);
    raw.push(':');
    raw.push_str(password);
    let mut value = Zeroizing::new(String::with_capacity(6 + raw.len().div_ceil(3) * 4));
    value.push_str("Basic ");
    base64::engine::general_purpose::STANDARD.encode_string(raw.as_bytes(), &mut value);
    value
}

#[cfg(test)]
mod tests;
