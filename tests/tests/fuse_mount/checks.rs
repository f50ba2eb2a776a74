//! Checks of what users see through a mounted sample image.

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::{CString, OsString};
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{MetadataExt, PermissionsExt};
use std::os::unix::process::CommandExt;
use std::path::Path;

use anyhow::{ensure, Result};
use encc_rootfs::RootfsReader;

use super::sample::{errno, path};

/// Compares `stat` through the mount with the image's inode.
pub fn check_metadata(reader: &RootfsReader, mnt: &Path, p: &str) -> Result<()> {
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

pub fn check_xattrs(file: &Path, want: &BTreeMap<String, Vec<u8>>) -> Result<()> {
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
pub fn check_xattr_erange(file: &Path, name: &str, len: usize) -> Result<()> {
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

pub fn check_read_only(mnt: &Path) -> Result<()> {
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

/// allow_other lets other users in; default_permissions holds them to the modes.
pub fn check_other_user(mnt: &Path) -> Result<()> {
    let cat = |file: &str| {
        std::process::Command::new("cat")
            .arg(mnt.join(file))
            .uid(65534)
            .gid(65534)
            .output()
    };
    let out = cat("hello.txt")?;
    ensure!(
        out.status.success() && out.stdout == b"hello, world\n",
        "nobody: {out:?}"
    );
    let out = cat("big.bin")?;
    let stderr = String::from_utf8_lossy(&out.stderr);
    ensure!(
        !out.status.success() && stderr.contains("Permission denied"),
        "0600: {out:?}"
    );
    Ok(())
}

pub fn check_statfs(mnt: &Path, inodes: u64) -> Result<()> {
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
