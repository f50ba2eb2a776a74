//! `encc store ls/rm/prune` and `store_max_bytes`, as root with the loopback registry and
//! real starts (`encc-launch run` with a sealing key): what the listing shows, removal by
//! reference and by digest, pruning by count and by age, eviction of the least recently
//! used images after a start, images in use (a start holds the lock, a container runs)
//! left alone, and a hostile store (symlinks, fifos, directories under the store's names)
//! that never makes removal reach outside the store.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::fs::File;
use std::io::{BufRead as _, BufReader, Write as _};
use std::os::fd::AsRawFd as _;
use std::os::unix::fs::symlink;
use std::path::Path;
use std::process::{Command, Output, Stdio};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use common::enclave::*;
use common::proxy::Proxy;
use common::*;
use serde_json::Value;

/// What a start reported: its manifest digest and root hash.
struct Started {
    manifest: String,
    root_hash: String,
}

impl Env {
    fn reference(&self, tag: &str) -> String {
        format!("docker://{}/test/{tag}", self.registry)
    }

    /// A sealed start of `image` that must exit 0 with `expected` as its output.
    fn start(&self, image: &str, flags: &[&str]) -> (Started, String) {
        let out = self
            .launch_sealed_with(&self.registry, image, "echo ran", flags)
            .output()
            .unwrap();
        let (stdout, stderr) = text(&out);
        assert_eq!(
            (out.status.code(), stdout.as_str()),
            (Some(0), "ran\n"),
            "{image}: {stderr}"
        );
        // "rootfs measurement HEX for REF (manifest sha256:HEX)…"
        let line = stderr
            .lines()
            .find(|l| l.contains("rootfs measurement ") && l.contains("(manifest "))
            .unwrap_or_else(|| panic!("no measurement line: {stderr}"));
        let after = |marker: &str| {
            let rest = &line[line.find(marker).unwrap() + marker.len()..];
            rest.split([' ', ')']).next().unwrap().to_owned()
        };
        let started = Started {
            manifest: after("(manifest "),
            root_hash: after("rootfs measurement "),
        };
        (started, stderr)
    }

    /// `encc store SUBCOMMAND --store STORE ARGS...`.
    fn store_cmd(&self, subcommand: &str, args: &[&str]) -> Output {
        // `timeout`: a store operation that blocks (on a lock, a fifo) fails the test.
        Command::new("timeout")
            .arg("60")
            .arg(bin("encc"))
            .args(["store", subcommand, "--store"])
            .arg(self.store())
            .args(args)
            .output()
            .unwrap()
    }

    fn ls(&self, args: &[&str]) -> Vec<Value> {
        let mut all = vec!["--json"];
        all.extend(args);
        let out = self.store_cmd("ls", &all);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{stderr}");
        serde_json::from_str::<Vec<Value>>(&stdout).unwrap()
    }

    /// Sets the last use recorded for the kept image of `manifest` to `ago` ago (the
    /// metadata is the host's, in clear).
    fn backdate(&self, manifest: &str, ago: Duration) {
        let path = self
            .store()
            .join(format!("{}.meta", manifest.replace(':', "-")));
        let mut meta: Value = serde_json::from_slice(&std::fs::read(&path).unwrap()).unwrap();
        let when = SystemTime::now() - ago;
        meta["last_use"] = when.duration_since(UNIX_EPOCH).unwrap().as_secs().into();
        std::fs::write(&path, serde_json::to_vec(&meta).unwrap()).unwrap();
    }
}

fn row<'a>(rows: &'a [Value], manifest: &str) -> &'a Value {
    rows.iter()
        .find(|r| r["manifest_digest"] == manifest)
        .unwrap_or_else(|| panic!("{manifest} not listed: {rows:?}"))
}

fn manifests(rows: &[Value]) -> Vec<String> {
    let mut all: Vec<String> = rows
        .iter()
        .map(|r| r["manifest_digest"].as_str().unwrap().to_owned())
        .collect();
    all.sort();
    all
}

const DAY: Duration = Duration::from_secs(86_400);

#[test]
fn ls_shows_kept_images_and_rm_removes_them_by_reference_and_by_digest() {
    let Some(e) = env() else { return };
    let (busybox, unique) = (e.image(), e.reference("unique:latest"));
    let (a, _) = e.start(&busybox, &[]);
    let (b, _) = e.start(&unique, &[]);

    let rows = e.ls(&[]);
    assert_eq!(rows.len(), 2, "{rows:?}");
    for (started, reference) in [(&a, &busybox), (&b, &unique)] {
        let r = row(&rows, &started.manifest);
        assert_eq!(r["references"], serde_json::json!([reference]), "{r}");
        let image = e
            .store()
            .join(format!("{}.img", started.manifest.replace(':', "-")));
        let bytes = r["bytes"].as_u64().unwrap();
        assert!(bytes > std::fs::metadata(&image).unwrap().len(), "{r}");
        assert!(r["last_use"].as_str().unwrap().ends_with('Z'), "{r}");
        assert_eq!(
            (&r["state"], &r["seal"], &r["root_hash"]),
            (&"idle".into(), &"present".into(), &Value::Null),
            "{r}"
        );
    }
    // With the sealing key (given, or the boot config's), the seals open: root hashes.
    let key = e.seal_key();
    let rows = e.ls(&["--seal-key-file", key.to_str().unwrap()]);
    for started in [&a, &b] {
        let r = row(&rows, &started.manifest);
        assert_eq!(r["seal"], "opens", "{r}");
        assert_eq!(r["root_hash"], started.root_hash.as_str(), "{r}");
    }
    let boot = e.dir.path().join("boot.json");
    let config = encc_ok(args![
        "boot-config",
        "init",
        "--insecure-policy",
        "--store",
        e.store(),
        "--seal-key-file",
        key
    ]);
    std::fs::write(&boot, config).unwrap();
    let table = encc_ok(args!["store", "ls", "--boot-config", boot]);
    for needle in [
        "MANIFEST",
        "LAST USE",
        busybox.as_str(),
        unique.as_str(),
        "idle",
        &a.root_hash,
        &b.root_hash,
        &a.manifest[..19],
    ] {
        assert!(table.contains(needle), "{needle} not in:\n{table}");
    }

    // By reference (any spelling of it), then by a digest prefix.
    let bare = busybox.strip_prefix("docker://").unwrap();
    let out = e.store_cmd("rm", &[bare]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.starts_with(&format!("removed {}", a.manifest)),
        "{stdout}"
    );
    assert_eq!(manifests(&e.ls(&[])), vec![b.manifest.clone()]);
    let prefix = &b.manifest[..7 + 12];
    let out = e.store_cmd("rm", &[prefix]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(e.store_names().is_empty(), "{:?}", e.store_names());

    // Nothing left to remove: an error naming what was asked for.
    let out = e.store_cmd("rm", &[&busybox]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains(&format!("no kept image is {busybox}")),
        "{stderr}"
    );
    // The next start pulls again and keeps the image again.
    let (again, stderr) = e.start(&busybox, &[]);
    assert!(!stderr.contains("sealed image reused"), "{stderr}");
    assert_eq!(again.manifest, a.manifest);
    e.assert_store_holds(1);
}

#[test]
fn prune_by_keep_last_and_by_age() {
    let Some(e) = env() else { return };
    let (old, _) = e.start(&e.image(), &[]);
    let (middle, _) = e.start(&e.reference("unique:latest"), &[]);
    let (recent, _) = e.start(&e.reference("layered:latest"), &[]);
    e.backdate(&old.manifest, 10 * DAY);
    e.backdate(&middle.manifest, Duration::from_secs(7200));

    let out = e.store_cmd("prune", &["--older-than", "7d"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("removed {}", old.manifest)),
        "{stdout}"
    );
    assert!(stdout.contains("pruned 1 kept image(s)"), "{stdout}");
    let mut left = vec![middle.manifest.clone(), recent.manifest.clone()];
    left.sort();
    assert_eq!(manifests(&e.ls(&[])), left);

    let out = e.store_cmd("prune", &["--keep-last", "1"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stdout.contains(&format!("removed {}", middle.manifest)),
        "{stdout}"
    );
    assert_eq!(manifests(&e.ls(&[])), vec![recent.manifest.clone()]);
    e.assert_store_holds(1);

    // Without a rule nothing is pruned; a bad duration is refused.
    for args in [&[][..], &["--older-than", "7 days"][..]] {
        let out = e.store_cmd("prune", args);
        assert_eq!(out.status.code(), Some(2), "{args:?}: {}", text(&out).1);
    }
    e.assert_store_holds(1);
}

#[test]
fn store_max_bytes_evicts_the_least_recently_used_after_a_start() {
    let Some(e) = env() else { return };
    let (a, _) = e.start(&e.image(), &[]);
    let (b, _) = e.start(&e.reference("unique:latest"), &[]);
    let (c, _) = e.start(&e.reference("layered:latest"), &[]);
    e.backdate(&a.manifest, 3 * DAY);
    e.backdate(&c.manifest, 2 * DAY);
    e.backdate(&b.manifest, DAY);
    let rows = e.ls(&[]);
    let bytes = |s: &Started| row(&rows, &s.manifest)["bytes"].as_u64().unwrap();
    // Room for two of the three: the least recently used (a) goes.
    let max = (bytes(&b) + bytes(&c) + bytes(&a) / 2).to_string();
    let (_, stderr) = e.start(&e.reference("unique:latest"), &["--store-max-bytes", &max]);
    assert!(stderr.contains("sealed image reused"), "{stderr}");
    assert!(
        stderr.contains(&format!("evicted kept image {}", a.manifest)),
        "{stderr}"
    );
    let mut left = vec![b.manifest.clone(), c.manifest.clone()];
    left.sort();
    assert_eq!(manifests(&e.ls(&[])), left);

    // Room for none: the image just started stays all the same.
    let (_, stderr) = e.start(&e.reference("unique:latest"), &["--store-max-bytes", "1"]);
    assert!(
        stderr.contains(&format!("evicted kept image {}", c.manifest)),
        "{stderr}"
    );
    assert_eq!(manifests(&e.ls(&[])), vec![b.manifest.clone()]);
    e.assert_store_holds(1);
    // store_max_bytes without a sealing key is refused when the config is made.
    let out = Command::new(bin("encc"))
        .args(["boot-config", "init", "--insecure-policy"])
        .args(["--store-max-bytes", "1000"])
        .output()
        .unwrap();
    let (_, stderr) = text(&out);
    assert_ne!(out.status.code(), Some(0));
    assert!(
        stderr.contains("store_max_bytes") && stderr.contains("seal_key_file"),
        "{stderr}"
    );
}

/// Takes `flock(op)` on `path` (created if missing); held until the file is closed.
fn flock(path: &Path, op: i32) -> File {
    let file = File::options()
        .create(true)
        .truncate(false)
        .read(true)
        .write(true)
        .open(path)
        .unwrap();
    // SAFETY: flock on an fd this function owns.
    assert_eq!(unsafe { libc::flock(file.as_raw_fd(), op) }, 0);
    file
}

#[test]
fn an_image_in_use_is_neither_removed_nor_pruned() {
    let Some(e) = env() else { return };
    let busybox = e.image();
    let (kept, _) = e.start(&busybox, &[]);
    let stem = kept.manifest.replace(':', "-");

    // A container of the image runs (it waits for a line on its stdin).
    let mut running = e
        .launch_sealed(
            &e.registry,
            &busybox,
            "cat /data/marker.txt; read x; echo bye",
        )
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut output = BufReader::new(running.stdout.take().unwrap());
    let mut line = String::new();
    output.read_line(&mut line).unwrap();
    assert_eq!(line, "image-file-marker-5c1e\n");
    assert_eq!(e.ls(&[])[0]["state"], "in-use");
    let out = e.store_cmd("rm", &[&busybox]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("in use (a container started from it is running); not removed"),
        "{stderr}"
    );
    let out = e.store_cmd("prune", &["--keep-last", "0"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(0), "{stderr}");
    assert!(
        stderr.contains(&format!("skipped {}: in use", kept.manifest)),
        "{stderr}"
    );
    assert!(stdout.contains("pruned 0 kept image(s)"), "{stdout}");
    // Another start of the image meanwhile reuses it.
    let (_, stderr) = e.start(&busybox, &[]);
    assert!(stderr.contains("sealed image reused"), "{stderr}");
    let mut stdin = running.stdin.take().unwrap();
    stdin.write_all(b"go\n").unwrap();
    drop(stdin);
    let mut rest = String::new();
    std::io::Read::read_to_string(&mut output, &mut rest).unwrap();
    assert_eq!(rest, "bye\n");
    assert!(running.wait().unwrap().success());

    // A start holds the image's lock: shared while it opens the image, exclusive while it
    // pulls it.
    for (op, what) in [(libc::LOCK_SH, "shared"), (libc::LOCK_EX, "exclusive")] {
        let held = flock(&e.store().join(format!("{stem}.lock")), op);
        // Listing takes the shared lock too: it sees a writer, not another reader.
        let state = if op == libc::LOCK_EX {
            "locked"
        } else {
            "idle"
        };
        assert_eq!(e.ls(&[])[0]["state"], state, "{what}");
        let out = e.store_cmd("rm", &[&kept.manifest]);
        let (_, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(1), "{what}: {stderr}");
        assert!(
            stderr.contains("in use (a start or removal holds its lock)"),
            "{what}: {stderr}"
        );
        let out = e.store_cmd("prune", &["--keep-last", "0"]);
        assert!(text(&out).1.contains("skipped"), "{what}: {}", text(&out).1);
        e.assert_store_holds(1);
        drop(held);
    }
    let out = e.store_cmd("rm", &[&kept.manifest]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
    assert!(e.store_names().is_empty(), "{:?}", e.store_names());
}

#[test]
fn rm_and_prune_leave_an_image_a_start_is_pulling() {
    let Some(e) = env() else { return };
    let (kept, _) = e.start(&e.image(), &[]);
    let stem = kept.manifest.replace(':', "-");
    // The host drops the seal: the next start pulls the image again, holding its lock,
    // and stalls mid-pull (blob requests wait while `hold` exists).
    std::fs::remove_file(e.store().join(format!("{stem}.seal"))).unwrap();
    let hold = e.dir.path().join("hold");
    std::fs::write(&hold, b"").unwrap();
    let proxy = Proxy::start(&e.registry, &["--hold-blobs", hold.to_str().unwrap()]);
    let image = format!("docker://{}/test/busybox:latest", proxy.addr);
    let mut pulling = e
        .launch_sealed(&proxy.addr, &image, "echo pulled")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    while !e.store_names().iter().any(|n| n.ends_with(".partial")) {
        assert!(pulling.try_wait().unwrap().is_none(), "the start ended");
        std::thread::sleep(Duration::from_millis(20));
    }
    assert_eq!(row(&e.ls(&[]), &kept.manifest)["state"], "locked");
    let out = e.store_cmd("rm", &[&kept.manifest]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("a start or removal holds its lock"),
        "{stderr}"
    );
    let out = e.store_cmd("prune", &["--keep-last", "0"]);
    let (_, stderr) = text(&out);
    assert!(
        stderr.contains(&format!("skipped {}", kept.manifest)),
        "{stderr}"
    );

    std::fs::remove_file(&hold).unwrap();
    let out = pulling.wait_with_output().unwrap();
    let (stdout, stderr) = text(&out);
    assert_eq!(
        (out.status.code(), stdout.as_str()),
        (Some(0), "pulled\n"),
        "{stderr}"
    );
    e.assert_store_holds(1);
    let out = e.store_cmd("rm", &[&kept.manifest]);
    assert_eq!(out.status.code(), Some(0), "{}", text(&out).1);
}

#[test]
fn symlinks_fifos_and_directories_in_the_store_keep_removal_inside_it() {
    let Some(e) = env() else { return };
    let (kept, _) = e.start(&e.image(), &[]);
    let store = e.store();
    let outside = e.dir.path().join("outside");
    std::fs::create_dir(&outside).unwrap();
    let planted_meta = r#"{"references": ["docker://evil.example/planted:1"], "last_use": 1}"#;
    let victims = [
        ("victim.img", "victim image"),
        ("victim.seal", "victim seal"),
        ("victim.meta", planted_meta),
        ("victim.partial", "victim partial"),
        ("victim.lock", "victim lock"),
    ];
    for (name, content) in victims {
        std::fs::write(outside.join(name), content).unwrap();
    }
    let name = |digit: char, ext: &str| format!("sha256-{}.{ext}", digit.to_string().repeat(64));
    // 1: every file of an image a symlink out of the store.
    for ext in ["img", "seal", "meta"] {
        symlink(
            outside.join(format!("victim.{ext}")),
            store.join(name('1', ext)),
        )
        .unwrap();
    }
    let partial = format!(".{}.AbCdEf.partial", name('1', "img"));
    symlink(outside.join("victim.partial"), store.join(&partial)).unwrap();
    // 2: a fifo as the image; 3: a directory as the image; 4: a symlink as the lock file.
    nix::unistd::mkfifo(&store.join(name('2', "img")), nix::sys::stat::Mode::S_IRWXU).unwrap();
    std::fs::create_dir(store.join(name('3', "img"))).unwrap();
    std::fs::write(store.join(name('3', "img")).join("inside"), "inside").unwrap();
    std::fs::write(store.join(name('4', "img")), "not an image").unwrap();
    symlink(outside.join("victim.lock"), store.join(name('4', "lock"))).unwrap();

    // Listing neither follows nor blocks: the planted metadata is not read, the symlinks
    // count no bytes, the image behind the symlinked lock is left out.
    let rows = e.ls(&[]);
    let planted = row(&rows, &format!("sha256:{}", "1".repeat(64)));
    assert_eq!(
        (&planted["bytes"], &planted["references"], &planted["seal"]),
        (&0.into(), &serde_json::json!([]), &"does-not-open".into()),
        "{planted}"
    );
    assert_eq!(
        row(&rows, &format!("sha256:{}", "2".repeat(64)))["bytes"],
        0
    );
    assert_eq!(rows.len(), 4, "{rows:?}");

    // Prune everything: the real image goes, the planted entries go as entries, the
    // directory stays (an error names it), and nothing outside the store changes.
    let out = e.store_cmd("prune", &["--keep-last", "0"]);
    let (stdout, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(1), "{stdout}{stderr}");
    assert!(
        stdout.contains(&format!("removed {}", kept.manifest)),
        "{stdout}"
    );
    assert!(
        stderr.contains(&name('3', "img")) && stderr.contains("directory"),
        "{stderr}"
    );
    let out = e.store_cmd("rm", &[&format!("sha256:{}", "4".repeat(64))]);
    assert_eq!(out.status.code(), Some(1), "{}", text(&out).1);
    for (file, content) in victims {
        assert_eq!(
            std::fs::read_to_string(outside.join(file)).unwrap(),
            content,
            "{file}"
        );
    }
    assert_eq!(
        std::fs::read_to_string(store.join(name('3', "img")).join("inside")).unwrap(),
        "inside"
    );
    let mut left = e.store_names();
    left.retain(|n| !n.ends_with(".lock"));
    let mut expected = vec![name('3', "img"), name('4', "img")];
    expected.sort();
    assert_eq!(left, expected);
    assert!(std::fs::symlink_metadata(store.join(name('4', "lock")))
        .unwrap()
        .file_type()
        .is_symlink());
}
