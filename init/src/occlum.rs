//! The Occlum platform: `init` as Occlum's first-stage init inside an SGX enclave.
//!
//! **Never run on SGX or inside the Occlum LibOS**: it needs SGX hardware and the Occlum
//! SDK. The tests run it under an Occlum interface emulator (tests/); its syscall structs
//! are layout-tested in `encc_rootfs::occlum`.
//!
//! Flow: the boot config from the measured initfs, the image reference from the untrusted
//! `ENCC_IMAGE` variable, then the shared stage 1 (`crate::stage1::boot`) with this
//! platform's side: the store (hostfs) mounted by init itself (Occlum.json's mounts apply
//! only after the root swap); nothing kept across starts; stage 2 extracts the verified tree
//! into a per-start SEFS lower layer encrypted by the LibOS under a fresh SEFS key, adds
//! encc's exec shim and the launch plan (`lower`), and MountRootFS (syscall 363) makes it
//! the root with an SEFS upper layer. init then exits 0, and the host may start only the
//! shim ([`encc_exec::EXEC_PATH`]), which runs the image's entrypoint as the plan says.
//! After a failure nothing of this start is left in the store (image, lower, upper layer).

mod lower;

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use encc_exec::EXEC_PATH;
use encc_rootfs::occlum::{hostfs_mount_options, mount_rootfs, OcclumRootfs, SefsKey};
use encc_rootfs::{DataKey, RootHash, RootfsReader};
use encc_stage1::digest::Digest;
use encc_stage1::reference::ImageRef;
use nix::mount::{mount, MsFlags};

use crate::config::BootConfig;
use crate::launch::launch_plan;
use crate::platform::{per_start_image, random_name, Platform};
use crate::stage2::image_run_config;

/// Where the host names the image.
pub use encc_interface::names::IMAGE_ENV;
/// The boot config's place in the initfs.
pub use encc_interface::names::INITFS_BOOT_CONFIG_PATH as BOOT_CONFIG_PATH;

/// Whether init runs under Occlum (`OCCLUM=yes`).
pub fn is_selected() -> bool {
    encc_rootfs::occlum::is_occlum()
}

/// Runs the first boot stage under Occlum.
pub fn run() -> Result<()> {
    let config = crate::stage1::load_boot_config(Path::new(BOOT_CONFIG_PATH), "")?;
    let image =
        std::env::var(IMAGE_ENV).with_context(|| format!("{IMAGE_ENV} must name the image"))?;
    crate::stage1::boot(&Occlum, config, &image)
}

/// The Occlum platform's side of stage 1.
pub(crate) struct Occlum;

impl Platform for Occlum {
    type Entered = ();
    const LOOPBACK_IS_HOST: bool = true;

    fn open_store(&self, config: &BootConfig) -> Result<()> {
        let store = &config.store;
        std::fs::create_dir_all(store)
            .with_context(|| format!("cannot create {}", store.display()))?;
        let options = hostfs_mount_options(store)?;
        mount(
            Some("hostfs"),
            store,
            Some("hostfs"),
            MsFlags::empty(),
            Some(options.as_str()),
        )
        .with_context(|| format!("cannot mount the store {} (hostfs)", store.display()))
    }

    /// Nothing is kept: there is no sealing of kept images on Occlum yet.
    fn reuse(
        &self,
        _config: &BootConfig,
        _manifest: &Digest,
        _reference: &ImageRef,
    ) -> Result<Option<RootfsReader>> {
        Ok(None)
    }

    fn image_path(&self, config: &BootConfig, _manifest: &Digest) -> Result<PathBuf> {
        per_start_image(&config.store)
    }

    /// Nothing is kept: the image is this start's only.
    fn open_pulled(
        &self,
        _config: &BootConfig,
        _manifest: &Digest,
        key: &DataKey,
        root_hash: &RootHash,
        image: &Path,
    ) -> Result<(RootfsReader, bool)> {
        // The image went through host storage: its reopened root must be the one built.
        let reader = RootfsReader::open(image, key)?;
        anyhow::ensure!(
            reader.root_hash() == *root_hash,
            "{} reopened with root hash {}, but the pull built {root_hash}",
            image.display(),
            reader.root_hash()
        );
        Ok((reader, false))
    }

    fn enter(
        &self,
        reader: RootfsReader,
        config: BootConfig,
        pulled: Option<PathBuf>,
    ) -> Result<()> {
        let run = image_run_config(&reader)?;
        if let Some(user) = run.user.as_deref().filter(|u| !u.is_empty()) {
            // Occlum 0.30 has no setuid (syscall/mod.rs: `Setuid = 105 => handle_unsupported`).
            log::warn!("occlum: the image user {user:?} is not applied: the LibOS has one user");
        }
        let plan = launch_plan(&run, &config, "/root");
        let layers = Layers::new(&config.store)?;
        let key = SefsKey::generate().context("no randomness for the SEFS key")?;

        // Occlum's SEFS does not create its host directory (SgxStorage::new in
        // src/libos/src/fs/sefs/sgx_storage.rs only records the path): init makes both.
        let filled = layers
            .create()
            .and_then(|()| lower::fill(&reader, &layers.lower, &key, &plan, &config.store));
        drop(reader);
        // The verified tree is in SEFS now (or the fill failed): the image goes either way.
        let removed = match &pulled {
            Some(image) => std::fs::remove_file(image)
                .with_context(|| format!("cannot remove {}", image.display())),
            None => Ok(()),
        };
        let mounted = filled
            .and(removed)
            .and_then(|()| mount_rootfs(&rootfs_config(&layers, key)).map_err(anyhow::Error::from));
        if mounted.is_err() {
            layers.remove();
        }
        mounted
    }
}

/// The host paths of this start's two SEFS layers (per start: no other start's layer, and
/// no layer a host left behind, is ever mounted).
struct Layers {
    lower: PathBuf,
    upper: PathBuf,
}

impl Layers {
    fn new(store: &Path) -> Result<Self> {
        let name = random_name()?;
        Ok(Self {
            lower: store.join(format!("sefs-{name}-lower")),
            upper: store.join(format!("sefs-{name}-upper")),
        })
    }

    /// Creates both (empty) host directories through the hostfs store mount.
    fn create(&self) -> Result<()> {
        for dir in [&self.lower, &self.upper] {
            std::fs::create_dir(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        }
        Ok(())
    }

    fn remove(&self) {
        for dir in [&self.lower, &self.upper] {
            match std::fs::remove_dir_all(dir) {
                Ok(()) => {}
                Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
                Err(e) => log::warn!("cannot remove {}: {e}", dir.display()),
            }
        }
    }
}

/// MountRootFS's config. The entry point is the exact path of encc-exec: Occlum 0.30 checks
/// every `occlum_pal_create_process` path with `validate_program_path` in
/// `src/libos/src/entry.rs` — absolute, no `..` component, and
/// `target_path.starts_with(valid_path_prefix)` for one of the entry points, where
/// `Path::starts_with` compares whole components — and `ConfigApp::from_user` in
/// `src/libos/src/config.rs` makes this `entry_point` the app stage's only entry point. A
/// file path therefore admits that file alone; a directory (`/` for `/app`) would admit
/// every program of the image with any argv.
fn rootfs_config(layers: &Layers, key: SefsKey) -> OcclumRootfs {
    OcclumRootfs {
        lower_layer: layers.lower.clone(),
        upper_layer: layers.upper.clone(),
        entry_point: PathBuf::from(EXEC_PATH),
        hostfs_source: None,
        hostfs_target: None,
        // The container's environment is in the launch plan; Occlum's env.default stays.
        env: Vec::new(),
        key: Some(key),
    }
}

#[cfg(test)]
mod tests;
