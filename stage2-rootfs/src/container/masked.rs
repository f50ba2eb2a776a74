//! The OCI default spec's masked and read-only paths, applied by the container's PID 1 in
//! its own mount namespace after it mounted the container's `/proc`, before pivot_root.
//!
//! Every target is opened inside the root with `RESOLVE_IN_ROOT` and mounted on through its
//! `/proc/self/fd` path (the enclave's `/proc` is still visible at that point), so a symlink
//! in the image cannot point a mount elsewhere. Paths the kernel does not have are skipped,
//! as runc skips them.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::PathBuf;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, MsFlags};
use nix::sys::stat::SFlag;

use super::in_root;
use super::ContainerError;

/// Hidden: a file reads as `/dev/null`, a directory as an empty read-only tmpfs.
pub(super) const MASKED: [&str; 11] = [
    "proc/acpi",
    "proc/asound",
    "proc/kcore",
    "proc/keys",
    "proc/latency_stats",
    "proc/timer_list",
    "proc/timer_stats",
    "proc/sched_debug",
    "proc/scsi",
    "sys/firmware",
    "sys/devices/virtual/powercap",
];

/// Visible but read-only.
pub(super) const READ_ONLY: [&str; 5] = [
    "proc/bus",
    "proc/fs",
    "proc/irq",
    "proc/sys",
    "proc/sysrq-trigger",
];

fn via(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

fn mount_error(fstype: &str, name: &str, errno: Errno) -> ContainerError {
    ContainerError::Mount {
        fstype: fstype.to_owned(),
        target: PathBuf::from("/").join(name),
        source: errno.into(),
    }
}

/// Opens `name` inside the root without creating it; `None` when it does not exist.
fn existing(root: &OwnedFd, name: &str) -> Result<Option<OwnedFd>, ContainerError> {
    match in_root::at(root, name, OFlag::O_PATH | OFlag::O_NOFOLLOW) {
        Ok(fd) => Ok(Some(fd)),
        Err(Errno::ENOENT) => Ok(None),
        Err(e) => Err(ContainerError::Io {
            what: "open",
            path: PathBuf::from("/").join(name),
            source: e.into(),
        }),
    }
}

/// Masks [`MASKED`] and makes [`READ_ONLY`] read-only under `root`, whose `proc` and `sys`
/// are mounted.
pub(super) fn apply(root: &OwnedFd) -> Result<(), ContainerError> {
    let null = in_root::open(root, "dev/null", OFlag::O_PATH)?;
    for name in MASKED {
        let Some(target) = existing(root, name)? else {
            continue;
        };
        let is_dir = nix::sys::stat::fstat(&target)
            .map(|st| SFlag::from_bits_truncate(st.st_mode) & SFlag::S_IFMT == SFlag::S_IFDIR)
            .map_err(|e| mount_error("tmpfs", name, e))?;
        if is_dir {
            mount(
                Some("tmpfs"),
                &via(&target),
                Some("tmpfs"),
                MsFlags::MS_RDONLY | MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC,
                Some("mode=0555"),
            )
            .map_err(|e| mount_error("tmpfs", name, e))?;
        } else {
            mount(
                Some(&via(&null)),
                &via(&target),
                None::<&str>,
                MsFlags::MS_BIND,
                None::<&str>,
            )
            .map_err(|e| mount_error("bind /dev/null", name, e))?;
        }
    }
    for name in READ_ONLY {
        let Some(target) = existing(root, name)? else {
            continue;
        };
        mount(
            Some(&via(&target)),
            &via(&target),
            None::<&str>,
            MsFlags::MS_BIND | MsFlags::MS_REC,
            None::<&str>,
        )
        .map_err(|e| mount_error("bind", name, e))?;
        // The handle opened before the bind names the mount underneath: reopen to reach the
        // new one. The flags proc was mounted with stay (a remount may not clear them).
        let top = in_root::open(root, name, OFlag::O_PATH | OFlag::O_NOFOLLOW)?;
        mount(
            None::<&str>,
            &via(&top),
            None::<&str>,
            MsFlags::MS_BIND
                | MsFlags::MS_REMOUNT
                | MsFlags::MS_RDONLY
                | MsFlags::MS_NOSUID
                | MsFlags::MS_NODEV
                | MsFlags::MS_NOEXEC,
            None::<&str>,
        )
        .map_err(|e| mount_error("read-only remount", name, e))?;
    }
    Ok(())
}
