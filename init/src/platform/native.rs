//! The native platform's side of stage 1: the store is a host directory with per-image
//! locks ([`crate::store`]); images are kept only with a `seal_key_file` (sealed beside
//! them, reused while the seal opens, marked in use while their container runs, and the
//! least recently used evicted beyond `store_max_bytes`); stage 2 is the FUSE + overlayfs +
//! pivot_root root of [`crate::stage2::prepare`].

use std::cell::RefCell;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use encc_rootfs::{DataKey, RootHash, RootfsReader};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;

use super::Platform;
use crate::config::BootConfig;
use crate::stage2::{prepare, Running};
use crate::store::{InUse, Kept, Removal, Reservation, Store};

/// The native platform (namespaces simulate the enclave). Holds the store; between `reuse`
/// and `open_pulled`, the reservation (the image's lock) of the image being pulled; and the
/// manifest and in-use mark of the kept image this start uses.
#[derive(Default)]
pub(crate) struct Native {
    store: RefCell<Option<Store>>,
    reservation: RefCell<Option<Reservation>>,
    kept: RefCell<Option<(Digest, Option<InUse>)>>,
}

/// The PAL's `init` on the native platform: boot config, stage 1, stage 2 preparation;
/// then, with `store_max_bytes`, the eviction of the least recently used kept images.
pub(crate) fn boot(boot_config: &Path, image: &str) -> anyhow::Result<Running> {
    let config = crate::stage1::load_boot_config(boot_config, " (simulated measurement)")?;
    let native = Native::default();
    let mut running = crate::stage1::boot(&native, config, image)?;
    if let Some((manifest, in_use)) = native.kept.take() {
        running.in_use = in_use;
        if let (Some(max), Some(store)) = (running.config.store_max_bytes, &*native.store.borrow())
        {
            evict(store, max, &manifest);
        }
    }
    Ok(running)
}

/// Removes the least recently used kept images beyond `max` bytes, never `keep` nor one in
/// use. The start has succeeded: a failure here is logged, not returned.
fn evict(store: &Store, max: u64, keep: &Digest) {
    match store.evict(max, keep) {
        Ok(tried) => {
            for (manifest, removal) in tried {
                match removal {
                    Removal::Removed { bytes } => log::info!(
                        "store_max_bytes {max}: evicted kept image {manifest} ({bytes} bytes, least recently used)"
                    ),
                    Removal::Busy(busy) => log::info!(
                        "store_max_bytes {max}: kept image {manifest} stays, in use ({busy:?})"
                    ),
                }
            }
        }
        Err(e) => log::warn!("store_max_bytes {max}: eviction failed: {e:#}"),
    }
}

fn sealing_key(config: &BootConfig) -> anyhow::Result<Option<DataKey>> {
    config
        .seal_key_file
        .as_ref()
        .map(|path| {
            DataKey::read_file(path).with_context(|| format!("sealing key {}", path.display()))
        })
        .transpose()
}

impl Platform for Native {
    type Entered = Running;
    const LOOPBACK_IS_HOST: bool = false;

    fn open_store(&self, config: &BootConfig) -> anyhow::Result<()> {
        *self.store.borrow_mut() = Some(Store::open(&config.store)?);
        Ok(())
    }

    fn reuse(
        &self,
        config: &BootConfig,
        manifest: &Digest,
        reference: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>> {
        let store = self.store.borrow();
        let store = store.as_ref().context("the store is not open")?;
        let kept = match sealing_key(config)? {
            Some(sealing) => store.reuse_or_reserve(&sealing, manifest, reference)?,
            None => Kept::Pull(Box::new(store.reserve_one_start()?)),
        };
        let reservation = match kept {
            Kept::Reused(reader, in_use) => {
                *self.kept.borrow_mut() = Some((*manifest, in_use));
                return Ok(Some(*reader));
            }
            Kept::Pull(reservation) => reservation,
        };
        *self.reservation.borrow_mut() = Some(*reservation);
        Ok(None)
    }

    fn reuse_kept(
        &self,
        config: &BootConfig,
        manifest: &Digest,
        reference: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>> {
        let Some(sealing) = sealing_key(config)? else {
            return Ok(None);
        };
        let store = self.store.borrow();
        let store = store.as_ref().context("the store is not open")?;
        match store.reuse_kept(&sealing, manifest, reference)? {
            Some(Kept::Reused(reader, in_use)) => {
                *self.kept.borrow_mut() = Some((*manifest, in_use));
                Ok(Some(*reader))
            }
            Some(Kept::Pull(_)) | None => Ok(None),
        }
    }

    fn image_path(&self, _config: &BootConfig, _manifest: &Digest) -> anyhow::Result<PathBuf> {
        let reservation = self.reservation.borrow();
        let reservation = reservation.as_ref().context("no image is reserved")?;
        Ok(reservation.image().to_owned())
    }

    fn open_pulled(
        &self,
        config: &BootConfig,
        manifest: &Digest,
        key: &DataKey,
        root_hash: &RootHash,
        _image: &Path,
    ) -> anyhow::Result<(RootfsReader, bool)> {
        let reservation = self
            .reservation
            .borrow_mut()
            .take()
            .context("no image is reserved")?;
        let (reader, in_use) = reservation.open(key, root_hash)?;
        let kept = config.seal_key_file.is_some();
        if kept {
            *self.kept.borrow_mut() = Some((*manifest, in_use));
        }
        Ok((reader, kept))
    }

    fn enter(
        &self,
        reader: RootfsReader,
        config: BootConfig,
        pulled: Option<PathBuf>,
    ) -> anyhow::Result<Running> {
        // The pulled image goes at teardown.
        prepare(reader, config, pulled)
    }
}
