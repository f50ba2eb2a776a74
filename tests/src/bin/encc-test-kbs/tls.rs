//! The double's HTTPS: a rustls server (ring, as ureq's client) over the accepted TCP stream,
//! with the certificate chain and key of `--tls-cert`/`--tls-key` (PEM).

use std::io::Write;
use std::net::TcpStream;
use std::path::Path;
use std::sync::Arc;

use anyhow::{Context, Result};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, PrivateKeyDer};
use rustls::{ServerConfig, ServerConnection, StreamOwned};

pub(crate) fn server_config(cert: &Path, key: &Path) -> Result<Arc<ServerConfig>> {
    let chain = CertificateDer::pem_file_iter(cert)
        .and_then(|certs| certs.collect::<Result<Vec<_>, _>>())
        .with_context(|| format!("cannot read the certificates of {}", cert.display()))?;
    let key = PrivateKeyDer::from_pem_file(key)
        .with_context(|| format!("cannot read the private key {}", key.display()))?;
    let config =
        ServerConfig::builder_with_provider(Arc::new(rustls::crypto::ring::default_provider()))
            .with_safe_default_protocol_versions()
            .context("TLS protocol versions")?
            .with_no_client_auth()
            .with_single_cert(chain, key)
            .context("TLS certificate and key")?;
    Ok(Arc::new(config))
}

/// Runs `answer` on the TLS stream of an accepted connection (the handshake runs on its
/// first read), then ends the session with close_notify.
pub(crate) fn serve(
    config: Arc<ServerConfig>,
    tcp: TcpStream,
    answer: impl FnOnce(&mut StreamOwned<ServerConnection, TcpStream>) -> Result<()>,
) -> Result<()> {
    let conn = ServerConnection::new(config).context("TLS server connection")?;
    let mut stream = StreamOwned::new(conn, tcp);
    answer(&mut stream)?;
    stream.conn.send_close_notify();
    stream.flush().context("TLS close_notify")
}
