//! The native platform's side of stage 1: the store is a host directory (mode 0700), images
//! are kept only with a `seal_key_file` (sealed beside them, reused while the seal opens),
//! and stage 2 is the FUSE + overlayfs + pivot_root root of [`crate::stage2::prepare`].

use std::os::unix::fs::DirBuilderExt as _;
use std::path::{Path, PathBuf};

use anyhow::Context as _;
use encc_rootfs::{DataKey, RootHash, RootfsReader};

use super::{per_start_image, Platform};
use crate::config::BootConfig;
use crate::seal::{open_seal, write_seal, SealedPaths};
use crate::stage2::{prepare, Running};

/// The native platform (namespaces simulate the enclave).
pub(crate) struct Native;

/// The PAL's `init` on the native platform: boot config, stage 1, stage 2 preparation.
pub(crate) fn boot(boot_config: &Path, image: &str) -> anyhow::Result<Running> {
    let config = crate::stage1::load_boot_config(boot_config, " (simulated measurement)")?;
    crate::stage1::boot(&Native, config, image)
}

impl Native {
    fn sealing_key(config: &BootConfig) -> anyhow::Result<Option<DataKey>> {
        config
            .seal_key_file
            .as_ref()
            .map(|path| {
                DataKey::read_file(path).with_context(|| format!("sealing key {}", path.display()))
            })
            .transpose()
    }
}

impl Platform for Native {
    type Entered = Running;

    fn open_store(&self, config: &BootConfig) -> anyhow::Result<()> {
        std::fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&config.store)
            .with_context(|| format!("cannot create the store {}", config.store.display()))
    }

    fn reuse(&self, config: &BootConfig, manifest: &str) -> anyhow::Result<Option<RootfsReader>> {
        let Some(sealing) = Self::sealing_key(config)? else {
            return Ok(None);
        };
        let sealed = SealedPaths::new(&config.store, manifest);
        if !(sealed.image.exists() && sealed.seal.exists()) {
            return Ok(None);
        }
        match reuse(&sealing, &sealed, manifest) {
            Ok(reader) => Ok(Some(reader)),
            Err(e) => {
                log::warn!("{e:#}; pulling {manifest} again");
                Ok(None)
            }
        }
    }

    fn image_path(&self, config: &BootConfig, manifest: &str) -> anyhow::Result<PathBuf> {
        match config.seal_key_file {
            Some(_) => Ok(SealedPaths::new(&config.store, manifest).image),
            None => per_start_image(&config.store),
        }
    }

    fn open_pulled(
        &self,
        config: &BootConfig,
        manifest: &str,
        key: &DataKey,
        root_hash: &RootHash,
        image: &Path,
    ) -> anyhow::Result<(RootfsReader, bool)> {
        let kept = match Self::sealing_key(config)? {
            Some(sealing) => {
                let sealed = SealedPaths::new(&config.store, manifest);
                write_seal(&sealing, &sealed.seal, manifest, key, root_hash)?;
                true
            }
            None => false,
        };
        Ok((RootfsReader::open(image, key)?, kept))
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

/// Opens a kept image with its sealed key, checking the sealed root hash.
fn reuse(sealing: &DataKey, paths: &SealedPaths, manifest: &str) -> anyhow::Result<RootfsReader> {
    let (key, root) = open_seal(sealing, &paths.seal, manifest)?;
    let reader = RootfsReader::open(&paths.image, &key)?;
    anyhow::ensure!(
        reader.root_hash() == root,
        "{} has root hash {}, its seal says {root}",
        paths.image.display(),
        reader.root_hash()
    );
    Ok(reader)
}
