//! The Occlum interface emulator (`encc-occlum-emu`, a test double) answers `mount` and
//! MountRootFS the way Occlum 0.30.1's source does: a probe program
//! (tests/fixtures/occlum/mountrootfs_probe.c, built with gcc) takes init's place in the
//! initfs and prints each answer. As root; no registry needed.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::Path;
use std::process::Command;

use common::enclave::text;
use common::*;

#[test]
fn mount_and_mount_rootfs_answer_like_occlum_0_30() {
    if !is_root() {
        assert!(
            std::env::var_os("ENCC_REQUIRE_PEERS").is_none(),
            "needs root"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = |name: &str| dir.path().join(name);
    let probe = path("probe");
    let source = Path::new(env!("CARGO_MANIFEST_DIR")).join("fixtures/occlum/mountrootfs_probe.c");
    let out = Command::new("gcc")
        .args(["-O", "-Wall", "-o"])
        .arg(&probe)
        .arg(&source)
        .output()
        .unwrap();
    assert!(out.status.success(), "gcc: {}", text(&out).1);
    let store = path("store");
    for layer in ["lower", "upper"] {
        std::fs::create_dir_all(store.join(layer)).unwrap();
    }
    let boot = path("boot.json");
    std::fs::write(
        &boot,
        format!(
            r#"{{"store": "{0}", "insecure_policy": true, "env": ["PROBE_STORE={0}"]}}"#,
            store.display()
        ),
    )
    .unwrap();
    std::fs::create_dir(path("instance")).unwrap();
    occlum_render(&boot, &path("instance/Occlum.json"), &probe);
    // The initfs: the probe as /bin/init (with its libraries) and the boot config.
    let bom = path("probe.yaml");
    std::fs::write(
        &bom,
        format!(
            "targets:\n- target: /bin\n  copy:\n  - files:\n    - name: {}\n      rename: init\n      autodep: true\n- target: /etc/encc\n  copy:\n  - files:\n    - {}\n",
            probe.display(),
            boot.display()
        ),
    )
    .unwrap();
    let emu = |program: &str| {
        Command::new(bin("encc-occlum-emu"))
            .arg("run")
            .arg("--instance")
            .arg(path("instance"))
            .arg("--bom")
            .arg(&bom)
            .arg("--work")
            .arg(path("work"))
            .arg(program)
            .output()
            .unwrap()
    };
    let out = emu("@entry-point");
    let (stdout, stderr) = text(&out);
    // The layer has no /etc: Occlum swaps the root, then fails to write /etc/resolv.conf
    // into it (`write_host_file`) and returns ENOENT; the swap stays (EPERM afterwards).
    let expected = "hostfs-bind EINVAL\nhostfs-on-root EPERM\nprocfs EINVAL\nhostfs 0\nsefs 0\n\
                    umount 0\nrootfs-len-48 EINVAL\nrootfs-missing-layer ENOENT\n\
                    rootfs-other-key EIO\nrootfs-bad-pointer EFAULT\nrootfs ENOENT\n\
                    rootfs-again EPERM\n";
    assert_eq!(stdout, expected, "{stderr}");
    // The entry point the probe set is started (and missing: occlum run's 127); another
    // program is refused before any start.
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("occlum_pal_create_process /bin/none: No such file"),
        "{stderr}"
    );
    // A fresh start (a layer from the last one holds files this SEFS key did not write).
    std::fs::remove_dir_all(store.join("lower")).unwrap();
    std::fs::create_dir(store.join("lower")).unwrap();
    let out = emu("/bin/init");
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("occlum_pal_create_process /bin/init: EACCES"),
        "{stderr}"
    );
}
