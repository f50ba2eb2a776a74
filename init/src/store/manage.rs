//! Managing the kept images of a store (`encc store ls/rm/prune`, and init's eviction
//! beyond `store_max_bytes`), safe while containers start: every image is read under its
//! shared lock and removed under its exclusive lock, both tried without waiting, and an
//! image whose container runs (its [`super::InUse`] mark) is never removed.
//!
//! Only names of the store's own shapes are touched ([`ImageName`]), one directory entry
//! at a time: nothing is opened through a symlink or blocks on a fifo, and removal unlinks
//! the entry itself (a symlink goes, never what it points to; a directory stays).

use std::path::Path;
use std::time::{Duration, SystemTime};

use encc_rootfs::{DataKey, RootHash};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;

use super::lock::{image_in_use, ImageLock};
use super::meta::Meta;
use super::names::ImageName;
use super::{error_chain, remove_if_present, Store, StoreError};
use crate::seal::{open_seal, SealError};

/// Why an image is not removed now.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Busy {
    /// A start (or another removal) holds the image's lock: it is being pulled, opened or
    /// removed.
    Locked,
    /// A container started from it is running.
    Running,
}

/// The outcome of removing a kept image.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Removal {
    /// Its files are gone; they held this many bytes.
    Removed {
        /// Bytes of its image, seal and metadata.
        bytes: u64,
    },
    /// It is in use and stays.
    Busy(Busy),
}

/// The seal of a kept image, as far as it can be told.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SealState {
    /// There is no seal (the next start pulls the image again).
    Missing,
    /// There is a seal; no sealing key was given to open it.
    Present,
    /// The seal opens with the sealing key; the image's root hash (its measurement).
    Opens(RootHash),
    /// The seal does not open with the sealing key (another key, or tampered).
    DoesNotOpen,
}

/// A kept image of the store, as listed.
#[derive(Debug, Clone)]
pub struct KeptImage {
    /// The manifest digest it is kept under.
    pub manifest: Digest,
    /// The references it was started as, the most recent first. A label the host could
    /// have written: never a reason to trust anything.
    pub references: Vec<ImageRef>,
    /// Bytes of its image, seal and metadata files.
    pub bytes: u64,
    /// When a start last used it (its metadata, else the image file's mtime).
    pub last_use: Option<SystemTime>,
    /// Why it cannot be removed now, if it cannot.
    pub busy: Option<Busy>,
    /// Whether its image file is there.
    pub has_image: bool,
    /// Its seal.
    pub seal: SealState,
}

impl Store {
    /// The store at `dir`, which must exist; nothing in it is created or cleaned.
    pub fn existing(dir: &Path) -> Result<Self, StoreError> {
        let missing = |source| StoreError::Missing {
            path: dir.to_owned(),
            source,
        };
        let meta = std::fs::metadata(dir).map_err(missing)?;
        if !meta.is_dir() {
            return Err(missing(std::io::Error::from_raw_os_error(libc::ENOTDIR)));
        }
        Ok(Self {
            dir: dir.to_owned(),
        })
    }

    /// Removes the partial files of writers that are gone (as every start does).
    pub fn clean(&self) -> Result<(), StoreError> {
        self.clean_stale()
    }

    /// The kept images, the most recently used first; with `sealing`, their seals opened.
    /// An image whose lock cannot be taken at all (a hostile entry) is left out, logged.
    pub fn list(&self, sealing: Option<&DataKey>) -> Result<Vec<KeptImage>, StoreError> {
        let mut images = Vec::new();
        for name in self.kept_names()? {
            match self.describe(&name, sealing) {
                Ok(Some(image)) => images.push(image),
                Ok(None) => {}
                Err(e) => log::warn!("{}; {name} is not listed", error_chain(&e)),
            }
        }
        images.sort_by_key(|image| std::cmp::Reverse(image.last_use));
        Ok(images)
    }

    /// Removes the kept image of `manifest` unless it is in use; never waits.
    pub fn remove(&self, manifest: &Digest) -> Result<Removal, StoreError> {
        let name = ImageName::kept(manifest);
        let Some(mut lock) = ImageLock::try_exclusive(&self.path(&name, "lock"))? else {
            return Ok(Removal::Busy(Busy::Locked));
        };
        if image_in_use(&self.path(&name, "img"))? {
            return Ok(Removal::Busy(Busy::Running));
        }
        let bytes = self.bytes(&name);
        // The seal first: an image without a seal is pulled again, never used.
        for ext in ["seal", "img", "meta"] {
            remove_if_present(&self.path(&name, ext))?;
        }
        self.remove_partials(&name, &lock)?;
        lock.remove_on_release();
        log::info!("removed kept image {manifest} ({bytes} bytes)");
        Ok(Removal::Removed { bytes })
    }

    /// Removes the least recently used kept images until the kept images hold at most
    /// `max_bytes`, never `keep` (the image just started) nor an image in use. Returns what
    /// was tried, in order.
    pub fn evict(
        &self,
        max_bytes: u64,
        keep: &Digest,
    ) -> Result<Vec<(Digest, Removal)>, StoreError> {
        let mut images = self.list(None)?;
        let mut total: u64 = images.iter().map(|i| i.bytes).sum();
        images.sort_by_key(|image| image.last_use);
        let mut tried = Vec::new();
        for image in images {
            if total <= max_bytes {
                break;
            }
            if image.manifest == *keep {
                continue;
            }
            let removal = self.remove(&image.manifest)?;
            if let Removal::Removed { bytes } = removal {
                total = total.saturating_sub(bytes);
            }
            tried.push((image.manifest, removal));
        }
        Ok(tried)
    }

    /// The names of the kept images that have an image or a seal file.
    fn kept_names(&self) -> Result<Vec<ImageName>, StoreError> {
        let list_err = |source| StoreError::List {
            path: self.dir.clone(),
            source,
        };
        let mut names = Vec::new();
        for entry in std::fs::read_dir(&self.dir).map_err(list_err)? {
            let file = entry.map_err(list_err)?.file_name();
            let Some(file) = file.to_str() else { continue };
            if file.ends_with(".img") || file.ends_with(".seal") {
                names.extend(ImageName::of_kept_file(file));
            }
        }
        names.sort();
        names.dedup();
        Ok(names)
    }

    /// One kept image, read under its shared lock (tried, not waited for).
    fn describe(
        &self,
        name: &ImageName,
        sealing: Option<&DataKey>,
    ) -> Result<Option<KeptImage>, StoreError> {
        let Some(manifest) = name.manifest() else {
            return Ok(None);
        };
        let image = self.path(name, "img");
        let held = ImageLock::try_shared(&self.path(name, "lock"))?;
        let busy = match &held {
            None => Some(Busy::Locked),
            Some(_) if image_in_use(&image)? => Some(Busy::Running),
            Some(_) => None,
        };
        let meta = Meta::read(&self.path(name, "meta")).unwrap_or_else(|e| {
            log::warn!("{}", error_chain(&e));
            None
        });
        let image_meta = std::fs::symlink_metadata(&image).ok();
        let last_use = match &meta {
            Some(meta) => Some(meta.last_use),
            None => image_meta
                .as_ref()
                .filter(|m| m.is_file())
                .and_then(|m| m.modified().ok()),
        };
        let seal = self.seal_state(name, &manifest, sealing);
        Ok(Some(KeptImage {
            manifest,
            references: meta.map(|m| m.references).unwrap_or_default(),
            bytes: self.bytes(name),
            last_use,
            busy,
            has_image: image_meta.is_some(),
            seal,
        }))
    }

    fn seal_state(
        &self,
        name: &ImageName,
        manifest: &Digest,
        sealing: Option<&DataKey>,
    ) -> SealState {
        let path = self.path(name, "seal");
        let Ok(meta) = std::fs::symlink_metadata(&path) else {
            return SealState::Missing;
        };
        let Some(sealing) = sealing else {
            return if meta.is_file() {
                SealState::Present
            } else {
                SealState::DoesNotOpen
            };
        };
        match open_seal(sealing, &path, &manifest.to_string()) {
            Ok((_key, root)) => SealState::Opens(root),
            Err(SealError::Io { source, .. }) if source.kind() == std::io::ErrorKind::NotFound => {
                SealState::Missing
            }
            Err(_) => SealState::DoesNotOpen,
        }
    }

    /// Bytes of the regular files among an image's image, seal and metadata.
    fn bytes(&self, name: &ImageName) -> u64 {
        ["img", "seal", "meta"]
            .iter()
            .filter_map(|ext| std::fs::symlink_metadata(self.path(name, ext)).ok())
            .filter(|m| m.is_file())
            .map(|m| m.len())
            .sum()
    }
}

/// The kept images `encc store prune` removes: all but the `keep_last` most recently used,
/// and of those only the ones last used before `now - older_than` (each rule when given).
pub fn prune_selection(
    images: &[KeptImage],
    keep_last: Option<usize>,
    older_than: Option<Duration>,
    now: SystemTime,
) -> Vec<Digest> {
    let mut by_use: Vec<&KeptImage> = images.iter().collect();
    by_use.sort_by_key(|image| std::cmp::Reverse(image.last_use));
    let cutoff = older_than.and_then(|age| now.checked_sub(age));
    by_use
        .into_iter()
        .skip(keep_last.unwrap_or(0))
        .filter(|image| match (older_than, cutoff) {
            (None, _) => true,
            // Older than the epoch allows: nothing is that old.
            (Some(_), None) => false,
            (Some(_), Some(cutoff)) => image.last_use.is_none_or(|t| t < cutoff),
        })
        .map(|image| image.manifest)
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn image(hex: char, age_secs: Option<u64>, now: SystemTime) -> KeptImage {
        KeptImage {
            manifest: format!("sha256:{}", hex.to_string().repeat(64))
                .parse()
                .unwrap(),
            references: Vec::new(),
            bytes: 1,
            last_use: age_secs.map(|s| now - Duration::from_secs(s)),
            busy: None,
            has_image: true,
            seal: SealState::Present,
        }
    }

    #[test]
    fn prune_keeps_the_most_recent_and_the_young() {
        let now = SystemTime::now();
        let images = [
            image('a', Some(10), now),
            image('b', Some(3600), now),
            image('c', Some(86400 * 8), now),
            image('d', None, now),
        ];
        let hexes = |digests: Vec<Digest>| -> String {
            digests.iter().map(|d| d.hex()[..1].to_owned()).collect()
        };
        let prune = |keep, older| hexes(prune_selection(&images, keep, older, now));
        assert_eq!(prune(Some(1), None), "bcd");
        assert_eq!(prune(Some(0), None), "abcd");
        assert_eq!(prune(Some(9), None), "");
        let day = Duration::from_secs(86400);
        assert_eq!(prune(None, Some(Duration::from_secs(1800))), "bcd");
        assert_eq!(prune(None, Some(7 * day)), "cd");
        // Both rules: beyond the 3 most recent and older than 30 minutes.
        assert_eq!(prune(Some(3), Some(Duration::from_secs(1800))), "d");
        assert_eq!(prune(Some(2), Some(7 * day)), "cd");
        // An image whose last use is unknown is older than any cutoff; a cutoff the clock
        // cannot represent selects nothing.
        assert_eq!(prune(None, Some(Duration::from_secs(u64::MAX / 4))), "d");
        assert_eq!(prune(None, Some(Duration::MAX)), "");
    }
}
