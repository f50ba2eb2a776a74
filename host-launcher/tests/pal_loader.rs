//! The PAL loader against a real shared library: a fake Occlum PAL built from
//! `tests/c/fake_pal.c` with `cc -shared`, which records every call it receives.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::path::{Path, PathBuf};
use std::process::Command;

use encc_pal::{Pal, PalError, StdioFds};

struct FakePal {
    _dir: tempfile::TempDir,
    library: PathBuf,
    log: PathBuf,
}

impl FakePal {
    fn build(defines: &[&str]) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
        let library = dir.path().join("libfake-pal.so");
        let log = dir.path().join("calls.log");
        let out = Command::new("cc")
            .args([
                "-std=c11", "-Wall", "-Wextra", "-Werror", "-shared", "-fPIC", "-I",
            ])
            .arg(manifest.join("include"))
            .arg(format!("-DLOG_PATH=\"{}\"", log.display()))
            .args(defines)
            .arg(manifest.join("tests/c/fake_pal.c"))
            .arg("-o")
            .arg(&library)
            .output()
            .expect("run cc");
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        Self {
            _dir: dir,
            library,
            log,
        }
    }

    fn calls(&self) -> Vec<String> {
        std::fs::read_to_string(&self.log)
            .unwrap_or_default()
            .lines()
            .map(str::to_string)
            .collect()
    }
}

#[test]
fn a_launch_passes_every_argument_through() {
    let fake = FakePal::build(&[]);
    let pal = Pal::load(&fake.library).unwrap();
    assert_eq!(pal.path(), fake.library);
    assert_eq!(pal.version().unwrap(), 2);
    pal.init(Path::new("/srv/instance"), Some("info")).unwrap();
    let stdio = StdioFds {
        stdin: 0,
        stdout: 1,
        stderr: 2,
    };
    let pid = pal
        .create_process(
            "/bin/hello",
            &["hello", "a b"],
            &["ENCC_IMAGE=x", "A=1"],
            Some(stdio),
        )
        .unwrap();
    assert_eq!(pid, 7);
    let status = pal.exec(pid).unwrap();
    assert_eq!(status.exited(), Some(3));
    assert_eq!(status.shell_code(), 3);
    pal.kill(-1, libc::SIGTERM).unwrap();
    pal.destroy().unwrap();
    assert_eq!(
        fake.calls(),
        [
            "init /srv/instance info",
            "create /bin/hello argv=hello|a b env=ENCC_IMAGE=x|A=1 stdio=0,1,2",
            "exec 7",
            "kill -1 15",
            "destroy",
        ]
    );
}

#[test]
fn optional_arguments_are_null() {
    let fake = FakePal::build(&[]);
    let pal = Pal::load(&fake.library).unwrap();
    pal.init(Path::new("."), None).unwrap();
    pal.create_process("/bin/true", &["true"], &[] as &[&str], None)
        .unwrap();
    assert_eq!(
        fake.calls(),
        ["init . NULL", "create /bin/true argv=true env= stdio=none"]
    );
}

#[test]
fn errno_becomes_an_error_naming_call_and_library() {
    let fake = FakePal::build(&[]);
    let pal = Pal::load(&fake.library).unwrap();

    let err = pal.init(Path::new("/srv/missing"), None).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ENOENT));
    let text = err.to_string();
    assert!(text.contains("occlum_pal_init"), "{text}");
    assert!(text.contains(&fake.library.display().to_string()), "{text}");

    let err = pal
        .create_process("/etc/passwd", &["x"], &[] as &[&str], None)
        .unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EACCES));
    assert!(
        err.to_string().contains("occlum_pal_create_process"),
        "{err}"
    );

    let err = pal.exec(8).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::ESRCH));
    assert!(err.to_string().contains("occlum_pal_exec"), "{err}");

    let err = pal.kill(7, libc::SIGUSR1).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EINVAL));
    assert!(err.to_string().contains("occlum_pal_kill"), "{err}");
}

#[test]
fn a_nul_byte_is_refused_before_the_call() {
    let fake = FakePal::build(&[]);
    let pal = Pal::load(&fake.library).unwrap();
    let err = pal
        .create_process("/bin/x", &["a\0b"], &[] as &[&str], None)
        .unwrap_err();
    assert!(
        matches!(
            err,
            PalError::Argument {
                argument: "argv",
                ..
            }
        ),
        "{err}"
    );
    assert!(fake.calls().is_empty());
}

#[test]
fn a_missing_symbol_is_named() {
    let fake = FakePal::build(&["-DOMIT_DESTROY"]);
    let err = Pal::load(&fake.library).unwrap_err();
    assert!(
        matches!(
            err,
            PalError::Symbol {
                symbol: "occlum_pal_destroy",
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("occlum_pal_destroy"), "{err}");
}

#[test]
fn an_invalid_version_is_an_error() {
    let fake = FakePal::build(&["-DFAKE_VERSION=0"]);
    let pal = Pal::load(&fake.library).unwrap();
    let err = pal.version().unwrap_err();
    assert!(matches!(err, PalError::Version { version: 0, .. }), "{err}");
}

#[test]
fn a_library_that_is_not_a_pal_fails_to_load() {
    let dir = tempfile::tempdir().unwrap();
    let bogus = dir.path().join("libbogus.so");
    std::fs::write(&bogus, b"not an ELF file").unwrap();
    let err = Pal::load(&bogus).unwrap_err();
    assert!(matches!(err, PalError::Load { .. }), "{err}");
    assert!(err.to_string().contains("libbogus.so"), "{err}");
}

/// `encc-launch run` over `fake` with an instance directory whose init fails (ENOENT).
fn launch_failing_init(fake: &FakePal) -> (Option<i32>, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_encc-launch"))
        .args(["run", "--pal"])
        .arg(&fake.library)
        .args([
            "--instance",
            "/srv/missing",
            "--entrypoint",
            "/bin/app",
            "docker://registry.example/app:1",
        ])
        .env_remove("RUST_LOG")
        .output()
        .unwrap();
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn without_encc_pal_last_error_the_launcher_gives_the_errno_and_points_to_the_log() {
    let fake = FakePal::build(&[]);
    let pal = Pal::load(&fake.library).unwrap();
    assert!(!pal.explains_errors());
    assert_eq!(pal.last_error(), None);
    let (code, stderr) = launch_failing_init(&fake);
    assert_eq!(code, Some(127), "{stderr}");
    assert_eq!(stderr.lines().count(), 1, "{stderr}");
    for needle in [
        "encc-launch: cannot start docker://registry.example/app:1: occlum_pal_init failed",
        "No such file or directory (os error 2)",
        "the PAL gives no reason (it has no encc_pal_last_error): the enclave's log above",
    ] {
        assert!(stderr.contains(needle), "{needle:?}: {stderr}");
    }
}

#[test]
fn with_encc_pal_last_error_the_launcher_gives_the_pal_s_reason_once() {
    let fake = FakePal::build(&["-DWITH_LAST_ERROR"]);
    let pal = Pal::load(&fake.library).unwrap();
    assert!(pal.explains_errors());
    assert_eq!(pal.last_error(), None, "no call failed yet");
    assert!(pal.init(Path::new("/srv/missing"), None).is_err());
    assert_eq!(
        pal.last_error().as_deref(),
        Some("instance /srv/missing has no boot.json")
    );
    let (code, stderr) = launch_failing_init(&fake);
    assert_eq!(code, Some(127), "{stderr}");
    assert_eq!(
        stderr,
        "encc-launch: cannot start docker://registry.example/app:1: instance /srv/missing has \
         no boot.json\n"
    );
}
