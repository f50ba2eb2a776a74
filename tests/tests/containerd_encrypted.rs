//! An ocicrypt-encrypted image and stock containerd 1.6 (no imgcrypt stream processor, as
//! Debian ships it): what the host can do with it, and the way the README documents to run
//! it under encc. The host's CRI PullImage of the encrypted image fails, as containerd
//! cannot unpack layers it cannot decrypt; a pod names the encrypted image in the
//! `io.encc.image` annotation and gives CRI a plain image the host can pull (here the
//! busybox fixture, never run: the host's rootfs is not used), and the enclave pulls,
//! decrypts and runs the encrypted one under the boot config's keys.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::time::Duration;

use common::containerd::{Containerd, ContainerdOptions, CRI_NAMESPACE};
use common::cri::{stdout_lines, Container, Cri, Pod};
use common::root_peers;

#[test]
fn the_host_cannot_unpack_an_encrypted_image_and_a_pod_names_it_for_the_enclave() {
    let Some(peers) = root_peers() else { return };
    let dir = tempfile::Builder::new()
        .prefix("encc-cri-enc.")
        .tempdir()
        .unwrap();
    let boot = dir.path().join("boot.json");
    std::fs::write(
        &boot,
        format!(
            r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{}"], "decryption_keys": ["{}"], "allow_host_args": true, "log_level": "warn"}}"#,
            dir.path().join("store").display(),
            peers.registry,
            peers.fixtures.join("keys/rsa.pem").display()
        ),
    )
    .unwrap();
    let containerd = Containerd::start(&ContainerdOptions {
        boot_config: Some(boot),
        registry: Some(peers.registry.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();
    containerd
        .import(CRI_NAMESPACE, &peers.fixtures.join("pause.tar"))
        .unwrap();
    let mut cri = Cri::connect(&containerd.address()).unwrap();
    let pod = Pod::new(
        "encrypted",
        &dir.path().join("logs/encrypted"),
        &containerd.cgroup_parent(),
    );
    let encrypted = format!("{}/test/enc:rsa", peers.registry);

    // The host's pull: containerd fetches the image but cannot unpack its layers. Its
    // default config sends ocicrypt media types to imgcrypt's `ctd-decoder`, which Debian
    // does not ship (nor would the node have the key).
    let err = cri.pull(&encrypted, &pod).unwrap_err().to_string();
    assert!(
        err.contains(
            "failed to get stream processor for application/vnd.oci.image.layer.v1.tar+gzip+encrypted"
        ),
        "PullImage of {encrypted}: {err}"
    );

    // The documented way: CRI gets a plain image, io.encc.image the encrypted one.
    let stand_in = format!("{}/test/busybox:latest", peers.registry);
    cri.pull(&stand_in, &pod).unwrap();
    let pod_id = cri.run_pod(&pod, "encc").unwrap();
    let mut c = Container::new("decrypted", &stand_in);
    c.command = vec!["/bin/sh".into(), "-c".into(), "cat /opt/app/README".into()];
    c.annotations
        .insert("io.encc.image".into(), format!("docker://{encrypted}"));
    let id = cri.create(&pod_id, &pod, &c).unwrap().unwrap();
    cri.start(&id).unwrap().unwrap();
    let status = cri.wait_exited(&id, Duration::from_secs(120)).unwrap();
    // "layer two" is only in the encrypted image's second layer, not in busybox.
    assert_eq!(
        (status.exit_code, stdout_lines(&status.log_path).unwrap()),
        (0, vec!["layer two".to_owned()]),
        "{}\ncontainerd log:\n{}",
        status.raw,
        containerd.log()
    );
    cri.remove_container(&id).unwrap();
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
    let left: Vec<_> = std::fs::read_dir(dir.path().join("store"))
        .map(|d| d.map(|e| e.unwrap().file_name()).collect())
        .unwrap_or_default();
    assert!(left.is_empty(), "store not empty: {left:?}");
}
