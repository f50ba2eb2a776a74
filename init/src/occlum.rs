//! The Occlum platform: `init` as Occlum's first-stage init inside an SGX enclave.
//!
//! **Never run here**: it needs SGX hardware and the Occlum SDK. It is compiled and its
//! syscall structs are layout-tested (in `encc_rootfs::occlum`); nothing claims it works.
//!
//! Flow: the boot config from the measured initfs, the image reference from the untrusted
//! `ENCC_IMAGE` variable; the store (hostfs) mounted by init itself (Occlum.json's mounts
//! apply only after the root swap); stage 1 pulls into the store under a fresh data key;
//! stage 2 extracts the verified tree into an SEFS lower layer encrypted by the LibOS under a
//! fresh SEFS key, and MountRootFS (syscall 363) makes it the root with an SEFS upper layer.
//! init then exits 0, and the host starts the entry program with create_process.

use std::path::{Path, PathBuf};

use anyhow::{Context as _, Result};
use encc_rootfs::occlum::{
    hostfs_mount_options, mount_rootfs, sefs_mount_options, OcclumRootfs, SefsKey, SEFS_KEY_LEN,
};
use encc_rootfs::{host_tree, DataKey, RootfsReader};
use encc_stage1::boot::Stage1;
use nix::mount::{mount, umount2, MntFlags, MsFlags};

use crate::config::{host_reference, BootConfig};
use crate::launch::entry_program;
use crate::stage1::stage1_config;
use crate::stage2::image_run_config;

/// Where the host names the image.
pub use encc_interface::names::IMAGE_ENV;
/// The boot config's place in the initfs.
pub use encc_interface::names::INITFS_BOOT_CONFIG_PATH as BOOT_CONFIG_PATH;
/// Where init mounts the SEFS lower layer to fill it.
const STAGING: &str = "/encc-lower";

/// Whether init runs under Occlum (`OCCLUM=yes`).
pub fn is_selected() -> bool {
    encc_rootfs::occlum::is_occlum()
}

/// Runs the first boot stage under Occlum.
pub fn run() -> Result<()> {
    let loaded = BootConfig::load(Path::new(BOOT_CONFIG_PATH))?;
    log::info!("boot config {BOOT_CONFIG_PATH} sha256:{}", loaded.sha256);
    let config = loaded.config;
    let image = host_reference(
        &config,
        &std::env::var(IMAGE_ENV).with_context(|| format!("{IMAGE_ENV} must name the image"))?,
    )?;

    let store = config.store.clone();
    std::fs::create_dir_all(&store)
        .with_context(|| format!("cannot create {}", store.display()))?;
    let options = hostfs_mount_options(&store)?;
    mount(
        Some("hostfs"),
        &store,
        Some("hostfs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("cannot mount the store {} (hostfs)", store.display()))?;

    let key = DataKey::generate()?;
    let pulled = store.join("encc-rootfs.img");
    let summary = Stage1::prepare(&stage1_config(&config, true)?)?.pull(&image, &pulled, &key)?;
    log::info!("rootfs measurement {} for {image}", summary.root_hash);
    let reader = RootfsReader::open(&pulled, &key)?;
    let run = image_run_config(&reader)?;
    let program = entry_program(&run)
        .context("the image has no Entrypoint or Cmd")?
        .to_owned();

    let mut raw = [0u8; SEFS_KEY_LEN];
    getrandom::fill(&mut raw).context("no randomness for the SEFS key")?;
    let sefs_key = SefsKey::from_bytes(raw);
    let (lower, upper) = (store.join("sefs-lower"), store.join("sefs-upper"));
    fill_lower(&reader, &lower, &sefs_key)?;
    std::fs::remove_file(&pulled).with_context(|| format!("cannot remove {}", pulled.display()))?;

    let entry_dir = Path::new(&program)
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/"));
    mount_rootfs(&OcclumRootfs {
        lower_layer: lower,
        upper_layer: upper,
        entry_point: entry_dir,
        hostfs_source: None,
        hostfs_target: None,
        env: config.env.clone(),
        key: Some(sefs_key),
    })?;
    Ok(())
}

/// Extracts the verified image into a new SEFS at `lower` (host path), through an
/// in-enclave mount: the LibOS encrypts every file before it reaches the host.
fn fill_lower(reader: &RootfsReader, lower: &Path, key: &SefsKey) -> Result<()> {
    std::fs::create_dir_all(STAGING).with_context(|| format!("cannot create {STAGING}"))?;
    let options = sefs_mount_options(lower, Some(key))?;
    mount(
        Some("sefs"),
        STAGING,
        Some("sefs"),
        MsFlags::empty(),
        Some(options.as_str()),
    )
    .with_context(|| format!("cannot mount SEFS {} on {STAGING}", lower.display()))?;
    let extracted = host_tree::extract(reader, Path::new(STAGING).join("root").as_path());
    let unmounted = umount2(STAGING, MntFlags::empty());
    extracted.context("cannot extract the image into SEFS")?;
    unmounted.context("cannot unmount the SEFS lower layer")?;
    Ok(())
}
