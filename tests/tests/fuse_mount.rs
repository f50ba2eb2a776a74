//! Mounts protected rootfs images with encc's FUSE server and checks what users see through
//! the mount: metadata, contents, links, listings, xattrs, read-only refusals, unmounting,
//! and `EIO` (never other bytes) for a tampered block.
//!
//! Needs root and `/dev/fuse`; as another user the tests print a line and pass.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Write};
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::os::unix::fs::{FileExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::{ensure, Context, Result};
use encc_rootfs::fuse::{self, Mount};
use encc_rootfs::{
    BuildOptions, DataKey, EntryMeta, RootfsBuilder, RootfsPath, RootfsReader, Special, Timestamp,
};

const LONG_NAME_LEN: usize = 255;
const UTF8_NAME: &str = "ünïcödé-文件.txt";
/// Byte offset of slot 0 in an image: the superblock region comes first.
const SLOT0: u64 = 4096;

/// Whether the test can run; prints why not.
fn can_mount(test: &str) -> bool {
    // SAFETY: geteuid has no preconditions and cannot fail.
    let euid = unsafe { libc::geteuid() };
    if euid != 0 {
        println!("{test}: skipped: needs root (FUSE mount with allow_other), euid is {euid}");
        return false;
    }
    true
}

fn key() -> DataKey {
    DataKey::from_bytes([0x5a; 32])
}

fn path(p: &str) -> Result<RootfsPath> {
    Ok(RootfsPath::parse(p.as_bytes())?)
}

fn meta(mode: u32, uid: u32, sec: i64) -> EntryMeta {
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
fn pseudo_random(len: usize, mut seed: u64) -> Vec<u8> {
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
struct Sample {
    files: BTreeMap<String, Vec<u8>>,
    symlinks: BTreeMap<String, String>,
    dirs: BTreeMap<String, BTreeSet<OsString>>,
    xattrs: BTreeMap<String, BTreeMap<String, Vec<u8>>>,
}

fn build_sample(image: &Path) -> Result<Sample> {
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
fn mountinfo_entry(mountpoint: &Path) -> Result<Option<(String, String, String)>> {
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
struct Mounted {
    mount: Option<Mount>,
    mountpoint: PathBuf,
    _dir: tempfile::TempDir,
}

impl Mounted {
    fn new(image: &Path) -> Result<Self> {
        let reader = RootfsReader::open(image, &key())?;
        let dir = tempfile::tempdir()?;
        let mount = fuse::mount(Arc::new(reader), dir.path())?;
        Ok(Self {
            mountpoint: mount.mountpoint().to_owned(),
            mount: Some(mount),
            _dir: dir,
        })
    }

    fn path(&self) -> &Path {
        &self.mountpoint
    }

    fn handle(&self) -> Result<&Mount> {
        self.mount.as_ref().context("already unmounted")
    }

    /// Takes the handle, for tests of unmounting itself.
    fn take(&mut self) -> Result<Mount> {
        self.mount.take().context("already unmounted")
    }

    /// Unmounts through the API and checks the mount is gone.
    fn unmount(mut self) -> Result<()> {
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

fn errno(result: io::Result<impl Sized>) -> Option<i32> {
    result.err().and_then(|e| e.raw_os_error())
}

/// Every path in the mounted tree, relative to the mountpoint, as image paths (`/a/b`).
fn walk(root: &Path, rel: &str, out: &mut Vec<String>) -> Result<()> {
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

/// Compares `stat` through the mount with the image's inode.
fn check_metadata(reader: &RootfsReader, mnt: &Path, p: &str) -> Result<()> {
    let inode = reader.resolve(&path(p)?)?;
    let m = fs::symlink_metadata(mnt.join(p.trim_start_matches('/')))?;
    ensure!(
        m.mode() == inode.mode,
        "{p}: mode {:o} vs {:o}",
        m.mode(),
        inode.mode
    );
    ensure!(m.uid() == inode.uid && m.gid() == inode.gid, "{p}: owner");
    ensure!(
        m.size() == inode.size,
        "{p}: size {} vs {}",
        m.size(),
        inode.size
    );
    ensure!(m.nlink() == u64::from(inode.nlink), "{p}: nlink");
    ensure!(
        m.ino() == inode.ino,
        "{p}: ino {} vs {}",
        m.ino(),
        inode.ino
    );
    ensure!(
        (m.mtime(), m.mtime_nsec()) == (inode.mtime.sec, i64::from(inode.mtime.nsec)),
        "{p}: mtime {}.{} vs {:?}",
        m.mtime(),
        m.mtime_nsec(),
        inode.mtime
    );
    ensure!(
        m.rdev() == inode.rdev,
        "{p}: rdev {:#x} vs {:#x}",
        m.rdev(),
        inode.rdev
    );
    ensure!(m.blksize() == 4096, "{p}: blksize");
    ensure!(m.blocks() == inode.blocks * 8, "{p}: blocks {}", m.blocks());
    Ok(())
}

fn check_xattrs(file: &Path, want: &BTreeMap<String, Vec<u8>>) -> Result<()> {
    let listed: BTreeSet<OsString> = xattr::list(file)?.collect();
    let wanted: BTreeSet<OsString> = want.keys().map(OsString::from).collect();
    ensure!(listed == wanted, "{}: xattrs {listed:?}", file.display());
    for (name, value) in want {
        let got = xattr::get(file, name)?;
        ensure!(
            got.as_deref() == Some(value.as_slice()),
            "{}: {name}",
            file.display()
        );
    }
    ensure!(xattr::get(file, "user.missing")?.is_none(), "missing xattr");
    Ok(())
}

/// `lgetxattr` into a buffer one byte too small must fail with ERANGE.
fn check_xattr_erange(file: &Path, name: &str, len: usize) -> Result<()> {
    let cpath = CString::new(file.as_os_str().as_bytes())?;
    let cname = CString::new(name)?;
    let mut buf = vec![0u8; len - 1];
    // SAFETY: both strings are NUL-terminated and `buf` is writable for its length.
    let rc = unsafe {
        libc::lgetxattr(
            cpath.as_ptr(),
            cname.as_ptr(),
            buf.as_mut_ptr().cast(),
            buf.len(),
        )
    };
    let err = io::Error::last_os_error();
    ensure!(
        rc == -1 && err.raw_os_error() == Some(libc::ERANGE),
        "ERANGE: {rc} {err}"
    );
    Ok(())
}

fn check_read_only(mnt: &Path) -> Result<()> {
    let erofs = Some(libc::EROFS);
    let hello = mnt.join("hello.txt");
    ensure!(errno(File::create(mnt.join("new"))) == erofs, "create");
    ensure!(
        errno(OpenOptions::new().write(true).open(&hello)) == erofs,
        "open for write"
    );
    ensure!(
        errno(OpenOptions::new().append(true).open(&hello)) == erofs,
        "append"
    );
    ensure!(errno(fs::create_dir(mnt.join("newdir"))) == erofs, "mkdir");
    ensure!(errno(fs::remove_file(&hello)) == erofs, "unlink");
    ensure!(
        errno(fs::rename(&hello, mnt.join("moved"))) == erofs,
        "rename"
    );
    ensure!(
        errno(fs::hard_link(&hello, mnt.join("dir/l2"))) == erofs,
        "link"
    );
    ensure!(
        errno(std::os::unix::fs::symlink("x", mnt.join("s2"))) == erofs,
        "symlink"
    );
    let perms = fs::Permissions::from_mode(0o777);
    ensure!(errno(fs::set_permissions(&hello, perms)) == erofs, "chmod");
    ensure!(
        errno(xattr::set(&hello, "user.new", b"v")) == erofs,
        "setxattr"
    );
    ensure!(
        errno(xattr::remove(&hello, "user.comment")) == erofs,
        "removexattr"
    );
    Ok(())
}

#[test]
fn mounted_image_shows_the_tree() -> Result<()> {
    if !can_mount("mounted_image_shows_the_tree") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    let sample = build_sample(&image)?;
    let reader = RootfsReader::open(&image, &key())?;
    let mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    ensure!(
        mnt == mounted._dir.path().canonicalize()?,
        "mountpoint {}",
        mnt.display()
    );
    let (fstype, source, opts) =
        mountinfo_entry(&mnt)?.context("the mount is not in /proc/self/mountinfo")?;
    ensure!(
        fstype == "fuse.encc-rootfs" && source == "encc",
        "{fstype} {source}"
    );
    ensure!(opts.split(',').any(|o| o == "ro"), "mount options {opts}");
    ensure!(!mounted.handle()?.is_finished(), "session ended early");

    let mut paths = Vec::new();
    walk(&mnt, "", &mut paths)?;
    let mut expected: BTreeSet<String> = sample.files.keys().cloned().collect();
    expected.extend(sample.symlinks.keys().cloned());
    expected.extend(sample.dirs.keys().cloned());
    expected.extend(["/null".to_string(), "/fifo".to_string()]);
    let walked: BTreeSet<String> = paths.iter().cloned().collect();
    ensure!(walked == expected && paths.len() == 17, "walked {paths:?}");
    for p in &paths {
        check_metadata(&reader, &mnt, p)?;
    }
    let inside = |p: &str| mnt.join(p.trim_start_matches('/'));
    for (p, data) in &sample.files {
        let got = fs::read(inside(p)).with_context(|| format!("reading {p}"))?;
        ensure!(&got == data, "{p}: content differs ({} bytes)", got.len());
    }
    let mut middle = vec![0u8; 10_000];
    File::open(inside("/big.bin"))?.read_exact_at(&mut middle, 1_000_001)?;
    ensure!(
        middle == sample.files["/big.bin"][1_000_001..1_010_001],
        "pread"
    );
    for (p, target) in &sample.symlinks {
        ensure!(
            fs::read_link(inside(p))? == Path::new(target),
            "{p}: link target"
        );
    }
    for (p, names) in &sample.dirs {
        let got: BTreeSet<OsString> = fs::read_dir(inside(p))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<io::Result<_>>()?;
        ensure!(&got == names, "{p}: entries {got:?}");
    }
    let hello = fs::symlink_metadata(inside("/hello.txt"))?;
    let link = fs::symlink_metadata(inside("/dir/hardlink"))?;
    ensure!(hello.ino() == link.ino() && hello.nlink() == 2, "hardlink");
    let null = fs::symlink_metadata(inside("/null"))?;
    ensure!(
        null.file_type().is_char_device() && null.rdev() == libc::makedev(1, 3),
        "dev"
    );
    ensure!(
        fs::symlink_metadata(inside("/fifo"))?.file_type().is_fifo(),
        "fifo"
    );
    ensure!(
        fs::symlink_metadata(inside("/setuid"))?.mode() & 0o7777 == 0o4755,
        "setuid"
    );
    ensure!(
        errno(fs::metadata(inside("/nope"))) == Some(libc::ENOENT),
        "ENOENT"
    );
    ensure!(
        errno(fs::metadata(inside("/hello.txt/x"))) == Some(libc::ENOTDIR),
        "ENOTDIR"
    );
    ensure!(
        errno(fs::read_link(inside("/hello.txt"))) == Some(libc::EINVAL),
        "readlink"
    );

    for (p, want) in &sample.xattrs {
        check_xattrs(&inside(p), want)?;
    }
    ensure!(xattr::list(inside("/empty"))?.next().is_none(), "no xattrs");
    check_xattr_erange(&inside("/hello.txt"), "user.comment", 2)?;
    check_read_only(&mnt)?;
    check_statfs(&mnt, reader.info().inodes)?;

    mounted.unmount()?;
    Ok(())
}

fn check_statfs(mnt: &Path, inodes: u64) -> Result<()> {
    let cpath = CString::new(mnt.as_os_str().as_bytes())?;
    // SAFETY: statvfs is plain data; all-zero is a valid value.
    let mut st: libc::statvfs = unsafe { std::mem::zeroed() };
    // SAFETY: `cpath` is NUL-terminated and `st` is a valid out-pointer.
    let rc = unsafe { libc::statvfs(cpath.as_ptr(), &mut st) };
    ensure!(rc == 0, "statvfs: {}", io::Error::last_os_error());
    ensure!(st.f_bsize == 4096 && st.f_namemax == 255, "statvfs sizes");
    ensure!(
        st.f_files == inodes && st.f_bfree == 0 && st.f_blocks > 0,
        "statvfs counts"
    );
    ensure!(st.f_flag & libc::ST_RDONLY != 0, "statvfs: not read-only");
    Ok(())
}

#[test]
fn external_umount_ends_the_session() -> Result<()> {
    if !can_mount("external_umount_ends_the_session") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let status = std::process::Command::new("umount").arg(&mnt).status()?;
    ensure!(status.success(), "umount {}: {status}", mnt.display());
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    while !mounted.handle()?.is_finished() {
        ensure!(std::time::Instant::now() < deadline, "session did not end");
        std::thread::sleep(std::time::Duration::from_millis(10));
    }
    let started = std::time::Instant::now();
    mounted.take()?.unmount()?;
    ensure!(
        started.elapsed().as_secs() < 2,
        "unmount after umount took long"
    );
    ensure!(mountinfo_entry(&mnt)?.is_none(), "still mounted");
    Ok(())
}

#[test]
fn tampered_block_reads_as_eio() -> Result<()> {
    if !can_mount("tampered_block_reads_as_eio") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    let victim = pseudo_random(3 * 4096, 99);
    let mut b = RootfsBuilder::create(&image, &key(), BuildOptions::default())?;
    // The first file written takes slots 0, 1 and 2.
    b.add_file(
        &path("/victim.bin")?,
        meta(0o644, 0, 0),
        &mut victim.as_slice(),
    )?;
    b.add_file(
        &path("/ok.txt")?,
        meta(0o644, 0, 0),
        &mut &b"still fine\n"[..],
    )?;
    b.finish()?;
    let mut f = OpenOptions::new().read(true).write(true).open(&image)?;
    let at = SLOT0 + 100;
    let mut byte = [0u8; 1];
    f.read_exact_at(&mut byte, at)?;
    f.write_all_at(&[byte[0] ^ 0x40], at)?;
    f.flush()?;
    drop(f);

    let mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let err = fs::read(mnt.join("victim.bin")).err();
    let code = err.as_ref().and_then(io::Error::raw_os_error);
    ensure!(
        code == Some(libc::EIO),
        "reading the tampered file gave {err:?}"
    );
    let mut first = File::open(mnt.join("victim.bin"))?;
    let mut buf = [0u8; 16];
    ensure!(
        errno(first.read(&mut buf)) == Some(libc::EIO),
        "read(2) of block 0"
    );
    let mut tail = vec![0u8; 4096];
    first.read_exact_at(&mut tail, 2 * 4096)?;
    ensure!(
        tail == victim[2 * 4096..],
        "an intact block of the same file"
    );
    ensure!(
        fs::read(mnt.join("ok.txt"))? == b"still fine\n",
        "another file"
    );
    ensure!(
        fs::symlink_metadata(mnt.join("victim.bin"))?.len() == 3 * 4096,
        "stat"
    );
    drop(first);
    mounted.unmount()
}

#[test]
fn dropping_the_mount_unmounts() -> Result<()> {
    if !can_mount("dropping_the_mount_unmounts") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    ensure!(
        fs::read(mnt.join("hello.txt"))? == b"hello, world\n",
        "read"
    );
    // Dropping the handle, not calling unmount(), must unmount too.
    drop(mounted.take()?);
    ensure!(
        mountinfo_entry(&mnt)?.is_none(),
        "drop left the mount behind"
    );
    Ok(())
}

#[test]
fn unmount_of_a_busy_mount_fails_and_keeps_serving() -> Result<()> {
    if !can_mount("unmount_of_a_busy_mount_fails_and_keeps_serving") {
        return Ok(());
    }
    let work = tempfile::tempdir()?;
    let image = work.path().join("rootfs.img");
    build_sample(&image)?;
    let mut mounted = Mounted::new(&image)?;
    let mnt = mounted.path().to_owned();
    let open = File::open(mnt.join("hello.txt"))?;
    match mounted.take()?.unmount() {
        Err(fuse::FuseError::Unmount { source, .. }) => {
            ensure!(
                source.raw_os_error() == Some(libc::EBUSY),
                "unmount: {source}"
            );
        }
        other => anyhow::bail!("unmount of a busy mount gave {other:?}"),
    }
    let mut buf = [0u8; 5];
    open.read_exact_at(&mut buf, 0)?;
    ensure!(&buf == b"hello", "served after the failed unmount");
    ensure!(
        fs::read(mnt.join("dir/sub/deep/file.txt"))? == b"deep",
        "new lookups"
    );
    drop(open);
    let status = std::process::Command::new("umount").arg(&mnt).status()?;
    ensure!(status.success(), "umount: {status}");
    ensure!(mountinfo_entry(&mnt)?.is_none(), "still mounted");
    Ok(())
}
