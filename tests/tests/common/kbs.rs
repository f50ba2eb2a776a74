//! The KBS test double (`encc-test-kbs`, trustee's wire format, sample TEE only), started
//! on a free port of 127.0.0.1 and killed on drop; over plain HTTP, or over HTTPS with the
//! fixtures' test certificate for 127.0.0.1 (`tls/tls.{crt,key}`, issued by `certs/ca.crt`
//! of `tests/fixtures/setup-peers.sh`).

use std::io::{BufRead, BufReader, Read, Write};
use std::net::TcpStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::Arc;

pub struct TestKbs {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The resource directory (REPO/TYPE/TAG files).
    pub dir: tempfile::TempDir,
    /// The test CA that issued the HTTPS certificate; None for plain HTTP.
    pub ca: Option<PathBuf>,
}

impl TestKbs {
    /// Plain HTTP.
    pub fn start(extra: &[&str]) -> Self {
        Self::spawn(extra, None)
    }

    /// HTTPS with the certificate of the `fixtures` (setup-peers.sh) for 127.0.0.1.
    pub fn start_tls(fixtures: &Path, extra: &[&str]) -> Self {
        Self::spawn(extra, Some(fixtures))
    }

    fn spawn(extra: &[&str], fixtures: Option<&Path>) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_encc-test-kbs"));
        cmd.arg("--resources").arg(dir.path()).args(extra);
        if let Some(f) = fixtures {
            cmd.arg("--tls-cert").arg(f.join("tls/tls.crt"));
            cmd.arg("--tls-key").arg(f.join("tls/tls.key"));
        }
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        let addr = line.trim().to_owned();
        assert!(addr.starts_with("127.0.0.1:"), "{addr:?}");
        let ca = fixtures.map(|f| f.join("certs/ca.crt"));
        Self {
            child,
            addr,
            dir,
            ca,
        }
    }

    pub fn url(&self) -> String {
        let scheme = if self.ca.is_some() { "https" } else { "http" };
        format!("{scheme}://{}", self.addr)
    }

    /// Serves `data` as the resource `path` (REPO/TYPE/TAG).
    pub fn put(&self, path: &str, data: &[u8]) {
        let file = self.dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }

    /// The double's request counts.
    pub fn stats(&self) -> serde_json::Value {
        let tcp = TcpStream::connect(&self.addr).unwrap();
        let request = b"GET /test/stats HTTP/1.1\r\nHost: kbs\r\n\r\n";
        let mut out = String::new();
        match &self.ca {
            None => {
                let mut s = tcp;
                s.write_all(request).unwrap();
                s.read_to_string(&mut out).unwrap();
            }
            Some(ca) => {
                let mut s = tls_client(ca, tcp);
                s.write_all(request).unwrap();
                s.read_to_string(&mut out).unwrap();
            }
        }
        let body = out.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    pub fn count(&self, what: &str) -> u64 {
        self.stats()[what].as_u64().unwrap_or(0)
    }
}

/// A TLS client stream to 127.0.0.1 trusting only the CA certificate `ca`.
fn tls_client(
    ca: &Path,
    tcp: TcpStream,
) -> rustls::StreamOwned<rustls::ClientConnection, TcpStream> {
    use rustls::pki_types::pem::PemObject;
    let mut roots = rustls::RootCertStore::empty();
    roots
        .add(rustls::pki_types::CertificateDer::from_pem_file(ca).unwrap())
        .unwrap();
    let config = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()
    .unwrap()
    .with_root_certificates(roots)
    .with_no_client_auth();
    let name = rustls::pki_types::ServerName::try_from("127.0.0.1").unwrap();
    let conn = rustls::ClientConnection::new(Arc::new(config), name).unwrap();
    rustls::StreamOwned::new(conn, tcp)
}

impl Drop for TestKbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
