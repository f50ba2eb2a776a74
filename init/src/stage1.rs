//! Stage 1 inside the enclave: load and measure the boot config, resolve the image and check
//! the policy, pull it under a fresh data key that never leaves enclave memory (or reuse the
//! image a sealing key kept), and hand the result to stage 2.

use std::path::Path;

use anyhow::Context as _;
use encc_rootfs::DataKey;
use encc_stage1::boot::{PolicySource, Stage1, Stage1Config};
use encc_stage1::kbs::KbsConfig;
use encc_stage1::pull::PullOptions;
use encc_stage1::source::RegistryOptions;

use crate::config::{host_owns_loopback, host_reference, BootConfig, PlainKbsError, PolicyRef};
use crate::stage2::{prepare, Running};
use crate::store::{Kept, Store};

/// The stage 1 settings a boot config implies (its values are typed since it was loaded).
/// `on_occlum`: the platform is Occlum, where loopback is the host.
pub fn stage1_config(config: &BootConfig, on_occlum: bool) -> Result<Stage1Config, PlainKbsError> {
    let policy = match &config.policy {
        PolicyRef::File(path) => PolicySource::File(path.clone()),
        PolicyRef::Kbs(uri) => PolicySource::Kbs(uri.clone()),
        PolicyRef::Insecure => PolicySource::InsecureAcceptAnything,
    };
    let untrusted_loopback = host_owns_loopback(config, on_occlum);
    if let Some(kbs) = config.kbs.as_ref() {
        if untrusted_loopback && !kbs.url.starts_with("https://") {
            return Err(PlainKbsError {
                url: kbs.url.clone(),
            });
        }
    }
    Ok(Stage1Config {
        policy,
        kbs: config.kbs.as_ref().map(|kbs| KbsConfig {
            attester: kbs.attester,
            ..KbsConfig::new(kbs.url.clone())
        }),
        registries_d: config.registries_d.clone(),
        decryption_keys: config.decryption_keys.clone(),
        pull: PullOptions {
            registry: RegistryOptions {
                insecure_registries: config.insecure_registries.clone(),
                trust_loopback: !untrusted_loopback,
                ..RegistryOptions::default()
            },
            ..PullOptions::default()
        },
    })
}

/// The PAL's `init` on the native platform: boot config, stage 1, stage 2 preparation.
pub(crate) fn boot(boot_config: &Path, image: &str) -> anyhow::Result<Running> {
    let loaded = BootConfig::load(boot_config)?;
    log::set_max_level(loaded.config.log_level);
    log::info!(
        "boot config {} sha256:{} (simulated measurement)",
        boot_config.display(),
        loaded.sha256
    );
    let config = loaded.config;
    let reference = host_reference(&config, image)?;
    let store = Store::open(&config.store)?;

    let stage1 = Stage1::prepare(&stage1_config(&config, crate::occlum::is_selected())?)?;
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
