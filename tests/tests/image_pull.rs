//! `encc image pull` against real peers: OCI layouts made by umoci, the docker-registry
//! server, skopeo-pushed Docker schema 2 / zstd / multi-platform images, a token-auth and
//! connection-resetting proxy. Results are compared with `umoci raw unpack` of the same
//! image. The peers come from tests/fixtures/setup-peers.sh, which tests/run starts.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;

use common::gpg::*;
use common::proxy::Proxy;
use common::pull::*;
use common::*;

/// A snapshot without directory mtimes: umoci does not restore the mtime of a directory
/// that a later layer changes without carrying its entry, encc keeps the last entry's.
fn comparable(root: &Path) -> BTreeMap<String, EntryFacts> {
    snapshot(root)
        .into_iter()
        .map(|(k, mut v)| {
            if v.kind == "dir" {
                v.mtime = (0, 0);
            }
            (k, v)
        })
        .collect()
}

fn umoci_unpack(layout: &Path, tag: &str, out: &Path) {
    let status = Command::new("umoci")
        .args(["raw", "unpack", "--image"])
        .arg(format!("{}:{tag}", layout.display()))
        .arg(out)
        .output()
        .unwrap();
    assert!(
        status.status.success(),
        "umoci unpack {tag}: {}",
        String::from_utf8_lossy(&status.stderr)
    );
}

#[test]
fn layout_pulls_match_umoci_unpack() {
    let Some(p) = root_peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    for tag in ["busybox", "layered", "crafted"] {
        let (ours, json) = w.pull_extract(&format!("oci:{}:{tag}", layout.display()), tag, &[]);
        let theirs = w.path(&format!("umoci-{tag}"));
        umoci_unpack(&layout, tag, &theirs);
        assert_same_tree(&comparable(&theirs), &comparable(&ours));
        assert!(json["root_hash"].as_str().unwrap().len() == 64);
    }
    // Whiteouts and opaque directories as the OCI spec says (checked explicitly too).
    let crafted = w.path("crafted");
    assert!(!crafted.join("whiteout-me").exists());
    assert!(!crafted.join("opaque/lower-a").exists());
    assert!(!crafted.join("opaque/sub/lower-c").exists());
    assert_eq!(
        std::fs::read(crafted.join("opaque/sub/new-c")).unwrap(),
        b"upper c\n"
    );
    assert_eq!(
        std::fs::read(crafted.join("opaque/new-in-layer2")).unwrap(),
        b"upper\n"
    );
    assert!(
        crafted.join("recreated").exists(),
        "a whiteout never hides its own layer's entries"
    );
    assert!(crafted.join("to-dir/inside").exists());
    assert!(crafted.join("to-file").is_file());
    assert_eq!(
        std::fs::read(crafted.join("etc/through-symlink")).unwrap(),
        b"written through a symlinked parent\n"
    );
    assert_eq!(
        xattr::get(crafted.join("pax-xattr"), "user.color")
            .unwrap()
            .unwrap(),
        b"blue"
    );
    let names: Vec<String> = std::fs::read_dir(&crafted)
        .unwrap()
        .map(|e| e.unwrap().file_name().into_string().unwrap())
        .collect();
    assert!(
        names.iter().all(|n| !n.starts_with(".wh.")),
        "whiteouts leaked: {names:?}"
    );
}

#[test]
fn registry_pulls_oci_docker_v2s2_zstd_and_index() {
    let Some(p) = root_peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    let cases = [
        (
            "test/busybox:latest",
            "busybox",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
        (
            "test/layered:v2s2",
            "layered",
            "application/vnd.docker.image.rootfs.diff.tar.gzip",
        ),
        (
            "test/crafted:zstd",
            "crafted",
            "application/vnd.oci.image.layer.v1.tar+zstd",
        ),
        (
            "test/multi:latest",
            "busybox",
            "application/vnd.oci.image.layer.v1.tar+gzip",
        ),
    ];
    for (i, (reference, tag, media_type)) in cases.iter().enumerate() {
        let (ours, json) = w.pull_extract(
            &format!("docker://{}/{reference}", p.registry),
            &format!("reg{i}"),
            &[],
        );
        let layers = json["layers"].as_array().unwrap();
        assert!(
            layers.iter().any(|l| l["media_type"] == *media_type),
            "{reference}: {json}"
        );
        let (from_layout, _) = w.pull_extract(
            &format!("oci:{}:{tag}", layout.display()),
            &format!("lay{i}"),
            &[],
        );
        assert_same_tree(&snapshot(&from_layout), &snapshot(&ours));
    }
    // The same image twice under the same key gives the same measurement.
    let a = w
        .pull_extract(&format!("{}/test/busybox", p.registry), "again1", &[])
        .1;
    let b = w
        .pull_extract(&format!("{}/test/busybox", p.registry), "again2", &[])
        .1;
    assert_eq!(a["root_hash"], b["root_hash"]);
}

#[test]
fn platform_selection_and_pinned_digests() {
    let Some(p) = peers() else { return };
    let w = work();
    let multi = format!("docker://{}/test/multi:latest", p.registry);
    let amd = w
        .pull_extract(&multi, "amd", &["--platform", "linux/amd64"])
        .1;
    let arm = w
        .pull_extract(&multi, "arm", &["--platform", "linux/arm64/v8"])
        .1;
    assert_ne!(amd["manifest_digest"], arm["manifest_digest"]);
    assert_eq!(amd["layers"], arm["layers"]);
    let err = w.pull_fails(&multi, &["--platform", "linux/s390x"]);
    assert!(
        err.contains("no image for platform linux/s390x") && err.contains("linux/arm64/v8"),
        "{err}"
    );

    let digest = amd["manifest_digest"].as_str().unwrap();
    let pinned = format!("docker://{}/test/busybox@{digest}", p.registry);
    let by_digest = w.pull_extract(&pinned, "pinned", &[]).1;
    assert_eq!(by_digest["manifest_digest"], amd["manifest_digest"]);
    let wrong = format!("docker://{}/test/layered@{digest}", p.registry);
    let err = w.pull_fails(&wrong, &[]);
    assert!(
        err.contains("not found") || err.contains("has digest"),
        "{err}"
    );
}

#[test]
fn broken_images_fail_cleanly() {
    let Some(p) = peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    let cases = [
        ("bad-diffid", "[diff_id]"),
        ("bad-size", "larger than the"),
        (
            "bad-mediatype",
            "unsupported media type \"application/vnd.example.unknown.layer\"",
        ),
        ("bad-config", "config sha256:"),
        ("no-such-tag", "tag \"no-such-tag\" not found"),
        ("huge-manifest", "is larger than 4194304 bytes"),
    ];
    for (tag, needle) in cases {
        let err = w.pull_fails(&format!("oci:{}:{tag}", layout.display()), &[]);
        assert!(err.contains(needle), "{tag}: {err}");
        assert!(
            err.contains(&format!("oci:{}:{tag}", layout.display())),
            "error names the reference: {err}"
        );
    }
    let err = w.pull_fails(
        &format!("docker://{}/test/nothing-here:latest", p.registry),
        &[],
    );
    assert!(err.contains("not found"), "{err}");
}

#[test]
fn without_policy_flags_the_usual_policy_file_applies() {
    let Some(p) = peers() else { return };
    let w = work();
    let home = w.path("home");
    std::fs::create_dir_all(home.join(".config/containers")).unwrap();
    std::fs::write(
        home.join(".config/containers/policy.json"),
        r#"{"default": [{"type": "reject"}]}"#,
    )
    .unwrap();
    let reference = format!("oci:{}:busybox", p.fixtures.join("layout").display());
    let image = w.path("refused.img");
    let out = Command::new(bin("encc"))
        .args(["image", "pull", &reference, "-o"])
        .arg(&image)
        .arg("--key-file")
        .arg(&w.key)
        .env("HOME", &home)
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("rejected by policy scope \"default\""),
        "{err}"
    );
    assert!(!image.exists());
}

#[test]
fn corrupted_blob_in_registry_storage_is_refused() {
    let Some(p) = peers() else { return };
    let w = work();
    let reference = format!("docker://{}/test/unique:latest", p.registry);
    let json = w.pull_extract(&reference, "before", &[]).1;
    let top = json["layers"].as_array().unwrap().last().unwrap()["digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let hex = top.strip_prefix("sha256:").unwrap();
    let data = p
        .fixtures
        .join("registry/storage/docker/registry/v2/blobs/sha256")
        .join(&hex[..2])
        .join(hex)
        .join("data");
    let good = std::fs::read(&data).unwrap();
    let mut bad = good.clone();
    let mid = bad.len() / 2;
    bad[mid] ^= 0x55;
    std::fs::write(&data, &bad).unwrap();
    let err = w.pull_fails(&reference, &[]);
    std::fs::write(&data, &good).unwrap();
    assert!(err.contains(&format!("blob {top} is corrupt")), "{err}");
}

#[test]
fn dropped_connections_resume_with_range_requests() {
    let Some(p) = peers() else { return };
    let w = work();
    let flaky = Proxy::start(&p.registry, &["--reset-after", "30000", "--resets", "2"]);
    let (resumed, json) = w.pull_extract(
        &format!("docker://{}/test/busybox:latest", flaky.addr),
        "resumed",
        &[],
    );
    let (direct, direct_json) = w.pull_extract(
        &format!("docker://{}/test/busybox:latest", p.registry),
        "direct",
        &[],
    );
    assert_eq!(json["manifest_digest"], direct_json["manifest_digest"]);
    assert_same_tree(&snapshot(&direct), &snapshot(&resumed));
    let stats = flaky.stats();
    assert_eq!(stats["resets"], 2, "{stats}");
    assert!(stats["range_gets"].as_u64().unwrap() >= 1, "{stats}");

    let broken = Proxy::start(&p.registry, &["--reset-after", "30000", "--resets", "-1"]);
    let err = w.pull_fails(
        &format!("docker://{}/test/busybox:latest", broken.addr),
        &[],
    );
    assert!(err.contains("after 3 resumed attempts"), "{err}");
}

#[test]
fn token_and_basic_auth_with_auth_files() {
    let Some(p) = peers() else { return };
    let w = work();
    let token = Proxy::start(&p.registry, &["--token", "alice:s3cret"]);
    let basic = Proxy::start(&p.registry, &["--basic", "bob:hunter2"]);
    let auth = |host: &str, userpass: &str| {
        let file = w.path(&format!("auth-{}.json", host.replace(':', "_")));
        let b64 = base64_encode(userpass.as_bytes());
        std::fs::write(
            &file,
            format!(r#"{{"auths":{{"{host}":{{"auth":"{b64}"}}}}}}"#),
        )
        .unwrap();
        file
    };
    for (proxy, good, name) in [
        (&token, "alice:s3cret", "token"),
        (&basic, "bob:hunter2", "basic"),
    ] {
        let reference = format!("docker://{}/test/busybox:latest", proxy.addr);
        let file = auth(&proxy.addr, good);
        w.pull_extract(
            &reference,
            &format!("{name}-ok"),
            &["--authfile", file.to_str().unwrap()],
        );
        let wrong = auth(&proxy.addr, "mallory:guess");
        let err = w.pull_fails(&reference, &["--authfile", wrong.to_str().unwrap()]);
        assert!(
            err.contains("authentication") || err.contains("401"),
            "{name}: {err}"
        );
        assert!(
            !err.contains("guess"),
            "a password reached the error message: {err}"
        );
        let empty = w.path("empty-auth.json");
        std::fs::write(&empty, "{}").unwrap();
        let err = w.pull_fails(&reference, &["--authfile", empty.to_str().unwrap()]);
        assert!(
            err.contains("401") || err.contains("authentication"),
            "{name}: {err}"
        );
    }
    assert!(token.stats()["token_gets"].as_u64().unwrap() >= 1);
}

fn base64_encode(bytes: &[u8]) -> String {
    const T: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::new();
    for chunk in bytes.chunks(3) {
        let b = [
            chunk[0],
            *chunk.get(1).unwrap_or(&0),
            *chunk.get(2).unwrap_or(&0),
        ];
        let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(T[((n >> (18 - 6 * i)) & 63) as usize] as char);
            } else {
                out.push('=');
            }
        }
    }
    out
}

#[test]
fn hostile_layers_are_refused_or_contained() {
    let Some(p) = peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    let refused = [
        ("hostile-dotdot", "refused: a '..' path component"),
        ("hostile-hardlink-escape", "refused: a '..' path component"),
        ("hostile-whiteout-escape", "refused: a '..' path component"),
        ("hostile-hardlink-missing", "the target does not exist"),
        ("hostile-huge-size", "truncated tar stream"),
    ];
    for (tag, needle) in refused {
        let err = w.pull_fails(&format!("oci:{}:{tag}", layout.display()), &[]);
        assert!(err.contains(needle), "{tag}: {err}");
    }
    // Contained: absolute names and symlinked parents land inside the image.
    let image = w.path("contained.img");
    let reference = format!("oci:{}:hostile-symlink-escape", layout.display());
    encc_ok(args![
        "image",
        "pull",
        "--insecure-policy",
        reference,
        "-o",
        image,
        "--key-file",
        w.key
    ]);
    let ls = encc_ok(args!["rootfs", "ls", image, "--key-file", w.key, "/tmp"]);
    assert!(ls.contains(" escape-symlink"), "{ls}");
    let ls = encc_ok(args!["rootfs", "ls", image, "--key-file", w.key, "/"]);
    assert!(ls.contains(" escape-root"), "{ls}");
    assert!(!Path::new("/tmp/escape-symlink").exists() && !Path::new("/escape-root").exists());
    let image = w.path("abs.img");
    let reference = format!("oci:{}:hostile-absolute", layout.display());
    encc_ok(args![
        "image",
        "pull",
        "--insecure-policy",
        reference,
        "-o",
        image,
        "--key-file",
        w.key
    ]);
    let cat = encc_ok(args![
        "rootfs",
        "cat",
        image,
        "--key-file",
        w.key,
        "/abs-contained"
    ]);
    assert_eq!(cat, "absolute names stay inside\n");
    // Device nodes are allowed, as entries of the image only.
    let image = w.path("dev.img");
    let reference = format!("oci:{}:hostile-device", layout.display());
    encc_ok(args![
        "image",
        "pull",
        "--insecure-policy",
        reference,
        "-o",
        image,
        "--key-file",
        w.key
    ]);
    let ls = encc_ok(args![
        "rootfs",
        "ls",
        image,
        "--key-file",
        w.key,
        "/dev/sda"
    ]);
    assert!(ls.starts_with('b'), "{ls}");
}

#[test]
fn inspect_and_stored_config() {
    let Some(p) = peers() else { return };
    let w = work();
    let reference = format!("docker://{}/test/busybox:latest", p.registry);
    let out = encc_ok(args!["image", "inspect", reference]);
    let v: serde_json::Value = serde_json::from_str(&out).unwrap();
    assert_eq!(v["Entrypoint"], serde_json::json!(["/bin/sh", "-c"]));
    assert_eq!(v["User"], "user");
    assert_eq!(v["Layers"].as_array().unwrap().len(), 1);
    let raw = encc_ok(args!["image", "inspect", reference, "--raw"]);
    let m: serde_json::Value = serde_json::from_str(&raw).unwrap();
    assert_eq!(m["schemaVersion"], 2);

    let image = w.path("cfg.img");
    encc_ok(args![
        "image",
        "pull",
        "--insecure-policy",
        reference,
        "-o",
        image,
        "--key-file",
        w.key
    ]);
    let cfg: serde_json::Value = serde_json::from_str(&encc_ok(args![
        "rootfs",
        "config",
        image,
        "--key-file",
        w.key
    ]))
    .unwrap();
    assert_eq!(cfg["config"]["WorkingDir"], "/home/user");
    assert_eq!(cfg["config"]["Env"][1], "IMAGE_VAR=from-image");
    assert!(
        !file_contains(&image, b"IMAGE_VAR"),
        "the config is stored encrypted"
    );
    assert!(
        !file_contains(&image, b"image-file-marker-5c1e"),
        "file contents are stored encrypted"
    );
}

#[test]
fn https_registry_with_cert_dir_or_tls_verify_false() {
    let Some(p) = peers() else { return };
    let tls = std::env::var("ENCC_TEST_TLS_REGISTRY")
        .expect("ENCC_TEST_TLS_REGISTRY (tests/run sets it)");
    let certs = p.fixtures.join("certs");
    let w = work();
    let reference = format!("docker://{tls}/test/busybox:latest");
    let (ours, _) = w.pull_extract(&reference, "tls", &["--cert-dir", certs.to_str().unwrap()]);
    assert!(ours.join("bin/busybox").exists());
    let err = w.pull_fails(&reference, &[]);
    assert!(
        err.to_lowercase().contains("certificate") || err.contains("UnknownIssuer"),
        "{err}"
    );
    w.pull_extract(&reference, "tls-noverify", &["--tls-verify=false"]);
}

#[test]
fn encrypted_layers_decrypt_with_the_right_key_only() {
    let Some(p) = root_peers() else { return };
    let w = work();
    let layout = p.fixtures.join("layout");
    let keys = p.fixtures.join("keys");
    let key = |name: &str| keys.join(name).to_str().unwrap().to_owned();
    let (plain, _) = w.pull_extract(&format!("oci:{}:layered", layout.display()), "plain", &[]);
    let cases = [
        ("enc-rsa", "rsa.pem"),
        ("enc-ec", "ec.pem"),
        ("enc-both", "rsa.pem"),
        ("enc-both", "ec.pem"),
    ];
    for (i, (tag, k)) in cases.iter().enumerate() {
        let reference = format!("oci:{}:{tag}", layout.display());
        let (tree, json) = w.pull_extract(
            &reference,
            &format!("dec{i}"),
            &["--decryption-key", &key(k)],
        );
        assert_same_tree(&snapshot(&plain), &snapshot(&tree));
        let layers = json["layers"].as_array().unwrap();
        assert!(
            layers
                .iter()
                .all(|l| l["media_type"].as_str().unwrap().ends_with("+encrypted")),
            "{json}"
        );
    }
    // Several keys: the first that opens a recipient wins.
    let reference = format!("oci:{}:enc-ec", layout.display());
    w.pull_extract(
        &reference,
        "multi-key",
        &[
            "--decryption-key",
            &key("other.pem"),
            "--decryption-key",
            &key("ec.pem"),
        ],
    );

    let enc = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let err = w.pull_fails(&enc("enc-rsa"), &[]);
    assert!(
        err.contains("is encrypted") && err.contains("no decryption key"),
        "{err}"
    );
    let err = w.pull_fails(&enc("enc-rsa"), &["--decryption-key", &key("other.pem")]);
    assert!(
        err.contains("cannot decrypt layer") && err.contains("none of the 1 decryption keys"),
        "{err}"
    );
    // An altered HMAC and a cut ciphertext: one error text, naming the layer only (the
    // oracle tests are in pull_hardening.rs).
    let err = w.pull_fails(&enc("enc-badhmac"), &["--decryption-key", &key("rsa.pem")]);
    assert!(err.contains("failed verification or unpacking"), "{err}");
    let err = w.pull_fails(
        &enc("enc-truncated"),
        &["--decryption-key", &key("rsa.pem")],
    );
    assert!(err.contains("failed verification or unpacking"), "{err}");
    for k in ["rsa.pem", "ec.pem"] {
        let secret = std::fs::read_to_string(keys.join(k)).unwrap();
        let body: String = secret.lines().filter(|l| !l.starts_with("-----")).collect();
        assert!(
            !err.contains(&body[..20]),
            "key material in an error message"
        );
    }
}

/// Pushes a cosign-format signature for `repo_tag` (through `registry`) made by
/// tests/fixtures/cosign_sign.py; returns the signed manifest digest.
fn push_cosign_signature(
    w: &Work,
    registry: &str,
    via: &str,
    repo_tag: &str,
    key: &Path,
    identity: &str,
    tamper: bool,
) -> String {
    let inspect = encc_ok(args![
        "image",
        "inspect",
        format!("docker://{via}/{repo_tag}")
    ]);
    let digest = serde_json::from_str::<serde_json::Value>(&inspect).unwrap()["Digest"]
        .as_str()
        .unwrap()
        .to_owned();
    let out = w.path(&format!("sig-{}", digest.strip_prefix("sha256:").unwrap()));
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/cosign_sign.py");
    let mut cmd = Command::new("python3");
    cmd.arg(script)
        .arg("--key")
        .arg(key)
        .args(["--digest", &digest, "--identity", identity, "--out"])
        .arg(&out);
    if tamper {
        cmd.arg("--tamper");
    }
    assert!(cmd.status().unwrap().success());
    let repo = repo_tag.split(':').next().unwrap();
    let status = Command::new("skopeo")
        .args(["copy", "--quiet", "--dest-tls-verify=false"])
        .arg(format!("oci:{}:sig", out.display()))
        .arg(format!(
            "docker://{registry}/{repo}:sha256-{}.sig",
            digest.strip_prefix("sha256:").unwrap()
        ))
        .status()
        .unwrap();
    assert!(status.success());
    digest
}

#[test]
fn cosign_policy_accepts_signed_images_and_rejects_before_any_layer() {
    let Some(p) = peers() else { return };
    let w = work();
    let keys = p.fixtures.join("keys");
    let other = w.path("other-ec.pem");
    assert!(Command::new("openssl")
        .args([
            "ecparam",
            "-genkey",
            "-name",
            "prime256v1",
            "-noout",
            "-out"
        ])
        .arg(&other)
        .status()
        .unwrap()
        .success());
    let proxy = Proxy::start(&p.registry, &[]);
    let via = proxy.addr.clone();
    let policy = w.path("policy.json");
    std::fs::write(
        &policy,
        format!(
            r#"{{"default": [{{"type": "reject"}}],
                "transports": {{"docker": {{"{via}/test": [{{"type": "sigstoreSigned", "keyPath": "{}"}}]}}}}}}"#,
            keys.join("ec.pub").display()
        ),
    )
    .unwrap();
    let policy_arg = policy.to_str().unwrap().to_owned();
    let regd = w.path("registries.d");
    std::fs::create_dir_all(&regd).unwrap();
    std::fs::write(
        regd.join("cosign.yaml"),
        "default-docker:\n  use-sigstore-attachments: true\n",
    )
    .unwrap();
    let regd_arg = regd.to_str().unwrap().to_owned();
    let pull = |repo_tag: &str| format!("docker://{via}/{repo_tag}");

    // Signed by the policy key, for this identity: accepted.
    push_cosign_signature(
        &w,
        &p.registry,
        &via,
        "test/busybox:latest",
        &keys.join("ec.pem"),
        &format!("{via}/test/busybox:latest"),
        false,
    );
    w.pull_extract(
        &pull("test/busybox:latest"),
        "signed",
        &["--policy", &policy_arg],
    );

    // Each bad case is refused before any layer blob is requested.
    push_cosign_signature(
        &w,
        &p.registry,
        &via,
        "test/unique:latest",
        &other,
        &format!("{via}/test/unique:latest"),
        false,
    );
    push_cosign_signature(
        &w,
        &p.registry,
        &via,
        "test/layered:v2s2",
        &keys.join("ec.pem"),
        "evil.example/other:1",
        false,
    );
    push_cosign_signature(
        &w,
        &p.registry,
        &via,
        "test/crafted:zstd",
        &keys.join("ec.pem"),
        &format!("{via}/test/crafted:zstd"),
        true,
    );
    let cases = [
        ("test/layered:latest", "no cosign signature"),
        ("test/unique:latest", "does not verify with the policy key"),
        (
            "test/layered:v2s2",
            "identity \"evil.example/other:1\" does not match",
        ),
        ("test/crafted:zstd", "does not verify with the policy key"),
    ];
    for (repo_tag, needle) in cases {
        let before = proxy.stats()["blob_paths"].as_array().unwrap().len();
        let err = w.pull_fails(
            &pull(repo_tag),
            &["--policy", &policy_arg, "--registries.d", &regd_arg],
        );
        assert!(
            err.contains("rejected by policy scope") && err.contains(needle),
            "{repo_tag}: {err}"
        );
        let inspect: serde_json::Value =
            serde_json::from_str(&encc_ok(args!["image", "inspect", pull(repo_tag)])).unwrap();
        let layers: Vec<String> = inspect["Layers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|l| l.as_str().unwrap().to_owned())
            .collect();
        let fetched: Vec<String> = proxy.stats()["blob_paths"].as_array().unwrap()[before..]
            .iter()
            .map(|p| p.as_str().unwrap().to_owned())
            .collect();
        for layer in &layers {
            assert!(
                !fetched.iter().any(|path| path.ends_with(layer.as_str())),
                "{repo_tag}: layer {layer} was requested: {fetched:?}"
            );
        }
    }
    // Outside the scope the default applies.
    let err = w.pull_fails(
        &format!("docker://{}/test/busybox:latest", p.registry),
        &["--policy", &policy_arg],
    );
    assert!(
        err.contains("rejected by policy scope \"default\""),
        "{err}"
    );
}

#[test]
fn gpg_signed_by_policy_with_a_lookaside_store() {
    let Some(p) = peers() else { return };
    let w = work();
    let gnupg = GpgHome::new(w.path("gnupg"));
    let home = gnupg.0.clone();
    let (key, other) = (w.path("signer.gpg"), w.path("other.gpg"));
    let fpr = gpg_key(&home, "signer", &key);
    gpg_key(&home, "other", &other);

    let lookaside = Lookaside::new(w.dir.path());
    let (store, regd) = (&lookaside.store, &lookaside.registries_d);
    let layout = p.fixtures.join("layout");
    let copy = |src: &str, dest: &str, sign: bool| {
        lookaside.copy(
            &home,
            sign.then_some(fpr.as_str()),
            &format!("oci:{}:{src}", layout.display()),
            &format!("docker://{}/{dest}", p.registry),
        )
    };
    copy("busybox", "signed/busybox:latest", true);
    copy("layered", "signed/unsigned:latest", false);
    copy("busybox", "signed/copy:latest", false);
    // The same manifest under another name: its signature claims signed/busybox.
    let digest = {
        let json = encc_ok(args![
            "image",
            "inspect",
            format!("docker://{}/signed/busybox:latest", p.registry)
        ]);
        serde_json::from_str::<serde_json::Value>(&json).unwrap()["Digest"]
            .as_str()
            .unwrap()
            .replace("sha256:", "sha256=")
    };
    let from = store.join(format!("signed/busybox@{digest}"));
    let to = store.join(format!("signed/copy@{digest}"));
    std::fs::create_dir_all(&to).unwrap();
    std::fs::copy(from.join("signature-1"), to.join("signature-1")).unwrap();

    let policy = |keyring: &Path| {
        let file = w.path(&format!(
            "policy-{}.json",
            keyring.file_stem().unwrap().to_str().unwrap()
        ));
        std::fs::write(
            &file,
            format!(
                r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{}/signed": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "{}"}}]}}}}}}"#,
                p.registry,
                keyring.display()
            ),
        )
        .unwrap();
        file.to_str().unwrap().to_owned()
    };
    let (good, wrong) = (policy(&key), policy(&other));
    let regd_arg = regd.to_str().unwrap().to_owned();
    let reference = |repo: &str| format!("docker://{}/signed/{repo}:latest", p.registry);

    w.pull_extract(
        &reference("busybox"),
        "gpg-ok",
        &["--policy", &good, "--registries.d", &regd_arg],
    );
    let cases = [
        (reference("busybox"), wrong.clone(), "signature-1:"),
        (
            reference("unsigned"),
            good.clone(),
            "no signature in the lookaside",
        ),
        (reference("copy"), good.clone(), "does not match"),
    ];
    for (r, pol, needle) in cases {
        let err = w.pull_fails(&r, &["--policy", &pol, "--registries.d", &regd_arg]);
        assert!(
            err.contains("rejected by policy scope") && err.contains(needle),
            "{r}: {err}"
        );
    }
    // Without a lookaside configuration the policy cannot be satisfied.
    let empty = w.path("empty-registries.d");
    std::fs::create_dir_all(&empty).unwrap();
    let err = w.pull_fails(
        &reference("busybox"),
        &["--policy", &good, "--registries.d", empty.to_str().unwrap()],
    );
    assert!(err.contains("no lookaside is configured"), "{err}");
}
