//! Detached mounts, made with the new mount API (`fsopen`, `fsconfig`, `fsmount`,
//! `move_mount`, `open_tree`). A detached mount belongs to no mount namespace until it is
//! attached, so no path anywhere names it: the host cannot rename, replace or symlink its
//! way into it, and every step that uses it goes through its file descriptor.

use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};

use rustix::mount::{
    fsconfig_create, fsconfig_set_fd, fsconfig_set_flag, fsconfig_set_string, fsmount, fsopen,
    move_mount, open_tree, FsMountFlags, FsOpenFlags, MoveMountFlags, OpenTreeFlags,
};
use rustix::process::fchdir;

pub(crate) use rustix::mount::MountAttrFlags;

/// One `fsconfig` setting of a new file system.
#[derive(Debug, Clone, Copy)]
pub(crate) enum Opt<'a> {
    /// A flag (`ro`, `allow_other`).
    Flag(&'a str),
    /// A string value (`size=…`, `mode=…`).
    Str(&'a str, &'a str),
    /// A file descriptor (overlayfs layers: `lowerdir+`, `upperdir`, `workdir`).
    Fd(&'a str, BorrowedFd<'a>),
}

/// Creates a file system of type `fstype` with `options` (its source shows as `fstype`
/// unless they name one) and returns it as a detached mount (its root) with the mount
/// attributes `attrs`. The kernel's own explanation of a refusal, if it gave one, is logged.
pub(crate) fn new_mount(
    fstype: &str,
    options: &[Opt<'_>],
    attrs: MountAttrFlags,
) -> io::Result<OwnedFd> {
    let fs = fsopen(fstype, FsOpenFlags::FSOPEN_CLOEXEC)?;
    let named = options
        .iter()
        .any(|opt| matches!(opt, Opt::Str("source", _)));
    let source = (!named).then_some(Opt::Str("source", fstype));
    let configured = source
        .iter()
        .chain(options)
        .try_for_each(|opt| match *opt {
            Opt::Flag(key) => fsconfig_set_flag(&fs, key),
            Opt::Str(key, value) => fsconfig_set_string(&fs, key, value),
            Opt::Fd(key, fd) => fsconfig_set_fd(&fs, key, fd),
        })
        .and_then(|()| fsconfig_create(&fs))
        .and_then(|()| fsmount(&fs, FsMountFlags::FSMOUNT_CLOEXEC, attrs));
    if configured.is_err() {
        log_messages(fstype, &fs);
    }
    Ok(configured?)
}

/// Logs the messages the kernel left in a file system context (`e overlayfs: …`).
fn log_messages(fstype: &str, fs: &OwnedFd) {
    let mut buf = [0u8; 512];
    // Each read returns one message; the context holds a handful at most.
    for _ in 0..8 {
        match rustix::io::read(fs, &mut buf) {
            Ok(n) if n > 0 => {
                log::warn!(
                    "{fstype}: {}",
                    String::from_utf8_lossy(&buf[..n]).trim_end()
                );
            }
            _ => break,
        }
    }
}

/// Attaches the detached mount `mount` on the directory `target` (a handle on it, which
/// may itself be inside a detached tree).
pub(crate) fn attach(mount: impl AsFd, target: impl AsFd) -> io::Result<()> {
    Ok(move_mount(
        mount,
        c"",
        target,
        c"",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH | MoveMountFlags::MOVE_MOUNT_T_EMPTY_PATH,
    )?)
}

/// A detached copy of the mount tree `tree` (the mount and everything mounted in it): the
/// same file systems, new mounts.
pub(crate) fn clone_tree(tree: impl AsFd) -> io::Result<OwnedFd> {
    Ok(open_tree(
        tree,
        c"",
        OpenTreeFlags::OPEN_TREE_CLONE
            | OpenTreeFlags::OPEN_TREE_CLOEXEC
            | OpenTreeFlags::AT_RECURSIVE
            | OpenTreeFlags::AT_EMPTY_PATH,
    )?)
}

/// Attaches the detached tree `tree` on top of `/` (a mountpoint no one can rename or
/// remove) in the caller's mount namespace, which must be a private one of its own, and
/// makes the tree's root the working directory, ready for `pivot_root(".", ".")`. Only
/// system calls on the fd and static C strings: safe between fork and exec.
pub(crate) fn enter_over_root(tree: &OwnedFd) -> io::Result<()> {
    move_mount(
        tree,
        c"",
        rustix::fs::CWD,
        c"/",
        MoveMountFlags::MOVE_MOUNT_F_EMPTY_PATH,
    )?;
    Ok(fchdir(tree)?)
}
