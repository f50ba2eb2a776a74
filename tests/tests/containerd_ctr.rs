//! encc as a containerd runtime, driven by `ctr` against a private containerd 1.6 (its own
//! config, root, state and socket under a temporary directory): `ctr run --rm --rootfs EMPTY
//! --runtime io.containerd.encc.v2 --annotation io.encc.image=docker://…` runs the busybox
//! fixture in an enclave (pulled inside it; the empty rootfs is never used), with the image's
//! output on ctr's stdout, exact exit codes (0, 3, 137 for SIGKILL, 143 for SIGTERM), the
//! task in `ctr task ls` while it runs, exec refused, and the user's errors (policy
//! rejection, failed pull, refused override) in ctr's error. After each run nothing is left
//! mounted, running or in the store. A container that joins a pod's UTS namespace gets the
//! pod's hostname only under `allow_host_hostname`, and only when it is a host name.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::time::{Duration, Instant};

use common::containerd::{Containerd, ContainerdOptions};
use common::enclave::{env, text, Env};

/// What `Exec` answers (host-launcher/src/shim/api.rs).
const EXEC_REFUSED: &str = "exec into an encc confidential container is not allowed";

/// A private containerd with the encc runtime, the test's store and boot configs.
struct Node {
    e: Env,
    containerd: Containerd,
    rootfs: PathBuf,
}

/// A `Node`, or None (skip) without root, peers or containerd (a failure when
/// ENCC_REQUIRE_PEERS=1).
fn node() -> Option<Node> {
    let e = env()?;
    if Command::new("containerd")
        .arg("--version")
        .output()
        .is_err()
    {
        assert!(
            std::env::var_os("ENCC_REQUIRE_PEERS").is_none(),
            "containerd is not installed (Debian package `containerd`)"
        );
        eprintln!("skipped: containerd is not installed");
        return None;
    }
    let rootfs = e.dir.path().join("empty-rootfs");
    std::fs::create_dir_all(&rootfs).unwrap();
    let open = boot_config(&e, "open.json", r#", "allow_host_args": true"#);
    let containerd = Containerd::start(&ContainerdOptions {
        boot_config: Some(open),
        registry: Some(e.registry.clone()),
        ..ContainerdOptions::default()
    })
    .unwrap();
    Some(Node {
        e,
        containerd,
        rootfs,
    })
}

/// A boot config in the test directory: the test's store, `extra` JSON members appended.
fn boot_config(e: &Env, name: &str, extra: &str) -> PathBuf {
    let path = e.dir.path().join(name);
    let policy = if extra.contains("\"policy\"") {
        ""
    } else {
        r#", "insecure_policy": true"#
    };
    std::fs::write(
        &path,
        format!(
            r#"{{"store": "{}"{policy}, "env_allowlist": ["FROM_HOST"], "log_level": "info"{extra}}}"#,
            e.store().display()
        ),
    )
    .unwrap();
    path
}

impl Node {
    fn image(&self) -> String {
        self.e.image()
    }

    /// `ctr run --rm` of the busybox fixture on the encc runtime with boot config `boot`.
    fn run(&self, boot: &Path, image: &str, extra: &[&str], id: &str, args: &[&str]) -> Command {
        let mut cmd = self
            .containerd
            .ctr(["run", "--rm", "--net-host", "--rootfs"]);
        cmd.args(["--runtime", "io.containerd.encc.v2"])
            .arg("--runtime-config-path")
            .arg(boot)
            .arg("--annotation")
            .arg(format!("io.encc.image={image}"))
            .args(extra)
            .arg(&self.rootfs)
            .arg(id)
            .args(args)
            .stdin(Stdio::null());
        cmd
    }

    fn open(&self) -> PathBuf {
        self.e.dir.path().join("open.json")
    }

    fn ctr_out(&self, args: &[&str]) -> Output {
        self.containerd.ctr(args).output().unwrap()
    }

    /// Nothing mounted or in the store; no task, container or shim of this containerd left,
    /// and no process of the encc runtime (runner, enclave) still running.
    fn assert_clean(&self, id: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while !self.containerd.shim_pids().is_empty() && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(50));
        }
        assert_eq!(self.containerd.shim_pids(), Vec::<i32>::new(), "shims left");
        self.e.assert_clean();
        let tasks = text(&self.ctr_out(&["task", "ls"])).0;
        assert!(!tasks.contains(id), "task {id} left:\n{tasks}");
        let containers = text(&self.ctr_out(&["containers", "ls"])).0;
        assert!(
            !containers.contains(id),
            "container {id} left:\n{containers}"
        );
        assert!(
            !running_under(self.e.dir.path()),
            "an enclave of this test still runs"
        );
    }
}

/// Whether a process still has a file open or its cwd under `dir` (an enclave serves its
/// store's image file while it runs).
fn running_under(dir: &Path) -> bool {
    let dir = dir.to_string_lossy().into_owned();
    std::fs::read_dir("/proc").unwrap().flatten().any(|p| {
        std::fs::read_dir(p.path().join("fd"))
            .into_iter()
            .flatten()
            .flatten()
            .any(|fd| {
                std::fs::read_link(fd.path()).is_ok_and(|t| t.to_string_lossy().starts_with(&dir))
            })
    })
}

/// Waits for `child` (at most 120 s) and returns its output.
fn finish(child: Child) -> Output {
    let pid = child.id();
    let watchdog = std::thread::spawn(move || {
        std::thread::sleep(Duration::from_secs(120));
        // SAFETY: kill takes integers; the pid is the test's ctr, if it still runs.
        unsafe { libc::kill(pid as i32, libc::SIGKILL) };
    });
    let out = child.wait_with_output().unwrap();
    drop(watchdog);
    out
}

#[test]
fn ctr_run_shows_the_images_output_and_its_exit_codes() {
    let Some(n) = node() else { return };
    let image = n.image();
    // The image's own Entrypoint + Cmd (no args: ctr passes none).
    let out = n
        .run(&n.open(), &image, &[], "hello", &[])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "hello from busybox\n"),
        "{stderr}\ncontainerd log:\n{}",
        n.containerd.log()
    );
    n.assert_clean("hello");

    // An override (allowed by this boot config), stdout and stderr apart, exit code 3.
    let script = "echo out; echo err >&2; exit 3";
    let out = n
        .run(&n.open(), &image, &[], "three", &["/bin/sh", "-c", script])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!((out.status.code(), stdout.as_str()), (Some(3), "out\n"));
    assert!(stderr.starts_with("err\n"), "{stderr}");
    n.assert_clean("three");

    // The rootfs containerd hands over (here ctr's --rootfs directory) is never used: the
    // container's root is the image pulled in the enclave.
    std::fs::write(n.rootfs.join("host-marker"), "from the host's rootfs").unwrap();
    let out = n
        .run(
            &n.open(),
            &image,
            &[],
            "root",
            &[
                "/bin/sh",
                "-c",
                "ls /host-marker 2>&1; cat /data/marker.txt",
            ],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(
        stdout.contains("No such file")
            && stdout.contains("image-file-marker-5c1e")
            && !stdout.contains("from the host"),
        "{stdout}{stderr}"
    );
    std::fs::remove_file(n.rootfs.join("host-marker")).unwrap();
    n.assert_clean("root");

    // The OCI env passes through the boot config's env_allowlist only.
    let out = n
        .run(
            &n.open(),
            &image,
            &["--env", "FROM_HOST=yes", "--env", "OTHER=no"],
            "env",
            &["/bin/sh", "-c", "echo \"[$FROM_HOST][$OTHER]\""],
        )
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "[yes][]\n", "{}", text(&out).1);
    n.assert_clean("env");
}

/// busybox's own config has no Entrypoint and Cmd ["sh"]: the OCI args are the whole argv,
/// program included (they were once read as a new Cmd after the program, so `sh -c SCRIPT`
/// ran the program `-c`).
#[test]
fn without_an_entrypoint_the_oci_args_are_the_whole_argv() {
    let Some(n) = node() else { return };
    let image = format!("docker://{}/test/busybox-noentry:latest", n.e.registry);
    let out = n
        .run(
            &n.open(),
            &image,
            &[],
            "noentry-sh",
            &["sh", "-c", "echo from $0; exit 4"],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(4), "from sh\n"),
        "{stderr}"
    );
    n.assert_clean("noentry-sh");
    // Another program of the image replaces the whole Cmd, as `docker run IMAGE ls` does.
    let out = n
        .run(
            &n.open(),
            &image,
            &[],
            "noentry-cat",
            &["cat", "/data/marker.txt"],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains("image-file-marker-5c1e"),
        "{stdout}{stderr}"
    );
    n.assert_clean("noentry-cat");
    // Under a boot config without allow_host_args both are refused, with the arguments.
    let strict = boot_config(&n.e, "strict-noentry.json", "");
    let out = n
        .run(&strict, &image, &[], "noentry-strict", &["sh", "-c", "id"])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success() && stdout.is_empty(), "ran: {stdout}");
    assert!(
        stderr.contains(r#"["-c", "id"]"#) && stderr.contains("allow_host_args"),
        "{stderr}"
    );
    n.assert_clean("noentry-strict");
}

#[test]
fn ctr_task_ls_kill_and_exec_on_a_running_container() {
    let Some(n) = node() else { return };
    let image = n.image();
    for (signal, code) in [("SIGKILL", 137), ("SIGTERM", 143)] {
        let id = format!("sleeper-{}", signal.to_ascii_lowercase());
        let mut child = n
            .run(
                &n.open(),
                &image,
                &[],
                &id,
                &["/bin/sh", "-c", "echo ready; exec sleep 1000"],
            )
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.as_mut().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");

        let tasks = text(&n.ctr_out(&["task", "ls"])).0;
        let row = tasks.lines().find(|l| l.starts_with(&id)).unwrap_or("");
        assert!(row.ends_with("RUNNING"), "{tasks}");

        // Only SIGTERM and SIGKILL cross the PAL ABI; others are refused, and say so.
        let usr1 = n.ctr_out(&["task", "kill", "-s", "SIGUSR1", &id]);
        assert!(!usr1.status.success());
        assert!(
            text(&usr1)
                .1
                .contains("cannot be delivered into the enclave"),
            "{}",
            text(&usr1).1
        );
        let exec = n.ctr_out(&["task", "exec", "--exec-id", "sh", &id, "/bin/sh"]);
        assert!(!exec.status.success());
        assert!(text(&exec).1.contains(EXEC_REFUSED), "{}", text(&exec).1);
        let pause = n.ctr_out(&["task", "pause", &id]);
        assert!(
            text(&pause).1.contains("not implemented"),
            "{}",
            text(&pause).1
        );

        let kill = n.ctr_out(&["task", "kill", "-s", signal, &id]);
        assert!(kill.status.success(), "{}", text(&kill).1);
        let out = finish(child);
        assert_eq!(out.status.code(), Some(code), "{signal}: {}", text(&out).1);
        n.assert_clean(&id);
    }
}

#[test]
fn ctr_shows_the_users_errors() {
    let Some(n) = node() else { return };
    let image = n.image();
    let policy = n.e.dir.path().join("reject-all.json");
    std::fs::write(&policy, r#"{"default": [{"type": "reject"}]}"#).unwrap();
    let reject = boot_config(
        &n.e,
        "reject.json",
        &format!(r#", "policy": "{}""#, policy.display()),
    );
    let strict = boot_config(&n.e, "strict.json", "");
    let missing = format!("docker://{}/test/no-such-image:latest", n.e.registry);
    let cases: [(&Path, &str, &[&str], &str); 4] = [
        (&reject, &image, &[], "rejected by policy"),
        // An argv naming another program than the image's Entrypoint: refused even where
        // host arguments are allowed (they replace Cmd, never the Entrypoint).
        (
            &n.open(),
            &image,
            &["/bin/cat", "/etc/passwd"],
            "never the Entrypoint",
        ),
        (&n.open(), &missing, &[], "test/no-such-image"),
        (
            &strict,
            &image,
            &["/bin/sh", "-c", "cat /etc/shadow"],
            "does not set allow_host_args",
        ),
    ];
    for (i, (boot, image, args, needle)) in cases.into_iter().enumerate() {
        let id = format!("refused-{i}");
        let out = n.run(boot, image, &[], &id, args).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert!(!out.status.success(), "{id} ran: {stdout}");
        assert!(stdout.is_empty(), "{id}: {stdout}");
        assert!(
            stderr.contains(needle),
            "{id}: no {needle:?} in ctr's error: {stderr}"
        );
        n.assert_clean(&id);
    }
    // No image named: the shim says which annotation to set.
    let mut cmd = n.containerd.ctr(["run", "--rm", "--net-host", "--rootfs"]);
    cmd.args(["--runtime", "io.containerd.encc.v2"])
        .arg(&n.rootfs)
        .arg("unnamed")
        .stdin(Stdio::null());
    let out = cmd.output().unwrap();
    assert!(text(&out).1.contains("io.encc.image"), "{}", text(&out).1);
    n.assert_clean("unnamed");
}

/// A process holding a new UTS namespace with hostname `name`, as a pod's sandbox holds one.
struct UtsHolder(Child);

impl UtsHolder {
    fn start(name: &str) -> Self {
        let name = name.to_owned();
        let mut cmd = Command::new("sleep");
        cmd.arg("600");
        // SAFETY: unshare and sethostname are async-signal-safe system calls; nothing is
        // allocated between fork and exec.
        unsafe {
            cmd.pre_exec(move || {
                nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWUTS)?;
                nix::unistd::sethostname(&name)?;
                Ok(())
            });
        }
        Self(cmd.spawn().unwrap())
    }

    /// `ctr run`'s flag that joins the namespace.
    fn with_ns(&self) -> String {
        format!("uts:/proc/{}/ns/uts", self.0.id())
    }
}

impl Drop for UtsHolder {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The pod's hostname (the UTS namespace the container joins) reaches the container, its
/// `/etc/hostname`, `/etc/hosts` and `HOSTNAME`, only under `allow_host_hostname`; a hostile
/// one that would add a line to `/etc/hosts` is refused with the reason.
#[test]
fn the_pods_hostname_only_under_allow_host_hostname_and_only_a_host_name() {
    let Some(n) = node() else { return };
    let image = n.image();
    let pod = UtsHolder::start("pod-7f3a");
    let with_pod = ["--with-ns".to_owned(), pod.with_ns()];
    let with_pod: Vec<&str> = with_pod.iter().map(String::as_str).collect();
    let script =
        "hostname; cat /etc/hostname; echo $HOSTNAME; grep -c '^127.0.1.1.pod-7f3a$' /etc/hosts";
    let host_names = boot_config(
        &n.e,
        "host-hostname.json",
        r#", "allow_host_args": true, "allow_host_hostname": true"#,
    );
    let out = n
        .run(
            &host_names,
            &image,
            &with_pod,
            "pod-name",
            &["/bin/sh", "-c", script],
        )
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "pod-7f3a\npod-7f3a\npod-7f3a\n1\n"),
        "{stderr}"
    );
    n.assert_clean("pod-name");

    // Without the field the boot config's hostname rules, whatever the host set.
    let out = n
        .run(
            &n.open(),
            &image,
            &with_pod,
            "boot-name",
            &["/bin/sh", "-c", "hostname; echo $HOSTNAME"],
        )
        .output()
        .unwrap();
    assert_eq!(text(&out).0, "encc\nencc\n", "{}", text(&out).1);
    n.assert_clean("boot-name");

    // The host names the pod so that /etc/hosts would gain a line of its choosing.
    let hostile = UtsHolder::start("x\n10.9.9.9 registry.example");
    let with_hostile = ["--with-ns".to_owned(), hostile.with_ns()];
    let with_hostile: Vec<&str> = with_hostile.iter().map(String::as_str).collect();
    let out = n
        .run(&host_names, &image, &with_hostile, "hostile-name", &[])
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert!(!out.status.success() && stdout.is_empty(), "ran: {stdout}");
    assert!(
        stderr.contains(r#""x\n10.9.9.9 registry.example" is not a host name"#)
            && stderr.contains("allow_host_hostname"),
        "{stderr}"
    );
    n.assert_clean("hostile-name");
}
