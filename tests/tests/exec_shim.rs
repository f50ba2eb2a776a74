//! `encc-exec`, the only program the host may start on Occlum, run the way it runs after
//! MountRootFS: as `/.encc/exec` in a root that holds the image (busybox here), its launch
//! plan and the loader and libraries it is linked to find in `/.encc/lib` (copied, as `init`
//! does, from this process's own mappings). Root (chroot). Asserts what the container shows:
//! output, exit code, environment, working directory, and what a host asking for other
//! arguments gets.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use common::enclave::text;
use common::*;
use encc_exec::{LaunchPlan, EXEC_PATH, LIB_DIR, PLAN_PATH};

/// A root with busybox, a secret, encc-exec, its libraries and `plan`.
fn root(dir: &Path, plan: &LaunchPlan) -> PathBuf {
    let root = dir.join("root");
    let inside = |p: &str| root.join(p.trim_start_matches('/'));
    std::fs::create_dir_all(inside("/bin")).unwrap();
    std::fs::create_dir_all(inside(LIB_DIR)).unwrap();
    std::fs::copy("/bin/busybox", inside("/bin/busybox")).unwrap();
    std::os::unix::fs::symlink("busybox", inside("/bin/sh")).unwrap();
    std::fs::write(inside("/secret"), "top-secret-4d1e\n").unwrap();
    std::fs::copy(bin("encc-exec"), inside(EXEC_PATH)).unwrap();
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    for path in maps.lines().filter_map(|l| l.split_whitespace().nth(5)) {
        let path = Path::new(path);
        if path.is_absolute()
            && path
                .file_name()
                .is_some_and(|n| n.to_string_lossy().contains(".so"))
        {
            std::fs::copy(path, inside(LIB_DIR).join(path.file_name().unwrap())).unwrap();
        }
    }
    std::fs::write(inside(PLAN_PATH), plan.to_json()).unwrap();
    root
}

fn plan(allow_host_args: bool) -> LaunchPlan {
    LaunchPlan {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo hello $T ${LANG:-unset} ${SECRET:-unset}; pwd".into()],
        env: vec!["PATH=/bin".into(), "T=trusted".into()],
        env_allowlist: vec!["LANG".into()],
        env_defaults: vec!["HOME=/root".into()],
        cwd: "/work".into(),
        allow_host_args,
    }
}

#[test]
fn encc_exec_runs_the_plan_and_refuses_other_arguments() {
    if !is_root() {
        assert!(
            std::env::var_os("ENCC_REQUIRE_PEERS").is_none(),
            "exec_shim needs root (chroot)"
        );
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let root = root(dir.path(), &plan(false));
    // The host's environment: one allowlisted variable, one other, and Occlum's env.default.
    let run = |argv: &[&str]| -> Output {
        Command::new("/usr/sbin/chroot")
            .arg(&root)
            .arg(EXEC_PATH)
            .args(&argv[1..])
            .env_clear()
            .env("LANG", "host-lang")
            .env("SECRET", "host-secret")
            .env("OCCLUM", "yes")
            .output()
            .unwrap()
    };
    let (image_out, image_cwd) = ("hello trusted host-lang unset\n/work\n", "/work");
    // No arguments, or the image's own (as rune passes the OCI argv): the plan runs, with the
    // allowlisted host variable and without the others, in the image's working directory.
    for argv in [&[EXEC_PATH][..], &[EXEC_PATH, "-c", &plan(false).cmd[0]]] {
        let out = run(argv);
        let (stdout, stderr) = text(&out);
        assert_eq!(
            (out.status.code(), stdout.as_str()),
            (Some(0), image_out),
            "{stderr}"
        );
        assert!(root.join(image_cwd.trim_start_matches('/')).is_dir());
    }
    // Other arguments: refused, nothing runs, the secret stays unread.
    for argv in [
        &[EXEC_PATH, "-c", "cat /secret"][..],
        &[EXEC_PATH, "cat /secret"],
        &[EXEC_PATH, "-c"],
    ] {
        let out = run(argv);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(127), "{argv:?}: {stdout}");
        assert!(stdout.is_empty(), "{argv:?}: {stdout}");
        assert!(
            stderr.contains("are refused: the boot config does not set allow_host_args"),
            "{argv:?}: {stderr}"
        );
    }

    // With allow_host_args the host's arguments replace Cmd (a full OCI argv is not doubled).
    std::fs::write(
        root.join(PLAN_PATH.trim_start_matches('/')),
        plan(true).to_json(),
    )
    .unwrap();
    for argv in [
        &[EXEC_PATH, "echo other $T"][..],
        &[EXEC_PATH, "-c", "echo other $T"],
    ] {
        let out = run(argv);
        assert_eq!(
            text(&out).0,
            "other trusted\n",
            "{argv:?}: {}",
            text(&out).1
        );
    }

    // A missing program is exit code 127, as docker run reports it.
    let mut missing = plan(false);
    missing.entrypoint = vec!["/bin/no-such-program".into()];
    std::fs::write(
        root.join(PLAN_PATH.trim_start_matches('/')),
        missing.to_json(),
    )
    .unwrap();
    let out = run(&[EXEC_PATH]);
    assert_eq!(out.status.code(), Some(127));
    assert!(
        text(&out).1.contains("exec: \"/bin/no-such-program\""),
        "{}",
        text(&out).1
    );
}
