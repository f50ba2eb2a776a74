//! `encc key` and `encc rootfs` end to end: build a tree with every kind of entry, then
//! extract, verify, inspect, list, cat and tamper with it through the real binary.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs;
use std::path::Path;

use common::*;

struct Fixture {
    _dir: tempfile::TempDir,
    src: std::path::PathBuf,
    key: std::path::PathBuf,
    image: std::path::PathBuf,
    root_hash: String,
    work: std::path::PathBuf,
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let src = dir.path().join("src");
    make_sample_tree(&src);
    let key = dir.path().join("key");
    encc_ok(args!["key", "gen", "-o", key]);
    let image = dir.path().join("rootfs.img");
    let out = encc_ok(args![
        "rootfs",
        "build",
        src,
        "-o",
        image,
        "--key-file",
        key
    ]);
    let last = out.lines().last().unwrap();
    let root_hash = last
        .strip_prefix("root_hash ")
        .expect("last line is root_hash")
        .to_string();
    assert_eq!(root_hash.len(), 64);
    let work = dir.path().to_owned();
    Fixture {
        _dir: dir,
        src,
        key,
        image,
        root_hash,
        work,
    }
}

#[test]
fn key_gen_makes_a_private_hex_key_and_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("k");
    encc_ok(args!["key", "gen", "-o", key]);
    let text = fs::read_to_string(&key).unwrap();
    assert_eq!(text.len(), 65);
    assert!(text.trim_end().chars().all(|c| c.is_ascii_hexdigit()));
    assert_eq!(
        fs::metadata(&key).unwrap().permissions().mode() & 0o777,
        0o600
    );
    let again = encc(args!["key", "gen", "-o", key]);
    assert!(!again.status.success());
    assert_eq!(fs::read_to_string(&key).unwrap(), text);
}

#[test]
fn build_extract_round_trip_is_exact() {
    let f = fixture();
    let out = f.work.join("out");
    let text = encc_ok(args![
        "rootfs",
        "extract",
        f.image,
        "--key-file",
        f.key,
        "-o",
        out
    ]);
    assert!(text.ends_with(&format!("root_hash {}\n", f.root_hash)));
    let (a, b) = (snapshot(&f.src), snapshot(&out));
    assert!(a.len() > 25, "sample tree too small: {}", a.len());
    assert_same_tree(&a, &b);
    // Holes stay holes.
    let blocks = |p: &Path| std::os::unix::fs::MetadataExt::blocks(&fs::metadata(p).unwrap());
    assert!(blocks(&out.join("var/sparse")) < 200_000 / 512);
    // Extracting into a non-empty directory is refused.
    let again = encc(args![
        "rootfs",
        "extract",
        f.image,
        "--key-file",
        f.key,
        "-o",
        out
    ]);
    assert!(!again.status.success());
    assert!(String::from_utf8_lossy(&again.stderr).contains("not an empty directory"));
}

#[test]
fn builds_are_deterministic_and_json_reports_them() {
    let f = fixture();
    let second = f.work.join("second.img");
    let json = encc_ok(args![
        "rootfs",
        "build",
        f.src,
        "-o",
        second,
        "--key-file",
        f.key,
        "--json"
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["root_hash"], f.root_hash.as_str());
    assert_eq!(
        v["bytes"].as_u64().unwrap(),
        fs::metadata(&second).unwrap().len()
    );
    assert!(v["entries"].as_u64().unwrap() > 25);
    assert_eq!(fs::read(&f.image).unwrap(), fs::read(&second).unwrap());

    let other_key = f.work.join("other.key");
    encc_ok(args!["key", "gen", "-o", other_key]);
    let third = f.work.join("third.img");
    let json = encc_ok(args![
        "rootfs",
        "build",
        f.src,
        "-o",
        third,
        "--key-file",
        other_key,
        "--json"
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_ne!(v["root_hash"], f.root_hash.as_str());
    assert_ne!(fs::read(&f.image).unwrap(), fs::read(&third).unwrap());
}

#[test]
fn verify_inspect_ls_and_cat() {
    let f = fixture();
    let out = encc_ok(args!["rootfs", "verify", f.image, "--key-file", f.key]);
    assert_eq!(out, format!("root_hash {}\n", f.root_hash));
    encc_ok(args![
        "rootfs",
        "verify",
        f.image,
        "--key-file",
        f.key,
        "--expect-root-hash",
        f.root_hash
    ]);
    let wrong = "0".repeat(64);
    let res = encc(args![
        "rootfs",
        "verify",
        f.image,
        "--key-file",
        f.key,
        "--expect-root-hash",
        wrong
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains(&format!("expected {wrong}")));

    let json = encc_ok(args![
        "rootfs",
        "inspect",
        f.image,
        "--key-file",
        f.key,
        "--json"
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["root_hash"], f.root_hash.as_str());
    assert_eq!(
        v["image_bytes"].as_u64().unwrap(),
        fs::metadata(&f.image).unwrap().len()
    );
    assert_eq!(v["symlinks"].as_u64().unwrap(), 3);
    let text = encc_ok(args!["rootfs", "inspect", f.image, "--key-file", f.key]);
    assert!(text
        .lines()
        .any(|l| l == format!("root_hash {}", f.root_hash)));

    let ls = encc_ok(args!["rootfs", "ls", f.image, "--key-file", f.key, "/bin"]);
    assert!(
        ls.lines()
            .any(|l| l.starts_with("-rwsr-xr-x") && l.ends_with(" su")),
        "{ls}"
    );
    assert!(
        ls.lines()
            .any(|l| l.starts_with("lrwxrwxrwx") && l.ends_with("rel-link -> ../etc/hostname")),
        "{ls}"
    );
    let root_ls = encc_ok(args!["rootfs", "ls", f.image, "--key-file", f.key]);
    assert!(
        root_ls
            .lines()
            .any(|l| l.starts_with("prw-r-----") && l.ends_with(" fifo")),
        "{root_ls}"
    );

    let cat = encc(args![
        "rootfs",
        "cat",
        f.image,
        "--key-file",
        f.key,
        "/bin/large.bin"
    ]);
    assert!(cat.status.success());
    assert_eq!(cat.stdout, fs::read(f.src.join("bin/large.bin")).unwrap());
    let missing = encc(args![
        "rootfs",
        "cat",
        f.image,
        "--key-file",
        f.key,
        "/no/such"
    ]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&missing.stderr).contains("/no/such does not exist"));
}

#[test]
fn no_plaintext_reaches_the_image() {
    let f = fixture();
    // The marker is in file contents, a file name, a symlink target and an xattr value.
    for needle in [
        MARKER.as_bytes(),
        b"encc-sample",
        b"hostname",
        b"user.marker",
        b"../etc/hostname",
    ] {
        assert!(
            !file_contains(&f.image, needle),
            "{:?} is in the image",
            String::from_utf8_lossy(needle)
        );
    }
}

#[test]
fn tampering_wrong_key_and_truncation_fail_cleanly() {
    let f = fixture();
    let good = fs::read(&f.image).unwrap();
    let bad = f.work.join("bad.img");
    // One flip in each region: superblock, first data block, a metadata block, the tree.
    let slot_count = (good.len() - 4096) / 4112; // upper bound; tree follows the slots
    let cases = [
        (10usize, "superblock"),
        (4096 + 100, "block 0"),
        (good.len() - 5, "Merkle tree"),
    ];
    for (off, what) in cases {
        let mut bytes = good.clone();
        bytes[off] ^= 0x80;
        fs::write(&bad, &bytes).unwrap();
        let res = encc(args!["rootfs", "verify", bad, "--key-file", f.key]);
        let err = String::from_utf8_lossy(&res.stderr);
        assert_eq!(res.status.code(), Some(1), "flip in {what} not detected");
        assert!(
            err.contains(&bad.display().to_string()),
            "error does not name the image: {err}"
        );
        if what == "block 0" {
            assert!(err.contains("block 0 of image"), "{err}");
        }
    }
    assert!(slot_count > 10);

    let wrong_key = f.work.join("wrong.key");
    encc_ok(args!["key", "gen", "-o", wrong_key]);
    let res = encc(args!["rootfs", "ls", f.image, "--key-file", wrong_key]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("wrong key for image"));

    fs::write(&bad, &good[..good.len() / 2]).unwrap();
    let res = encc(args!["rootfs", "verify", bad, "--key-file", f.key]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("truncated"));

    fs::write(&bad, b"#!/bin/sh\necho definitely not an image\n").unwrap();
    let res = encc(args!["rootfs", "verify", bad, "--key-file", f.key]);
    assert!(String::from_utf8_lossy(&res.stderr).contains("not an encc rootfs image"));
}

#[test]
fn failed_build_leaves_no_image() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("key");
    encc_ok(args!["key", "gen", "-o", key]);
    let image = dir.path().join("out.img");
    let res = encc(args![
        "rootfs",
        "build",
        dir.path().join("missing"),
        "-o",
        image,
        "--key-file",
        key
    ]);
    assert_eq!(res.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&res.stderr).contains("missing"));
    let names: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(names, vec![std::ffi::OsString::from("key")]);
}
