//! What `encc-launch run` says, as root with the loopback registry: a successful start
//! prints the container's output and the native-platform notice only, and a failed start
//! ends with one line that names the object and the cause, printed once (the enclave's
//! own error text, carried over the control channel and out of the PAL through
//! `encc_pal_last_error`), with the documented exit code.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::PathBuf;
use std::process::{Command, Output};

use common::enclave::*;
use common::*;

/// The line the native platform prints when an enclave starts.
const NOTICE: &str = "encc: native platform: simulated enclave";

impl Env {
    /// `encc-launch run --store … FLAGS REF` with the host's RUST_LOG unset (the default
    /// an operator sees).
    fn launch(&self, flags: &[String], reference: &str) -> Output {
        let out = Command::new(bin("encc-launch"))
            .arg("run")
            .arg("--store")
            .arg(self.store())
            .args(flags)
            .arg(reference)
            .env_remove("RUST_LOG")
            .output()
            .unwrap();
        self.assert_clean();
        out
    }

    /// A containers-policy.json whose default is `requirement`.
    fn policy(&self, requirement: &str) -> PathBuf {
        let path = self.dir.path().join("policy.json");
        std::fs::write(
            &path,
            format!(r#"{{"default": [{{"type": "{requirement}"}}]}}"#),
        )
        .unwrap();
        path
    }

    /// `--policy` with a policy that accepts any image (no insecure-policy warning).
    fn accept_all(&self) -> Vec<String> {
        vec![
            "--policy".into(),
            self.policy("insecureAcceptAnything").display().to_string(),
        ]
    }
}

/// The stderr lines besides the native-platform notice.
fn lines_but_notice(stderr: &str) -> Vec<&str> {
    stderr.lines().filter(|l| !l.starts_with(NOTICE)).collect()
}

/// A failed start: nothing on stdout, the notice, then exactly one `encc-launch:` line
/// holding every needle, each needle once in the whole of stderr, and `code`.
fn assert_one_clear_line(case: &str, out: &Output, code: i32, needles: &[&str]) {
    let (stdout, stderr) = text(out);
    assert_eq!(out.status.code(), Some(code), "{case}: {stderr}");
    assert!(stdout.is_empty(), "{case}: {stdout}");
    let lines = lines_but_notice(&stderr);
    assert_eq!(lines.len(), 1, "{case}: not one line:\n{stderr}");
    let line = lines[0];
    assert!(line.starts_with("encc-launch: "), "{case}: {line}");
    for needle in needles {
        assert!(line.contains(needle), "{case}: {needle:?} missing: {line}");
    }
    // The cause, once: the text after the last ": " is the innermost reason.
    let reason = line.rsplit(": ").next().unwrap();
    assert_eq!(
        stderr.matches(reason).count(),
        1,
        "{case}: {reason:?} printed more than once:\n{stderr}"
    );
    assert!(!line.contains("Input/output error"), "{case}: {line}");
}

#[test]
fn a_start_prints_only_the_container_output_and_the_notice() {
    let Some(e) = env() else { return };
    let out = e.launch(&e.accept_all(), &e.image());
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(stdout, "hello from busybox\n");
    assert_eq!(stderr.lines().collect::<Vec<_>>(), [
        "encc: native platform: simulated enclave (namespaces only; no SGX, no memory encryption, sample attestation)"
    ]);

    // --insecure-policy adds the one warning a person must see.
    let out = e.launch(&["--insecure-policy".into()], &e.image());
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert_eq!(
        lines_but_notice(&stderr),
        ["encc: warning: signature policy: insecure, every image is accepted"]
    );

    // --log-level reaches the enclave through the composed boot config: the dropped host
    // variables are one debug line with their count and names.
    let out = e.launch(
        &[
            "--insecure-policy".into(),
            "--log-level".into(),
            "debug".into(),
        ],
        &e.image(),
    );
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    let dropped: Vec<&str> = stderr
        .lines()
        .filter(|l| l.contains("host environment variables dropped"))
        .collect();
    assert_eq!(dropped.len(), 1, "{stderr}");
    assert!(dropped[0].contains("PATH"), "{}", dropped[0]);
    assert!(stderr.contains("rootfs measurement"), "{stderr}");
    // The FUSE server answers the ioctls it does not serve quietly.
    assert!(!stderr.contains("Not Implemented"), "{stderr}");
}

#[test]
fn an_unreachable_registry_is_named_with_its_cause() {
    let Some(e) = env() else { return };
    let out = e.launch(&e.accept_all(), "docker://127.0.0.1:1/test/busybox:latest");
    assert_one_clear_line(
        "unreachable registry",
        &out,
        127,
        &["127.0.0.1:1", "Connection refused"],
    );
}

#[test]
fn an_invalid_reference_is_named_with_its_cause() {
    let Some(e) = env() else { return };
    let out = e.launch(&e.accept_all(), "docker://127.0.0.1:5000/Upper/Case:tag");
    assert_one_clear_line(
        "invalid reference",
        &out,
        127,
        &["docker://127.0.0.1:5000/Upper/Case:tag", "is invalid"],
    );
}

#[test]
fn a_policy_rejection_is_named_with_its_cause() {
    let Some(e) = env() else { return };
    let policy = e.policy("reject");
    let out = e.launch(
        &["--policy".into(), policy.display().to_string()],
        &e.image(),
    );
    assert_one_clear_line(
        "policy rejection",
        &out,
        127,
        &["test/busybox", "rejected by policy"],
    );
}

#[test]
fn a_wrong_decryption_key_is_named_with_its_cause() {
    let Some(e) = env() else { return };
    let mut flags = e.accept_all();
    let key = e.fixtures.join("keys/other.pem");
    flags.push("--decryption-key".into());
    flags.push(key.display().to_string());
    let out = e.launch(&flags, &format!("docker://{}/test/enc:rsa", e.registry));
    assert_one_clear_line(
        "wrong decryption key",
        &out,
        127,
        &[
            "test/enc:rsa",
            "cannot decrypt layer sha256:",
            "decryption key",
        ],
    );
    // The enclave's error text crosses to the host: no line of the key is in it.
    let pem = std::fs::read_to_string(&key).unwrap();
    let stderr = text(&out).1;
    for line in pem.lines().filter(|l| !l.starts_with("-----")) {
        assert!(!stderr.contains(line), "key material in: {stderr}");
    }
}

#[test]
fn a_missing_entrypoint_is_named_with_its_cause() {
    let Some(e) = env() else { return };
    let mut flags = e.accept_all();
    flags.push("--allow-local-layouts".into());
    let layout = format!(
        "oci:{}:nosuch-entrypoint",
        e.fixtures.join("layout").display()
    );
    let out = e.launch(&flags, &layout);
    assert_one_clear_line(
        "missing entrypoint",
        &out,
        127,
        &[&layout, "exec: \"/bin/no-such-program\""],
    );
}

#[test]
fn on_a_terminal_the_pull_in_the_enclave_shows_progress() {
    let Some(e) = env() else { return };
    // `script` runs the launcher on a pseudo-terminal and copies what it drew to stdout.
    let command = format!(
        "{} run --store {} --insecure-policy docker://{}/test/layered:latest",
        bin("encc-launch").display(),
        e.store().display(),
        e.registry
    );
    let out = Command::new("script")
        .args(["-qec", &command, "/dev/null"])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    e.assert_clean();
    let screen = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{screen}");
    for needle in ["layer 0 ", "layer 1 ", "total ", "B/s"] {
        assert!(screen.contains(needle), "{needle:?} not drawn:\n{screen}");
    }
    // On a pipe (every other test here) nothing but the notice and the output.
    let out = e.launch(&e.accept_all(), &e.image());
    assert!(!text(&out).1.contains("total "), "{}", text(&out).1);
}

#[test]
fn debug_logging_into_the_container_s_own_pipe_does_not_stall_the_file_server() {
    let Some(e) = env() else { return };
    // `2>&1`: the enclave's log and the container's stdout share one pipe, and busybox cat
    // splices the FUSE-served file into it, holding the pipe while the FUSE server answers.
    // A server thread that logged each request into that pipe would wait for it forever.
    let command = format!(
        "exec timeout 60 {} run --store {} --insecure-policy --allow-host-args --log-level debug \
         {} 'cat /data/marker.txt' 2>&1",
        bin("encc-launch").display(),
        e.store().display(),
        e.image()
    );
    let out = Command::new("sh")
        .args(["-c", &command])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    let (stdout, _) = text(&out);
    assert_eq!(out.status.code(), Some(0), "stalled or failed: {stdout}");
    assert!(stdout.contains("image-file-marker-5c1e"), "{stdout}");
    e.assert_clean();
}
