//! What differs between the platforms around the one stage-1 flow ([`crate::stage1::boot`]):
//! opening the store, reusing a kept image, keeping one (where it is pulled to, and opening it
//! with its seal written), and entering stage 2. Everything
//! else (boot config, reference, policy, resolve, pull, measurement, cleanup of a pulled
//! image whose stage 2 failed) is the flow's, shared by both.
//!
//! - [`native::Native`]: the store is a host directory; kept images are sealed with a host
//!   key file; stage 2 is FUSE + overlayfs + pivot_root ([`crate::stage2::prepare`]).
//! - [`crate::occlum::Occlum`]: the store is a hostfs mount; nothing is kept; stage 2 fills
//!   an SEFS lower layer and swaps the root with MountRootFS.
//! - a fake in `stage1`'s unit tests.

pub(crate) mod native;

use std::path::{Path, PathBuf};

use encc_rootfs::{DataKey, RootHash, RootfsReader};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;

use crate::config::BootConfig;

/// One platform's side of stage 1.
pub(crate) trait Platform {
    /// What stage 2 leaves running (native: the prepared container root).
    type Entered;

    /// Whether loopback is the host's (Occlum: the LibOS's network is the host's), so it
    /// earns no trust in stage 1.
    const LOOPBACK_IS_HOST: bool;

    /// Makes the store directory usable before anything is pulled into it.
    fn open_store(&self, config: &BootConfig) -> anyhow::Result<()>;

    /// A kept image of `manifest`, opened and checked; `Ok(None)` when there is none (or it
    /// does not open: the platform logs why and the image is pulled again).
    fn reuse(
        &self,
        config: &BootConfig,
        manifest: &Digest,
        reference: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>>;

    /// The kept image of `manifest`, opened and checked, without reserving anything (for a
    /// reference pinned to that digest, before any registry request); `Ok(None)` when there
    /// is none or it does not open (then the flow resolves the image and calls
    /// [`Self::reuse`]). Platforms that keep no images have none.
    fn reuse_kept(
        &self,
        _config: &BootConfig,
        _manifest: &Digest,
        _reference: &ImageRef,
    ) -> anyhow::Result<Option<RootfsReader>> {
        Ok(None)
    }

    /// Where to pull `manifest` to.
    fn image_path(&self, config: &BootConfig, manifest: &Digest) -> anyhow::Result<PathBuf>;

    /// Opens the image just pulled to `image` under `key`, keeping it for later starts when
    /// the platform keeps images. `Ok((reader, true))` when it stays in the store,
    /// `(reader, false)` when it belongs to this start only. On error the flow removes it.
    fn open_pulled(
        &self,
        config: &BootConfig,
        manifest: &Digest,
        key: &DataKey,
        root_hash: &RootHash,
        image: &Path,
    ) -> anyhow::Result<(RootfsReader, bool)>;

    /// Stage 2 from the opened image. `pulled` is the image file of this start only (to be
    /// removed when it is no longer needed); on error the flow removes it.
    fn enter(
        &self,
        reader: RootfsReader,
        config: BootConfig,
        pulled: Option<PathBuf>,
    ) -> anyhow::Result<Self::Entered>;
}

/// A fresh store name for an image of this start only (`encc-<16 hex>.img`).
pub(crate) fn per_start_image(store: &Path) -> anyhow::Result<PathBuf> {
    Ok(store.join(format!("encc-{}.img", random_name()?)))
}

/// 16 random hex digits for names in the store.
pub(crate) fn random_name() -> anyhow::Result<String> {
    use anyhow::Context as _;
    let mut id = [0u8; 8];
    getrandom::fill(&mut id).context("no randomness for a store name")?;
    Ok(hex::encode(id))
}
