//! The sample image and the plumbing of the FUSE mount tests: building images, mounting
//! them with a guard that never leaves a mount behind, reading `/proc/self/mountinfo`.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsString;
use std::fs;
use std::io;
use std::os::unix::ffi::OsStringExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use anyhow::{ensure, Context, Result};
use encc_rootfs::fuse::{self, Mount};
use encc_rootfs::{
    BuildOptions, DataKey, EntryMeta, RootfsBuilder, RootfsPath, RootfsReader, Special, Timestamp,
};

const LONG_NAME_LEN: usize = 255;
const UTF8_NAME: &str = "ünïcödé-文件.txt";

/// Tests here run one at a time: a process forked by one test (`umount`, `unshare`) holds
/// every file another test has open until it execs, and umount(2) then fails with EBUSY.
static SERIAL: Mutex<()> = Mutex::new(());

/// Starts a test: `None` (after printing why) when it cannot run, else a guard that keeps
/// the other tests of this file waiting.
pub fn start(test: &str) -> Option<MutexGuard<'static, ()>> {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("{test}: skipped: needs root (FUSE mount with allow_other), euid is {euid}");
        return None;
    }
    Some(SERIAL.lock().unwrap_or_else(PoisonError::into_inner))
}

pub fn key() -> DataKey {
    DataKey::from_bytes(&[0x5a; 32])
}

pub fn path(p: &str) -> Result<RootfsPath> {
    Ok(RootfsPath::parse(p.as_bytes())?)
}

pub fn meta(mode: u32, uid: u32, sec: i64) -> EntryMeta {
    EntryMeta {
        mode,
        uid,
        gid: uid + 1,
        mtime: Timestamp {
            sec,
            nsec: 123_456_789,
        },
        xattrs: BTreeMap::new(),
    }
}

fn with_xattrs(mut meta: EntryMeta, xattrs: &[(&str, &[u8])]) -> EntryMeta {
    for (name, value) in xattrs {
        meta.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
    }
    meta
}

/// Deterministic pseudo-random bytes (xorshift64*).
pub fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
    let mut out = Vec::with_capacity(len + 8);
    while out.len() < len {
        seed ^= seed >> 12;
        seed ^= seed << 25;
        seed ^= seed >> 27;
        out.extend_from_slice(&seed.wrapping_mul(0x2545_f491_4f6c_dd1d).to_le_bytes());
    }
    out.truncate(len);
    out
}

/// What the sample image holds, for checking through the mount.
pub struct Sample {
    pub files: BTreeMap<String, Vec<u8>>,
    pub symlinks: BTreeMap<String, String>,
    pub dirs: BTreeMap<String, BTreeSet<OsString>>,
    pub xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

pub fn build_sample(image: &Path) -> Result<Sample> {
    let mut b = RootfsBuilder::create(image, &key(), BuildOptions::default())?;
    let long_name = "L".repeat(LONG_NAME_LEN);
    let big = pseudo_random(1536 * 1024 + 123, 0x1234_5678);
    let mut sparse = vec![0u8; 3 * 4096];
    sparse.extend_from_slice(b"after a hole");
    let big_xattr = pseudo_random(6000, 7);
    let files: Vec<(String, Vec<u8>, EntryMeta)> = vec![
        (
            "/hello.txt".into(),
            b"hello, world\n".to_vec(),
            with_xattrs(
                meta(0o644, 1000, 1_700_000_000),
                &[
                    ("user.comment", b"hi"),
                    ("user.empty", b""),
                    ("user.big", &big_xattr),
                    ("trusted.encc", b"t"),
                ],
            ),
        ),
        ("/big.bin".into(), big, meta(0o600, 0, 1_600_000_000)),
        ("/empty".into(), Vec::new(), meta(0o400, 7, 0)),
        ("/sparse".into(), sparse, meta(0o644, 0, 1)),
        (
            "/setuid".into(),
            b"#!/bin/sh\n".to_vec(),
            meta(0o4755, 0, 2),
        ),
        (
            "/dir/sub/deep/file.txt".into(),
            b"deep".to_vec(),
            meta(0o640, 5, -86_400),
        ),
        (
            format!("/dir/{long_name}"),
            b"long".to_vec(),
            meta(0o644, 0, 3),
        ),
        (
            format!("/dir/{UTF8_NAME}"),
            "ü".repeat(5000).into_bytes(),
            meta(0o644, 0, 4),
        ),
    ];
    b.add_directory(
        &path("/dir")?,
        with_xattrs(meta(0o750, 10, 1_000), &[("user.dir", b"d")]),
    )?;
    let mut sample = Sample {
        files: BTreeMap::new(),
        symlinks: BTreeMap::new(),
        dirs: BTreeMap::new(),
        xattrs: BTreeMap::new(),
    };
    for (p, data, m) in files {
        if !m.xattrs.is_empty() {
            sample.xattrs.insert(p.clone(), xattr_map(&m));
        }
        b.add_file(&path(&p)?, m, &mut data.as_slice())?;
        sample.files.insert(p, data);
    }
    sample.xattrs.insert(
        "/dir".into(),
        [("user.dir".to_string(), b"d".to_vec())].into(),
    );
    b.add_hardlink(&path("/dir/hardlink")?, &path("/hello.txt")?)?;
    sample
        .files
        .insert("/dir/hardlink".into(), b"hello, world\n".to_vec());
    for (p, target) in [("/link", "hello.txt"), ("/dir/abs-link", "/no/such/target")] {
        b.add_symlink(&path(p)?, meta(0o777, 0, 5), target.as_bytes())?;
        sample.symlinks.insert(p.into(), target.into());
    }
    let null = Special::CharDevice(libc::makedev(1, 3));
    b.add_special(&path("/null")?, meta(0o666, 0, 6), null)?;
    b.add_special(&path("/fifo")?, meta(0o620, 3, 7), Special::Fifo)?;
    b.finish()?;

    let names = |list: &[&str]| list.iter().map(OsString::from).collect::<BTreeSet<_>>();
    let top = [
        "hello.txt",
        "big.bin",
        "empty",
        "sparse",
        "setuid",
        "dir",
        "link",
        "null",
        "fifo",
    ];
    sample.dirs.insert("/".into(), names(&top));
    let mut dir = names(&["sub", "hardlink", "abs-link", UTF8_NAME]);
    dir.insert(OsString::from(&long_name));
    sample.dirs.insert("/dir".into(), dir);
    sample.dirs.insert("/dir/sub".into(), names(&["deep"]));
    sample
        .dirs
        .insert("/dir/sub/deep".into(), names(&["file.txt"]));
    Ok(sample)
}

fn xattr_map(meta: &EntryMeta) -> BTreeMap<String, Vec<u8>> {
    meta.xattrs
        .iter()
        .map(|(k, v)| (String::from_utf8_lossy(k).into_owned(), v.clone()))
        .collect()
}

/// The mountpoint as it appears in `/proc/self/mountinfo`, with the type and source, if
/// mounted.
pub fn mountinfo_entry(mountpoint: &Path) -> Result<Option<(String, String, String)>> {
    let info = fs::read_to_string("/proc/self/mountinfo")?;
    for line in info.lines() {
        let fields: Vec<&str> = line.split(' ').collect();
        let Some(sep) = fields.iter().position(|f| *f == "-") else {
            continue;
        };
        if fields.len() < sep + 3 || fields.len() < 6 {
            continue;
        }
        if Path::new(&unescape_mountinfo(fields[4])) == mountpoint {
            let opts = fields[5].to_owned();
            return Ok(Some((fields[sep + 1].into(), fields[sep + 2].into(), opts)));
        }
    }
    Ok(None)
}

/// Undoes mountinfo's octal escapes (`\040` for a space, ...).
fn unescape_mountinfo(field: &str) -> OsString {
    let bytes = field.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let octal = bytes.get(i + 1..i + 4).and_then(|d| {
            std::str::from_utf8(d)
                .ok()
                .and_then(|s| u8::from_str_radix(s, 8).ok())
        });
        match (bytes[i], octal) {
            (b'\\', Some(b)) => {
                out.push(b);
                i += 4;
            }
            (b, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    OsString::from_vec(out)
}

/// An image mounted on a new temporary directory. Dropping it unmounts, and lazily
/// unmounts whatever is still mounted there after that, so no mount outlives a failed
/// assertion; the directory is removed last.
pub struct Mounted {
    mount: Option<Mount>,
    mountpoint: PathBuf,
    pub dir: tempfile::TempDir,
}

impl Mounted {
    pub fn new(image: &Path) -> Result<Self> {
        let reader = RootfsReader::open(image, &key())?;
        let dir = tempfile::tempdir()?;
        let mount = fuse::mount(Arc::new(reader), dir.path())?;
        Ok(Self {
            mountpoint: mount.mountpoint().to_owned(),
            mount: Some(mount),
            dir,
        })
    }

    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    pub fn handle(&self) -> Result<&Mount> {
        self.mount.as_ref().context("already unmounted")
    }

    /// Takes the handle, for tests of unmounting itself.
    pub fn take(&mut self) -> Result<Mount> {
        self.mount.take().context("already unmounted")
    }

    /// Unmounts through the API and checks the mount is gone.
    pub fn unmount(mut self) -> Result<()> {
        self.take()?.unmount()?;
        ensure!(
            mountinfo_entry(&self.mountpoint)?.is_none(),
            "still mounted"
        );
        Ok(())
    }
}

impl Drop for Mounted {
    fn drop(&mut self) {
        drop(self.mount.take());
        if matches!(mountinfo_entry(&self.mountpoint), Ok(Some(_))) {
            eprintln!("{} still mounted: umount -l", self.mountpoint.display());
            let _ = std::process::Command::new("umount")
                .arg("-l")
                .arg(&self.mountpoint)
                .status();
        }
    }
}

pub fn errno(result: io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Every path in the mounted tree, relative to the mountpoint, as image paths (`/a/b`).
pub fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
    let here = if rel.is_empty() { "/" } else { rel };
    out.push(here.to_owned());
    if !fs::symlink_metadata(root.join(rel.trim_start_matches('/')))?.is_dir() {
        return Ok(());
    }
    for entry in fs::read_dir(root.join(rel.trim_start_matches('/')))? {
        let name = entry?.file_name();
        let name = name.to_str().context("test names are UTF-8")?;
        walk(root, &format!("{rel}/{name}"), out)?;
    }
    Ok(())
}

/// Kills and reaps a child process when dropped.
pub struct KillOnDrop(pub std::process::Child);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}
