//! The end-to-end tests of the native enclave (`init`, `encc-launch`, the PAL library): a
//! work directory with a store, the busybox fixture image, and the check that a run left
//! nothing behind.

use std::path::PathBuf;
use std::process::Output;

use super::root_peers;

/// A test's directory (the store is `store/` in it) and the peers.
pub struct Env {
    pub dir: tempfile::TempDir,
    pub registry: String,
    pub fixtures: PathBuf,
}

/// An `Env`, or None (skip) without root or peers; see [`root_peers`].
pub fn env() -> Option<Env> {
    let peers = root_peers()?;
    Some(Env {
        dir: tempfile::tempdir().unwrap(),
        registry: peers.registry,
        fixtures: peers.fixtures,
    })
}

impl Env {
    pub fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }

    /// The busybox fixture in the loopback registry.
    pub fn image(&self) -> String {
        format!("docker://{}/test/busybox:latest", self.registry)
    }

    /// Nothing mounted under the test directory, nothing left in the store.
    pub fn assert_clean(&self) {
        let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
        let dir = self.dir.path().to_string_lossy().into_owned();
        assert!(!mounts.contains(&dir), "mounts left behind:\n{mounts}");
        if let Ok(entries) = std::fs::read_dir(self.store()) {
            let left: Vec<_> = entries.map(|e| e.unwrap().file_name()).collect();
            assert!(left.is_empty(), "store not empty after the run: {left:?}");
        }
    }
}

/// stdout and stderr of a finished process, as text.
pub fn text(out: &Output) -> (String, String) {
    (
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}
