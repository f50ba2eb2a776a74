//! Stage 1 inside the enclave: load and measure the boot config, resolve the image and check
//! the policy, pull it under a fresh data key that never leaves enclave memory (or reuse the
//! image a sealing key kept), and hand the result to stage 2.

use std::path::{Path, PathBuf};

use anyhow::Context as _;
use encc_rootfs::DataKey;
use encc_stage1::attester::AttesterKind;
use encc_stage1::boot::{PolicySource, Stage1, Stage1Config};
use encc_stage1::kbs::{KbsConfig, ResourceUri};
use encc_stage1::pull::PullOptions;
use encc_stage1::reference::ImageRef;
use encc_stage1::source::RegistryOptions;

use crate::config::BootConfig;
use crate::stage2::{prepare, Running};
use crate::store::{Kept, Store};

/// The stage 1 settings a boot config implies.
pub fn stage1_config(config: &BootConfig) -> anyhow::Result<Stage1Config> {
    let policy = match &config.policy {
        Some(uri) if ResourceUri::is_kbs(uri) => PolicySource::Kbs(
            uri.parse()
                .with_context(|| format!("boot config policy {uri:?}"))?,
        ),
        Some(path) => PolicySource::File(PathBuf::from(path)),
        None => PolicySource::InsecureAcceptAnything,
    };
    let kbs = match &config.kbs {
        Some(kbs) => Some(KbsConfig {
            attester: kbs
                .attester
                .parse::<AttesterKind>()
                .with_context(|| format!("boot config kbs.attester {:?}", kbs.attester))?,
            ..KbsConfig::new(kbs.url.clone())
        }),
        None => None,
    };
    Ok(Stage1Config {
        policy,
        kbs,
        registries_d: config.registries_d.clone(),
        decryption_keys: config.decryption_keys.iter().map(PathBuf::from).collect(),
        pull: PullOptions {
            registry: RegistryOptions {
                insecure_registries: config.insecure_registries.clone(),
                ..RegistryOptions::default()
            },
            ..PullOptions::default()
        },
    })
}

/// The PAL's `init` on the native platform: boot config, stage 1, stage 2 preparation.
pub(crate) fn boot(boot_config: &Path, image: &str) -> anyhow::Result<Running> {
    let loaded = BootConfig::load(boot_config)?;
    if let Ok(level) = loaded.config.log_level.parse::<log::LevelFilter>() {
        log::set_max_level(level);
    }
    log::info!(
        "boot config {} sha256:{} (simulated measurement)",
        boot_config.display(),
        loaded.sha256
    );
    let config = loaded.config;
    let reference: ImageRef = image
        .parse()
        .with_context(|| format!("image reference {image:?} from the host"))?;
    let store = Store::open(&config.store)?;

    let stage1 = Stage1::prepare(&stage1_config(&config)?)?;
    let resolved = stage1.resolve(&reference)?;
    let manifest = resolved.image.manifest_digest;
    let sealing = match &config.seal_key_file {
        Some(path) => Some(
            DataKey::read_file(path).with_context(|| format!("sealing key {}", path.display()))?,
        ),
        None => None,
    };
    let kept = match &sealing {
        Some(sealing) => store.reuse_or_reserve(sealing, &manifest, &reference.to_string())?,
        None => Kept::Pull(store.reserve_one_start()?),
    };
    let reservation = match kept {
        Kept::Reused(reader) => {
            log::info!(
                "rootfs measurement {} for {reference} (manifest {manifest}): sealed image reused",
                reader.root_hash()
            );
            return prepare(*reader, config, None);
        }
        Kept::Pull(reservation) => reservation,
    };

    let key = DataKey::generate()?;
    let output = reservation.image().to_owned();
    let summary = stage1
        .pull_resolved(&resolved, &output, &key)
        .with_context(|| format!("pull of {reference} into {} failed", output.display()))?;
    log::info!(
        "rootfs measurement {} for {reference} (manifest {manifest})",
        summary.root_hash
    );
    // A sealed image stays for the next start; otherwise it goes at teardown.
    let delete_at_teardown = sealing.is_none().then(|| output.clone());
    let opened = reservation
        .open(&key, &summary.root_hash)
        .map_err(anyhow::Error::from)
        .and_then(|reader| prepare(reader, config, delete_at_teardown.clone()));
    if opened.is_err() {
        if let Some(image) = &delete_at_teardown {
            let _ = std::fs::remove_file(image);
        }
    }
    opened
}
