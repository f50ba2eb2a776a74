//! The store under concurrency, as root with the loopback registry: many enclaves started at
//! once on one store with a sealing key (as Kubernetes does when it scales a deployment), a
//! starter killed with SIGKILL in the middle of its pull, stale partial files, and
//! `encc image pull` stopped by SIGTERM or SIGINT. Asserts what a user would see: every start
//! exits 0 with the image's output, and the store holds images, seals and locks only.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::os::fd::AsRawFd as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Arc, Barrier};
use std::time::Duration;

use common::enclave::*;
use common::process::kill_tree;
use common::proxy::Proxy;
use common::*;

/// Runs every command at once (threads released together) and returns their outputs.
fn all_at_once(commands: Vec<Command>) -> Vec<Output> {
    let barrier = Arc::new(Barrier::new(commands.len()));
    let threads: Vec<_> = commands
        .into_iter()
        .map(|mut cmd| {
            let barrier = Arc::clone(&barrier);
            std::thread::spawn(move || {
                barrier.wait();
                cmd.output().unwrap()
            })
        })
        .collect();
    threads.into_iter().map(|t| t.join().unwrap()).collect()
}

#[test]
fn eight_concurrent_cold_starts_of_one_image_all_run_and_share_one_kept_image() {
    let Some(e) = env() else { return };
    let commands = (0..8)
        .map(|i| {
            e.launch_sealed(
                &e.registry,
                &e.image(),
                &format!("cat /data/marker.txt; echo start-{i}"),
            )
        })
        .collect();
    let outputs = all_at_once(commands);
    let mut pulled = 0;
    for (i, out) in outputs.iter().enumerate() {
        let (stdout, stderr) = text(out);
        assert_eq!(
            (out.status.code(), stdout.as_str()),
            (
                Some(0),
                format!("image-file-marker-5c1e\nstart-{i}\n").as_str()
            ),
            "start {i}: {stderr}"
        );
        if !stderr.contains("sealed image reused") {
            pulled += 1;
        }
    }
    // One start pulled and kept the image; the other seven waited for it and reused it.
    assert_eq!(pulled, 1, "starts that pulled");
    e.assert_store_holds(1);
}

/// Pushes extra tags of the fixture images (other manifests of the same content) so that
/// eight different images are in the registry; returns their references.
fn eight_images(e: &Env) -> Vec<String> {
    let layout = e.fixtures.join("layout");
    for (tag, dest, flags) in [
        ("busybox", "busybox:v2s2", &["--format", "v2s2"][..]),
        ("unique", "unique:v2s2", &["--format", "v2s2"][..]),
        ("crafted", "crafted:latest", &[][..]),
    ] {
        let status = Command::new("skopeo")
            .args(["copy", "--quiet", "--dest-tls-verify=false"])
            .args(flags)
            .arg(format!("oci:{}:{tag}", layout.display()))
            .arg(format!("docker://{}/test/{dest}", e.registry))
            .status()
            .unwrap();
        assert!(status.success(), "skopeo copy of {tag} to {dest}");
    }
    [
        "busybox:latest",
        "busybox:v2s2",
        "layered:latest",
        "layered:v2s2",
        "crafted:latest",
        "crafted:zstd",
        "unique:latest",
        "unique:v2s2",
    ]
    .iter()
    .map(|t| format!("docker://{}/test/{t}", e.registry))
    .collect()
}

#[test]
fn eight_concurrent_cold_starts_of_different_images_all_run() {
    let Some(e) = env() else { return };
    let images = eight_images(&e);
    let commands = images
        .iter()
        .enumerate()
        .map(|(i, image)| e.launch_sealed(&e.registry, image, &format!("echo start-{i}")))
        .collect();
    let outputs = all_at_once(commands);
    for (i, out) in outputs.iter().enumerate() {
        let (stdout, stderr) = text(out);
        assert_eq!(
            (out.status.code(), stdout.as_str()),
            (Some(0), format!("start-{i}\n").as_str()),
            "{}: {stderr}",
            images[i]
        );
    }
    e.assert_store_holds(images.len());
}

/// Waits until a `*.partial` file shows up in `dir` (the pull is under way).
fn wait_for_partial(dir: &Path, child: &mut Child) -> PathBuf {
    loop {
        if let Some(found) = std::fs::read_dir(dir)
            .into_iter()
            .flatten()
            .flatten()
            .find(|d| d.file_name().to_string_lossy().ends_with(".partial"))
        {
            return found.path();
        }
        assert!(
            child.try_wait().unwrap().is_none(),
            "ended before its partial file appeared"
        );
        std::thread::sleep(Duration::from_millis(20));
    }
}

#[test]
fn a_starter_killed_mid_pull_leaves_the_store_usable() {
    let Some(e) = env() else { return };
    // Blob requests stall while `hold` exists: the first starter stops mid-pull, with its
    // partial image in the store (and, with the store locked, holding the image's lock).
    let hold = e.dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let proxy = Proxy::start(&e.registry, &["--hold-blobs", hold.to_str().unwrap()]);
    let image = format!("docker://{}/test/busybox:latest", proxy.addr);
    let start = |i: usize| {
        e.launch_sealed(
            &proxy.addr,
            &image,
            &format!("cat /data/marker.txt; echo start-{i}"),
        )
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap()
    };
    let mut first = start(1);
    wait_for_partial(&e.store(), &mut first);
    let second = start(2);
    kill_tree(&mut first);
    std::fs::remove_file(&hold).unwrap();

    // The starter that was waiting (or pulling beside it) goes on and runs the image.
    let out = second.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "image-file-marker-5c1e\nstart-2\n"),
        "{stderr}"
    );
    // No partial file of the killed pull stays behind; the next start reuses the kept image.
    e.assert_store_holds(1);
    let out = start(3).wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "image-file-marker-5c1e\nstart-3\n"),
        "{stderr}"
    );
    assert!(stderr.contains("sealed image reused"), "{stderr}");
    e.assert_store_holds(1);
}

/// Takes an exclusive `flock` on `path` (created if missing); held until the file is closed.
fn flock_exclusive(path: &Path) -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on an fd this function owns.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX) }, 0);
    file
}

#[test]
fn init_clears_stale_partials_but_not_one_whose_writer_holds_the_lock() {
    let Some(e) = env() else { return };
    let store = e.store();
    std::fs::create_dir_all(&store).unwrap();
    // What a killed pull leaves: the partial image and the partial seal of an image whose
    // lock nobody holds, and the partial of an unsealed pull.
    let stale_image = format!("sha256-{}", "a".repeat(64));
    let stale = [
        format!(".{stale_image}.img.Ab3dEf.partial"),
        format!(".{stale_image}.seal.x1Y2z3.partial"),
        format!(".encc-{}.img.QwErTy.partial", "0".repeat(16)),
    ];
    for name in &stale {
        std::fs::write(store.join(name), b"stale").unwrap();
    }
    // A pull in progress: its writer holds the image's lock.
    let busy_image = format!("sha256-{}", "b".repeat(64));
    let busy = format!(".{busy_image}.img.Zz9Yy8.partial");
    std::fs::write(store.join(&busy), b"being written").unwrap();
    let lock = flock_exclusive(&store.join(format!("{busy_image}.lock")));

    let out = e
        .launch_sealed(&e.registry, &e.image(), "echo ran")
        .output()
        .unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "ran\n"),
        "{stderr}"
    );
    let names = e.store_names();
    for name in &stale {
        assert!(!names.contains(name), "{name} stayed: {names:?}");
    }
    assert!(
        names.contains(&busy),
        "a locked partial was removed: {names:?}"
    );
    drop(lock);
    std::fs::remove_file(store.join(&busy)).unwrap();
    std::fs::remove_file(store.join(format!("{busy_image}.lock"))).unwrap();
    e.assert_store_holds(1);
}

#[test]
fn encc_image_pull_stopped_by_sigterm_or_sigint_removes_its_partial() {
    let Some(e) = env() else { return };
    let hold = e.dir.path().join("hold");
    let proxy = Proxy::start(&e.registry, &["--hold-blobs", hold.to_str().unwrap()]);
    let key = e.dir.path().join("key");
    encc_ok(args!["key", "gen", "-o", key]);
    let out_dir = e.dir.path().join("out");
    std::fs::create_dir(&out_dir).unwrap();
    for (sig, code) in [(libc::SIGTERM, 143), (libc::SIGINT, 130)] {
        std::fs::write(&hold, b"").unwrap();
        let mut pull = Command::new(bin("encc"))
            .args(["image", "pull", "--insecure-policy", "--tls-verify=false"])
            .arg(format!("docker://{}/test/busybox:latest", proxy.addr))
            .arg("-o")
            .arg(out_dir.join("busybox.img"))
            .arg("--key-file")
            .arg(&key)
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let partial = wait_for_partial(&out_dir, &mut pull);
        assert!(
            partial
                .file_name()
                .unwrap()
                .to_string_lossy()
                .starts_with(".busybox.img."),
            "{}",
            partial.display()
        );
        // SAFETY: kill of our own child with a valid signal.
        assert_eq!(unsafe { libc::kill(pull.id() as i32, sig) }, 0);
        let out = pull.wait_with_output().unwrap();
        std::fs::remove_file(&hold).unwrap();
        assert_eq!(
            out.status.code(),
            Some(code),
            "signal {sig}: {}",
            text(&out).1
        );
        let left: Vec<_> = std::fs::read_dir(&out_dir)
            .unwrap()
            .map(|d| d.unwrap().file_name())
            .collect();
        assert!(left.is_empty(), "signal {sig} left {left:?}");
    }
}

#[test]
fn a_kept_pair_moved_to_another_images_name_is_not_used() {
    let Some(e) = env() else { return };
    let busybox = e.image();
    let unique = format!("docker://{}/test/unique:latest", e.registry);
    let which = "test -e /noise && echo unique-root || echo busybox-root";
    let run = |image: &str| {
        let out = e.launch_sealed(&e.registry, image, which).output().unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        (stdout, stderr)
    };
    run(&busybox);
    let stem = |names: &[String]| {
        names
            .iter()
            .filter_map(|n| n.strip_suffix(".img"))
            .map(str::to_owned)
            .collect::<Vec<_>>()
    };
    let first = stem(&e.store_names());
    run(&unique);
    let both = stem(&e.store_names());
    let a = first[0].clone();
    let b = both.into_iter().find(|s| *s != a).unwrap();
    // The host swaps the two kept pairs (image and seal together).
    for ext in ["img", "seal"] {
        let (pa, pb) = (
            e.store().join(format!("{a}.{ext}")),
            e.store().join(format!("{b}.{ext}")),
        );
        let tmp = e.store().join("swap");
        std::fs::rename(&pa, &tmp).unwrap();
        std::fs::rename(&pb, &pa).unwrap();
        std::fs::rename(&tmp, &pb).unwrap();
    }
    // Each start refuses the pair under its name (the seal binds the manifest digest),
    // pulls its own image again and runs in it.
    for (image, root) in [(&busybox, "busybox-root\n"), (&unique, "unique-root\n")] {
        let (stdout, stderr) = run(image);
        assert_eq!(stdout, root, "{stderr}");
        assert!(
            stderr.contains("does not open") && stderr.contains("pulling"),
            "{stderr}"
        );
    }
    e.assert_store_holds(2);
}
