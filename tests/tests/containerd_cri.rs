//! Pods through containerd's CRI plugin, driven as kubelet drives it (tests/cri/cri.py over
//! containerd's socket): a private containerd 1.6 (tests/tests/common/containerd.rs) with the
//! `runc` handler and the `encc` handler (`containerd-shim-encc-v2`), host-network pods whose
//! sandbox is the pause fixture (tests/fixtures/make-pause.sh), images from the loopback
//! registry. One containerd serves the tests of this file that run at the same time; the
//! fault test has its own, since it kills a shim and restarts containerd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::sync::{Arc, Mutex, Weak};
use std::time::Duration;

use common::containerd::{Containerd, ContainerdOptions, CRI_NAMESPACE};
use common::cri::{stdout_lines, Container, ContainerStatus, Cri, Pod};

use common::{root_peers, Peers};

/// How long a container may take from StartContainer to its exit (an encc start pulls and
/// verifies the image inside the enclave).
const EXIT_TIMEOUT: Duration = Duration::from_secs(120);

/// A node: a private containerd with the pause image imported, boot configs for its encc
/// handlers, and a directory for pod logs and the enclaves' store.
struct Node {
    containerd: Containerd,
    dir: tempfile::TempDir,
    registry: String,
}

static NODE: Mutex<Weak<Node>> = Mutex::new(Weak::new());

/// The node the tests running now share (a new one when none is alive), or None (skip)
/// without root or peers.
fn node() -> Option<Arc<Node>> {
    let peers = root_peers()?;
    let mut shared = NODE.lock().unwrap_or_else(|e| e.into_inner());
    if let Some(node) = shared.upgrade() {
        return Some(node);
    }
    let node = Arc::new(Node::start(&peers));
    *shared = Arc::downgrade(&node);
    Some(node)
}

impl Node {
    fn start(peers: &Peers) -> Node {
        let dir = tempfile::Builder::new()
            .prefix("encc-cri.")
            .tempdir()
            .unwrap();
        let prefix = format!(
            "encc-cri-{}",
            dir.path()
                .file_name()
                .unwrap()
                .to_string_lossy()
                .replace('.', "")
        )
        .to_lowercase();
        let trust = dir.path().join("trust");
        std::fs::create_dir_all(&trust).unwrap();
        let policy = trust.join("policy.json");
        std::fs::write(
            &policy,
            format!(
                r#"{{"default": [{{"type": "insecureAcceptAnything"}}], "transports": {{"docker": {{"{}/{prefix}/signed": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "{}"}}]}}}}}}"#,
                peers.registry,
                trust.join("signer.gpg").display()
            ),
        )
        .unwrap();
        let boot = |name: &str, extra: &str| -> PathBuf {
            let path = dir.path().join(format!("{name}.json"));
            std::fs::write(
                &path,
                format!(
                    r#"{{"store": "{}", "policy": "{}", "registries_d": "{}", "insecure_registries": ["{}"], "env_allowlist": ["CRI_VISIBLE"], "log_level": "warn"{extra}}}"#,
                    dir.path().join("store").display(),
                    policy.display(),
                    trust.join("registries.d").display(),
                    peers.registry
                ),
            )
            .unwrap();
            path
        };
        let containerd = Containerd::start(&ContainerdOptions {
            boot_config: Some(boot("boot", r#", "allow_host_args": true"#)),
            more_encc: vec![("encc-strict".into(), boot("boot-strict", ""))],
            registry: Some(peers.registry.clone()),
            ..ContainerdOptions::default()
        })
        .unwrap();
        containerd
            .import(CRI_NAMESPACE, &peers.fixtures.join("pause.tar"))
            .unwrap();
        Node {
            containerd,
            dir,
            registry: peers.registry.clone(),
        }
    }

    fn cri(&self) -> Cri {
        Cri::connect(&self.containerd.address()).unwrap()
    }

    fn pod(&self, name: &str) -> Pod {
        Pod::new(
            name,
            &self.dir.path().join("logs").join(name),
            &self.containerd.cgroup_parent(),
        )
    }

    fn busybox(&self) -> String {
        format!("{}/test/busybox:latest", self.registry)
    }
}

/// A finished container: its status and stdout lines in the CRI log.
struct Finished {
    status: ContainerStatus,
    stdout: Vec<String>,
}

/// Runs pod `pod` with `handler` and `containers` in it (created and started in order), waits
/// for all to exit, reads their logs, then removes containers and pod as kubelet does and
/// checks the CRI lists no longer hold them.
fn run_pod(
    node: &Node,
    cri: &mut Cri,
    handler: &str,
    pod: &Pod,
    containers: &[Container],
) -> Vec<Finished> {
    for c in containers {
        cri.pull(&c.image, pod).unwrap();
    }
    let pod_id = cri.run_pod(pod, handler).unwrap();
    let mut ids = Vec::new();
    for c in containers {
        let id = cri.create(&pod_id, pod, c).unwrap().unwrap();
        if let Err(e) = cri.start(&id).unwrap() {
            panic!(
                "StartContainer {} failed: {e}\ncontainerd log:\n{}",
                c.name,
                node.containerd.log()
            );
        }
        ids.push(id);
    }
    let mut done = Vec::new();
    for id in &ids {
        let status = cri.wait_exited(id, EXIT_TIMEOUT).unwrap();
        let stdout = stdout_lines(&status.log_path).unwrap();
        done.push(Finished { status, stdout });
    }
    assert_eq!(cri.list_containers(&pod_id).unwrap().len(), ids.len());
    for id in &ids {
        cri.remove_container(id).unwrap();
    }
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
    assert!(cri.list_containers(&pod_id).unwrap().is_empty());
    assert!(
        !cri.list_pods().unwrap().iter().any(|(id, _)| *id == pod_id),
        "pod {pod_id} still listed"
    );
    done
}

fn sh(script: &str) -> Vec<String> {
    vec!["/bin/sh".into(), "-c".into(), script.into()]
}

/// The runc handler on the same node: proves the harness, the pause image and the client.
#[test]
fn a_runc_pod_runs_to_its_exit_code_with_its_output_in_the_cri_log() {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let mut c = Container::new("main", &node.busybox());
    c.command = sh("echo out from runc; exit 3");
    let done = run_pod(&node, &mut cri, "runc", &node.pod("runc-smoke"), &[c]);
    assert_eq!(done[0].status.exit_code, 3, "{}", done[0].status.raw);
    assert_eq!(done[0].stdout, ["out from runc"]);
}
