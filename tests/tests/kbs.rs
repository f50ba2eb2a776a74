//! The Key Broker Service path of `encc image pull`: policy, GPG key, registry auth file
//! and layer KEKs served by tests' KBS double (`encc-test-kbs`, trustee's wire format,
//! sample TEE) through auth → attest → resource; refusals and re-attestation. Images come
//! from tests/fixtures (setup-peers.sh): `enc-coco` is `layered` encrypted for CoCo's key
//! provider only (make_coco_enc.py).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::gpg::*;
use common::kbs::TestKbs;
use common::pull::*;
use common::*;

const KEK: &str = "default/image-kek/layered";

fn coco_kek(p: &Peers) -> Vec<u8> {
    std::fs::read(p.fixtures.join("keys/coco.kek")).unwrap()
}

fn layout_ref(p: &Peers, tag: &str) -> String {
    format!("oci:{}:{tag}", p.fixtures.join("layout").display())
}

#[test]
fn policy_gpg_key_auth_file_and_layer_kek_come_from_the_kbs() {
    let Some(p) = root_peers() else { return };
    let w = work();
    // A signing key; its public half goes to the KBS only.
    let gnupg = GpgHome::new(w.path("gnupg"));
    let home = gnupg.0.clone();
    let fpr = gpg_key(&home, "kbs-signer", &w.path("signer.gpg"));
    // Push enc-coco signed, with a file lookaside.
    let lookaside = Lookaside::new(w.dir.path());
    let regd = &lookaside.registries_d;
    lookaside.copy(
        &home,
        Some(&fpr),
        &layout_ref(&p, "enc-coco"),
        &format!("docker://{}/kbs/enc-coco:latest", p.registry),
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

    let plain = w.pull_extract(&layout_ref(&p, "layered"), "plain", &[]).0;
    let url = kbs.url();
    let regd_arg = regd.to_str().unwrap().to_owned();
    let tree = w
        .pull_extract(
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
        )
        .0;
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
    let Some(p) = root_peers() else { return };
    let w = work();
    // Each session serves one resource, then answers 401: the policy and the KEK (fetched
    // once for both layers) need two sessions.
    let kbs = TestKbs::start(&["--session-requests", "1"]);
    kbs.put(KEK, &coco_kek(&p));
    kbs.put(
        "default/security-policy/any",
        br#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    );
    let plain = w.pull_extract(&layout_ref(&p, "layered"), "plain", &[]).0;
    let tree = w
        .pull_extract(
            &layout_ref(&p, "enc-coco"),
            "coco",
            &[
                "--kbs",
                &kbs.url(),
                "--policy",
                "kbs:///default/security-policy/any",
            ],
        )
        .0;
    assert_same_tree(&snapshot(&plain), &snapshot(&tree));
    let stats = kbs.stats();
    assert!(stats["unauthorized"].as_u64().unwrap() >= 1, "{stats}");
    assert_eq!(stats["attest"], stats["served"], "{stats}");
    assert_eq!(stats["served"], 2, "{stats}");
}
