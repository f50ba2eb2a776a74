//! Helpers shared by the integration tests: locating encc's binaries, making sample trees,
//! and comparing trees (content and metadata).
#![allow(dead_code)]

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{symlink, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

pub mod containerd;
pub mod cri;
pub mod enclave;
pub mod gpg;
pub mod inotify;
pub mod kbs;
pub mod process;
pub mod proxy;
pub mod pull;

/// The image fixtures and the loopback docker-registry that tests/run starts
/// (tests/fixtures/setup-peers.sh).
pub struct Peers {
    /// The fixtures directory (OCI layout in `layout/`, keys in `keys/`).
    pub fixtures: PathBuf,
    /// `127.0.0.1:PORT` of the plain-HTTP registry.
    pub registry: String,
}

/// The peers, or None (the test is skipped) when they are not running, which is an error
/// under `ENCC_REQUIRE_PEERS` (tests/run sets it).
pub fn peers() -> Option<Peers> {
    match (
        std::env::var("ENCC_TEST_FIXTURES"),
        std::env::var("ENCC_TEST_REGISTRY"),
    ) {
        (Ok(f), Ok(r)) => Some(Peers {
            fixtures: f.into(),
            registry: r,
        }),
        _ => {
            assert!(
                std::env::var_os("ENCC_REQUIRE_PEERS").is_none(),
                "ENCC_TEST_FIXTURES/ENCC_TEST_REGISTRY are not set (tests/run sets them)"
            );
            eprintln!("skipped: no test registry (run tests/run)");
            None
        }
    }
}

/// The peers when running as root (namespaces, mounts); as [`peers`] otherwise.
pub fn root_peers() -> Option<Peers> {
    if !is_root() {
        assert!(
            std::env::var_os("ENCC_REQUIRE_PEERS").is_none(),
            "this test needs root"
        );
        eprintln!("skipped: needs root");
        return None;
    }
    peers()
}

/// A unique marker that must never appear in image bytes.
pub const MARKER: &str = "ZQX-plaintext-marker-91c2";

/// Path of a workspace binary, built by `cargo build --workspace --bins` (tests/run does
/// that first); `ENCC_BIN_DIR` overrides the directory.
pub fn bin(name: &str) -> PathBuf {
    if let Some(dir) = std::env::var_os("ENCC_BIN_DIR") {
        return Path::new(&dir).join(name);
    }
    // target/<profile>/deps/<test> → target/<profile>/<name>
    let exe = std::env::current_exe().expect("test executable path");
    let dir = exe.parent().and_then(Path::parent).expect("target dir");
    let path = dir.join(name);
    assert!(
        path.exists(),
        "{} is missing: run `cargo build --workspace --bins` first (tests/run does)",
        path.display()
    );
    path
}

/// Runs `encc` with arguments and returns its output.
pub fn encc(args: &[&OsStr]) -> Output {
    Command::new(bin("encc"))
        .args(args)
        .output()
        .expect("run encc")
}

/// Runs `encc` and asserts success; returns stdout.
pub fn encc_ok(args: &[&OsStr]) -> String {
    let out = encc(args);
    assert!(
        out.status.success(),
        "encc {:?} failed: {}\n{}",
        args,
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8 stdout")
}

/// Shorthand to build an argument list.
#[macro_export]
macro_rules! args {
    ($($a:expr),* $(,)?) => { &[$(::std::ffi::OsStr::new(&$a)),*] };
}

/// `encc occlum render --boot-config BOOT -o OCCLUM_JSON --init INIT`, which must succeed.
pub fn occlum_render(boot: &Path, occlum_json: &Path, init: &Path) {
    encc_ok(args![
        "occlum",
        "render",
        "--boot-config",
        boot,
        "-o",
        occlum_json,
        "--init",
        init
    ]);
}

pub fn is_root() -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    unsafe { libc::geteuid() == 0 }
}

/// Pseudo-random bytes, deterministic.
pub fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut x = seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1;
    (0..len)
        .map(|_| {
            x ^= x << 13;
            x ^= x >> 7;
            x ^= x << 17;
            x as u8
        })
        .collect()
}

fn set_mtime(path: &Path, sec: i64, nsec: u32) {
    let t = filetime_from(sec, nsec);
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    let times = [t, t];
    // SAFETY: c is a valid NUL-terminated path and times points to two timespecs.
    let rc = unsafe {
        libc::utimensat(
            libc::AT_FDCWD,
            c.as_ptr(),
            times.as_ptr(),
            libc::AT_SYMLINK_NOFOLLOW,
        )
    };
    assert_eq!(rc, 0, "utimensat {}", path.display());
}

fn filetime_from(sec: i64, nsec: u32) -> libc::timespec {
    libc::timespec {
        tv_sec: sec,
        tv_nsec: i64::from(nsec),
    }
}

fn mknod(path: &Path, mode: u32, dev: u64) {
    let c = std::ffi::CString::new(path.as_os_str().as_bytes()).expect("path");
    // SAFETY: c is a valid NUL-terminated path.
    let rc = unsafe { libc::mknod(c.as_ptr(), mode, dev) };
    assert_eq!(
        rc,
        0,
        "mknod {}: {}",
        path.display(),
        std::io::Error::last_os_error()
    );
}

/// A tree with every entry type, odd names, deep paths, empty and large files, hardlinks,
/// xattrs, setuid bits, several owners and nanosecond mtimes. Device nodes and owners need
/// root; without it they are left out.
pub fn make_sample_tree(root: &Path) {
    let w = |rel: &str, data: &[u8]| {
        let p = root.join(rel);
        fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
        fs::write(&p, data).expect("write");
    };
    fs::create_dir_all(root).expect("root");
    w("etc/hostname", b"encc-sample\n");
    w(
        "etc/passwd",
        b"root:x:0:0:root:/root:/bin/sh\nuser:x:1000:1000::/home/user:/bin/sh\n",
    );
    w(
        &format!("secret/{MARKER}.txt"),
        format!("content {MARKER}\n").as_bytes(),
    );
    w("empty", b"");
    w("bin/large.bin", &noise(3 * 1024 * 1024 + 123, 7));
    let mut sparse = noise(5000, 8);
    sparse.extend(vec![0u8; 200_000]);
    sparse.extend(noise(10, 9));
    w("var/sparse", &sparse);
    w("sp ace/ünïcødé ✓/file name", b"utf-8\n");
    w(
        &format!("deep/{}/{}", "d/".repeat(40), "n".repeat(255)),
        b"deep\n",
    );
    fs::hard_link(root.join("bin/large.bin"), root.join("bin/large-link")).expect("hardlink");
    fs::hard_link(root.join("etc/hostname"), root.join("hostname-link")).expect("hardlink");
    symlink("../etc/hostname", root.join("bin/rel-link")).expect("symlink");
    symlink(format!("/abs/{MARKER}"), root.join("abs-link")).expect("symlink");
    symlink("dangling/target", root.join("dangling")).expect("symlink");
    let setuid = root.join("bin/su");
    fs::write(&setuid, b"#!/bin/sh\n").expect("write");
    fs::set_permissions(&setuid, fs::Permissions::from_mode(0o4755)).expect("chmod");
    let fifo = root.join("fifo");
    mknod(&fifo, libc::S_IFIFO | 0o640, 0);
    xattr::set(root.join("etc/hostname"), "user.marker", MARKER.as_bytes()).expect("xattr");
    xattr::set(root.join("bin"), "user.dir", b"dir-attr").expect("xattr");
    fs::create_dir_all(root.join("emptydir")).expect("mkdir");
    fs::set_permissions(root.join("emptydir"), fs::Permissions::from_mode(0o1777)).expect("chmod");
    if is_root() {
        fs::create_dir_all(root.join("dev")).expect("mkdir");
        mknod(
            &root.join("dev/null"),
            libc::S_IFCHR | 0o666,
            libc::makedev(1, 3),
        );
        mknod(
            &root.join("dev/loop9"),
            libc::S_IFBLK | 0o660,
            libc::makedev(7, 9),
        );
        std::os::unix::fs::lchown(root.join("etc/passwd"), Some(1000), Some(1001)).expect("chown");
        std::os::unix::fs::lchown(root.join("abs-link"), Some(7), Some(8)).expect("chown");
        xattr::set(root.join("bin/su"), "trusted.t", b"trusted-value").expect("xattr");
    }
    // mtimes last, directories bottom-up.
    let mut paths: Vec<PathBuf> = walk(root);
    paths.sort_by_key(|p| std::cmp::Reverse(p.components().count()));
    for (i, p) in paths.iter().enumerate() {
        set_mtime(
            p,
            1_600_000_000 + i as i64 * 1000,
            (i as u32 * 7919) % 1_000_000_000,
        );
    }
    set_mtime(root, 1_500_000_000, 5);
}

fn walk(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    for e in fs::read_dir(dir).expect("read_dir") {
        let p = e.expect("entry").path();
        if fs::symlink_metadata(&p).expect("stat").is_dir() {
            out.extend(walk(&p));
        }
        out.push(p);
    }
    out
}

/// Everything a user can observe about one entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFacts {
    pub kind: &'static str,
    pub mode: u32,
    pub uid: u32,
    pub gid: u32,
    pub size: u64,
    pub mtime: (i64, i64),
    pub rdev: u64,
    pub nlink: u64,
    pub target: Option<Vec<u8>>,
    pub content: Option<Vec<u8>>,
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
    /// For multiply-linked files: the first path (in walk order) sharing the inode.
    pub link_group: Option<String>,
}

/// Snapshot of a tree: relative path → facts. `with_mtime_of_root` is false when the root
/// directory's own metadata is not part of the comparison (e.g. a mount point).
pub fn snapshot(root: &Path) -> BTreeMap<String, EntryFacts> {
    let mut out = BTreeMap::new();
    let mut inodes: BTreeMap<(u64, u64), String> = BTreeMap::new();
    let mut all = walk(root);
    all.sort();
    all.insert(0, root.to_owned());
    for p in all {
        let md = fs::symlink_metadata(&p).expect("stat");
        let rel = p
            .strip_prefix(root)
            .expect("prefix")
            .to_string_lossy()
            .into_owned();
        let ft = md.file_type();
        let kind = if ft.is_dir() {
            "dir"
        } else if ft.is_file() {
            "file"
        } else if ft.is_symlink() {
            "symlink"
        } else if ft.is_char_device() {
            "char"
        } else if ft.is_block_device() {
            "block"
        } else if ft.is_fifo() {
            "fifo"
        } else {
            "other"
        };
        let link_group = (!ft.is_dir() && md.nlink() > 1).then(|| {
            inodes
                .entry((md.dev(), md.ino()))
                .or_insert_with(|| rel.clone())
                .clone()
        });
        let mut xattrs = BTreeMap::new();
        for name in xattr::list(&p).expect("listxattr") {
            // Only the namespaces encc promises to keep (security.* depends on the host LSM).
            let n = name.as_bytes();
            if n.starts_with(b"user.") || n.starts_with(b"trusted.") {
                let v = xattr::get(&p, &name).expect("getxattr").unwrap_or_default();
                xattrs.insert(n.to_vec(), v);
            }
        }
        out.insert(
            rel,
            EntryFacts {
                kind,
                mode: md.mode(),
                uid: md.uid(),
                gid: md.gid(),
                size: if ft.is_dir() { 0 } else { md.size() },
                mtime: (md.mtime(), md.mtime_nsec()),
                rdev: md.rdev(),
                nlink: if ft.is_dir() { 0 } else { md.nlink() },
                target: ft.is_symlink().then(|| {
                    fs::read_link(&p)
                        .expect("readlink")
                        .into_os_string()
                        .into_vec()
                }),
                content: ft.is_file().then(|| fs::read(&p).expect("read")),
                xattrs,
                link_group,
            },
        );
    }
    out
}

use std::os::unix::ffi::OsStringExt;

/// Asserts two snapshots are equal, reporting the first differing path.
pub fn assert_same_tree(a: &BTreeMap<String, EntryFacts>, b: &BTreeMap<String, EntryFacts>) {
    let ka: Vec<_> = a.keys().collect();
    let kb: Vec<_> = b.keys().collect();
    assert_eq!(ka, kb, "different sets of paths");
    for (path, fa) in a {
        let fb = &b[path];
        if fa != fb {
            let mut fa2 = fa.clone();
            let mut fb2 = fb.clone();
            fa2.content = fa.content.as_ref().map(|c| c.len().to_le_bytes().to_vec());
            fb2.content = fb.content.as_ref().map(|c| c.len().to_le_bytes().to_vec());
            panic!(
                "{path:?} differs:\n  left:  {fa2:?}\n  right: {fb2:?}\n  (contents equal: {})",
                fa.content == fb.content
            );
        }
    }
}

/// Whether `needle` occurs in the file's bytes.
pub fn file_contains(path: &Path, needle: &[u8]) -> bool {
    let bytes = fs::read(path).expect("read image");
    bytes.windows(needle.len()).any(|w| w == needle)
}

/// Whether `path` is a mount point now.
pub fn is_mounted(path: &Path) -> bool {
    let mounts = fs::read_to_string("/proc/self/mountinfo").expect("mountinfo");
    let want = path.to_string_lossy();
    mounts.lines().any(|l| l.split(' ').nth(4) == Some(&want))
}
