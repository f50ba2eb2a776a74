//! The KBS test double (`encc-test-kbs`, trustee's wire format, sample TEE only), started
//! on a free port of 127.0.0.1 and killed on drop.

use std::io::{BufRead, BufReader, Read, Write};
use std::process::{Child, Command, Stdio};

pub struct TestKbs {
    child: Child,
    /// `127.0.0.1:PORT`.
    pub addr: String,
    /// The resource directory (REPO/TYPE/TAG files).
    pub dir: tempfile::TempDir,
}

impl TestKbs {
    pub fn start(extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let mut child = Command::new(env!("CARGO_BIN_EXE_encc-test-kbs"))
            .arg("--resources")
            .arg(dir.path())
            .args(extra)
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
        Self { child, addr, dir }
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Serves `data` as the resource `path` (REPO/TYPE/TAG).
    pub fn put(&self, path: &str, data: &[u8]) {
        let file = self.dir.path().join(path);
        std::fs::create_dir_all(file.parent().unwrap()).unwrap();
        std::fs::write(file, data).unwrap();
    }

    /// The double's request counts.
    pub fn stats(&self) -> serde_json::Value {
        let mut s = std::net::TcpStream::connect(&self.addr).unwrap();
        s.write_all(b"GET /test/stats HTTP/1.1\r\nHost: kbs\r\n\r\n")
            .unwrap();
        let mut out = String::new();
        s.read_to_string(&mut out).unwrap();
        let body = out.split_once("\r\n\r\n").unwrap().1;
        serde_json::from_str(body).unwrap()
    }

    pub fn count(&self, what: &str) -> u64 {
        self.stats()[what].as_u64().unwrap_or(0)
    }
}

impl Drop for TestKbs {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
