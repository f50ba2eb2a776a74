//! Serving a [`RootfsReader`] as a read-only FUSE file system.
//!
//! [`mount`] mounts an image on a directory, [`mount_detached`] as a detached mount that no
//! path names (for stage 2, where the host must not reach it); both serve it from a
//! background thread until [`Mount::unmount`] (or drop). FUSE inode numbers are the image's
//! inode numbers (the root is inode 1, FUSE's root id). The kernel may cache entries, attributes, directory listings
//! and file pages for a day: the image never changes. Every byte served has passed the
//! reader's Merkle and AEAD checks; a request touching a block that fails them gets `EIO`,
//! never other bytes, and is logged.
//!
//! Mounting needs `/dev/fuse` and root (fuser mounts with mount(2) directly; without the
//! privilege it falls back to `fusermount3`, which refuses `allow_other` unless
//! `/etc/fuse.conf` has `user_allow_other`).

mod attr;
mod detached;
mod ops;

pub use detached::mount_detached;

use std::error::Error;
use std::io;
use std::os::fd::{AsFd, BorrowedFd, OwnedFd};
use std::os::unix::fs::MetadataExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use fuser::{Config, MountOption, Session, SessionACL, SessionUnmounter};

use crate::reader::RootfsReader;

/// Threads reading requests from the kernel (each on its own cloned `/dev/fuse` fd), so
/// readahead of several files and metadata lookups proceed in parallel.
const THREADS: usize = 4;
/// How long [`Mount::unmount`] waits for the kernel to release closed files before
/// unmounting (beyond that, the mount is busy).
const RELEASE_GRACE: Duration = Duration::from_secs(1);
/// How long [`Mount::unmount`] waits for the session to end once the file system is
/// unmounted; normally it ends at once.
const END_TIMEOUT: Duration = Duration::from_secs(5);
/// How long it waits again after aborting the FUSE connection.
const ABORT_TIMEOUT: Duration = Duration::from_secs(2);
/// Where the kernel's fusectl file system lists FUSE connections (when it is mounted).
const FUSECTL: &str = "/sys/fs/fuse/connections";
/// Readahead window set on the mount's backing device, in KiB. The kernel offers FUSE at
/// most its default 128 KiB at init; a larger window lets sequential reads arrive as
/// several large requests that the worker threads decrypt in parallel (measured: 270 MB/s
/// at 128 KiB, 480 MB/s at 1 MiB on two cores). 1 MiB is also the largest single request.
const READAHEAD_KB: u32 = 1024;

/// Errors mounting and unmounting. Each names the mountpoint.
#[derive(Debug, thiserror::Error)]
pub enum FuseError {
    /// Mounting failed: no `/dev/fuse`, no privilege, no such directory, or the kernel
    /// refused the FUSE handshake.
    #[error("failed to mount the rootfs on {mountpoint}")]
    Mount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The thread serving the file system could not be started; the file system was
    /// unmounted again.
    #[error("failed to start the FUSE session for {mountpoint}")]
    Spawn {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// umount(2) failed, typically `EBUSY` because files are open. The file system stays
    /// mounted and served in the background until someone unmounts it.
    #[error("failed to unmount the rootfs from {mountpoint}")]
    Unmount {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The session ended with an error, or its thread panicked.
    #[error("the FUSE session serving {mountpoint} failed")]
    Session {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// The cause.
        #[source]
        source: io::Error,
    },
    /// The file system was unmounted here but its session did not end, because something
    /// else still holds it (a copy of the mount in another mount namespace) and the
    /// connection could not be aborted. The session is left running in the background.
    #[error("the FUSE session for {mountpoint} did not end after unmounting")]
    Lingering {
        /// The mountpoint.
        mountpoint: PathBuf,
        /// What was tried.
        #[source]
        source: io::Error,
    },
}

/// A mounted image, served by a background thread. Dropping it unmounts (errors are
/// logged); [`unmount`](Self::unmount) reports them.
#[derive(Debug)]
pub struct Mount {
    mountpoint: PathBuf,
    attached: Attached,
    /// The session thread; `None` once it has been joined or given up on.
    thread: Option<JoinHandle<io::Result<()>>>,
    /// Disconnects when the session thread ends.
    ended: Receiver<()>,
    /// The FUSE connection's id under [`FUSECTL`], if it could be found.
    connection: Option<u64>,
    /// Open files and directories of the session.
    open: Arc<AtomicUsize>,
}

/// How a mount is reached, and so unmounted.
#[derive(Debug)]
enum Attached {
    /// On a directory, unmounted by path.
    Path(SessionUnmounter),
    /// Detached: gone with the last reference (this fd, and stacked file systems).
    Detached(Option<OwnedFd>),
}

/// Mounts `reader`'s image read-only on the directory `mountpoint` and serves it from a
/// background thread.
///
/// Options: `ro`, `default_permissions` (the kernel checks modes against the caller),
/// `allow_other` (every user may use the mount, as in a container rootfs), and fuser's
/// defaults `nosuid` and `nodev`; the source shows as `encc` and the type as
/// `fuse.encc-rootfs` in `/proc/self/mountinfo`.
pub fn mount(reader: Arc<RootfsReader>, mountpoint: &Path) -> Result<Mount, FuseError> {
    let mount_err = |source| FuseError::Mount {
        mountpoint: mountpoint.to_owned(),
        source,
    };
    let mountpoint = mountpoint.canonicalize().map_err(mount_err)?;
    let image = reader.path().to_owned();
    let fs = ops::RootfsFs::new(reader);
    let open = fs.open_handles();
    let mut session =
        Session::new(fs, &mountpoint, &config()).map_err(|source| FuseError::Mount {
            mountpoint: mountpoint.clone(),
            source,
        })?;
    let attached = Attached::Path(session.unmount_callable());
    serve(session, mountpoint, attached, open, &image)
}

/// Runs `session` on a background thread once the file system is mounted.
fn serve(
    session: Session<ops::RootfsFs>,
    mountpoint: PathBuf,
    attached: Attached,
    open: Arc<AtomicUsize>,
    image: &Path,
) -> Result<Mount, FuseError> {
    let (done, ended) = mpsc::sync_channel::<()>(0);
    // If spawning fails, the closure and with it the session are dropped, which unmounts.
    let thread = thread::Builder::new()
        .name("encc-fuse".into())
        .spawn(move || {
            let _done = done;
            session.run()
        })
        .map_err(|source| FuseError::Spawn {
            mountpoint: mountpoint.clone(),
            source,
        })?;
    // Served by the session: this also shows it is up.
    let dev = match &attached {
        Attached::Path(_) => std::fs::metadata(&mountpoint).map(|meta| meta.dev()),
        Attached::Detached(fd) => match fd {
            Some(fd) => nix::sys::stat::fstat(fd)
                .map(|st| st.st_dev)
                .map_err(io::Error::from),
            None => Err(io::Error::from(io::ErrorKind::NotFound)),
        },
    };
    let connection = match dev {
        Ok(dev) => {
            set_readahead(dev);
            Some(connection_id(dev))
        }
        Err(e) => {
            log::warn!("cannot stat {}: {e}", mountpoint.display());
            None
        }
    };
    if thread.is_finished() {
        // For example, cloning the /dev/fuse fd for the worker threads failed; the session
        // has unmounted on its way out.
        let source = join(thread)
            .err()
            .unwrap_or_else(|| io::Error::other("the session ended right after mounting"));
        return Err(FuseError::Session { mountpoint, source });
    }
    log::info!(
        "serving image {} on {} (FUSE connection {connection:?})",
        image.display(),
        mountpoint.display()
    );
    Ok(Mount {
        mountpoint,
        attached,
        thread: Some(thread),
        ended,
        connection,
        open,
    })
}

impl Mount {
    /// The mountpoint (canonical), or `detached:IMAGE` for a detached mount.
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// The root of a detached mount ([`mount_detached`]); `None` for one on a directory.
    pub fn detached(&self) -> Option<BorrowedFd<'_>> {
        match &self.attached {
            Attached::Detached(fd) => fd.as_ref().map(AsFd::as_fd),
            Attached::Path(_) => None,
        }
    }

    /// Whether the session has ended: the file system was unmounted from outside (for
    /// example by `umount`), or the session failed.
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(JoinHandle::is_finished)
    }

    /// Unmounts and waits for the session to end. Returns promptly when the file system
    /// was already unmounted from outside.
    pub fn unmount(mut self) -> Result<(), FuseError> {
        self.shutdown()
    }

    fn shutdown(&mut self) -> Result<(), FuseError> {
        let Some(thread) = self.thread.take() else {
            return Ok(());
        };
        // A session that has ended was unmounted from outside (or failed and unmounted on
        // its way out): umount(2) now could only hit whatever was mounted here since.
        let on_path = matches!(self.attached, Attached::Path(_)) && !thread.is_finished();
        if on_path {
            self.wait_released();
        }
        let unmounted = match &mut self.attached {
            // The last reference to a detached file system ends it (file systems stacked
            // on it hold their own references until they go).
            Attached::Detached(fd) => {
                drop(fd.take());
                Ok(())
            }
            Attached::Path(unmounter) if on_path => unmounter.unmount(),
            Attached::Path(_) => Ok(()),
        };
        if let Err(source) = unmounted {
            // It may have been unmounted from outside just now (EINVAL: not a mount).
            let gone = source.raw_os_error() == Some(libc::EINVAL)
                && self.wait(Duration::from_millis(100));
            if !gone {
                return Err(FuseError::Unmount {
                    mountpoint: self.mountpoint.clone(),
                    source,
                });
            }
        }
        if !self.wait(END_TIMEOUT) {
            let aborted = self.abort_connection();
            if !(aborted && self.wait(ABORT_TIMEOUT)) {
                let what = if aborted {
                    "aborted the FUSE connection, but the session still runs"
                } else {
                    "the FUSE connection could not be aborted (fusectl not mounted?)"
                };
                return Err(FuseError::Lingering {
                    mountpoint: self.mountpoint.clone(),
                    source: io::Error::new(io::ErrorKind::TimedOut, what),
                });
            }
        }
        join(thread).map_err(|source| FuseError::Session {
            mountpoint: self.mountpoint.clone(),
            source,
        })?;
        log::info!("unmounted {}", self.mountpoint.display());
        Ok(())
    }

    /// Waits a little for the kernel to release files closed just before.
    fn wait_released(&self) {
        let start = Instant::now();
        while self.open.load(Ordering::SeqCst) > 0 && start.elapsed() < RELEASE_GRACE {
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Waits for the session thread to end; returns whether it did.
    fn wait(&self, timeout: Duration) -> bool {
        matches!(
            self.ended.recv_timeout(timeout),
            Ok(()) | Err(RecvTimeoutError::Disconnected)
        )
    }

    /// Aborts the FUSE connection through fusectl, which ends the session even while
    /// another mount namespace still holds the file system; returns whether that worked.
    fn abort_connection(&self) -> bool {
        let Some(id) = self.connection else {
            return false;
        };
        let path = Path::new(FUSECTL).join(id.to_string()).join("abort");
        match std::fs::write(&path, b"1") {
            Ok(()) => {
                log::warn!(
                    "session for {} still running after unmount; aborted its FUSE connection",
                    self.mountpoint.display()
                );
                true
            }
            Err(e) => {
                log::warn!("cannot abort FUSE connection {}: {e}", path.display());
                false
            }
        }
    }
}

impl Drop for Mount {
    fn drop(&mut self) {
        if let Err(e) = self.shutdown() {
            log::error!("{}", error_chain(&e));
        }
    }
}

/// Joins the session thread.
fn join(thread: JoinHandle<io::Result<()>>) -> io::Result<()> {
    match thread.join() {
        Ok(result) => result,
        Err(_panic) => Err(io::Error::other("the session thread panicked")),
    }
}

/// The session configuration; see [`mount`].
fn config() -> Config {
    let mut config = Config::default();
    config.mount_options = vec![
        MountOption::RO,
        MountOption::FSName("encc".into()),
        // fuser's pure-Rust mount passes `Subtype` to fusermount only; the kernel takes
        // the option directly.
        MountOption::CUSTOM("subtype=encc-rootfs".into()),
        MountOption::DefaultPermissions,
        // The image is authenticated and measured, so its setuid programs (su, ping, …)
        // work as in any container rootfs; device nodes stay unusable (nodev, fuser's
        // default): stage 2 provides /dev itself.
        MountOption::Suid,
    ];
    // fuser 0.18 has no `AllowOther` mount option: the ACL adds `allow_other` and stops
    // fuser itself from refusing other users' requests.
    config.acl = SessionACL::All;
    config.n_threads = Some(THREADS);
    config.clone_fd = true;
    config
}

/// Widens the readahead window of the mount's backing device `dev` (best effort: needs
/// root and sysfs).
fn set_readahead(dev: u64) {
    let path = format!(
        "/sys/class/bdi/{}:{}/read_ahead_kb",
        libc::major(dev),
        libc::minor(dev)
    );
    if let Err(e) = std::fs::write(&path, READAHEAD_KB.to_string()) {
        log::debug!("cannot set {path}: {e}");
    }
}

/// The fusectl id of the connection behind a mount with `st_dev` `dev`: the kernel's
/// encoding of the device number.
fn connection_id(dev: u64) -> u64 {
    (u64::from(libc::major(dev)) << 20) | u64::from(libc::minor(dev))
}

/// An error and its causes, `: `-separated.
fn error_chain(e: &dyn Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn connection_ids_are_kernel_device_numbers() {
        assert_eq!(connection_id(libc::makedev(0, 39)), 39);
        assert_eq!(connection_id(libc::makedev(0, 300)), 300);
        assert_eq!(connection_id(libc::makedev(1, 2)), (1 << 20) | 2);
    }

    #[test]
    fn error_chains_list_every_cause() {
        let e = FuseError::Unmount {
            mountpoint: "/mnt".into(),
            source: io::Error::from_raw_os_error(libc::EBUSY),
        };
        let chain = error_chain(&e);
        assert!(
            chain.starts_with("failed to unmount the rootfs from /mnt: "),
            "{chain}"
        );
        assert!(chain.contains("busy"), "{chain}");
    }

    #[test]
    fn mounts_read_only_for_everyone_without_auto_unmount() {
        let config = config();
        let options = &config.mount_options;
        assert!(options.contains(&MountOption::RO));
        assert!(options.contains(&MountOption::DefaultPermissions));
        assert!(!options.contains(&MountOption::AutoUnmount));
        assert_eq!(config.acl, SessionACL::All);
    }
}
