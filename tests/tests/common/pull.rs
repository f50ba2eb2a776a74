//! `encc image pull` from the tests: a work directory with a data key, pulls that must work
//! (extracted for comparison) or fail (leaving nothing behind).

use std::ffi::{OsStr, OsString};
use std::path::{Path, PathBuf};

use super::{encc, encc_ok};

/// A temporary directory holding a data key (`key`).
pub struct Work {
    pub dir: tempfile::TempDir,
    pub key: PathBuf,
}

pub fn work() -> Work {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    encc_ok(&[
        OsStr::new("key"),
        OsStr::new("gen"),
        OsStr::new("-o"),
        key.as_os_str(),
    ]);
    Work { dir, key }
}

impl Work {
    pub fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// `image pull REFERENCE -o IMAGE --key-file KEY EXTRA…`, with `--insecure-policy`
    /// unless EXTRA names a policy.
    fn pull_args(&self, reference: &str, image: &Path, extra: &[&str]) -> Vec<OsString> {
        let mut a: Vec<OsString> = ["image", "pull", reference, "-o"]
            .iter()
            .map(Into::into)
            .collect();
        a.push(image.into());
        a.push("--key-file".into());
        a.push((&self.key).into());
        a.extend(extra.iter().map(Into::into));
        if !extra.contains(&"--policy") {
            a.push("--insecure-policy".into());
        }
        a
    }

    /// Pulls (`--json`) and extracts; returns the extracted tree and the pull's JSON.
    pub fn pull_extract(
        &self,
        reference: &str,
        name: &str,
        extra: &[&str],
    ) -> (PathBuf, serde_json::Value) {
        let image = self.path(&format!("{name}.img"));
        let mut a = self.pull_args(reference, &image, extra);
        a.push("--json".into());
        let a: Vec<&OsStr> = a.iter().map(OsString::as_os_str).collect();
        let json: serde_json::Value = serde_json::from_str(&encc_ok(&a)).unwrap();
        let out = self.path(name);
        encc_ok(&[
            OsStr::new("rootfs"),
            OsStr::new("extract"),
            image.as_os_str(),
            OsStr::new("--key-file"),
            self.key.as_os_str(),
            OsStr::new("-o"),
            out.as_os_str(),
        ]);
        (out, json)
    }

    /// A pull that must fail; returns stderr and checks no file was left behind.
    pub fn pull_fails(&self, reference: &str, extra: &[&str]) -> String {
        let image = self.path("failed.img");
        let a = self.pull_args(reference, &image, extra);
        let a: Vec<&OsStr> = a.iter().map(OsString::as_os_str).collect();
        let out = encc(&a);
        let stderr = String::from_utf8_lossy(&out.stderr).into_owned();
        assert_eq!(
            out.status.code(),
            Some(1),
            "pull of {reference} should fail: {stderr}"
        );
        let left: Vec<_> = std::fs::read_dir(self.dir.path())
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.contains("failed.img"))
            .collect();
        assert!(left.is_empty(), "a failed pull left {left:?}");
        stderr
    }
}
