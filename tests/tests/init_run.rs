//! `init` and `encc rootfs run` end to end on the native platform, as root: the busybox
//! fixture image pulled from the loopback docker-registry into a simulated enclave, mounted
//! through FUSE + overlayfs, pivoted into and run. Asserts what a user of `docker run`
//! would look at: output, exit codes, signals, and that nothing is left behind.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};

use common::enclave::*;
use common::kbs::TestKbs;
use common::*;

impl Env {
    /// A tag of the fixtures' OCI layout.
    fn layout_image(&self, tag: &str) -> String {
        format!("oci:{}:{tag}", self.fixtures.join("layout").display())
    }

    /// Writes a boot config with the test store and registry plus `extra` fields.
    fn boot_config(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("boot.json");
        let host = self.registry.clone();
        let json = format!(
            r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{host}"]{extra}}}"#,
            self.store().display()
        );
        std::fs::write(&path, json).unwrap();
        path
    }

    fn init(&self, config: &Path, args: &[&str]) -> Command {
        self.init_image(config, &self.image(), args)
    }

    /// `init` of another image than the busybox fixture.
    fn init_image(&self, config: &Path, image: &str, args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("init"));
        cmd.arg("--boot-config")
            .arg(config)
            .arg(image)
            .args(args)
            .env("RUST_LOG", "warn")
            .env_remove("FOO");
        cmd
    }

    fn run(&self, config: &Path, args: &[&str]) -> Output {
        let out = self.init(config, args).output().unwrap();
        self.assert_clean();
        out
    }
}

/// Processes whose command line contains `needle`.
fn processes_with(needle: &str) -> Vec<String> {
    let mut found = Vec::new();
    for entry in std::fs::read_dir("/proc").unwrap().flatten() {
        if let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) {
            let cmdline = String::from_utf8_lossy(&cmdline).replace('\0', " ");
            if cmdline.contains(needle) {
                found.push(cmdline);
            }
        }
    }
    found
}

#[test]
fn busybox_runs_with_the_image_user_workdir_env_and_hostname() {
    let Some(e) = env() else { return };
    let config = e.boot_config(r#", "allow_host_args": true, "hostname": "enclave-test""#);
    let script = "echo hello; id; pwd; env; hostname; cat /data/marker.txt; ls /proc/1 >/dev/null && echo proc1-ok; cat /proc/1/cmdline; echo; cat /etc/hosts";
    let out = e.run(&config, &[script]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(
        stderr.contains("native platform: simulated enclave"),
        "{stderr}"
    );
    assert!(stderr.contains("rootfs measurement"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines[0], "hello");
    assert_eq!(lines[1], "uid=1000(user) gid=1000(user) groups=2000(extra)");
    assert_eq!(lines[2], "/home/user");
    for var in [
        "IMAGE_VAR=from-image",
        "PATH=/usr/bin:/bin",
        "HOME=/home/user",
        "HOSTNAME=enclave-test",
    ] {
        assert!(lines.contains(&var), "{var} missing: {stdout}");
    }
    assert!(lines.contains(&"enclave-test"), "{stdout}");
    assert!(lines.contains(&"image-file-marker-5c1e"), "{stdout}");
    assert!(lines.contains(&"proc1-ok"), "{stdout}");
    // PID 1 of the container's pid namespace is its reaper, not the host's init.
    assert!(stdout.contains("127.0.1.1\tenclave-test"), "{stdout}");
}

#[test]
fn default_cmd_and_env_precedence_and_host_args_policy() {
    let Some(e) = env() else { return };
    // Image Cmd runs when no args are given.
    let strict =
        e.boot_config(r#", "env": ["IMAGE_VAR=trusted", "T=1"], "env_allowlist": ["FOO"]"#);
    let out = e
        .init(&strict, &[])
        .env("FOO", "host")
        .env("BAR", "host")
        .output()
        .unwrap();
    e.assert_clean();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "hello from busybox\n"),
        "{stderr}"
    );

    // Host args are refused unless the boot config allows them.
    let out = e.run(&strict, &["echo nope"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stdout}");
    assert!(
        stderr.contains("host arguments [\"echo nope\"] are refused"),
        "{stderr}"
    );
    assert!(stdout.is_empty());

    // image Env < trusted env < allowlisted host env; other host env never enters.
    let open = e.boot_config(r#", "allow_host_args": true, "env": ["IMAGE_VAR=trusted", "FOO=trusted"], "env_allowlist": ["FOO"]"#);
    let out = e
        .init(&open, &["echo $IMAGE_VAR $FOO ${BAR:-unset}"])
        .env("FOO", "host")
        .env("BAR", "host")
        .env("IMAGE_VAR", "host")
        .output()
        .unwrap();
    e.assert_clean();
    assert_eq!(text(&out).0, "trusted host unset\n", "{}", text(&out).1);
}

#[test]
fn exit_codes_like_docker_run() {
    let Some(e) = env() else { return };
    // The host names a fixture layout below: the boot config allows local layouts.
    let config = e.boot_config(r#", "allow_host_args": true, "allow_local_layouts": true"#);
    for (script, code) in [
        ("true", 0),
        ("exit 3", 3),
        ("kill -9 $$", 137),
        ("kill -TERM $$", 143),
    ] {
        let out = e.run(&config, &[script]);
        assert_eq!(out.status.code(), Some(code), "{script}: {}", text(&out).1);
    }
    // A missing entrypoint binary: the message docker users know, exit 127.
    let out = e
        .init_image(&config, &e.layout_image("nosuch-entrypoint"), &[])
        .output()
        .unwrap();
    e.assert_clean();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains(
            "exec: \"/bin/no-such-program\": stat /bin/no-such-program: no such file or directory"
        ),
        "{stderr}"
    );
}

/// Starts init with a script that prints "ready" once it is set up; returns the child and
/// a reader of its stdout positioned after that line.
fn start_ready(
    e: &Env,
    config: &Path,
    script: &str,
) -> (Child, BufReader<std::process::ChildStdout>) {
    let mut child = e
        .init(config, &[script])
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut out = BufReader::new(child.stdout.take().unwrap());
    let mut line = String::new();
    out.read_line(&mut line).unwrap();
    assert_eq!(line, "ready\n", "container did not start");
    (child, out)
}

fn signal(child: &Child, sig: i32) {
    // SAFETY: kill with a pid we spawned and a valid signal number.
    assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
}

#[test]
fn signals_are_forwarded_to_the_container() {
    let Some(e) = env() else { return };
    let config = e.boot_config(r#", "allow_host_args": true"#);
    // Dies of the forwarded SIGTERM: 143.
    let (mut child, _out) = start_ready(&e, &config, "echo ready; exec sleep 1000");
    signal(&child, libc::SIGTERM);
    let status = child.wait().unwrap();
    e.assert_clean();
    assert_eq!(status.code(), Some(143));

    // Traps it and exits on its own terms.
    let (mut child, mut out) = start_ready(
        &e,
        &config,
        "trap 'echo trapped; exit 7' TERM; echo ready; while :; do sleep 0.05; done",
    );
    signal(&child, libc::SIGTERM);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut out, &mut rest).unwrap();
    let status = child.wait().unwrap();
    e.assert_clean();
    assert_eq!((status.code(), rest.as_str()), (Some(7), "trapped\n"));

    // SIGINT too (130).
    let (mut child, _out) = start_ready(&e, &config, "echo ready; exec sleep 1000");
    signal(&child, libc::SIGINT);
    assert_eq!(child.wait().unwrap().code(), Some(130));
    e.assert_clean();
}

#[test]
fn orphans_are_reaped_and_nothing_outlives_the_container() {
    let Some(e) = env() else { return };
    let config = e.boot_config(r#", "allow_host_args": true"#);
    // Orphaned children that exit become zombies of PID 1 unless it reaps them; a
    // daemonised sleeper must not survive the container.
    let script = "for i in 1 2 3 4 5; do (sleep 0.05 &); done; (exec sleep 4242.5 &); sleep 0.5; \
                  for s in /proc/[0-9]*/stat; do read -r pid comm state rest < $s; echo $pid $comm $state; done";
    let out = e.run(&config, &[script]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let zombies: Vec<&str> = stdout.lines().filter(|l| l.ends_with(" Z")).collect();
    assert!(zombies.is_empty(), "zombies left: {zombies:?}\n{stdout}");
    assert!(
        stdout.contains("(sleep) S"),
        "the sleeper was running: {stdout}"
    );
    assert!(
        processes_with("4242.5").is_empty(),
        "a container process outlived init"
    );
}

#[test]
fn container_writes_stay_in_enclave_memory() {
    let Some(e) = env() else { return };
    let config = e.boot_config(r#", "allow_host_args": true"#);
    let marker = "container-write-marker-3f9a";
    let script = format!(
        "echo {marker} > /home/user/new.txt && echo {marker} > /tmp/t.txt && cat /home/user/new.txt >/dev/null && \
         echo {marker} >> /data/marker.txt 2>/dev/null; echo ready; exec sleep 1000"
    );
    let (mut child, _out) = start_ready(&e, &config, &script);
    // While the container runs, the store holds only the encrypted image: no container
    // write and no image file content in the clear.
    let mut scanned = 0;
    for entry in walk(&e.store()) {
        let bytes = std::fs::read(&entry).unwrap_or_default();
        scanned += bytes.len();
        for needle in [marker, "image-file-marker-5c1e", "victim-file-marker-77d0"] {
            assert!(
                !bytes.windows(needle.len()).any(|w| w == needle.as_bytes()),
                "{needle} found in {}",
                entry.display()
            );
        }
    }
    assert!(
        scanned > 1_000_000,
        "the store should hold the pulled image ({scanned} bytes)"
    );
    signal(&child, libc::SIGTERM);
    assert_eq!(child.wait().unwrap().code(), Some(143));
    e.assert_clean();
}

/// Regular files under `dir`, without following symlinks or crossing into mounts (the
/// enclave's mounts are not visible from the host's mount namespace anyway).
fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut files = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        for entry in std::fs::read_dir(&d).unwrap().flatten() {
            let ft = entry.file_type().unwrap();
            if ft.is_dir() {
                todo.push(entry.path());
            } else if ft.is_file() {
                files.push(entry.path());
            }
        }
    }
    files
}

#[test]
fn tampering_between_pull_and_run_is_caught() {
    let Some(e) = env() else { return };
    let key = e.dir.path().join("key");
    let image = e.dir.path().join("busybox.img");
    encc_ok(args!["key", "gen", "-o", key]);
    encc_ok(args![
        "image",
        "pull",
        "--insecure-policy",
        "--tls-verify=false",
        e.image(),
        "-o",
        image,
        "--key-file",
        key
    ]);
    // Slot 0 holds /a/victim.txt, the first file with data in the layer.
    let good = std::fs::read(&image).unwrap();
    let mut bytes = good.clone();
    bytes[4096 + 5] ^= 0x01;
    std::fs::write(&image, &bytes).unwrap();
    let out = encc(args![
        "rootfs",
        "run",
        image,
        "--key-file",
        key,
        "--",
        "cat /a/victim.txt; echo cat=$?; cat /data/marker.txt"
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(stderr.contains("Input/output error"), "{stderr}");
    assert_eq!(stdout, "cat=1\nimage-file-marker-5c1e\n");

    // A flipped superblock byte stops the start, with the image named.
    let mut bytes = good;
    bytes[40] ^= 0x01;
    std::fs::write(&image, &bytes).unwrap();
    let out = encc(args![
        "rootfs",
        "run",
        image,
        "--key-file",
        key,
        "--",
        "echo never"
    ]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1));
    assert!(stdout.is_empty());
    assert!(
        stderr.contains(&format!("cannot start {}", image.display()))
            && stderr.contains("tampered"),
        "{stderr}"
    );
    e.assert_clean();
}

#[test]
fn bad_config_and_refused_images_stop_before_anything_runs() {
    let Some(e) = env() else { return };
    let config = e.dir.path().join("bad.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"store": "{}", "insecure_policy": true, "allow_hostargs": true}}"#,
            e.store().display()
        ),
    )
    .unwrap();
    let out = e.run(&config, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        stderr.contains("boot config") && stderr.contains("unknown field `allow_hostargs`"),
        "{stderr}"
    );
    assert!(
        !e.store().exists(),
        "nothing may be created before the config is valid"
    );

    // A policy that rejects the image: refused before any layer, nothing left.
    let policy = e.dir.path().join("policy.json");
    std::fs::write(&policy, r#"{"default": [{"type": "reject"}]}"#).unwrap();
    let config = e.dir.path().join("reject.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"store": "{}", "policy": "{}", "insecure_registries": ["{}"]}}"#,
            e.store().display(),
            policy.display(),
            e.registry
        ),
    )
    .unwrap();
    let out = e.run(&config, &[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127));
    assert!(stderr.contains("rejected by policy scope"), "{stderr}");
}

#[test]
fn init_gets_policy_and_layer_keys_from_the_kbs() {
    let Some(e) = env() else { return };
    let kbs = TestKbs::start(&[]);
    kbs.put(
        "default/security-policy/test",
        br#"{"default": [{"type": "insecureAcceptAnything"}]}"#,
    );
    kbs.put(
        "default/image-kek/layered",
        &std::fs::read(e.fixtures.join("keys/coco.kek")).unwrap(),
    );
    let config = e.dir.path().join("kbs.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"store": "{}", "policy": "kbs:///default/security-policy/test", "kbs": {{"url": "http://{}"}}, "allow_local_layouts": true}}"#,
            e.store().display(),
            kbs.addr
        ),
    )
    .unwrap();
    // `enc-coco` is the layered busybox image with every layer encrypted for CoCo's key
    // provider: it runs only if the KEK came from the KBS after attestation.
    let out = e
        .init_image(&config, &e.layout_image("enc-coco"), &[])
        .output()
        .unwrap();
    e.assert_clean();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "hello from busybox\n"),
        "{stderr}"
    );

    // Without the KEK the start fails before anything runs.
    std::fs::remove_file(kbs.dir.path().join("default/image-kek/layered")).unwrap();
    let out = e
        .init_image(&config, &e.layout_image("enc-coco"), &[])
        .output()
        .unwrap();
    e.assert_clean();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(stdout.is_empty());
    assert!(
        stderr.contains("kbs:///default/image-kek/layered"),
        "{stderr}"
    );
}

#[test]
fn a_network_namespace_has_only_loopback_up() {
    let Some(e) = env() else { return };
    let config = e.boot_config(r#", "allow_host_args": true, "net_namespace": true"#);
    let out = e.run(&config, &["ls /sys/class/net; cat /sys/class/net/lo/flags"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "lo\n0x9\n"),
        "{stderr}"
    );
}

#[test]
fn init_accepts_only_the_pal_calls() {
    let Some(e) = env() else { return };
    // `open` (serve a pulled image with a host-given key, skipping stage 1 and the policy)
    // is for `encc rootfs run`; the `init` binary refuses it.
    let enclave = encc_interface::host::Enclave::spawn(&bin("init")).unwrap();
    let key = encc_rootfs::DataKey::generate().unwrap();
    let config = encc_init::config::BootConfig::debugging(e.store());
    let err = enclave
        .open(&e.dir.path().join("any.img"), key.as_bytes(), &config)
        .unwrap_err();
    assert_eq!(err.errno(), libc::EPERM, "{err}");
    assert!(err.to_string().contains("only the PAL calls"), "{err}");
    enclave.destroy().unwrap();
    e.assert_clean();
}

#[test]
fn a_sealing_key_keeps_the_image_for_the_next_start() {
    let Some(e) = env() else { return };
    let seal_key = e.dir.path().join("seal.key");
    encc_ok(args!["key", "gen", "-o", seal_key]);
    let config = e.boot_config(&format!(
        r#", "allow_host_args": true, "log_level": "info", "seal_key_file": "{}""#,
        seal_key.display()
    ));
    let run = |script: &str| {
        let out = e
            .init(&config, &[script])
            .env("RUST_LOG", "info")
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (stdout, stderr)
    };
    let measurement = |stderr: &str| {
        let line = stderr
            .lines()
            .find(|l| l.starts_with("init: rootfs measurement"))
            .unwrap();
        line.to_owned()
    };
    let (out, first) = run("echo one > /tmp/x; cat /data/marker.txt");
    assert_eq!(out, "image-file-marker-5c1e\n");
    assert!(!first.contains("sealed image reused"), "{first}");
    // The store keeps the image, its lock file, its metadata and its seal, and nothing of
    // the image in the clear.
    let mut kept: Vec<String> = std::fs::read_dir(e.store())
        .unwrap()
        .map(|d| d.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    kept.sort();
    assert_eq!(kept.len(), 4, "{kept:?}");
    assert!(
        kept[0].ends_with(".img")
            && kept[1].ends_with(".lock")
            && kept[2].ends_with(".meta")
            && kept[3].ends_with(".seal"),
        "{kept:?}"
    );
    for file in walk(&e.store()) {
        assert!(
            !file_contains(&file, b"image-file-marker-5c1e"),
            "{}",
            file.display()
        );
    }

    // The next start reuses it: same measurement, no pull; container writes are gone.
    let (out, second) = run("cat /tmp/x 2>/dev/null || echo fresh");
    assert_eq!(out, "fresh\n");
    assert!(second.contains("sealed image reused"), "{second}");
    assert_eq!(measurement(&first), measurement(&second));

    // A tampered seal is not trusted: the image is pulled again under a new key.
    let seal = e.store().join(&kept[3]);
    let mut bytes = std::fs::read(&seal).unwrap();
    bytes[30] ^= 1;
    std::fs::write(&seal, &bytes).unwrap();
    let (out, third) = run("echo ok");
    assert_eq!(out, "ok\n");
    assert!(
        third.contains("does not open") && third.contains("pulling"),
        "{third}"
    );
    assert_ne!(measurement(&first), measurement(&third));
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    assert!(!mounts.contains(&*e.dir.path().to_string_lossy()));
}
