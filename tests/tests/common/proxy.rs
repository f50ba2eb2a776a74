//! tests/fixtures/proxy.py in front of the test registry (faults, auth, stalled blobs).

use std::path::Path;
use std::process::{Child, Command};

/// A running proxy; killed on drop.
pub struct Proxy {
    child: Child,
    /// `127.0.0.1:PORT` of the proxy.
    pub addr: String,
}

impl Proxy {
    /// Starts the proxy in front of `registry` with proxy.py's `extra` options.
    pub fn start(registry: &str, extra: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let port_file = dir.path().join("port");
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/proxy.py");
        let mut child = Command::new("python3")
            .arg(script)
            .args(["--upstream", registry, "--port-file"])
            .arg(&port_file)
            .args(extra)
            .spawn()
            .unwrap();
        for _ in 0..200 {
            if let Ok(port) = std::fs::read_to_string(&port_file) {
                if !port.is_empty() {
                    return Self {
                        child,
                        addr: format!("127.0.0.1:{port}"),
                    };
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        let _ = child.kill();
        let _ = child.wait();
        panic!("proxy did not start");
    }

    /// The proxy's request counters (`/_stats`).
    pub fn stats(&self) -> serde_json::Value {
        let out = Command::new("python3")
            .args(["-c", &format!("import urllib.request; print(urllib.request.urlopen('http://{}/_stats').read().decode())", self.addr)])
            .output()
            .unwrap();
        serde_json::from_slice(&out.stdout).unwrap()
    }
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}
