//! File operations inside the container root that can never leave it: every path is
//! resolved with `openat2(RESOLVE_IN_ROOT)`, so `..` and symlinks (absolute ones included)
//! stay below the root, as they would after a chroot.

use std::io::Read as _;
use std::os::fd::OwnedFd;
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::sys::stat::Mode;

use super::ContainerError;

/// Largest image file read whole (passwd, group).
const MAX_SMALL_FILE: u64 = 1 << 20;

fn io_error(what: &'static str, path: &str, errno: Errno) -> ContainerError {
    ContainerError::Io {
        what,
        path: PathBuf::from("/").join(path.trim_start_matches('/')),
        source: errno.into(),
    }
}

/// `openat2(dir, name, flags | O_CLOEXEC, RESOLVE_IN_ROOT)`.
pub(super) fn at(dir: &OwnedFd, name: &str, flags: OFlag) -> nix::Result<OwnedFd> {
    openat2(
        dir,
        name,
        OpenHow::new()
            .flags(flags | OFlag::O_CLOEXEC)
            .resolve(ResolveFlag::RESOLVE_IN_ROOT),
    )
}

/// Opens `name` inside the root.
pub(super) fn open(root: &OwnedFd, name: &str, flags: OFlag) -> Result<OwnedFd, ContainerError> {
    at(root, name, flags).map_err(|e| io_error("open", name, e))
}

/// Creates or truncates the file `name` inside the root (mode 0644), for writing.
pub(super) fn create_file(root: &OwnedFd, name: &str) -> Result<OwnedFd, ContainerError> {
    openat2(
        root,
        name,
        OpenHow::new()
            .flags(OFlag::O_WRONLY | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC)
            .mode(Mode::from_bits_truncate(0o644))
            .resolve(ResolveFlag::RESOLVE_IN_ROOT),
    )
    .map_err(|e| io_error("write", name, e))
}

/// Creates the directory `name` inside the root when it is missing; returns a handle on it.
pub(super) fn dir(root: &OwnedFd, name: &str) -> Result<OwnedFd, ContainerError> {
    let flags = OFlag::O_PATH | OFlag::O_DIRECTORY;
    match at(root, name, flags) {
        Ok(fd) => Ok(fd),
        Err(Errno::ENOENT) => {
            // Only the last component can be missing here (callers create top-level
            // names or walk component by component), so mkdirat stays inside the root.
            nix::sys::stat::mkdirat(root, name, Mode::from_bits_truncate(0o755))
                .map_err(|e| io_error("create", name, e))?;
            open(root, name, flags)
        }
        Err(e) => Err(io_error("open", name, e)),
    }
}

/// Creates `path` and its missing parents inside the root, one component at a time.
pub(super) fn mkdir_all(root: &OwnedFd, path: &str) -> Result<(), ContainerError> {
    let mut parent = open(root, ".", OFlag::O_PATH | OFlag::O_DIRECTORY)?;
    for name in path.split('/').filter(|n| !n.is_empty() && *n != ".") {
        parent = if name == ".." {
            open(&parent, name, OFlag::O_PATH | OFlag::O_DIRECTORY)?
        } else {
            dir(&parent, name).map_err(|e| match e {
                ContainerError::Io { what, source, .. } => ContainerError::Io {
                    what,
                    path: PathBuf::from(path),
                    source,
                },
                other => other,
            })?
        };
    }
    Ok(())
}

/// Reads a small text file inside the root (at most 1 MiB); missing means empty.
pub(super) fn read_small(root: &OwnedFd, name: &str) -> Result<String, ContainerError> {
    match at(root, name, OFlag::O_RDONLY | OFlag::O_NONBLOCK) {
        Ok(fd) => {
            let mut text = Vec::new();
            std::fs::File::from(fd)
                .take(MAX_SMALL_FILE)
                .read_to_end(&mut text)
                .map_err(|source| ContainerError::Io {
                    what: "read",
                    path: PathBuf::from("/").join(name),
                    source,
                })?;
            Ok(String::from_utf8_lossy(&text).into_owned())
        }
        Err(Errno::ENOENT) => Ok(String::new()),
        Err(e) => Err(io_error("open", name, e)),
    }
}
