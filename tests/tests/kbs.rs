//! The Key Broker Service path of `encc image pull`: policy, GPG key, registry auth file
//! and layer KEKs served by tests' KBS double (`encc-test-kbs`, trustee's wire format,
//! sample TEE) through auth → attest → resource; refusals and re-attestation. Images come
//! from tests/fixtures (setup-peers.sh): `enc-coco` is `layered` encrypted for CoCo's key
//! provider only (make_coco_enc.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;

use common::kbs::TestKbs;
use common::*;

const KEK: &str = "default/image-kek/layered";

struct Work {
    dir: tempfile::TempDir,
    key: PathBuf,
}

fn work() -> Work {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    encc_ok(args!["key", "gen", "-o", key]);
    Work { dir, key }
}

impl Work {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    fn pull_args(&self, reference: &str, image: &Path, extra: &[&str]) -> Vec<std::ffi::OsString> {
        let mut a: Vec<std::ffi::OsString> = ["image", "pull", reference, "-o"]
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

    /// Pulls and extracts; returns the extracted tree.
    fn pull_extract(&self, reference: &str, name: &str, extra: &[&str]) -> PathBuf {
        let image = self.path(&format!("{name}.img"));
        let a = self.pull_args(reference, &image, extra);
        let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
        encc_ok(&a);
        let out = self.path(name);
        encc_ok(args![
            "rootfs",
            "extract",
            image,
            "--key-file",
            self.key,
            "-o",
            out
        ]);
        out
    }

    /// A pull that must fail; returns stderr and checks no image was left behind.
    fn pull_fails(&self, reference: &str, extra: &[&str]) -> String {
        let image = self.path("failed.img");
        let a = self.pull_args(reference, &image, extra);
        let a: Vec<&std::ffi::OsStr> = a.iter().map(|s| s.as_os_str()).collect();
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

fn gpg(home: &Path, args: &[&str]) -> Vec<u8> {
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

struct GpgAgentGuard(PathBuf);

impl Drop for GpgAgentGuard {
    fn drop(&mut self) {
        let _ = Command::new("gpgconf")
            .env("GNUPGHOME", &self.0)
            .args(["--kill", "gpg-agent"])
            .status();
    }
}

fn coco_kek(p: &Peers) -> Vec<u8> {
    std::fs::read(p.fixtures.join("keys/coco.kek")).unwrap()
}

fn layout_ref(p: &Peers, tag: &str) -> String {
    format!("oci:{}:{tag}", p.fixtures.join("layout").display())
}

#[test]
fn policy_gpg_key_auth_file_and_layer_kek_come_from_the_kbs() {
    let Some(p) = peers() else { return };
    if !is_root() {
        return;
    }
    let w = work();
    // A signing key; its public half goes to the KBS only.
    let home = w.path("gnupg");
    std::fs::create_dir(&home).unwrap();
    std::fs::set_permissions(&home, std::os::unix::fs::PermissionsExt::from_mode(0o700)).unwrap();
    let _agent = GpgAgentGuard(home.clone());
    gpg(
        &home,
        &[
            "--quick-gen-key",
            "kbs signer <kbs@example.com>",
            "rsa2048",
            "sign",
            "never",
        ],
    );
    let listing =
        String::from_utf8(gpg(&home, &["--with-colons", "--list-keys", "kbs signer"])).unwrap();
    let fpr = listing
        .lines()
        .find(|l| l.starts_with("fpr:"))
        .unwrap()
        .split(':')
        .nth(9)
        .unwrap()
        .to_owned();
    // Push enc-coco signed, with a file lookaside.
    let store = w.path("sigstore");
    let regd = w.path("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("default.yaml"),
        format!(
            "default-docker:\n  lookaside: file://{0}\n  lookaside-staging: file://{0}\n",
            store.display()
        ),
    )
    .unwrap();
    let out = Command::new("skopeo")
        .env("GNUPGHOME", &home)
        .args([
            "copy",
            "--quiet",
            "--dest-tls-verify=false",
            "--registries.d",
        ])
        .arg(&regd)
        .args(["--sign-by", &fpr])
        .arg(layout_ref(&p, "enc-coco"))
        .arg(format!("docker://{}/kbs/enc-coco:latest", p.registry))
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "skopeo copy: {}",
        String::from_utf8_lossy(&out.stderr)
    );

    let kbs = TestKbs::start(&[]);
    kbs.put("default/gpg-key/signer", &gpg(&home, &["--export", &fpr]));
    kbs.put(
        "default/security-policy/test",
        format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{}/kbs": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "kbs:///default/gpg-key/signer"}}]}}}}}}"#,
            p.registry
        )
        .as_bytes(),
    );
    kbs.put(
        "default/registry-auth/test",
        format!(
            r#"{{"auths": {{"{}": {{"auth": "dXNlcjpwYXNz"}}}}}}"#,
            p.registry
        )
        .as_bytes(),
    );
    kbs.put(KEK, &coco_kek(&p));

    let plain = w.pull_extract(&layout_ref(&p, "layered"), "plain", &[]);
    let url = kbs.url();
    let regd_arg = regd.to_str().unwrap().to_owned();
    let tree = w.pull_extract(
        &format!("docker://{}/kbs/enc-coco:latest", p.registry),
        "coco",
        &[
            "--kbs",
            &url,
            "--policy",
            "kbs:///default/security-policy/test",
            "--registries.d",
            &regd_arg,
            "--authfile",
            "kbs:///default/registry-auth/test",
        ],
    );
    assert_same_tree(&snapshot(&plain), &snapshot(&tree));
    let stats = kbs.stats();
    // One attestation served the policy, the key, the auth file and both layers' KEK.
    assert_eq!(stats["auth"], 1, "{stats}");
    assert_eq!(stats["attest"], 1, "{stats}");
    assert!(stats["served"].as_u64().unwrap() >= 4, "{stats}");

    // The same pull under a policy whose key is not the signer's is rejected.
    kbs.put("default/gpg-key/signer", b"not a key");
    let err = w.pull_fails(
        &format!("docker://{}/kbs/enc-coco:latest", p.registry),
        &[
            "--kbs",
            &url,
            "--policy",
            "kbs:///default/security-policy/test",
            "--registries.d",
            &regd_arg,
        ],
    );
    assert!(err.contains("rejected by policy scope"), "{err}");
}

#[test]
fn a_refused_resource_is_a_clear_error_and_leaves_no_image() {
    let Some(p) = peers() else { return };
    let w = work();
    let reference = layout_ref(&p, "enc-coco");

    // No KBS: the error names the layer and the kid.
    let err = w.pull_fails(&reference, &[]);
    assert!(
        err.contains("cannot decrypt layer sha256:")
            && err.contains("kbs:///default/image-kek/layered")
            && err.contains("--kbs"),
        "{err}"
    );

    let kbs = TestKbs::start(&["--refuse", KEK]);
    kbs.put(KEK, &coco_kek(&p));
    let url = kbs.url();
    let err = w.pull_fails(&reference, &["--kbs", &url]);
    assert!(
        err.contains("kbs:///default/image-kek/layered")
            && err.contains("HTTP 403")
            && err.contains("Resource policy denied")
            && err.contains("PolicyDeny"),
        "{err}"
    );
    assert_eq!(kbs.count("refused"), 1);

    // A policy the KBS does not have: 404, named, before anything is pulled.
    let err = w.pull_fails(
        &reference,
        &[
            "--kbs",
            &url,
            "--policy",
            "kbs:///default/security-policy/none",
        ],
    );
    assert!(
        err.contains("signature policy")
            && err.contains("kbs:///default/security-policy/none")
            && err.contains("HTTP 404"),
        "{err}"
    );

    // A wrong KEK fails the unwrap.
    let kbs = TestKbs::start(&[]);
    kbs.put(KEK, &[0u8; 32]);
    let err = w.pull_fails(&reference, &["--kbs", &kbs.url()]);
    assert!(err.contains("do not open with the KEK"), "{err}");
}

#[test]
fn an_ended_session_is_attested_again() {
    let Some(p) = peers() else { return };
    if !is_root() {
        return;
    }
    let w = work();
    // Each session serves one resource, then answers 401: the policy and the KEK (fetched
    // once for both layers) need two sessions.
    let kbs = TestKbs::start(&["--session-requests", "1"]);
    kbs.put(KEK, &coco_kek(&p));
    kbs.put(
        "default/security-policy/any",
        br#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    );
    let plain = w.pull_extract(&layout_ref(&p, "layered"), "plain", &[]);
    let tree = w.pull_extract(
        &layout_ref(&p, "enc-coco"),
        "coco",
        &[
            "--kbs",
            &kbs.url(),
            "--policy",
            "kbs:///default/security-policy/any",
        ],
    );
    assert_same_tree(&snapshot(&plain), &snapshot(&tree));
    let stats = kbs.stats();
    assert!(stats["unauthorized"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["attest"], stats["served"], "{stats}");
    assert_eq!(stats["served"], 2, "{stats}");
}
