//! What the host may not decide for `init` (native platform, as root, real registry): it
//! cannot name a layout on its own storage as the image unless the boot config allows
//! local layouts, and its environment does not steer init (TLS roots, proxies, logging).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::enclave::*;
use common::*;

/// `init`'s exit code when the launch itself fails.
const LAUNCH_FAILED: i32 = 127;

fn boot_config(e: &Env, extra: &str) -> PathBuf {
    let path = e.dir.path().join("boot.json");
    let json = format!(
        r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{}"], "log_level": "info"{extra}}}"#,
        e.store().display(),
        e.registry
    );
    std::fs::write(&path, json).unwrap();
    path
}

/// `init --boot-config CONFIG IMAGE "cat /data/marker.txt"` (the image runs `sh -c`) with
/// the host variables `env`.
fn init(e: &Env, config: &Path, image: &str, env: &[(&str, &str)]) -> Output {
    let out = Command::new(bin("init"))
        .arg("--boot-config")
        .arg(config)
        .arg(image)
        .arg("cat /data/marker.txt")
        .envs(env.iter().copied())
        .output()
        .unwrap();
    e.assert_clean();
    out
}

#[test]
fn a_host_supplied_oci_layout_is_refused_unless_the_boot_config_allows_it() {
    let Some(e) = env() else { return };
    let layout = format!("oci:{}:busybox", e.fixtures.join("layout").display());
    let strict = boot_config(&e, r#", "allow_host_args": true"#);
    let out = init(&e, &strict, &layout, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(LAUNCH_FAILED), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("names an oci: layout on host storage")
            && stderr.contains("allow_local_layouts")
            && stderr.contains(&layout),
        "{stderr}"
    );
    // The registry image still runs under the same config.
    let out = init(&e, &strict, &e.image(), &[]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);

    let open = boot_config(
        &e,
        r#", "allow_host_args": true, "allow_local_layouts": true"#,
    );
    let out = init(&e, &open, &layout, &[]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "image-file-marker-5c1e\n");
}

#[test]
fn host_tls_roots_do_not_steer_init() {
    let Some(e) = env() else { return };
    let tls = std::env::var("ENCC_TEST_TLS_REGISTRY")
        .expect("ENCC_TEST_TLS_REGISTRY (tests/run sets it)");
    // The TLS registry's certificate comes from a test CA that only the host trusts: a host
    // that sets SSL_CERT_FILE to it must not make the enclave trust the host's CA.
    let ca = e.fixtures.join("certs/ca.crt");
    let config = boot_config(&e, r#", "allow_host_args": true"#);
    let image = format!("docker://{tls}/test/busybox:latest");
    let out = init(
        &e,
        &config,
        &image,
        &[
            ("SSL_CERT_FILE", ca.to_str().unwrap()),
            ("SSL_CERT_DIR", e.fixtures.join("certs").to_str().unwrap()),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(LAUNCH_FAILED), "{stdout}\n{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert!(
        stderr.contains("ignored host variables that steer init: ")
            && stderr.contains("SSL_CERT_FILE"),
        "{stderr}"
    );
    assert!(
        stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
}

#[test]
fn host_proxies_and_log_settings_do_not_steer_init() {
    let Some(e) = env() else { return };
    let config = boot_config(&e, r#", "allow_host_args": true"#);
    // A proxy that does not answer, and a log filter that would hide init's log.
    let out = init(
        &e,
        &config,
        &e.image(),
        &[
            ("HTTP_PROXY", "http://127.0.0.1:9"),
            ("http_proxy", "http://127.0.0.1:9"),
            ("ALL_PROXY", "http://127.0.0.1:9"),
            ("RUST_LOG", "off"),
        ],
    );
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "image-file-marker-5c1e\n");
    for name in ["HTTP_PROXY", "http_proxy", "ALL_PROXY", "RUST_LOG"] {
        assert!(stderr.contains(name), "{name} not reported: {stderr}");
    }
    // The boot config's log level (info) is in force inside the enclave, RUST_LOG=off not.
    assert!(stderr.contains("(simulated measurement)"), "{stderr}");
}

#[test]
fn boot_config_check_refuses_allowlisting_variables_that_steer_init() {
    let dir = tempfile::tempdir().unwrap();
    for name in [
        "SSL_CERT_FILE",
        "HTTPS_PROXY",
        "no_proxy",
        "RUST_LOG",
        "ENCC_INIT",
    ] {
        let path = dir.path().join("boot.json");
        let json = format!(
            r#"{{"store": "/var/lib/encc", "insecure_policy": true, "env_allowlist": ["TZ", "{name}"]}}"#
        );
        std::fs::write(&path, json).unwrap();
        let out = encc(args!["boot-config", "check", path]);
        let (_, stderr) = text(&out);
        assert!(!out.status.success(), "{name} accepted");
        assert!(
            stderr.contains("env_allowlist") && stderr.contains(name),
            "{stderr}"
        );
    }
    let out = encc(args![
        "boot-config",
        "init",
        "--insecure-policy",
        "--env-allowlist",
        "TZ,SSL_CERT_DIR"
    ]);
    assert!(!out.status.success());
    assert!(text(&out).1.contains("SSL_CERT_DIR"), "{}", text(&out).1);
}
