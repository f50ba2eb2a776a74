//! Stage 1 inside the enclave, one flow for both platforms: load and measure the boot
//! config, resolve the image and check the policy, pull it under a fresh data key that never
//! leaves enclave memory (or reuse an image the platform kept), and hand the result to the
//! platform's stage 2 (`Platform`).

use std::path::Path;

use anyhow::Context as _;
use encc_rootfs::{DataKey, RootfsReader};
use encc_stage1::boot::{PolicySource, Stage1, Stage1Config};
use encc_stage1::kbs::KbsConfig;
use encc_stage1::pull::PullOptions;
use encc_stage1::reference::{DockerRef, ImageRef};
use encc_stage1::source::RegistryOptions;

use crate::config::{host_owns_loopback, host_reference, BootConfig, PlainKbsError, PolicyRef};
use crate::platform::Platform;

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
                tls_verify: config.tls_verify,
                trust_loopback: !untrusted_loopback,
                ..RegistryOptions::default()
            },
            // On a terminal a person watches the pull; the bars go once it is done.
            progress: encc_stage1::progress::Bars::on_terminal(true),
            ..PullOptions::default()
        },
    })
}

/// Loads the trusted boot config, logs its sha256 (`note` says what the measurement is)
/// and applies its log level.
pub(crate) fn load_boot_config(path: &Path, note: &str) -> anyhow::Result<BootConfig> {
    let loaded = BootConfig::load(path)?;
    log::set_max_level(loaded.config.log_level);
    crate::config::report_scrubbed();
    log::info!(
        "boot config {} sha256:{}{note}",
        path.display(),
        loaded.sha256
    );
    Ok(loaded.config)
}

/// Stage 1 on either platform: the host's image reference, the store, resolve and policy,
/// a kept image or a pull under a fresh data key (never leaving enclave memory), the
/// measurement, then the platform's stage 2. A pulled image of this start only is removed
/// when stage 2 fails.
pub(crate) fn boot<P: Platform>(
    platform: &P,
    config: BootConfig,
    image: &str,
) -> anyhow::Result<P::Entered> {
    let reference = host_reference(&config, image)?;
    platform.open_store(&config)?;
    let stage1 = Stage1::prepare(&stage1_config(&config, P::LOOPBACK_IS_HOST)?)?;
    if let Some(reader) = reuse_pinned(platform, &config, &stage1, &reference)? {
        return platform.enter(reader, config, None);
    }
    let resolved = stage1.resolve(&reference)?;
    let manifest = resolved.image.manifest_digest;
    if let Some(reader) = platform.reuse(&config, &manifest, &reference)? {
        log::info!(
            "rootfs measurement {} for {reference} (manifest {manifest}): sealed image reused",
            reader.root_hash()
        );
        return platform.enter(reader, config, None);
    }

    let key = DataKey::generate()?;
    let output = platform.image_path(&config, &manifest)?;
    let summary = stage1
        .pull_resolved(&resolved, &output, &key)
        .with_context(|| format!("pull of {reference} into {} failed", output.display()))?;
    log::info!(
        "rootfs measurement {} for {reference} (manifest {manifest})",
        summary.root_hash
    );
    let (reader, kept) =
        match platform.open_pulled(&config, &manifest, &key, &summary.root_hash, &output) {
            Ok(opened) => opened,
            Err(e) => {
                remove_pulled(&output);
                return Err(e);
            }
        };
    // A kept image stays for the next start; otherwise it is this start's to remove.
    let pulled = (!kept).then(|| output.clone());
    let entered = platform.enter(reader, config, pulled.clone());
    if entered.is_err() {
        if let Some(image) = &pulled {
            remove_pulled(image);
        }
    }
    entered
}

/// A kept image for a reference pinned to its manifest digest, opened without a registry
/// request: only when the policy accepts the reference without signatures (a rejecting
/// scope fails here as it would after resolving). The seal binds the data key and root hash
/// to the manifest digest, and the image must authenticate under that key with that root
/// hash, so the host's choice of reference selects no other image than a resolve of the
/// same digest would have; its config comes from inside the image, as on every reuse.
fn reuse_pinned<P: Platform>(
    platform: &P,
    config: &BootConfig,
    stage1: &Stage1,
    reference: &ImageRef,
) -> anyhow::Result<Option<RootfsReader>> {
    let ImageRef::Docker(DockerRef {
        digest: Some(manifest),
        ..
    }) = reference
    else {
        return Ok(None);
    };
    if !stage1.accepts_without_registry(reference)? {
        return Ok(None);
    }
    let reader = platform.reuse_kept(config, manifest, reference)?;
    if let Some(reader) = &reader {
        log::info!(
            "rootfs measurement {} for {reference} (manifest {manifest}): sealed image reused \
             without contacting the registry (pinned digest, policy needs no signature)",
            reader.root_hash()
        );
    }
    Ok(reader)
}

fn remove_pulled(image: &Path) {
    match std::fs::remove_file(image) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => log::warn!("cannot remove {}: {e}", image.display()),
    }
}

#[cfg(test)]
mod tests;
