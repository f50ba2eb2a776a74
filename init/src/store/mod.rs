//! The store on host storage (native platform): protected images, the seals of the images
//! kept across starts, and one lock file per image.
//!
//! Many enclaves may start at once on one store (Kubernetes scaling a deployment). An image's
//! files are only written, replaced or removed under its exclusive lock, and a kept image is
//! opened under its shared lock (the opened file stays valid when the pair is replaced
//! later), so no start sees a half-replaced image and seal. The first of several cold starts
//! of one image pulls it; the others wait for its lock and reuse what it kept. A start that
//! dies (even by SIGKILL) releases its lock with its last fd; the partial files it leaves are
//! removed by the next start that gets the lock.
//!
//! The host can delete or replace lock files: that breaks the mutual exclusion, so a start
//! may fail, but never opens a wrong pair: the seal binds the data key and root hash to the
//! manifest digest, and the image must authenticate under that key and have that root hash.
//!
//! Each start of a kept image records, under its lock, the reference and the time in the
//! image's metadata ([`meta`]), and marks the image in use while its container runs
//! ([`InUse`]); [`manage`] lists, removes and evicts kept images on that basis.

mod lock;
mod manage;
mod meta;
mod names;

use std::ffi::OsString;
use std::io::ErrorKind;
use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use encc_interface::error_chain;
use encc_rootfs::{DataKey, OpenError, RootHash, RootfsReader};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;

use crate::seal::{open_seal, write_seal, SealError};
use lock::{ImageLock, Mode};
use meta::Meta;
use names::ImageName;

pub use lock::InUse;
pub use manage::{prune_selection, Busy, KeptImage, Removal, SealState};
pub use meta::MetaError;

/// Why the store cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The store directory cannot be created.
    #[error("cannot create the store {}", path.display())]
    Create {
        /// The store.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store directory cannot be listed.
    #[error("cannot list the store {}", path.display())]
    List {
        /// The store.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A lock file cannot be opened or locked.
    #[error("cannot lock {}", path.display())]
    Lock {
        /// The lock file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The store directory does not exist (or is not a directory).
    #[error("there is no store at {}", path.display())]
    Missing {
        /// The store.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// Something other than a regular file is where a lock file belongs.
    #[error("{} is not a lock file", path.display())]
    NotALockFile {
        /// The path.
        path: PathBuf,
    },
    /// The lock file was replaced again and again while this start waited for it.
    #[error("lock file {} keeps being replaced", path.display())]
    LockFileChanged {
        /// The lock file.
        path: PathBuf,
    },
    /// A file of the store cannot be removed.
    #[error("cannot remove {}", path.display())]
    Remove {
        /// The file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// No randomness for the name of an image.
    #[error("no randomness for an image name")]
    Random(#[source] getrandom::Error),
    /// A seal cannot be made or opened.
    #[error(transparent)]
    Seal(#[from] SealError),
    /// An image does not open.
    #[error("cannot open image {}", path.display())]
    Open {
        /// The image.
        path: PathBuf,
        /// The cause.
        #[source]
        source: OpenError,
    },
    /// An image's root hash is not the one expected (its seal's, or the pull's).
    #[error("{} has root hash {found}, expected {expected}", path.display())]
    RootHash {
        /// The image.
        path: PathBuf,
        /// Its root hash.
        found: RootHash,
        /// The root hash of the seal or the pull.
        expected: RootHash,
    },
}

/// A store directory.
#[derive(Debug)]
pub struct Store {
    dir: PathBuf,
}

/// What the store holds for an image: a kept image, opened, or a reservation to pull it.
pub enum Kept {
    /// The kept image, opened under its seal's key and checked against its root hash, and
    /// its mark of being in use (hold it while the container runs).
    Reused(Box<RootfsReader>, Option<InUse>),
    /// Nothing usable is kept: pull into [`Reservation::image`], then [`Reservation::open`].
    Pull(Box<Reservation>),
}

/// The right to write one image of the store (its exclusive lock) until it is opened.
#[derive(Debug)]
pub struct Reservation {
    lock: ImageLock,
    image: PathBuf,
    /// For a kept image: the sealing key, the seal file and the manifest digest.
    seal: Option<(DataKey, PathBuf, String)>,
    /// For a kept image: its metadata file and the reference it is pulled as.
    meta: Option<(PathBuf, ImageRef)>,
}

impl Store {
    /// Opens (creates, mode 0700) the store at `dir` and removes the partial files that
    /// dead writers left (those of images whose lock is free).
    pub fn open(dir: &Path) -> Result<Self, StoreError> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(dir)
            .map_err(|source| StoreError::Create {
                path: dir.to_owned(),
                source,
            })?;
        let store = Self {
            dir: dir.to_owned(),
        };
        store.clean_stale()?;
        Ok(store)
    }

    /// The kept image of `manifest` opened under its seal, or (after waiting for any start
    /// that is pulling it) the reservation to pull it. `reference` (what the host asked
    /// for) names it in the log and in its metadata.
    pub fn reuse_or_reserve(
        &self,
        sealing: &DataKey,
        manifest: &Digest,
        reference: &ImageRef,
    ) -> Result<Kept, StoreError> {
        let name = ImageName::kept(manifest);
        let manifest = manifest.to_string();
        let shared = ImageLock::acquire(&self.path(&name, "lock"), Mode::Shared)?;
        if let Ok(Some(reader)) = self.reuse(&name, sealing, &manifest, &shared) {
            return Ok(self.reused(&name, reader, reference, &shared));
        }
        drop(shared);
        let lock = ImageLock::acquire(&self.path(&name, "lock"), Mode::Exclusive)?;
        // Another start may have kept it while this one waited.
        match self.reuse(&name, sealing, &manifest, &lock) {
            Ok(Some(reader)) => return Ok(self.reused(&name, reader, reference, &lock)),
            Ok(None) => {}
            Err(e) => log::warn!("{}; pulling {reference} again", error_chain(&e)),
        }
        self.remove_partials(&name, &lock)?;
        // No seal names an image being replaced: a start that dies before the new seal is
        // written leaves an image without a seal, which the next start pulls again.
        let seal = self.path(&name, "seal");
        remove_if_present(&seal)?;
        Ok(Kept::Pull(Box::new(Reservation {
            lock,
            image: self.path(&name, "img"),
            seal: Some((sealing.clone(), seal, manifest)),
            meta: Some((self.path(&name, "meta"), reference.clone())),
        })))
    }

    /// A reused kept image, marked in use, with this use recorded (under the image's lock).
    fn reused(
        &self,
        name: &ImageName,
        reader: RootfsReader,
        reference: &ImageRef,
        _held: &ImageLock,
    ) -> Kept {
        let in_use = mark_in_use(&self.path(name, "img"));
        record_use(&self.path(name, "meta"), reference);
        Kept::Reused(Box::new(reader), in_use)
    }

    /// The kept image of `manifest` opened under its seal (under the shared lock), without
    /// reserving anything when there is none: `None` when no seal is there or it does not
    /// open (the caller then goes the usual way, [`Self::reuse_or_reserve`]). Creates no
    /// file in the store. A reused image is marked in use and this use recorded, as in
    /// [`Self::reuse_or_reserve`].
    pub fn reuse_kept(
        &self,
        sealing: &DataKey,
        manifest: &Digest,
        reference: &ImageRef,
    ) -> Result<Option<Kept>, StoreError> {
        let name = ImageName::kept(manifest);
        // No seal, no lock file: a digest that was never kept leaves nothing behind.
        if !self.path(&name, "seal").exists() {
            return Ok(None);
        }
        let shared = ImageLock::acquire(&self.path(&name, "lock"), Mode::Shared)?;
        match self.reuse(&name, sealing, &manifest.to_string(), &shared) {
            Ok(reader) => Ok(reader.map(|reader| self.reused(&name, reader, reference, &shared))),
            Err(e) => {
                log::info!("{}; resolving the image instead", error_chain(&e));
                Ok(None)
            }
        }
    }

    /// A reservation for an image of one start (no sealing key): a fresh name whose lock
    /// file goes when the image is opened or the pull fails.
    pub fn reserve_one_start(&self) -> Result<Reservation, StoreError> {
        let name = ImageName::one_start().map_err(StoreError::Random)?;
        let mut lock = ImageLock::acquire(&self.path(&name, "lock"), Mode::Exclusive)?;
        lock.remove_on_release();
        Ok(Reservation {
            lock,
            image: self.path(&name, "img"),
            seal: None,
            meta: None,
        })
    }

    fn path(&self, name: &ImageName, ext: &str) -> PathBuf {
        self.dir.join(name.file(ext))
    }

    /// Opens the kept image of `name` under its seal; None when there is none.
    fn reuse(
        &self,
        name: &ImageName,
        sealing: &DataKey,
        manifest: &str,
        _held: &ImageLock,
    ) -> Result<Option<RootfsReader>, StoreError> {
        let (key, root) = match open_seal(sealing, &self.path(name, "seal"), manifest) {
            Ok(opened) => opened,
            Err(SealError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(e) => return Err(e.into()),
        };
        let image = self.path(name, "img");
        let reader = match RootfsReader::open(&image, &key) {
            Ok(reader) => reader,
            Err(OpenError::Io { source, .. }) if source.kind() == ErrorKind::NotFound => {
                return Ok(None)
            }
            Err(source) => {
                return Err(StoreError::Open {
                    path: image,
                    source,
                })
            }
        };
        check_root(&reader, &image, root)?;
        Ok(Some(reader))
    }

    /// Removes the partial files of every image whose lock is free.
    fn clean_stale(&self) -> Result<(), StoreError> {
        let list_err = |source| StoreError::List {
            path: self.dir.clone(),
            source,
        };
        let mut images: Vec<ImageName> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let entry = entry.map_err(list_err)?;
            if let Some(name) = entry.file_name().to_str().and_then(ImageName::of_partial) {
                images.push(name);
            }
        }
        images.sort();
        images.dedup();
        for name in images {
            match ImageLock::try_exclusive(&self.path(&name, "lock")) {
                Ok(Some(mut lock)) => {
                    self.remove_partials(&name, &lock)?;
                    if !name.is_kept() || !self.path(&name, "img").exists() {
                        lock.remove_on_release();
                    }
                }
                Ok(None) => log::debug!("{name} is being written; its partial files stay"),
                Err(e) => log::warn!("{}; its partial files stay", error_chain(&e)),
            }
        }
        Ok(())
    }

    /// Removes the partial files of `name`, whose exclusive lock the caller holds.
    fn remove_partials(&self, name: &ImageName, _held: &ImageLock) -> Result<(), StoreError> {
        let list_err = |source| StoreError::List {
            path: self.dir.clone(),
            source,
        };
        let mut partials: Vec<OsString> = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let file = entry.map_err(list_err)?.file_name();
            if file.to_str().and_then(ImageName::of_partial).as_ref() == Some(name) {
                partials.push(file);
            }
        }
        for file in partials {
            let path = self.dir.join(file);
            remove_if_present(&path)?;
            log::info!(
                "removed {}, left by a start that ended mid-pull",
                path.display()
            );
        }
        Ok(())
    }
}

impl Reservation {
    /// Where to write the image.
    pub fn image(&self) -> &Path {
        &self.image
    }

    /// Opens the image written under `key` with root hash `root`, checking that root hash;
    /// for a kept image, seals `key` and `root` beside it, records this use and marks it in
    /// use (hold the mark while the container runs). Then releases the lock.
    pub fn open(
        self,
        key: &DataKey,
        root: &RootHash,
    ) -> Result<(RootfsReader, Option<InUse>), StoreError> {
        let reader = RootfsReader::open(&self.image, key).map_err(|source| StoreError::Open {
            path: self.image.clone(),
            source,
        })?;
        check_root(&reader, &self.image, *root)?;
        if let Some((sealing, seal, manifest)) = &self.seal {
            write_seal(sealing, seal, manifest, key, root)?;
        }
        let in_use = match &self.meta {
            Some((meta, reference)) => {
                record_use(meta, reference);
                mark_in_use(&self.image)
            }
            None => None,
        };
        drop(self.lock);
        Ok((reader, in_use))
    }
}

fn check_root(reader: &RootfsReader, image: &Path, expected: RootHash) -> Result<(), StoreError> {
    let found = reader.root_hash();
    if found != expected {
        return Err(StoreError::RootHash {
            path: image.to_owned(),
            found,
            expected,
        });
    }
    Ok(())
}

/// Records a start of the image whose metadata is `meta` as `reference` now (the caller
/// holds the image's lock). A failure costs only the label, so it is logged.
fn record_use(meta: &Path, reference: &ImageRef) {
    let previous = Meta::read(meta).unwrap_or_else(|e| {
        log::warn!("{}; writing it anew", error_chain(&e));
        None
    });
    if let Err(e) = Meta::used_as(previous, reference).write(meta) {
        log::warn!("{}", error_chain(&e));
    }
}

/// The in-use mark of the image at `image` (the caller holds the image's lock). Without
/// it the image may be removed while its container runs (the container keeps its open
/// file), so a failure is logged and the start goes on.
fn mark_in_use(image: &Path) -> Option<InUse> {
    InUse::mark(image).unwrap_or_else(|e| {
        log::warn!("{}; the image is not marked in use", error_chain(&e));
        None
    })
}

fn remove_if_present(path: &Path) -> Result<(), StoreError> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != ErrorKind::NotFound => Err(StoreError::Remove {
            path: path.to_owned(),
            source: e,
        }),
        _ => Ok(()),
    }
}

#[cfg(test)]
mod tests;
