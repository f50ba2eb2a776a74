//! gpg for the signing tests: a private GnuPG home, keys, exports.

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::Command;

/// Runs gpg with `home` as GNUPGHOME; returns stdout.
pub fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
    let out = Command::new("gpg")
        .env("GNUPGHOME", home)
        .args(["--batch", "--pinentry-mode", "loopback", "--passphrase", ""])
        .args(args)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "gpg {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out.stdout
}

/// A new signing key in `home`; returns its fingerprint and the exported public key file.
pub fn gpg_key(home: &Path, name: &str, out: &Path) -> String {
    gpg(
        home,
        &[
            "--quick-gen-key",
            &format!("{name} <{name}@example.com>"),
            "rsa2048",
            "sign",
            "never",
        ],
    );
    let listing = String::from_utf8(gpg(home, &["--with-colons", "--list-keys", name])).unwrap();
    let fpr = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned();
    std::fs::write(out, gpg(home, &["--export", &fpr])).unwrap();
    fpr
}

/// A GnuPG home for a test: a new 0700 directory `dir`, whose gpg-agent is stopped on drop.
pub struct GpgHome(pub PathBuf);

impl GpgHome {
    pub fn new(dir: PathBuf) -> Self {
        std::fs::create_dir(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o700)).unwrap();
        Self(dir)
    }
}

impl Drop for GpgHome {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.0)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

/// A file lookaside for simple signatures: `sigstore/` and a `registries.d/` whose
/// `default.yaml` points skopeo (to write) and encc (to read) at it.
pub struct Lookaside {
    pub store: PathBuf,
    pub registries_d: PathBuf,
}

impl Lookaside {
    /// Creates both under `dir`.
    pub fn new(dir: &Path) -> Self {
        let (store, registries_d) = (dir.join("sigstore"), dir.join("registries.d"));
        std::fs::create_dir_all(&registries_d).unwrap();
        std::fs::write(
            registries_d.join("default.yaml"),
            format!(
                "default-docker:\n  lookaside: file://{0}\n  lookaside-staging: file://{0}\n",
                store.display()
            ),
        )
        .unwrap();
        Self {
            store,
            registries_d,
        }
    }

    /// `skopeo copy SRC DEST` to an insecure registry, signed with the key `sign_by` of the
    /// GnuPG home `home` when given.
    pub fn copy(&self, home: &Path, sign_by: Option<&str>, src: &str, dest: &str) {
        let mut cmd = Command::new("skopeo");
        cmd.env("GNUPGHOME", home)
            .args([
                "copy",
                "--quiet",
                "--dest-tls-verify=false",
                "--registries.d",
            ])
            .arg(&self.registries_d);
        if let Some(fpr) = sign_by {
            cmd.args(["--sign-by", fpr]);
        }
        let out = cmd.args([src, dest]).output().unwrap();
        assert!(
            out.status.success(),
            "skopeo copy {src}: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }
}
