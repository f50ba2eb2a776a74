//! The end-to-end tests of the native enclave (`init`, `encc-launch`, the PAL library): a
//! work directory with a store, the busybox fixture image, and the check that a run left
//! nothing behind.

use std::path::PathBuf;
use std::process::{Command, Output};

use super::{bin, encc_ok, root_peers};
use crate::args;

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

/// Starts with a sealing key: kept images in the test store.
impl Env {
    /// `encc-launch run` of `image` on the test store with the sealing key, host args allowed.
    pub fn launch_sealed(&self, registry: &str, image: &str, script: &str) -> Command {
        self.launch_sealed_with(registry, image, script, &[])
    }

    /// [`Self::launch_sealed`] with `flags` added to the launcher's.
    pub fn launch_sealed_with(
        &self,
        registry: &str,
        image: &str,
        script: &str,
        flags: &[&str],
    ) -> Command {
        let mut cmd = Command::new(bin("encc-launch"));
        cmd.arg("run")
            .arg("--store")
            .arg(self.store())
            .arg("--seal-key-file")
            .arg(self.seal_key())
            .args([
                "--insecure-policy",
                "--allow-host-args",
                "--log-level",
                "info",
            ])
            .args(["--insecure-registry", registry])
            .args(flags)
            .arg(image)
            .arg(script)
            .env("RUST_LOG", "info")
            // The launcher's instance directory goes here: a starter a test kills with
            // SIGKILL cannot remove it itself.
            .env("TMPDIR", self.dir.path());
        cmd
    }

    pub fn seal_key(&self) -> PathBuf {
        let path = self.dir.path().join("seal.key");
        if !path.exists() {
            encc_ok(args!["key", "gen", "-o", path]);
        }
        path
    }

    /// Names in the store, sorted.
    pub fn store_names(&self) -> Vec<String> {
        let mut names: Vec<String> = std::fs::read_dir(self.store())
            .unwrap()
            .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        names.sort();
        names
    }

    /// The store holds `images` kept images, each with its seal, metadata and lock file, and
    /// nothing else.
    pub fn assert_store_holds(&self, images: usize) {
        let names = self.store_names();
        for ext in [".img", ".seal", ".meta", ".lock"] {
            let n = names
                .iter()
                .filter(|n| n.starts_with("sha256-") && n.ends_with(ext))
                .count();
            assert_eq!(n, images, "{ext} files: {names:?}");
        }
        assert_eq!(names.len(), 4 * images, "{names:?}");
    }
}
