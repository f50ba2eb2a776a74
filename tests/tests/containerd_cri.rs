//! Pods through containerd's CRI plugin, driven as kubelet drives it (tests/cri/cri.py over
//! containerd's socket): a private containerd 1.6 (tests/tests/common/containerd.rs) with the
//! `runc` handler and the `encc` handler (`containerd-shim-encc-v2`), host-network pods whose
//! sandbox is the pause fixture (tests/fixtures/make-pause.sh), images from the loopback
//! registry. One containerd serves the tests of this file that run at the same time; the
//! fault test has its own, since it kills a shim and restarts containerd.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use common::containerd::{mounts_under, Containerd, ContainerdOptions, Shared, CRI_NAMESPACE};
use common::cri::{stdout_lines, Container, ContainerStatus, Cri, Pod};
use common::gpg::{gpg_key, GpgHome, Lookaside};

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
    /// Registry repository prefix of this node's own images (the signed fixtures).
    prefix: String,
}

static NODE: Shared<Node> = Shared::new();

/// The node the tests of this binary share (started by the first), or None (skip) without
/// root or peers.
fn node() -> Option<Arc<Node>> {
    let peers = root_peers()?;
    Some(NODE.get(|| Node::start(&peers, true)))
}

impl Node {
    /// A node; with `signed`, also the signed and unsigned busybox in the signed scope.
    fn start(peers: &Peers, signed: bool) -> Node {
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
        // Kept images (sealed in the store), the pod's args and its hostname.
        let seal = dir.path().join("seal.key");
        common::encc_ok(args!["key", "gen", "-o", &seal]);
        let kept = format!(
            r#", "allow_host_args": true, "allow_host_hostname": true, "seal_key_file": "{}""#,
            seal.display()
        );
        let containerd = Containerd::start(&ContainerdOptions {
            boot_config: Some(boot("boot", r#", "allow_host_args": true"#)),
            more_encc: vec![
                ("encc-strict".into(), boot("boot-strict", "")),
                ("encc-kept".into(), boot("boot-kept", &kept)),
            ],
            registry: Some(peers.registry.clone()),
            ..ContainerdOptions::default()
        })
        .unwrap();
        containerd
            .import(CRI_NAMESPACE, &peers.fixtures.join("pause.tar"))
            .unwrap();
        if signed {
            push_signed(peers, &trust, &prefix);
        }
        Node {
            containerd,
            dir,
            registry: peers.registry.clone(),
            prefix,
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

    /// `busybox` (signed) or `unsigned` in the scope the policy wants signed.
    fn signed_scope(&self, repo: &str) -> String {
        format!("{}/{}/signed/{repo}:latest", self.registry, self.prefix)
    }

    /// The enclaves' store (host storage for protected rootfs images).
    fn store(&self) -> PathBuf {
        self.dir.path().join("store")
    }
}

/// busybox signed by a key of the node's policy (`trust/signer.gpg`), and unsigned, in the
/// scope the policy wants signed.
fn push_signed(peers: &Peers, trust: &Path, prefix: &str) {
    let gnupg = GpgHome::new(trust.join("gnupg"));
    let fpr = gpg_key(&gnupg.0, "cri-signer", &trust.join("signer.gpg"));
    let lookaside = Lookaside::new(trust);
    // Images whose config (CRI's image id) no other image of the node shares: containerd's
    // CRI names a container's image by the first reference of its image id, so a second
    // tag of test/busybox's id would make the enclave pull that tag instead.
    let layout = peers.fixtures.join("layout");
    let scope = format!("docker://{}/{prefix}/signed", peers.registry);
    let src = |tag: &str| format!("oci:{}:{tag}", layout.display());
    let signed = format!("{scope}/busybox:latest");
    lookaside.copy(&gnupg.0, Some(&fpr), &src("busybox-root"), &signed);
    lookaside.copy(
        &gnupg.0,
        None,
        &src("layered"),
        &format!("{scope}/unsigned:latest"),
    );
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
    run_pod_with_ip(node, cri, handler, pod, containers).1
}

/// As [`run_pod`]; also the pod's IP.
fn run_pod_with_ip(
    node: &Node,
    cri: &mut Cri,
    handler: &str,
    pod: &Pod,
    containers: &[Container],
) -> (String, Vec<Finished>) {
    for c in containers {
        cri.pull(&c.image, pod).unwrap();
    }
    let pod_id = cri.run_pod(pod, handler).unwrap();
    let pod_ip = cri.pod_ip(&pod_id).unwrap();
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
    (pod_ip, done)
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

/// A pod with its own network (CNI ptp) and hostname: the container is in the pod's network
/// namespace (it has the pod's IP) and has the pod's hostname. `annotations` go on the
/// container.
fn pod_network_case(handler: &str, annotations: &[(&str, &str)]) {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let mut pod = node.pod(&format!("{handler}-net"));
    pod.pod_network = true;
    pod.hostname = format!("{handler}-pod-host");
    let mut c = Container::new("net", &node.busybox());
    c.command = sh("hostname; cat /proc/net/fib_trie");
    for (k, v) in annotations {
        c.annotations.insert((*k).into(), (*v).into());
    }
    let (ip, done) = run_pod_with_ip(&node, &mut cri, handler, &pod, &[c]);
    assert!(ip.starts_with("10.2"), "pod IP {ip:?}");
    let out = &done[0].stdout;
    assert_eq!(done[0].status.exit_code, 0, "{}", done[0].status.raw);
    assert_eq!(
        out.first().map(String::as_str),
        Some(pod.hostname.as_str()),
        "{out:?}"
    );
    assert!(
        out.iter().any(|l| l.trim().ends_with(&format!(" {ip}"))),
        "{ip} not in {out:?}"
    );
}

#[test]
fn a_runc_container_has_its_pods_network_and_hostname() {
    pod_network_case("runc", &[]);
}

/// An encc enclave pulls from inside the pod's network namespace, where the node's loopback
/// registry is out of reach: the image is kept first (`seal_key_file`, from a host-network
/// pod) and named by digest, so the pod-network start needs no network before the
/// container runs. The container then has the pod's IP and, under `allow_host_hostname`,
/// its hostname.
#[test]
fn an_encc_container_with_a_kept_image_has_its_pods_network_and_hostname() {
    let Some(node) = node() else { return };
    let inspect = std::process::Command::new("skopeo")
        .args(["inspect", "--tls-verify=false", "--format", "{{.Digest}}"])
        .arg(format!("docker://{}", node.busybox()))
        .output()
        .unwrap();
    assert!(inspect.status.success(), "skopeo inspect: {inspect:?}");
    let digest = String::from_utf8(inspect.stdout).unwrap();
    let pinned = format!("docker://{}/test/busybox@{}", node.registry, digest.trim());
    let mut cri = node.cri();
    let mut warm = Container::new("warm", &node.busybox());
    warm.annotations
        .insert("io.encc.image".into(), pinned.clone());
    let done = run_pod(
        &node,
        &mut cri,
        "encc-kept",
        &node.pod("kept-warm"),
        &[warm],
    );
    assert_eq!(
        (done[0].status.exit_code, done[0].stdout.clone()),
        (0, vec!["hello from busybox".to_owned()]),
        "{}",
        done[0].status.raw
    );
    pod_network_case("encc-kept", &[("io.encc.image", &pinned)]);
}

/// The encc handler: the image's own command and its output in the CRI log, exit codes,
/// the pod's env through the boot config's allowlist, an image without an Entrypoint run with
/// the pod's `args`, three containers of one pod (one enclave each).
#[test]
fn an_encc_pod_runs_busybox_with_its_output_in_the_cri_log_and_its_exit_codes() {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let own = Container::new("own-command", &node.busybox());
    let mut exit3 = Container::new("exit3", &node.busybox());
    exit3.command = sh("sleep 1; echo \"visible=$CRI_VISIBLE hidden=$CRI_HIDDEN\"; exit 3");
    exit3.envs = vec![
        ("CRI_VISIBLE".into(), "yes".into()),
        ("CRI_HIDDEN".into(), "leaked".into()),
    ];
    // A pod's `args` on an image without an Entrypoint (Cmd ["sh"]): containerd's
    // process.args are the whole argv, program included.
    let mut noentry = Container::new(
        "noentry",
        &format!("{}/test/busybox-noentry:latest", node.registry),
    );
    noentry.args = vec!["sh".into(), "-c".into(), "echo noentry $0; exit 5".into()];
    let pod = node.pod("encc-busybox");
    let done = run_pod(&node, &mut cri, "encc", &pod, &[own, exit3, noentry]);
    assert_eq!(
        (done[0].status.exit_code, done[0].stdout.clone()),
        (0, vec!["hello from busybox".to_owned()]),
        "{}",
        done[0].status.raw
    );
    assert_eq!(
        (done[1].status.exit_code, done[1].stdout.clone()),
        (3, vec!["visible=yes hidden=".to_owned()]),
        "{}",
        done[1].status.raw
    );
    assert_eq!(done[1].status.reason, "Error");
    assert_eq!(
        (done[2].status.exit_code, done[2].stdout.clone()),
        (5, vec!["noentry sh".to_owned()]),
        "{}",
        done[2].status.raw
    );
}

/// Two containers of one encc pod run at the same time, each in its own enclave, and
/// StopContainer ends them as kubelet expects: SIGTERM first (a trap runs), SIGKILL when the
/// grace period is 0 (137).
#[test]
fn two_containers_of_one_encc_pod_run_at_once_and_stop_with_sigterm_and_sigkill() {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let pod = node.pod("encc-two");
    let mut trap = Container::new("trap", &node.busybox());
    trap.command = sh("trap 'echo got TERM; exit 7' TERM; echo ready; while :; do sleep 0.1; done");
    let mut sleeper = Container::new("sleeper", &node.busybox());
    sleeper.command = sh("echo ready; exec sleep 1000");
    cri.pull(&node.busybox(), &pod).unwrap();
    let pod_id = cri.run_pod(&pod, "encc").unwrap();
    let mut ids = Vec::new();
    for c in [&trap, &sleeper] {
        let id = cri.create(&pod_id, &pod, c).unwrap().unwrap();
        cri.start(&id).unwrap().unwrap();
        ids.push(id);
    }
    for id in &ids {
        let status = cri
            .wait_state(id, "CONTAINER_RUNNING", EXIT_TIMEOUT)
            .unwrap();
        wait_for_line(&status.log_path, "ready");
    }
    // Both running now, in one pod.
    let listed = cri.list_containers(&pod_id).unwrap();
    assert_eq!(listed.len(), 2, "{listed:?}");
    assert!(
        listed.iter().all(|(_, s)| s == "CONTAINER_RUNNING"),
        "{listed:?}"
    );

    cri.stop_container(&ids[0], 30).unwrap();
    let st = cri.status(&ids[0]).unwrap();
    assert_eq!(
        (st.state.as_str(), st.exit_code),
        ("CONTAINER_EXITED", 7),
        "{}",
        st.raw
    );
    assert_eq!(stdout_lines(&st.log_path).unwrap(), ["ready", "got TERM"]);
    cri.stop_container(&ids[1], 0).unwrap();
    let st = cri.status(&ids[1]).unwrap();
    assert_eq!(
        (st.state.as_str(), st.exit_code),
        ("CONTAINER_EXITED", 137),
        "{}",
        st.raw
    );

    for id in &ids {
        cri.remove_container(id).unwrap();
    }
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
}

/// The node's policy wants `…/signed/*` signed by its key: the signed busybox runs, the
/// unsigned one is refused inside the enclave before anything of it runs, and kubelet sees
/// why in ContainerStatus.
#[test]
fn a_signed_image_runs_and_an_unsigned_one_is_refused_with_the_reason_in_container_status() {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let pod = node.pod("encc-signed");
    let done = run_pod(
        &node,
        &mut cri,
        "encc",
        &pod,
        &[Container::new("signed", &node.signed_scope("busybox"))],
    );
    assert_eq!(done[0].status.exit_code, 0, "{}", done[0].status.raw);
    assert_eq!(done[0].stdout, ["hello from busybox"]);

    let unsigned = node.signed_scope("unsigned");
    let status = refused(
        &node,
        &mut cri,
        "encc",
        "encc-unsigned",
        Container::new("unsigned", &unsigned),
    );
    assert!(
        status.message.contains("rejected by policy") && status.message.contains(&unsigned),
        "{}",
        status.raw
    );
}

/// Under a boot config without `allow_host_args` (handler `encc-strict`) the image's own
/// Entrypoint + Cmd, as containerd puts them in the spec, runs; a pod's command override is
/// refused, with the reason in ContainerStatus.
#[test]
fn without_allow_host_args_the_images_command_runs_and_an_override_is_refused() {
    let Some(node) = node() else { return };
    let mut cri = node.cri();
    let pod = node.pod("strict-own");
    let own = Container::new("own", &node.busybox());
    let done = run_pod(&node, &mut cri, "encc-strict", &pod, &[own]);
    assert_eq!(done[0].status.exit_code, 0, "{}", done[0].status.raw);
    assert_eq!(done[0].stdout, ["hello from busybox"]);

    let mut over = Container::new("override", &node.busybox());
    over.command = sh("echo override ran");
    let status = refused(&node, &mut cri, "encc-strict", "strict-override", over);
    assert!(status.message.contains("allow_host_args"), "{}", status.raw);
}

/// Runs `c` alone in a new pod of `handler` and expects it refused: StartContainer fails, the
/// container is exited with the error as its status message, its log holds no output of
/// the image. Removes container and pod; returns the status.
fn refused(
    node: &Node,
    cri: &mut Cri,
    handler: &str,
    pod_name: &str,
    c: Container,
) -> ContainerStatus {
    let pod = node.pod(pod_name);
    cri.pull(&c.image, &pod).unwrap();
    let pod_id = cri.run_pod(&pod, handler).unwrap();
    let id = cri.create(&pod_id, &pod, &c).unwrap().unwrap();
    let err = cri
        .start(&id)
        .unwrap()
        .expect_err("StartContainer succeeded");
    let status = cri.wait_exited(&id, EXIT_TIMEOUT).unwrap();
    assert_ne!(status.exit_code, 0, "{}", status.raw);
    assert!(
        err.details.contains(status.message.trim()) && !status.message.is_empty(),
        "StartContainer: {err}\nstatus: {}",
        status.raw
    );
    let out = stdout_lines(&status.log_path).unwrap_or_default();
    assert!(
        !out.iter()
            .any(|l| l.contains("hello from busybox") || l.contains("override ran")),
        "{out:?}"
    );
    cri.remove_container(&id).unwrap();
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
    status
}

/// Waits until the CRI log at `path` has stdout line `line`.
fn wait_for_line(path: &Path, line: &str) {
    let deadline = std::time::Instant::now() + EXIT_TIMEOUT;
    loop {
        if stdout_lines(path)
            .unwrap_or_default()
            .iter()
            .any(|l| l == line)
        {
            return;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "no {line:?} in {}",
            path.display()
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A process as (pid, start time in clock ticks), so a reused pid is not mistaken for it.
fn identity(pid: i32) -> Option<(i32, u64)> {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let after = &stat[stat.rfind(')')? + 1..];
    // Fields after the command: state is field 3, starttime field 22.
    let start = after.split_whitespace().nth(19)?.parse().ok()?;
    Some((pid, start))
}

/// Those of `ids` still running, with their command lines.
fn alive(ids: &[(i32, u64)]) -> Vec<(i32, String)> {
    ids.iter()
        .filter(|id| identity(id.0).as_ref() == Some(*id))
        .map(|(pid, _)| {
            let cmd = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
            (*pid, String::from_utf8_lossy(&cmd).replace('\0', " "))
        })
        .collect()
}

/// The fault kubelet's node can have: the pod's shim is killed with SIGKILL while its
/// container runs, then containerd restarts. containerd cleans up after the dead shim
/// (`containerd-shim-encc-v2 delete`): no process the shim had started (enclave, container,
/// sandbox holder) survives, nothing stays mounted, the store is empty, and containerd's
/// view agrees — CRI lists the container exited and the pod not ready, `ctr task ls` shows
/// nothing running — and the pod is removed as usual.
#[test]
fn a_killed_shim_and_a_restarted_containerd_leave_no_enclave_mount_or_store_file() {
    let Some(peers) = root_peers() else { return };
    let mut node = Node::start(&peers, false);
    let mut cri = node.cri();
    let pod = node.pod("fault");
    let mut victim = Container::new("victim", &node.busybox());
    victim.command = sh("echo ready; while :; do sleep 1; done");
    cri.pull(&victim.image, &pod).unwrap();
    let pod_id = cri.run_pod(&pod, "encc").unwrap();
    let id = cri.create(&pod_id, &pod, &victim).unwrap().unwrap();
    cri.start(&id).unwrap().unwrap();
    let status = cri
        .wait_state(&id, "CONTAINER_RUNNING", EXIT_TIMEOUT)
        .unwrap();
    wait_for_line(&status.log_path, "ready");

    let shims = node.containerd.shim_pids();
    assert_eq!(shims.len(), 1, "one shim per pod: {shims:?}");
    let tree: Vec<(i32, u64)> = common::process::process_tree(shims[0] as u32)
        .into_iter()
        .filter_map(identity)
        .collect();
    // The shim, the enclave (init, its FUSE server), the container's shell and sleep.
    assert!(tree.len() >= 3, "the shim's processes: {:?}", alive(&tree));
    // The pod shim's socket (containerd-shim's `address` file in the sandbox's bundle).
    let bundle = node
        .containerd
        .state()
        .join("io.containerd.runtime.v2.task")
        .join(CRI_NAMESPACE)
        .join(&pod_id);
    let address = std::fs::read_to_string(bundle.join("address")).unwrap();
    let socket = PathBuf::from(address.trim().trim_start_matches("unix://"));
    assert!(socket.exists(), "{}", socket.display());
    // SAFETY: kill takes plain integers; the pid is this test's shim.
    assert_eq!(unsafe { libc::kill(shims[0], libc::SIGKILL) }, 0);
    drop(cri);
    node.containerd.restart().unwrap();
    let mut cri = node.cri();

    let status = cri.wait_exited(&id, Duration::from_secs(30)).unwrap();
    assert_ne!(status.exit_code, 0, "{}", status.raw);
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while !alive(&tree).is_empty() && std::time::Instant::now() < deadline {
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(
        alive(&tree),
        Vec::<(i32, String)>::new(),
        "survivors of the killed shim"
    );
    assert_eq!(node.containerd.shim_pids(), Vec::<i32>::new());
    assert!(
        !socket.exists(),
        "the dead shim's socket {} is left",
        socket.display()
    );
    let pods = cri.list_pods().unwrap();
    assert_eq!(pods, [(pod_id.clone(), "SANDBOX_NOTREADY".to_owned())]);
    assert_eq!(
        cri.list_containers("").unwrap(),
        [(id.clone(), "CONTAINER_EXITED".to_owned())]
    );
    assert_eq!(running_tasks(&node), Vec::<String>::new());
    // (CRI's own /dev/shm of the sandbox stays mounted until StopPodSandbox.)
    let tasks = node
        .containerd
        .state()
        .join("io.containerd.runtime.v2.task");
    let mounts: Vec<_> = mounts_under(&tasks)
        .into_iter()
        .chain(mounts_under(node.dir.path()))
        .collect();
    assert!(mounts.is_empty(), "left mounted: {mounts:?}");
    assert_eq!(store_entries(&node), Vec::<String>::new());

    cri.remove_container(&id).unwrap();
    cri.stop_pod(&pod_id).unwrap();
    cri.remove_pod(&pod_id).unwrap();
    assert!(cri.list_pods().unwrap().is_empty());
    assert!(cri.list_containers("").unwrap().is_empty());
    assert!(task_list(&node).is_empty(), "{:?}", task_list(&node));
    let mounts = mounts_under(node.containerd.dir());
    assert!(mounts.is_empty(), "left mounted: {mounts:?}");
}

/// `ctr -n k8s.io task ls`: (task id, status) rows.
fn task_list(node: &Node) -> Vec<(String, String)> {
    let out = node
        .containerd
        .ctr_in(CRI_NAMESPACE, ["task", "ls"])
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "ctr task ls: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout)
        .lines()
        .skip(1)
        .filter_map(|l| {
            let cols: Vec<&str> = l.split_whitespace().collect();
            Some((cols.first()?.to_string(), cols.last()?.to_string()))
        })
        .collect()
}

fn running_tasks(node: &Node) -> Vec<String> {
    task_list(node)
        .into_iter()
        .filter(|(_, status)| status != "STOPPED")
        .map(|(id, status)| format!("{id} {status}"))
        .collect()
}

fn store_entries(node: &Node) -> Vec<String> {
    std::fs::read_dir(node.store())
        .map(|d| {
            d.map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect()
        })
        .unwrap_or_default()
}
