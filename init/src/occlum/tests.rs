use std::path::{Component, Path};

use encc_exec::{LaunchPlan, EXEC_PATH, PLAN_PATH};

use super::lower::{install_exec, shared_objects};
use super::*;

/// Occlum 0.30's `validate_program_path` (src/libos/src/entry.rs) for one entry point.
fn occlum_admits(entry_point: &Path, program: &str) -> bool {
    let path = Path::new(program);
    path.is_absolute()
        && !path.components().any(|c| c == Component::ParentDir)
        && path.starts_with(entry_point)
}

fn key() -> SefsKey {
    SefsKey::from_bytes(&[7; encc_rootfs::occlum::SEFS_KEY_LEN])
}

#[test]
fn the_entry_point_admits_encc_exec_alone() {
    let layers = Layers::new(Path::new("/store")).unwrap();
    let config = rootfs_config(&layers, key());
    assert!(occlum_admits(&config.entry_point, EXEC_PATH));
    // The programs of typical images, and encc's own other files: all refused.
    for other in [
        "/app",
        "/docker-entrypoint.sh",
        "/bin/sh",
        "/usr/bin/python3",
        PLAN_PATH,
        "/.encc/lib/libc.so.6",
        "/.encc/exec/../../bin/sh",
        "/.encc",
        "/.encc/execx",
    ] {
        assert!(
            !occlum_admits(&config.entry_point, other),
            "{other} admitted"
        );
    }
}

#[test]
fn layers_are_named_per_start_and_stay_in_the_store() {
    let (a, b) = (
        Layers::new(Path::new("/store")).unwrap(),
        Layers::new(Path::new("/store")).unwrap(),
    );
    assert_ne!(a.lower, b.lower);
    assert_ne!(a.lower, a.upper);
    for path in [&a.lower, &a.upper] {
        assert_eq!(path.parent(), Some(Path::new("/store")));
    }
    let config = rootfs_config(&a, key());
    assert_eq!(
        (config.lower_layer, config.upper_layer),
        (a.lower.clone(), a.upper.clone())
    );
    assert!(config.env.is_empty());
}

fn plan() -> LaunchPlan {
    LaunchPlan {
        entrypoint: vec!["/bin/sh".into(), "-c".into()],
        cmd: vec!["echo hi".into()],
        env: vec!["PATH=/bin".into()],
        env_allowlist: vec![],
        env_defaults: vec!["HOME=/root".into()],
        cwd: "/".into(),
        allow_host_args: false,
    }
}

#[test]
fn install_replaces_the_images_encc_dir_with_exec_libraries_and_plan() {
    use std::os::unix::fs::PermissionsExt as _;
    let dir = tempfile::tempdir().unwrap();
    let root = dir.path().join("root");
    std::fs::create_dir_all(root.join("bin")).unwrap();
    // An image that brings its own /.encc, pointing elsewhere.
    std::os::unix::fs::symlink("/bin", root.join(".encc")).unwrap();
    let exec = dir.path().join("encc-exec");
    std::fs::write(&exec, b"shim").unwrap();
    let libc = dir.path().join("libc.so.6");
    std::fs::write(&libc, b"libc").unwrap();

    install_exec(&root, &exec, &plan(), std::slice::from_ref(&libc)).unwrap();
    let encc = root.join(".encc");
    assert!(std::fs::symlink_metadata(&encc).unwrap().is_dir());
    assert_eq!(std::fs::read(encc.join("exec")).unwrap(), b"shim");
    let mode = std::fs::metadata(encc.join("exec"))
        .unwrap()
        .permissions()
        .mode();
    assert_eq!(mode & 0o777, 0o755);
    assert_eq!(std::fs::read(encc.join("lib/libc.so.6")).unwrap(), b"libc");
    let written = std::fs::read(encc.join("plan.json")).unwrap();
    assert_eq!(LaunchPlan::from_json(&written).unwrap(), plan());
    assert!(std::fs::read_dir(root.join("bin"))
        .unwrap()
        .next()
        .is_none());
}

#[test]
fn shared_objects_from_maps() {
    let maps = "\
55d0c0000000-55d0c0001000 r--p 00000000 08:01 1 /bin/init
7f0000000000-7f0000001000 r--p 00000000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000001000-7f0000002000 r-xp 00001000 08:01 2 /usr/lib/x86_64-linux-gnu/libc.so.6
7f0000003000-7f0000004000 r--p 00000000 08:01 3 /usr/lib/x86_64-linux-gnu/libgcc_s.so.1
7f0000005000-7f0000006000 r--p 00000000 08:01 4 /usr/lib64/ld-linux-x86-64.so.2
7f0000007000-7f0000008000 rw-p 00000000 00:00 0 [heap]
7f0000009000-7f000000a000 rw-p 00000000 00:00 0
";
    let found: Vec<String> = shared_objects(maps)
        .iter()
        .map(|p| p.display().to_string())
        .collect();
    assert_eq!(
        found,
        [
            "/usr/lib/x86_64-linux-gnu/libc.so.6",
            "/usr/lib/x86_64-linux-gnu/libgcc_s.so.1",
            "/usr/lib64/ld-linux-x86-64.so.2"
        ]
    );
}
