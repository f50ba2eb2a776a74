//! `encc rootfs mount` end to end: the tree seen through the FUSE mount is the source tree
//! (stat and content), and SIGTERM/SIGINT unmount cleanly with exit status 0. Needs root.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// A running `encc rootfs mount`; killed and unmounted on drop if a test fails midway.
struct MountProc {
    child: Child,
    mnt: PathBuf,
}

impl MountProc {
    fn start(image: &Path, key: &Path, mnt: &Path) -> Self {
        std::fs::create_dir_all(mnt).unwrap();
        let child = Command::new(bin("encc"))
            .args(["rootfs", "mount"])
            .arg(image)
            .arg(mnt)
            .arg("--key-file")
            .arg(key)
            .stderr(Stdio::piped())
            .spawn()
            .unwrap();
        let proc = Self {
            child,
            mnt: mnt.to_owned(),
        };
        let deadline = Instant::now() + Duration::from_secs(10);
        while !is_mounted(mnt) {
            assert!(
                Instant::now() < deadline,
                "mount did not appear at {}",
                mnt.display()
            );
            std::thread::sleep(Duration::from_millis(20));
        }
        proc
    }

    fn stop(mut self, signal: i32) -> (Option<i32>, String) {
        // SAFETY: kill has no memory-safety preconditions; the pid is our child's.
        unsafe { libc::kill(self.child.id() as i32, signal) };
        let deadline = Instant::now() + Duration::from_secs(10);
        let status = loop {
            if let Some(status) = self.child.try_wait().unwrap() {
                break status;
            }
            assert!(
                Instant::now() < deadline,
                "encc rootfs mount did not exit after signal {signal}"
            );
            std::thread::sleep(Duration::from_millis(20));
        };
        let mut stderr = String::new();
        use std::io::Read;
        self.child
            .stderr
            .take()
            .unwrap()
            .read_to_string(&mut stderr)
            .unwrap();
        (status.code(), stderr)
    }
}

impl Drop for MountProc {
    fn drop(&mut self) {
        if self.child.try_wait().ok().flatten().is_none() {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if is_mounted(&self.mnt) {
            let _ = Command::new("umount").arg("-l").arg(&self.mnt).status();
        }
    }
}

fn setup() -> Option<(tempfile::TempDir, PathBuf, PathBuf, PathBuf)> {
    if !is_root() {
        eprintln!("skipped: FUSE mounts need root");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_sample_tree(&src);
    let key = dir.path().join("key");
    encc_ok(args!["key", "gen", "-o", key]);
    let image = dir.path().join("rootfs.img");
    encc_ok(args![
        "rootfs",
        "build",
        src,
        "-o",
        image,
        "--key-file",
        key
    ]);
    Some((dir, src, key, image))
}

#[test]
fn mounted_tree_equals_source_and_sigterm_unmounts() {
    let Some((dir, src, key, image)) = setup() else {
        return;
    };
    let mnt = dir.path().join("mnt");
    let proc = MountProc::start(&image, &key, &mnt);
    assert_same_tree(&snapshot(&src), &snapshot(&mnt));
    let err = std::fs::write(mnt.join("new-file"), b"x").unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EROFS), "{err}");
    let (code, stderr) = proc.stop(libc::SIGTERM);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(stderr.contains("unmounted"), "{stderr}");
    assert!(!is_mounted(&mnt));
}

#[test]
fn sigint_unmounts_and_tampered_blocks_read_as_eio() {
    let Some((dir, _src, key, image)) = setup() else {
        return;
    };
    // Slot 0 holds the first file added in name order with data: abs-link is a symlink,
    // so the first regular file with data is bin/large.bin (3 MiB, slots 0..).
    let mut bytes = std::fs::read(&image).unwrap();
    bytes[4096 + 10] ^= 0x40;
    let bad = dir.path().join("bad.img");
    std::fs::write(&bad, &bytes).unwrap();
    let mnt = dir.path().join("mnt");
    let proc = MountProc::start(&bad, &key, &mnt);
    let err = std::fs::read(mnt.join("bin/large.bin")).unwrap_err();
    assert_eq!(err.raw_os_error(), Some(libc::EIO), "{err}");
    assert_eq!(
        std::fs::read(mnt.join("etc/hostname")).unwrap(),
        b"encc-sample\n"
    );
    let (code, stderr) = proc.stop(libc::SIGINT);
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("block 0 of image"),
        "the failure is logged: {stderr}"
    );
    assert!(!is_mounted(&mnt));
}

#[test]
fn mount_refuses_a_bad_image_without_mounting() {
    let Some((dir, _src, _key, image)) = setup() else {
        return;
    };
    let other = dir.path().join("other.key");
    encc_ok(args!["key", "gen", "-o", other]);
    let mnt = dir.path().join("mnt");
    std::fs::create_dir_all(&mnt).unwrap();
    let out = encc(args!["rootfs", "mount", image, mnt, "--key-file", other]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("wrong key"));
    assert!(!is_mounted(&mnt));
}
