//! `encc boot-config init|check` and `encc occlum render` through the real binary: the
//! rendered Occlum.json parses, names the boot config in the initfs bom and passes exactly
//! the allowlisted host variables (plus ENCC_IMAGE) as untrusted env.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use common::*;

#[test]
fn boot_config_init_check_and_occlum_render() {
    let dir = tempfile::tempdir().unwrap();
    let boot = dir.path().join("boot.json");
    let json = encc_ok(args![
        "boot-config",
        "init",
        "--store",
        "/var/lib/encc",
        "--policy",
        "/etc/containers/policy.json",
        "--env-allowlist",
        "LANG,TZ",
        "--env",
        "MODE=prod",
        "--insecure-registry",
        "127.0.0.1:5000"
    ]);
    std::fs::write(&boot, &json).unwrap();
    let check = encc_ok(args!["boot-config", "check", boot]);
    assert!(check.contains("valid, sha256:"), "{check}");

    // An invalid config is refused with the field named.
    let bad = dir.path().join("bad.json");
    std::fs::write(
        &bad,
        json.replace(
            "\"hostname\": \"encc\"",
            "\"hostname\": \"no spaces please\"",
        ),
    )
    .unwrap();
    let out = encc(args!["boot-config", "check", bad]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("hostname"));

    let occlum = dir.path().join("Occlum.json");
    occlum_render(&boot, &occlum, std::path::Path::new("/opt/encc/init"));
    let rendered: serde_json::Value =
        serde_json::from_slice(&std::fs::read(&occlum).unwrap()).unwrap();
    assert_eq!(
        rendered["env"]["untrusted"],
        serde_json::json!(["LANG", "TZ", "ENCC_IMAGE"])
    );
    assert!(rendered["env"]["default"]
        .as_array()
        .unwrap()
        .contains(&"MODE=prod".into()));
    assert_eq!(rendered["metadata"]["debuggable"], false);
    // The host may start encc's exec shim alone (a file path, never a directory).
    assert_eq!(rendered["entry_points"], serde_json::json!(["/.encc/exec"]));
    let bom = std::fs::read_to_string(dir.path().join("encc-initfs.yaml")).unwrap();
    assert!(
        bom.contains(&*boot.canonicalize().unwrap().to_string_lossy()),
        "{bom}"
    );
    assert!(bom.contains("/opt/encc/init"), "{bom}");
    assert!(bom.contains("/opt/encc/encc-exec"), "{bom}");
}
