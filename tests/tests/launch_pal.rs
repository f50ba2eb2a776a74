//! The host side end to end, as root with the loopback registry: `encc-launch run` over the
//! native PAL library (output, exit codes, signal forwarding), and a C program that loads
//! `libencc_pal.so` the way rune does (dlopen, the seven `pal_*` symbols, v3 attr,
//! create → start → kill → delete), including the entry-point check and the panic boundary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use common::enclave::*;
use common::*;

impl Env {
    fn launch(&self, extra: &[&str], args: &[&str]) -> Command {
        let mut cmd = Command::new(bin("encc-launch"));
        cmd.arg("run")
            .arg("--store")
            .arg(self.store())
            .arg("--insecure-policy")
            .args(extra)
            .arg(self.image())
            .args(args);
        cmd
    }

    fn boot_config(&self) -> PathBuf {
        self.boot_config_with(r#", "allow_host_args": true"#)
    }

    fn boot_config_with(&self, extra: &str) -> PathBuf {
        let path = self.dir.path().join("boot.json");
        std::fs::write(
            &path,
            format!(
                r#"{{"store": "{}", "insecure_policy": true, "env_allowlist": ["FROM_RUNE"], "log_level": "warn"{extra}}}"#,
                self.store().display()
            ),
        )
        .unwrap();
        path
    }
}

#[test]
fn encc_launch_runs_the_image_with_exit_codes_and_signals() {
    let Some(e) = env() else { return };
    let out = e.launch(&[], &[]).output().unwrap();
    e.assert_clean();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "hello from busybox\n"),
        "{stderr}"
    );
    assert!(
        stderr.contains("native platform: simulated enclave"),
        "{stderr}"
    );

    for (script, code) in [("echo out; exit 3", 3), ("kill -9 $$", 137)] {
        let out = e
            .launch(&["--allow-host-args"], &[script])
            .output()
            .unwrap();
        e.assert_clean();
        assert_eq!(out.status.code(), Some(code), "{script}: {}", text(&out).1);
    }
    // Host args without --allow-host-args: refused, launch failure.
    let out = e.launch(&[], &["echo nope"]).output().unwrap();
    e.assert_clean();
    assert_eq!(out.status.code(), Some(127));
    assert!(text(&out).0.is_empty());

    // Signals reach the container through pal_kill: SIGTERM, and SIGINT (sent as SIGTERM).
    for sig in [libc::SIGTERM, libc::SIGINT] {
        let mut child = e
            .launch(&["--allow-host-args"], &["echo ready; exec sleep 1000"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        let mut line = String::new();
        BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut line)
            .unwrap();
        assert_eq!(line, "ready\n");
        // SAFETY: kill of our own child with a valid signal.
        assert_eq!(unsafe { libc::kill(child.id() as i32, sig) }, 0);
        assert_eq!(child.wait().unwrap().code(), Some(143), "signal {sig}");
        e.assert_clean();
    }
}

#[test]
fn encc_launch_with_a_boot_config_and_a_missing_entrypoint() {
    let Some(e) = env() else { return };
    let config = e.boot_config();
    // The host names a fixture layout: the boot config must allow local layouts.
    let json = std::fs::read_to_string(&config).unwrap();
    let json = json.replacen('{', r#"{"allow_local_layouts": true, "#, 1);
    std::fs::write(&config, json).unwrap();
    let out = Command::new(bin("encc-launch"))
        .args(["run", "--boot-config"])
        .arg(&config)
        .arg(format!(
            "oci:{}:nosuch-entrypoint",
            e.fixtures.join("layout").display()
        ))
        .output()
        .unwrap();
    e.assert_clean();
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.contains("exec: \"/bin/no-such-program\""),
        "{stderr}"
    );
}

fn rune_like(dir: &Path) -> PathBuf {
    let exe = dir.join("rune_like");
    let src = Path::new(env!("CARGO_MANIFEST_DIR")).join("pal/rune_like.c");
    let cc = Command::new("cc")
        .args([
            "-std=c11",
            "-D_DEFAULT_SOURCE",
            "-Wall",
            "-Wextra",
            "-Werror",
            "-o",
        ])
        .arg(&exe)
        .arg(&src)
        .arg("-ldl")
        .output()
        .unwrap();
    assert!(
        cc.status.success(),
        "{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    exe
}

fn run_rune_like(e: &Env, exe: &Path, mode: &str, panic_in: Option<&str>) -> String {
    run_rune_like_with(e, exe, &e.boot_config(), mode, panic_in)
}

fn run_rune_like_with(
    e: &Env,
    exe: &Path,
    config: &Path,
    mode: &str,
    panic_in: Option<&str>,
) -> String {
    let mut cmd = Command::new(exe);
    cmd.arg(bin("libencc_pal.so"))
        .arg(config)
        .arg(e.image())
        .arg(mode);
    if let Some(call) = panic_in {
        cmd.env("ENCC_PAL_TEST_PANIC", call);
    }
    let out = cmd.output().unwrap();
    e.assert_clean();
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    stdout
}

#[test]
fn a_c_program_drives_the_pal_like_rune() {
    let Some(e) = env() else { return };
    let exe = rune_like(e.dir.path());

    // The container writes to the same stdout as the program, as soon as it runs: its line
    // may come before the program's buffered lines are flushed, so it is checked apart.
    let out = run_rune_like(&e, &exe, "run", None);
    assert_eq!(out.matches("hello from busybox\n").count(), 1, "{out}");
    assert_eq!(
        out.replace("hello from busybox\n", ""),
        "version 3\ninit 0\ncreate_process 0\nexec 0\nexited 0\ndestroy 0\n"
    );

    let out = run_rune_like(&e, &exe, "kill", None);
    assert_eq!(
        out,
        "version 3\ninit 0\ncreate_process 0\nkill 0\nexec 0\nsignaled 15\ndestroy 0\n"
    );

    // Only the entry point may be started: EACCES, as Occlum's entry_points do.
    let out = run_rune_like(&e, &exe, "wrong-path", None);
    assert_eq!(
        out,
        format!(
            "version 3\ninit 0\ncreate_process {}\ndestroy 0\n",
            -libc::EACCES
        )
    );

    // A panic inside the library is an error return (-EIO), not an abort; the enclave is
    // still torn down.
    let out = run_rune_like(&e, &exe, "run", Some("pal_create_process"));
    assert_eq!(
        out,
        format!(
            "version 3\ninit 0\ncreate_process {}\ndestroy 0\n",
            -libc::EIO
        )
    );
}

#[test]
fn rune_passes_the_oci_argv_which_is_not_an_override_when_it_is_the_images() {
    let Some(e) = env() else { return };
    let exe = rune_like(e.dir.path());
    // The container writes to the same stdout while the C program's lines are buffered:
    // its line is checked apart from the steps, whose order is the C program's.
    let split = |out: String, container: &str| {
        let steps: Vec<String> = out
            .lines()
            .filter(|l| *l != container)
            .map(str::to_owned)
            .collect();
        (steps, out.lines().filter(|l| *l == container).count())
    };
    let ran = [
        "version 3",
        "init 0",
        "create_process 0",
        "exec 0",
        "exited 0",
        "destroy 0",
    ];
    // No allow_host_args: the image's own Entrypoint + Cmd, passed in full as rune passes
    // the OCI process args (and rune's own `no-epm` in enclave.runtime.args), runs.
    let strict = e.boot_config_with("");
    let out = run_rune_like_with(&e, &exe, &strict, "oci", None);
    assert_eq!(
        split(out, "hello from busybox"),
        (ran.map(String::from).to_vec(), 1)
    );
    // Other arguments are an override: refused without allow_host_args.
    let out = run_rune_like_with(&e, &exe, &strict, "oci-other", None);
    assert_eq!(
        out,
        format!(
            "version 3\ninit 0\ncreate_process {}\ndestroy 0\n",
            -libc::EPERM
        )
    );
    // With allow_host_args the full OCI argv runs as given, not doubled.
    let open = e.boot_config();
    let out = run_rune_like_with(&e, &exe, &open, "oci-other", None);
    assert_eq!(split(out, "escaped"), (ran.map(String::from).to_vec(), 1));
}
