//! The store belongs to the host, and the host is root and hostile. This test is that host:
//! a thread of the test process (in the host's mount namespace) watches the store with
//! inotify and renames, replaces and symlinks every directory that appears in it, timing
//! its moves on the enclave's mounts, while containers start, read the image and write to
//! `/` and `/tmp`. Afterwards no byte a container wrote or read from the image is on host
//! storage, every container ran in the image's root (its output shows the image's marker
//! file) or failed with a clear error, nothing is left mounted or behind, and stage 2 never
//! created anything in the store but the image.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeSet;
use std::os::unix::fs::symlink;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use common::enclave::*;
use common::inotify::{Event, Watch, NEW_ENTRIES};
use common::*;

/// What the containers write; assembled inside the container (see [`SCRIPT`]), so the
/// container's writes are its only copies.
const WRITE_MARKER: &str = "hostile-store-write-7b3e";
/// The content of `/data/marker.txt` in the busybox fixture image.
const IMAGE_MARKER: &str = "image-file-marker-5c1e";
/// Proves the root is the image's (its marker file), then writes to the root file system
/// (the image user's home, as the image user cannot write `/` itself) and to `/tmp`, the
/// image's marker too, and reads the writes back.
const SCRIPT: &str = "M=hostile-store; W=$M-write-7b3e; cat /data/marker.txt; echo $W > ~/w.txt; \
                      echo $W > /tmp/w.txt; cat /data/marker.txt > ~/copy.txt; cat ~/w.txt /tmp/w.txt";
/// Created in the store to end the attacker.
const STOP: &str = "attacker-stop";
/// Containers started under attack (each move below at least once).
const RUNS: usize = 4;

/// The attacker's moves on a new directory `N` of the store.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Move {
    /// Once the enclave has mounted on `N`: rename `N` away and put a directory in its
    /// place whose `upper`/`work` lead to host storage, and whose `lower`/`root` lead back
    /// into the renamed directory (so the container still sees the image).
    Replace,
    /// The same, with `N` a symlink to such a directory outside the store.
    Symlink,
    /// Once the enclave has mounted on `N`: rename a directory over `N` (detaching the
    /// enclave's mounts there) whose `lower` is a root tree of the host's choosing.
    RenameOver,
    /// At once, before the enclave can mount: rename `N` away, symlink it elsewhere.
    Early,
}

const MOVES: [Move; 4] = [Move::Replace, Move::Symlink, Move::RenameOver, Move::Early];

/// The host: its view of the store and what it did.
struct Attacker {
    store: PathBuf,
    /// Host directories the attack redirects writes and roots to.
    host: PathBuf,
    /// A root tree of the host's choosing (a shell that is not the image's).
    fake_root: PathBuf,
    /// Names the attacker made in the store.
    own: BTreeSet<String>,
    /// Entries the enclave created in the store.
    seen: Vec<Event>,
    /// Each attack: the directory, the move, whether the enclave's mount was seen.
    attacks: Vec<(String, Move, bool)>,
}

impl Attacker {
    fn run(mut self, watch: Watch) -> Self {
        loop {
            for event in watch.read().unwrap() {
                if event.name == STOP {
                    return self;
                }
                if self.own.contains(&event.name) {
                    continue;
                }
                if event.is_dir() {
                    self.attack(&event.name);
                }
                self.seen.push(event);
            }
        }
    }

    fn attack(&mut self, name: &str) {
        let k = self.attacks.len();
        let mv = MOVES[k % MOVES.len()];
        let path = self.store.join(name);
        let mounted = mv == Move::Early || wait_mounted(&path);
        let loot = self.host.join(format!("loot-{k}"));
        for dir in ["upper", "work"] {
            std::fs::create_dir_all(loot.join(dir)).unwrap();
        }
        let moved = self.store.join(format!("{name}.moved"));
        let back = |sub: &str| Some(moved.join(sub));
        // Errors are ignored: the enclave may have removed the directory meanwhile.
        match mv {
            Move::Replace => {
                let _ = std::fs::rename(&path, &moved);
                fill(&path, &loot, back("lower"), back("root"));
            }
            Move::Symlink | Move::Early => {
                let _ = std::fs::rename(&path, &moved);
                let bait = loot.join("bait");
                fill(&bait, &loot, back("lower"), back("root"));
                let _ = symlink(&bait, &path);
            }
            Move::RenameOver => {
                let over = self.store.join(format!("{name}.over"));
                self.own.insert(format!("{name}.over"));
                fill(&over, &loot, Some(self.fake_root.clone()), None);
                let _ = std::fs::rename(&over, &path);
            }
        }
        self.own.insert(name.to_owned());
        self.own.insert(format!("{name}.moved"));
        self.attacks.push((name.to_owned(), mv, mounted));
    }
}

/// Makes `dir` a staging look-alike: `upper` and `work` on host storage (`loot`), `lower`
/// and `root` symlinks where given, directories otherwise.
fn fill(dir: &Path, loot: &Path, lower: Option<PathBuf>, root: Option<PathBuf>) {
    let _ = std::fs::create_dir(dir);
    for (name, target) in [
        ("upper", Some(loot.join("upper"))),
        ("work", Some(loot.join("work"))),
        ("lower", lower),
        ("root", root),
    ] {
        let _ = match target {
            Some(target) => symlink(target, dir.join(name)),
            None => std::fs::create_dir(dir.join(name)),
        };
    }
}

/// Waits until a process in another mount namespace has something mounted on `path`
/// (read from its `/proc/PID/mountinfo`, as the host can); false when `path` goes away
/// or nothing is mounted within a few seconds.
fn wait_mounted(path: &Path) -> bool {
    let own_ns = std::fs::read_link("/proc/self/ns/mnt").unwrap();
    let others: Vec<PathBuf> = std::fs::read_dir("/proc")
        .unwrap()
        .flatten()
        .map(|e| e.path())
        .filter(|p| std::fs::read_link(p.join("ns/mnt")).is_ok_and(|ns| ns != own_ns))
        .collect();
    let want = path.to_string_lossy();
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline && std::fs::symlink_metadata(path).is_ok() {
        for pid in &others {
            if let Ok(info) = std::fs::read_to_string(pid.join("mountinfo")) {
                if info.lines().any(|l| l.split(' ').nth(4) == Some(&want)) {
                    return true;
                }
            }
        }
    }
    false
}

/// Files under `dir` (not following symlinks) that contain one of `needles`.
fn grep(dir: &Path, needles: &[&str]) -> Vec<(PathBuf, String)> {
    let mut found = Vec::new();
    let mut todo = vec![dir.to_owned()];
    while let Some(d) = todo.pop() {
        let Ok(entries) = std::fs::read_dir(&d) else {
            continue;
        };
        for entry in entries.flatten() {
            let Ok(ft) = entry.file_type() else { continue };
            if ft.is_dir() {
                todo.push(entry.path());
            } else if ft.is_file() {
                let bytes = std::fs::read(entry.path()).unwrap_or_default();
                for needle in needles {
                    if bytes.windows(needle.len()).any(|w| w == needle.as_bytes()) {
                        found.push((entry.path(), (*needle).to_owned()));
                    }
                }
            }
        }
    }
    found
}

/// A root tree for [`Move::RenameOver`]: a static busybox as `/bin/sh`, when the host has one.
fn make_fake_root(dir: &Path) {
    std::fs::create_dir_all(dir.join("bin")).unwrap();
    std::fs::create_dir_all(dir.join("tmp")).unwrap();
    if std::fs::copy("/bin/busybox", dir.join("bin/busybox")).is_ok() {
        for tool in ["sh", "cat"] {
            symlink("busybox", dir.join("bin").join(tool)).unwrap();
        }
    }
}

fn start(e: &Env, config: &Path) -> Output {
    Command::new(bin("init"))
        .arg("--boot-config")
        .arg(config)
        .arg(e.image())
        .arg(SCRIPT)
        .env("RUST_LOG", "warn")
        .output()
        .unwrap()
}

/// Asserts the container ran in the image's root, or never ran and said why.
fn assert_image_root_or_clean_failure(run: usize, out: &Output) {
    let (stdout, stderr) = text(out);
    if out.status.code() == Some(0) {
        let want = format!("{IMAGE_MARKER}\n{WRITE_MARKER}\n{WRITE_MARKER}\n");
        assert_eq!(
            stdout, want,
            "run {run} did not run in the image's root: {stderr}"
        );
    } else {
        assert!(
            stdout.is_empty(),
            "run {run} ran somewhere and failed ({}): {stdout}\n{stderr}",
            out.status
        );
        assert!(
            stderr.lines().any(|l| l.starts_with("init: ")),
            "run {run} failed without a clear error ({}): {stderr}",
            out.status
        );
    }
}

/// Starts `runs` containers one after another with `extra` boot config fields while the
/// attacker works on the store, and checks everything but what the store holds afterwards,
/// which it returns (names, sorted).
fn run_under_attack(e: &Env, extra: &str, runs: usize) -> Vec<String> {
    let store = e.store();
    std::fs::create_dir_all(&store).unwrap();
    let host = e.dir.path().join("host");
    let fake_root = host.join("fake-root");
    make_fake_root(&fake_root);
    let config = e.dir.path().join("boot.json");
    std::fs::write(
        &config,
        format!(
            r#"{{"store": "{}", "insecure_policy": true, "insecure_registries": ["{}"], "allow_host_args": true{extra}}}"#,
            store.display(),
            e.registry
        ),
    )
    .unwrap();

    let watch = Watch::new(&store, NEW_ENTRIES).unwrap();
    let attacker = Attacker {
        store: store.clone(),
        host,
        fake_root,
        own: BTreeSet::new(),
        seen: Vec::new(),
        attacks: Vec::new(),
    };
    let attacker = std::thread::spawn(move || attacker.run(watch));
    let outcomes: Vec<Output> = (0..runs).map(|_| start(e, &config)).collect();
    std::fs::write(store.join(STOP), b"").unwrap();
    let attacker = attacker.join().unwrap();
    std::fs::remove_file(store.join(STOP)).unwrap();
    let attacks = &attacker.attacks;

    let leaks = grep(e.dir.path(), &[WRITE_MARKER, IMAGE_MARKER]);
    assert!(
        leaks.is_empty(),
        "plaintext on host storage: {leaks:?}\nattacks: {attacks:?}"
    );
    for (run, out) in outcomes.iter().enumerate() {
        assert_image_root_or_clean_failure(run, out);
    }
    assert!(
        outcomes.iter().any(|out| out.status.success()),
        "no container ran at all; attacks: {attacks:?}"
    );
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").unwrap();
    let dir = e.dir.path().to_string_lossy().into_owned();
    assert!(!mounts.contains(&dir), "mounts left behind:\n{mounts}");
    let created: Vec<&Event> = attacker
        .seen
        .iter()
        .filter(|ev| {
            let image = [".img", ".partial", ".seal", ".meta", ".lock"]
                .iter()
                .any(|s| ev.name.ends_with(s));
            ev.is_dir() || !image
        })
        .collect();
    assert!(
        created.is_empty(),
        "the enclave created entries other than the image in the store: {created:?}\nattacks: {attacks:?}"
    );
    let mut left: Vec<String> = std::fs::read_dir(&store)
        .unwrap()
        .map(|entry| entry.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    left.sort();
    left
}

#[test]
fn a_host_moving_store_entries_gets_no_plaintext_and_no_root_of_its_choosing() {
    let Some(e) = env() else { return };
    let left = run_under_attack(&e, "", RUNS);
    assert!(left.is_empty(), "left in the store: {left:?}");
}

#[test]
fn a_sealed_store_holds_only_the_image_its_seal_its_metadata_and_its_lock() {
    let Some(e) = env() else { return };
    let seal_key = e.dir.path().join("seal.key");
    encc_ok(args!["key", "gen", "-o", seal_key]);
    // The first start pulls and seals, the others reuse the sealed image.
    let extra = format!(r#", "seal_key_file": "{}""#, seal_key.display());
    let left = run_under_attack(&e, &extra, 3);
    let kinds: Vec<&str> = left
        .iter()
        .map(|name| name.rsplit('.').next().unwrap_or_default())
        .collect();
    assert_eq!(
        kinds,
        ["img", "lock", "meta", "seal"],
        "store holds {left:?}"
    );
    assert!(
        left.iter().all(|name| name.starts_with("sha256-")),
        "store holds {left:?}"
    );
}
