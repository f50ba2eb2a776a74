//! The whole-image half of a pull: the builder, the prefetcher and the layer loop.

use std::path::Path;
use std::sync::Arc;

use encc_rootfs::{BuildOptions, DataKey, RootfsBuilder};

use super::apply::Layers;
use super::{
    attachment, resolve, LayerSummary, PullError, PullOptions, PullSummary, ResolvedImage,
};
use crate::prefetch::Prefetch;
use crate::source::Source;
use crate::unpack::Unpacker;

/// Pulls `source`'s image into a new protected rootfs at `dest` under `key`. The image id
/// is derived from the manifest digest, so the same image under the same key gives the same
/// bytes. Call `check` between resolving and fetching layers (the signature policy hook).
pub fn pull(
    source: Arc<dyn Source>,
    dest: &Path,
    key: &DataKey,
    options: &PullOptions,
    check: &dyn Fn(&ResolvedImage) -> Result<(), PullError>,
) -> Result<PullSummary, PullError> {
    let resolved = resolve(&*source, options.platform.as_ref())?;
    check(&resolved)?;
    pull_resolved(source, &resolved, dest, key, options)
}

/// The second half of [`pull`]: fetches the layers of an image already resolved (and
/// checked against the policy) into a new protected rootfs at `dest`.
pub fn pull_resolved(
    source: Arc<dyn Source>,
    resolved: &ResolvedImage,
    dest: &Path,
    key: &DataKey,
    options: &PullOptions,
) -> Result<PullSummary, PullError> {
    let reference = source.reference().to_string();
    let build_err = |source| PullError::Build {
        reference: reference.clone(),
        source,
    };
    let mut image_id = [0u8; 16];
    image_id.copy_from_slice(&resolved.manifest_digest.bytes()[..16]);
    let mut builder = RootfsBuilder::create(
        dest,
        key,
        BuildOptions {
            image_id: Some(image_id),
        },
    )
    .map_err(build_err)?;
    if let Some(p) = &options.progress {
        for (index, d) in resolved.manifest.layers.iter().enumerate() {
            p.layer_started(index, &d.digest, d.size);
        }
    }
    let spool_dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let prefetch = start_prefetch(&source, resolved, &spool_dir, options);
    let mut pipeline = Layers {
        source: &source,
        options,
        spool_dir: &spool_dir,
        prefetch: &prefetch,
        unpacker: Unpacker::new(options.limits.clone()),
    };
    let mut layers = Vec::with_capacity(resolved.manifest.layers.len());
    for (index, descriptor) in resolved.manifest.layers.iter().enumerate() {
        let expected_diff = resolved.config.rootfs.diff_ids[index];
        let stats = pipeline.apply(&mut builder, descriptor, index, expected_diff)?;
        log::info!(
            "layer {index} {} applied: {} entries, {} whiteouts",
            descriptor.digest,
            stats.entries,
            stats.whiteouts
        );
        layers.push(LayerSummary {
            digest: descriptor.digest,
            diff_id: expected_diff,
            size: descriptor.size,
            media_type: descriptor.media_type.clone(),
            stats,
        });
    }
    attach(&mut builder, resolved, &reference);
    let summary = builder.finish().map_err(build_err)?;
    Ok(PullSummary {
        root_hash: summary.root_hash,
        manifest_digest: resolved.manifest_digest,
        config_digest: resolved.manifest.config.digest,
        layers,
        bytes: summary.bytes,
    })
}

/// Downloads of later layers running at once.
const PREFETCH_PARALLEL: usize = 3;

/// The first layer streams straight from the source; later ones download meanwhile into
/// encrypted spools beside the image (never as plaintext), at most 3 at a time.
fn start_prefetch(
    source: &Arc<dyn Source>,
    resolved: &ResolvedImage,
    spool_dir: &Path,
    options: &PullOptions,
) -> Prefetch {
    let later: Vec<_> = resolved
        .manifest
        .layers
        .iter()
        .cloned()
        .enumerate()
        .skip(1)
        .collect();
    Prefetch::start(
        Arc::clone(source),
        later,
        spool_dir,
        PREFETCH_PARALLEL,
        options.progress.clone(),
        options.stall_timeout,
    )
}

/// Records what the pull verified in the image.
fn attach(builder: &mut RootfsBuilder, resolved: &ResolvedImage, reference: &str) {
    builder.attach(attachment::CONFIG, resolved.config_bytes.clone());
    builder.attach(attachment::MANIFEST, resolved.manifest_bytes.clone());
    builder.attach(
        attachment::MANIFEST_DIGEST,
        resolved.manifest_digest.to_string().into_bytes(),
    );
    builder.attach(attachment::REFERENCE, reference.as_bytes().to_vec());
}
