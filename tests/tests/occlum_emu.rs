//! `init`'s Occlum path (`OCCLUM=yes`) under the Occlum interface emulator
//! (`encc-occlum-emu`, a test double): the instance rendered by `encc occlum render`, the
//! initfs laid out from its bom, MountRootFS (syscall 363) and the hostfs/SEFS mounts
//! answered through seccomp user notification as Occlum 0.30.1 does, the host's start
//! checked by Occlum's entry-point rule, init's system calls checked against Occlum's
//! table. As root, with the loopback registry, gpg + skopeo signatures and the KBS double.
//! Nothing here runs on SGX or inside the Occlum LibOS.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::enclave::text;
use common::gpg::{gpg_key, GpgHome, Lookaside};
use common::kbs::TestKbs;
use common::*;

/// A test's instance directory, store and work directory, and the peers.
struct Occlum {
    dir: tempfile::TempDir,
    registry: String,
    fixtures: PathBuf,
}

fn occlum() -> Option<Occlum> {
    let peers = root_peers()?;
    Some(Occlum {
        dir: tempfile::tempdir().unwrap(),
        registry: peers.registry,
        fixtures: peers.fixtures,
    })
}

impl Occlum {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The store: the boot config's `store`, which `encc occlum render` mounts as hostfs.
    fn store(&self) -> PathBuf {
        self.path("store")
    }

    /// Writes the boot config (store, registry, `extra` fields), renders the instance and
    /// creates the store on the host (Occlum's hostfs needs an existing directory).
    fn render(&self, extra: &str) {
        std::fs::create_dir_all(self.store()).unwrap();
        let boot = self.path("boot.json");
        std::fs::write(
            &boot,
            format!(
                r#"{{"store": "{}", "insecure_registries": ["{}"], {extra}}}"#,
                self.store().display(),
                self.registry
            ),
        )
        .unwrap();
        std::fs::create_dir_all(self.path("instance")).unwrap();
        occlum_render(&boot, &self.path("instance/Occlum.json"), &bin("init"));
    }

    /// Adds copy_bom targets (YAML list items), as an Occlum user extends the bom.
    fn add_to_bom(&self, targets: &str) {
        let bom = self.path("instance/encc-initfs.yaml");
        let mut text = std::fs::read_to_string(&bom).unwrap();
        text.push_str(targets);
        std::fs::write(bom, text).unwrap();
    }

    /// Adds the CA certificate `ca` to the instance's CA bundle (init's only trust store,
    /// `/etc/ssl/certs/ca-certificates.crt` of the initfs), as an Occlum user puts their CA
    /// into the image: the bom's bundle becomes the host's bundle plus `ca`.
    fn trust_ca(&self, ca: &Path) {
        const HOST: &str = "/etc/ssl/certs/ca-certificates.crt";
        let bundle = self.path("instance/ca-certificates.crt");
        let mut pem = std::fs::read(HOST).unwrap_or_default();
        pem.extend(std::fs::read(ca).unwrap());
        std::fs::write(&bundle, pem).unwrap();
        let bom = self.path("instance/encc-initfs.yaml");
        let text = std::fs::read_to_string(&bom).unwrap();
        let host_entry = format!("name: {HOST}\n");
        if text.contains(&host_entry) {
            let ours = format!("name: {}\n", bundle.display());
            std::fs::write(&bom, text.replace(&host_entry, &ours)).unwrap();
        } else {
            self.add_to_bom(&format!(
                "- target: /etc/ssl/certs\n  copy:\n  - files:\n    - {}\n",
                bundle.display()
            ));
        }
    }

    /// `encc-occlum-emu run` of the instance with `ENCC_IMAGE=image`: the host's request.
    fn emu(&self, image: &str, request: &[&str]) -> Command {
        let mut cmd = Command::new(bin("encc-occlum-emu"));
        cmd.arg("run")
            .arg("--instance")
            .arg(self.path("instance"))
            .arg("--work")
            .arg(self.path("work"))
            .args(request)
            .env("ENCC_IMAGE", image)
            .current_dir(self.dir.path());
        cmd
    }

    fn run(&self, image: &str, request: &[&str]) -> Output {
        self.emu(image, request).output().unwrap()
    }

    /// Copies a fixture (`oci:` layout tag or `docker://` reference) into the registry.
    fn push(&self, src: &str, repo: &str) -> String {
        let dest = format!("docker://{}/{repo}:latest", self.registry);
        let src = match src.contains(':') {
            true => src.to_owned(),
            false => format!("oci:{}:{src}", self.fixtures.join("layout").display()),
        };
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false", &src, &dest])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo {src}: {}", text(&out).1);
        dest
    }

    /// The busybox fixture with another Cmd (run by its `/bin/sh -c` entrypoint), in an
    /// OCI layout of this test, pushed as `repo`.
    fn busybox_with_cmd(&self, cmd: &str, repo: &str) -> String {
        let layout = self.path("layout");
        let src = format!("oci:{}:busybox", self.fixtures.join("layout").display());
        self.push_to(&src, &format!("oci:{}:base", layout.display()));
        let out = Command::new("umoci")
            .args(["config", "--image"])
            .arg(format!("{}:base", layout.display()))
            .args(["--tag", repo, "--config.cmd", cmd])
            .output()
            .unwrap();
        assert!(out.status.success(), "umoci config: {}", text(&out).1);
        self.push(&format!("oci:{}:{repo}", layout.display()), repo)
    }

    fn push_to(&self, src: &str, dest: &str) {
        let out = Command::new("skopeo")
            .args(["copy", "--quiet", src, dest])
            .output()
            .unwrap();
        assert!(out.status.success(), "skopeo {src}: {}", text(&out).1);
    }

    /// What is left in the store (file names).
    fn store_entries(&self) -> Vec<String> {
        match std::fs::read_dir(self.store()) {
            Ok(entries) => entries
                .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
                .collect(),
            Err(_) => Vec::new(),
        }
    }
}

const REPORT: &str = "echo hello from busybox; id; pwd; env; exit 3";

#[test]
fn busybox_runs_with_the_image_cmd_workdir_and_env_and_occlum_s_single_user() {
    let Some(o) = occlum() else { return };
    o.render(
        r#""insecure_policy": true, "env_allowlist": ["LANG"], "env": ["TRUSTED=boot-config"]"#,
    );
    let image = o.busybox_with_cmd(REPORT, "emu/report");
    let out = o
        .emu(&image, &["@entry-point"])
        .env("LANG", "host-lang")
        .env("HOST_SECRET", "must-not-pass")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    // The image's own exit code, as `occlum run` reports it.
    assert_eq!(out.status.code(), Some(3), "{stdout}\n{stderr}");
    assert!(stderr.contains("MountRootFS: 0"), "{stderr}");
    let lines: Vec<&str> = stdout.lines().collect();
    assert_eq!(lines.first(), Some(&"hello from busybox"), "{stdout}");
    // Occlum is single-user (getuid is 0, setuid is unsupported): the image's User
    // cannot be applied there.
    assert!(
        lines
            .get(1)
            .is_some_and(|l| l.starts_with("uid=0(root) gid=0(root)")),
        "{stdout}"
    );
    assert_eq!(lines.get(2), Some(&"/home/user"), "WorkingDir: {stdout}");
    for var in [
        "IMAGE_VAR=from-image",
        "TRUSTED=boot-config",
        "LANG=host-lang",
    ] {
        assert!(lines.contains(&var), "{var} missing: {stdout}");
    }
    assert!(!stdout.contains("must-not-pass"), "{stdout}");
    assert!(
        !stdout.contains("ENCC_IMAGE"),
        "host-only variable: {stdout}"
    );
}

#[test]
fn the_host_may_start_only_the_entry_point() {
    let Some(o) = occlum() else { return };
    o.render(r#""insecure_policy": true"#);
    let image = o.busybox_with_cmd("echo hello from busybox", "emu/hello");
    let out = o.run(&image, &["@entry-point"]);
    assert_eq!(
        (out.status.code(), text(&out).0.as_str()),
        (Some(0), "hello from busybox\n"),
        "{}",
        text(&out).1
    );
    for request in [
        &["/bin/sh", "-c", "cat /etc/passwd"][..],
        &["/bin/cat", "/etc/passwd"],
        &["/bin/busybox", "cat", "/etc/passwd"],
        &["/bin/../bin/sh", "-c", "cat /etc/passwd"],
    ] {
        let out = o.run(&image, request);
        let (stdout, stderr) = text(&out);
        assert!(stderr.contains("MountRootFS: 0"), "{request:?}: {stderr}");
        assert_eq!(
            out.status.code(),
            Some(127),
            "{request:?}: {stdout}\n{stderr}"
        );
        assert!(
            stderr.contains("occlum_pal_create_process")
                && (stderr.contains("EACCES") || stderr.contains("EINVAL")),
            "{request:?}: {stderr}"
        );
        assert!(!stdout.contains("root:x:0:0"), "{request:?}: {stdout}");
    }
    // The entry point itself with the host's own argv: the boot config does not allow
    // host arguments, so they are refused (not run in place of the image's Cmd).
    let out = o.run(&image, &["@entry-point", "-c", "cat /etc/passwd"]);
    let (stdout, stderr) = text(&out);
    assert!(stderr.contains("MountRootFS: 0"), "{stderr}");
    assert_ne!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert!(!stdout.contains("root:x:0:0"), "{stdout}");
}

#[test]
fn a_signed_image_is_accepted_and_an_unsigned_one_refused() {
    let Some(o) = occlum() else { return };
    let trust = o.path("trust");
    std::fs::create_dir_all(&trust).unwrap();
    let gnupg = GpgHome::new(o.path("gnupg"));
    let fpr = gpg_key(&gnupg.0, "emu-signer", &trust.join("signer.gpg"));
    let lookaside = Lookaside::new(&trust);
    let src = format!("oci:{}:busybox", o.fixtures.join("layout").display());
    let signed = format!("docker://{}/emu-signed/busybox:latest", o.registry);
    let unsigned = format!("docker://{}/emu-signed/unsigned:latest", o.registry);
    lookaside.copy(&gnupg.0, Some(&fpr), &src, &signed);
    lookaside.copy(&gnupg.0, None, &src, &unsigned);
    std::fs::write(
        trust.join("policy.json"),
        format!(
            r#"{{"default": [{{"type": "reject"}}], "transports": {{"docker": {{"{}/emu-signed": [{{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "{}"}}]}}}}}}"#,
            o.registry,
            trust.join("signer.gpg").display()
        ),
    )
    .unwrap();
    o.render(&format!(
        r#""policy": "{0}/policy.json", "registries_d": "{0}/registries.d""#,
        trust.display()
    ));
    // The policy, its key and the lookaside go into the initfs (measured), at the paths
    // the boot config names; the rendered bom does not carry them.
    o.add_to_bom(&format!(
        "- target: {}\n  copy:\n  - dirs:\n    - {}\n",
        o.dir.path().display(),
        trust.display()
    ));

    let out = o.run(&signed, &["@entry-point"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "hello from busybox\n", "{stderr}");

    std::fs::remove_dir_all(o.store()).unwrap();
    std::fs::create_dir(o.store()).unwrap();
    let out = o.run(&unsigned, &["@entry-point"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains("policy"), "{stderr}");
    assert!(!stderr.contains("MountRootFS"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(o.store_entries(), Vec::<String>::new());
}

#[test]
fn an_encrypted_image_gets_its_kek_from_the_kbs_after_attestation() {
    let Some(o) = occlum() else { return };
    // On Occlum the host owns loopback: the KBS is reached over https, its certificate
    // issued by a CA in the instance's bundle.
    let kbs = TestKbs::start_tls(&o.fixtures, &[]);
    kbs.put(
        "default/image-kek/layered",
        &std::fs::read(o.fixtures.join("keys/coco.kek")).unwrap(),
    );
    o.render(&format!(
        r#""insecure_policy": true, "kbs": {{"url": "{}", "attester": "sample"}}"#,
        kbs.url()
    ));
    o.trust_ca(kbs.ca.as_deref().unwrap());
    let image = o.push("enc-coco", "emu/enc-coco");
    let out = o.run(&image, &["@entry-point"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stdout}\n{stderr}");
    assert_eq!(stdout, "hello from busybox\n", "{stderr}");
    let stats = kbs.stats();
    assert_eq!(stats["attest"], 1, "{stats}");
    assert!(stats["served"].as_u64().unwrap() >= 1, "{stats}");
}

#[test]
fn a_kbs_over_plain_http_is_refused_before_any_request() {
    let Some(o) = occlum() else { return };
    let kbs = TestKbs::start(&[]);
    kbs.put(
        "default/image-kek/layered",
        &std::fs::read(o.fixtures.join("keys/coco.kek")).unwrap(),
    );
    o.render(&format!(
        r#""insecure_policy": true, "kbs": {{"url": "{}", "attester": "sample"}}"#,
        kbs.url()
    ));
    let image = o.push("enc-coco", "emu/enc-plain-kbs");
    let out = o.run(&image, &["@entry-point"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(stderr.contains(&kbs.url()), "names the URL: {stderr}");
    assert!(stderr.contains("not https"), "{stderr}");
    assert!(!stderr.contains("MountRootFS"), "{stderr}");
    assert!(stdout.is_empty(), "{stdout}");
    assert_eq!(kbs.stats(), serde_json::json!({}), "the KBS saw no request");
    assert_eq!(o.store_entries(), Vec::<String>::new());
}

#[test]
fn a_failed_pull_leaves_no_partial_sefs_layer() {
    let Some(o) = occlum() else { return };
    o.render(r#""insecure_policy": true"#);
    // The top layer's diff_id is wrong: the pull fails after the first layer is in.
    let bad = o.push("bad-diffid", "emu/bad-diffid");
    // An encrypted image without a KBS: no key for its layers.
    let enc = o.push("enc-coco", "emu/enc-nokey");
    for image in [bad, enc] {
        let out = o.run(&image, &["@entry-point"]);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{image}: {stdout}\n{stderr}");
        assert!(stderr.contains("init exited with status"), "{stderr}");
        assert!(!stderr.contains("MountRootFS"), "{stderr}");
        assert_eq!(o.store_entries(), Vec::<String>::new(), "{image}: {stderr}");
    }

    // A full disk while init fills the SEFS lower layer: stage 1 writes the protected image
    // (2.2 MB) to the store, then the layer (2.2 MB of busybox files) beside it; a 3 MiB
    // store fills up during the fill. Neither the image nor a partial layer may stay.
    let full = Tmpfs::mount(&o.store(), "size=3m");
    let image = o.push("busybox", "emu/busybox");
    let out = o.run(&image, &["@entry-point"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}\n{stderr}");
    assert!(!stderr.contains("MountRootFS"), "{stderr}");
    assert_eq!(o.store_entries(), Vec::<String>::new(), "{stderr}");
    drop(full);
}

/// A tmpfs mounted for a test, unmounted on drop.
struct Tmpfs(PathBuf);

impl Tmpfs {
    fn mount(at: &Path, options: &str) -> Self {
        let status = Command::new("mount")
            .args(["-t", "tmpfs", "-o", options, "encc-test"])
            .arg(at)
            .status()
            .unwrap();
        assert!(status.success());
        Self(at.to_owned())
    }
}

impl Drop for Tmpfs {
    fn drop(&mut self) {
        let _ = Command::new("umount").arg(&self.0).status();
    }
}

#[test]
fn init_makes_only_system_calls_occlum_0_30_implements() {
    let Some(o) = occlum() else { return };
    o.render(r#""insecure_policy": true"#);
    let image = o.busybox_with_cmd("echo hello from busybox", "emu/trace");
    let trace = o.path("init.strace");
    let out = o
        .emu(
            &image,
            &["--strace", trace.to_str().unwrap(), "@entry-point"],
        )
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    let check = |log: &Path| {
        Command::new(bin("encc-occlum-emu"))
            .arg("check-syscalls")
            .arg(log)
            .output()
            .unwrap()
    };
    let ok = check(&trace);
    let (table, stderr) = text(&ok);
    assert!(ok.status.success(), "{table}\n{stderr}");
    assert!(table.contains("tag v0.30.1"), "{table}");
    for call in ["MountRootFS", "Mount ", "Clone "] {
        assert!(table.contains(call), "{call} not traced:\n{table}");
    }
    // The check fails on a call outside the table: a fork by init.
    let log = std::fs::read_to_string(&trace).unwrap();
    let init_pid = log.split(' ').next().unwrap();
    let forked = o.path("forked.strace");
    std::fs::write(&forked, format!("{log}{init_pid} [  57] fork() = 99999\n")).unwrap();
    let refused = check(&forked);
    assert!(!refused.status.success());
    assert!(
        text(&refused).1.contains("Fork (57)"),
        "{}",
        text(&refused).1
    );
}
