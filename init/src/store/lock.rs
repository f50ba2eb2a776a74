//! Per-image locks in the store: `flock` on `NAME.lock`, released when the holder ends, even
//! by SIGKILL. A holder of the exclusive lock may unlink the lock file; whoever locks checks
//! afterwards that the path still names the file it locked, and starts over if not.
//!
//! A running container marks its kept image in use with a shared `flock` on the image
//! file itself ([`InUse`], taken under the image's lock and held until the container ends);
//! removal, holding the image's exclusive lock, tries that flock exclusively and never
//! waits for it ([`image_in_use`]).

use std::fs::{File, OpenOptions};
use std::os::unix::fs::{MetadataExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{Flock, FlockArg};

use super::StoreError;

/// How often a lock is tried again when its file was unlinked or replaced meanwhile (only
/// the host does that more than once in a row: it can deny service, nothing more).
const ATTEMPTS: usize = 16;

/// Shared (opening a kept image) or exclusive (writing, replacing or cleaning one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Mode {
    Shared,
    Exclusive,
}

/// A held lock; released on drop.
#[derive(Debug)]
pub(super) struct ImageLock {
    flock: Option<Flock<File>>,
    path: PathBuf,
    /// Unlink the lock file before releasing it (images kept for one start only).
    remove: bool,
}

impl ImageLock {
    /// Waits for the lock on `path`.
    pub(super) fn acquire(path: &Path, mode: Mode) -> Result<Self, StoreError> {
        let arg = match mode {
            Mode::Shared => FlockArg::LockShared,
            Mode::Exclusive => FlockArg::LockExclusive,
        };
        Self::take(path, arg).and_then(|held| {
            held.ok_or_else(|| StoreError::LockFileChanged {
                path: path.to_owned(),
            })
        })
    }

    /// The exclusive lock on `path` if nobody holds the lock now.
    pub(super) fn try_exclusive(path: &Path) -> Result<Option<Self>, StoreError> {
        Self::take(path, FlockArg::LockExclusiveNonblock)
    }

    /// The shared lock on `path` if nobody holds it exclusively now.
    pub(super) fn try_shared(path: &Path) -> Result<Option<Self>, StoreError> {
        Self::take(path, FlockArg::LockSharedNonblock)
    }

    /// Unlinks the lock file when the lock is released (exclusive holders only).
    pub(super) fn remove_on_release(&mut self) {
        self.remove = true;
    }

    fn take(path: &Path, arg: FlockArg) -> Result<Option<Self>, StoreError> {
        let err = |source| StoreError::Lock {
            path: path.to_owned(),
            source,
        };
        for _ in 0..ATTEMPTS {
            // O_NOFOLLOW and O_NONBLOCK: a symlink or fifo the host put there fails, never
            // redirects or blocks.
            let mut file = OpenOptions::new()
                .read(true)
                .write(true)
                .create(true)
                .truncate(false)
                .mode(0o600)
                .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
                .open(path)
                .map_err(err)?;
            let meta = file.metadata().map_err(err)?;
            if !meta.is_file() {
                return Err(StoreError::NotALockFile {
                    path: path.to_owned(),
                });
            }
            let flock = loop {
                match Flock::lock(file, arg) {
                    Ok(flock) => break flock,
                    Err((again, Errno::EINTR)) => file = again,
                    Err((_, Errno::EWOULDBLOCK)) => return Ok(None),
                    Err((_, e)) => return Err(err(e.into())),
                }
            };
            // The file may have been unlinked (or replaced) while this waited for it.
            match std::fs::symlink_metadata(path) {
                Ok(now) if now.dev() == meta.dev() && now.ino() == meta.ino() => {
                    return Ok(Some(Self {
                        flock: Some(flock),
                        path: path.to_owned(),
                        remove: false,
                    }))
                }
                Ok(_) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => return Err(err(e)),
            }
        }
        match arg {
            FlockArg::LockExclusiveNonblock | FlockArg::LockSharedNonblock => Ok(None),
            _ => Err(StoreError::LockFileChanged {
                path: path.to_owned(),
            }),
        }
    }
}

impl Drop for ImageLock {
    fn drop(&mut self) {
        if self.remove {
            // Unlinked while still held: a waiter wakes on the old file and starts over.
            if let Err(e) = std::fs::remove_file(&self.path) {
                log::warn!("cannot remove lock file {}: {e}", self.path.display());
            }
        }
        if let Some(flock) = self.flock.take() {
            unlock(flock, &self.path);
        }
    }
}

fn unlock(flock: Flock<File>, path: &Path) {
    if let Err((flock, e)) = flock.unlock() {
        // Flock's own drop would panic; the lock then goes when this process ends.
        log::warn!("cannot unlock {}: {e}", path.display());
        std::mem::forget(flock);
    }
}

/// A running container's mark on its kept image: a shared `flock` on the image file,
/// released on drop (or when the enclave ends, however it ends).
#[derive(Debug)]
pub struct InUse {
    flock: Option<Flock<File>>,
    path: PathBuf,
}

impl InUse {
    /// Marks the image file at `path` in use (the caller holds the image's lock, so only
    /// the host can hold the flock exclusively, and then this waits, as for the lock).
    /// `Ok(None)` when there is no regular file there.
    pub(super) fn mark(path: &Path) -> Result<Option<Self>, StoreError> {
        Ok(flock_image(path, FlockArg::LockShared)?.map(|flock| Self {
            flock: Some(flock),
            path: path.to_owned(),
        }))
    }
}

impl Drop for InUse {
    fn drop(&mut self) {
        if let Some(flock) = self.flock.take() {
            unlock(flock, &self.path);
        }
    }
}

/// Whether a running container holds the image file at `path` ([`InUse`]); never waits.
/// A missing file, a symlink or anything but a regular file is not in use.
pub(super) fn image_in_use(path: &Path) -> Result<bool, StoreError> {
    match flock_image(path, FlockArg::LockExclusiveNonblock) {
        Ok(Some(flock)) => {
            unlock(flock, path);
            Ok(false)
        }
        Ok(None) => Ok(false),
        Err(StoreError::Lock { source, .. })
            if source.raw_os_error() == Some(libc::EWOULDBLOCK) =>
        {
            Ok(true)
        }
        Err(e) => Err(e),
    }
}

/// The flock `arg` on the regular file at `path`, opened without following a symlink or
/// blocking on a fifo and never created; `Ok(None)` when there is no regular file there.
fn flock_image(path: &Path, arg: FlockArg) -> Result<Option<Flock<File>>, StoreError> {
    let err = |source| StoreError::Lock {
        path: path.to_owned(),
        source,
    };
    let mut file = match OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
    {
        Ok(file) => file,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Ok(None),
        Err(e) => return Err(err(e)),
    };
    if !file.metadata().map_err(err)?.is_file() {
        return Ok(None);
    }
    loop {
        match Flock::lock(file, arg) {
            Ok(flock) => return Ok(Some(flock)),
            Err((again, Errno::EINTR)) => file = again,
            Err((_, e)) => return Err(err(e.into())),
        }
    }
}
