//! Mounting the FUSE file system detached (the new mount API), for stage 2: no path names
//! it, so the host cannot reach or replace it.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use fuser::{Session, SessionACL};

use super::{config, ops, serve, Attached, FuseError, Mount};
use crate::detached::{self, MountAttrFlags, Opt};
use crate::reader::RootfsReader;

/// Mounts `reader`'s image read-only as a detached mount (same options as [`super::mount`]) and
/// serves it from a background thread. No path names it; [`Mount::detached`] is the handle
/// to stack a file system on (an overlay's `lowerdir+`) or to attach it with. In errors and
/// logs it is called `detached:IMAGE`.
pub fn mount_detached(reader: Arc<RootfsReader>) -> Result<Mount, FuseError> {
    let image = reader.path().to_owned();
    let name = PathBuf::from(format!("detached:{}", image.display()));
    let mount_err = |source| FuseError::Mount {
        mountpoint: name.clone(),
        source,
    };
    let dev = std::fs::OpenOptions::new()
        .read(true)
        .write(true)
        .open("/dev/fuse")
        .map_err(mount_err)?;
    let fd = dev.as_fd().try_clone_to_owned().map_err(mount_err)?;
    let mount = fuse_mount(dev.as_fd()).map_err(mount_err)?;
    let fs = ops::RootfsFs::new(reader);
    let open = fs.open_handles();
    // The kernel queued FUSE_INIT when the file system was created; this answers it.
    let session = Session::from_fd(fs, fd, SessionACL::All, config()).map_err(mount_err)?;
    serve(session, name, Attached::Detached(Some(mount)), open, &image)
}

/// Creates the FUSE file system served through `dev` as a detached mount: the options of
/// [`config`], spelled for `fsconfig`.
fn fuse_mount(dev: BorrowedFd<'_>) -> io::Result<OwnedFd> {
    let fd = dev.as_raw_fd().to_string();
    let uid = nix::unistd::getuid().to_string();
    let gid = nix::unistd::getgid().to_string();
    detached::new_mount(
        "fuse",
        &[
            Opt::Str("source", "encc"),
            Opt::Str("subtype", "encc-rootfs"),
            Opt::Str("fd", &fd),
            Opt::Str("rootmode", "40000"),
            Opt::Str("user_id", &uid),
            Opt::Str("group_id", &gid),
            Opt::Flag("default_permissions"),
            Opt::Flag("allow_other"),
            Opt::Flag("ro"),
        ],
        MountAttrFlags::MOUNT_ATTR_RDONLY | MountAttrFlags::MOUNT_ATTR_NODEV,
    )
}
