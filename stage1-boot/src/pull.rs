//! Pulling an image into a protected rootfs: resolve the manifest (checking every digest),
//! fetch and check the config, then stream each layer through fetch → sha256 → decompress →
//! diff_id → tar → whiteouts → builder, committing a layer only once both of its digests
//! match. A failed pull leaves no image behind.

use std::path::Path;
use std::sync::Arc;

use encc_rootfs::{BuildError, BuildOptions, DataKey, RootHash, RootfsBuilder};

use crate::digest::Digest;
use crate::jwe::PrivateKey;
use crate::kbs::KbsClient;
use crate::layer::{self, FetchError, Progress};
use crate::manifest::{
    Descriptor, DocumentKind, ImageConfig, Index, LayerType, Manifest, Platform,
};
use crate::ocicrypt::blockcipher::{layer_key, LayerKeyError};
use crate::ocicrypt::keyprovider::{KekSource, PROVIDER_ATTESTATION_AGENT};
use crate::prefetch::Prefetch;
use crate::source::{read_document, RegistryOptions, Source, SourceError};
use crate::unpack::{self, LayerStats, UnpackError};

/// Attachment names under which the pull records what it verified.
pub mod attachment {
    /// The image config JSON, verbatim.
    pub const CONFIG: &str = "oci.config";
    /// The image manifest JSON, verbatim.
    pub const MANIFEST: &str = "oci.manifest";
    /// The manifest digest (`sha256:…`).
    pub const MANIFEST_DIGEST: &str = "oci.manifest-digest";
    /// The image reference as given.
    pub const REFERENCE: &str = "oci.reference";
}

/// Options of a pull.
#[derive(Clone, Default)]
pub struct PullOptions {
    /// Platform to pick from an index; default the running one.
    pub platform: Option<Platform>,
    /// How to reach registries.
    pub registry: RegistryOptions,
    /// Download progress observer.
    pub progress: Option<Arc<dyn Progress>>,
    /// Private keys for ocicrypt-encrypted layers (like skopeo's `--decryption-key`).
    pub decryption_keys: Arc<Vec<PrivateKey>>,
    /// The Key Broker Service that holds the KEKs of layers encrypted with Confidential
    /// Containers' key provider (`…enc.keys.provider.attestation-agent`).
    pub kbs: Option<Arc<KbsClient>>,
}

/// A manifest resolved for one platform, with its verified config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Digest of the platform manifest.
    pub manifest_digest: Digest,
    /// Its bytes.
    pub manifest_bytes: Vec<u8>,
    /// Parsed manifest.
    pub manifest: Manifest,
    /// Digest of the index the manifest was picked from, if any.
    pub index_digest: Option<Digest>,
    /// Config bytes (digest verified).
    pub config_bytes: Vec<u8>,
    /// Parsed config.
    pub config: ImageConfig,
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PullSummary {
    /// The rootfs measurement.
    pub root_hash: RootHash,
    /// The manifest pulled.
    pub manifest_digest: Digest,
    /// Its config.
    pub config_digest: Digest,
    /// The layers, base first.
    pub layers: Vec<LayerSummary>,
    /// Image size in bytes.
    pub bytes: u64,
}

/// One applied layer.
#[derive(Debug, Clone)]
pub struct LayerSummary {
    /// Blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Entries and whiteouts.
    pub stats: LayerStats,
}

/// Errors of a pull. Each names the reference and the object.
#[derive(Debug, thiserror::Error)]
pub enum PullError {
    /// The source failed.
    #[error("cannot pull {reference}")]
    Source {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: Box<SourceError>,
    },
    /// A manifest, index, config or layer does not match its expected digest or size.
    #[error(transparent)]
    DigestMismatch(Box<DigestMismatch>),
    /// The signature policy refused the image (before any layer was fetched).
    #[error("{reference} rejected by policy scope {scope:?}: {reason}")]
    Rejected {
        /// The reference.
        reference: String,
        /// The policy scope that applied.
        scope: String,
        /// Why.
        reason: String,
    },
    /// A media type encc does not know.
    #[error("{what} of {reference} has unsupported media type {media_type:?}")]
    MediaType {
        /// The reference.
        reference: String,
        /// Which object.
        what: String,
        /// The media type.
        media_type: String,
    },
    /// A document is not valid JSON of the expected shape.
    #[error("{what} of {reference} is invalid")]
    Document {
        /// The reference.
        reference: String,
        /// Which document.
        what: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// No index entry for the wanted platform.
    #[error("{reference} has no image for platform {platform} (it has: {available})")]
    NoPlatform {
        /// The reference.
        reference: String,
        /// Wanted platform.
        platform: Platform,
        /// Platforms the index lists.
        available: String,
    },
    /// The config's layer list disagrees with the manifest.
    #[error("{reference}: manifest has {layers} layers but the config lists {diff_ids} diff_ids")]
    LayerCount {
        /// The reference.
        reference: String,
        /// Layers in the manifest.
        layers: usize,
        /// diff_ids in the config.
        diff_ids: usize,
    },
    /// The layer is encrypted and no decryption is configured.
    #[error("layer {digest} of {reference} is encrypted ({media_type}) and no decryption key is configured")]
    Encrypted {
        /// The reference.
        reference: String,
        /// The layer.
        digest: Digest,
        /// Its media type.
        media_type: String,
    },
    /// The layer's key could not be obtained (no key opens it, malformed annotations).
    #[error("cannot decrypt layer {digest} of {reference}")]
    LayerKey {
        /// The reference.
        reference: String,
        /// The layer.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<LayerKeyError>,
    },
    /// Fetching or decompressing a layer failed.
    #[error("layer {index} of {reference}")]
    Fetch {
        /// The reference.
        reference: String,
        /// Layer index (0 = base).
        index: usize,
        /// The cause.
        #[source]
        source: Box<FetchError>,
    },
    /// Unpacking a layer failed.
    #[error("layer {digest} of {reference} cannot be unpacked")]
    Unpack {
        /// The reference.
        reference: String,
        /// The layer.
        digest: Digest,
        /// The cause.
        #[source]
        source: Box<UnpackError>,
    },
    /// Writing the image failed.
    #[error("cannot write the protected image for {reference}")]
    Build {
        /// The reference.
        reference: String,
        /// The cause.
        #[source]
        source: BuildError,
    },
}

/// A digest or size check that failed.
#[derive(Debug, thiserror::Error)]
#[error("{what} of {reference} has digest {actual} ({actual_size} bytes), expected {expected}{expected_size}")]
pub struct DigestMismatch {
    /// The reference.
    pub reference: String,
    /// What was checked.
    pub what: String,
    /// Expected digest.
    pub expected: Digest,
    /// Expected size, formatted (" (N bytes)") or empty.
    pub expected_size: String,
    /// Actual digest.
    pub actual: Digest,
    /// Actual size.
    pub actual_size: u64,
}

/// Resolves the reference's manifest for a platform and fetches its config, checking every
/// digest and size. Nothing of any layer is fetched.
pub fn resolve(
    source: &dyn Source,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, PullError> {
    let reference = source.reference().to_string();
    let src_err = |source| PullError::Source {
        reference: reference.clone(),
        source: Box::new(source),
    };
    let fetched = source.root_manifest().map_err(src_err)?;
    let root_digest = Digest::of(&fetched.bytes);
    if let Some(expected) = source.expected_root_digest() {
        check_digest(&reference, "manifest", &expected, None, &fetched.bytes)?;
    }
    let kind = document_kind(&reference, "manifest", &fetched.media_type)?;
    let (manifest_bytes, manifest_digest, index_digest) = match kind {
        DocumentKind::Manifest => (fetched.bytes, root_digest, None),
        DocumentKind::Index => {
            let index: Index = parse(&reference, "index", &fetched.bytes)?;
            let wanted = platform.cloned().unwrap_or_else(Platform::host);
            let entry = index
                .manifests
                .iter()
                .find(|d| d.platform.as_ref().is_some_and(|p| wanted.accepts(p)))
                .ok_or_else(|| PullError::NoPlatform {
                    reference: reference.clone(),
                    platform: wanted.clone(),
                    available: index
                        .manifests
                        .iter()
                        .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
                        .collect::<Vec<_>>()
                        .join(", "),
                })?;
            let what = format!("manifest {} (from index)", entry.digest);
            let child = source.manifest(entry).map_err(src_err)?;
            check_digest(
                &reference,
                &what,
                &entry.digest,
                Some(entry.size),
                &child.bytes,
            )?;
            if document_kind(&reference, &what, &child.media_type)? != DocumentKind::Manifest {
                return Err(PullError::MediaType {
                    reference,
                    what,
                    media_type: child.media_type,
                });
            }
            (child.bytes, entry.digest, Some(root_digest))
        }
    };
    let manifest: Manifest = parse(&reference, "manifest", &manifest_bytes)?;
    let what = format!("config {}", manifest.config.digest);
    let config_bytes = {
        let reader = source.blob(&manifest.config, 0).map_err(src_err)?;
        read_document(reader, source.reference(), &what).map_err(src_err)?
    };
    check_digest(
        &reference,
        &what,
        &manifest.config.digest,
        Some(manifest.config.size),
        &config_bytes,
    )?;
    let config: ImageConfig = parse(&reference, &what, &config_bytes)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            reference,
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    for layer in &manifest.layers {
        if LayerType::from_media_type(&layer.media_type).is_none() {
            return Err(PullError::MediaType {
                reference,
                what: format!("layer {}", layer.digest),
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(ResolvedImage {
        manifest_digest,
        manifest_bytes,
        manifest,
        index_digest,
        config_bytes,
        config,
    })
}

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
    // The first layer streams straight from the source; later ones download meanwhile into
    // encrypted spools beside the image (never as plaintext), at most 3 at a time.
    let later: Vec<_> = resolved
        .manifest
        .layers
        .iter()
        .cloned()
        .enumerate()
        .skip(1)
        .collect();
    let spool_dir = match dest.parent() {
        Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
        _ => std::path::PathBuf::from("."),
    };
    let prefetch = Prefetch::start(
        Arc::clone(&source),
        later,
        &spool_dir,
        PREFETCH_PARALLEL,
        options.progress.clone(),
    );
    let mut layers = Vec::with_capacity(resolved.manifest.layers.len());
    for (index, descriptor) in resolved.manifest.layers.iter().enumerate() {
        let expected_diff = resolved.config.rootfs.diff_ids[index];
        let input = if index == 0 {
            LayerInput::Source
        } else {
            LayerInput::Spooled(&prefetch)
        };
        let stats = apply(
            &source,
            &mut builder,
            descriptor,
            index,
            expected_diff,
            options,
            input,
        )?;
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
    builder.attach(attachment::CONFIG, resolved.config_bytes.clone());
    builder.attach(attachment::MANIFEST, resolved.manifest_bytes.clone());
    builder.attach(
        attachment::MANIFEST_DIGEST,
        resolved.manifest_digest.to_string().into_bytes(),
    );
    builder.attach(attachment::REFERENCE, reference.clone().into_bytes());
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

/// Where a layer's blob comes from.
enum LayerInput<'a> {
    /// Straight from the source.
    Source,
    /// From the spool the prefetcher fills.
    Spooled(&'a Prefetch),
}

/// Streams one layer into the builder inside a layer transaction.
fn apply(
    source: &Arc<dyn Source>,
    builder: &mut RootfsBuilder,
    descriptor: &Descriptor,
    index: usize,
    expected_diff: Digest,
    options: &PullOptions,
    input: LayerInput<'_>,
) -> Result<LayerStats, PullError> {
    let reference = source.reference().to_string();
    let build_err = |source| PullError::Build {
        reference: reference.clone(),
        source,
    };
    let layer_type =
        LayerType::from_media_type(&descriptor.media_type).ok_or_else(|| PullError::MediaType {
            reference: reference.clone(),
            what: format!("layer {}", descriptor.digest),
            media_type: descriptor.media_type.clone(),
        })?;
    let key = if layer_type.encrypted {
        if options.decryption_keys.is_empty()
            && options.kbs.is_none()
            && !descriptor
                .annotations
                .contains_key(PROVIDER_ATTESTATION_AGENT)
        {
            return Err(PullError::Encrypted {
                reference,
                digest: descriptor.digest,
                media_type: descriptor.media_type.clone(),
            });
        }
        let kbs = options.kbs.as_deref().map(|k| k as &dyn KekSource);
        let key = layer_key(&descriptor.annotations, &options.decryption_keys, kbs).map_err(
            |source| PullError::LayerKey {
                reference: reference.clone(),
                digest: descriptor.digest,
                source: Box::new(source),
            },
        )?;
        Some(key)
    } else {
        None
    };
    let expected_plain = key.as_ref().map(|k| k.plain_digest);
    let mut stream = match input {
        LayerInput::Source => layer::start(
            Arc::clone(source),
            descriptor.clone(),
            layer_type.compression,
            index,
            options.progress.clone(),
            key,
        ),
        LayerInput::Spooled(prefetch) => {
            let spool = prefetch.take(index).map_err(|source| PullError::Fetch {
                reference: reference.clone(),
                index,
                source: Box::new(source),
            })?;
            layer::start_spooled(
                spool,
                descriptor.clone(),
                layer_type.compression,
                index,
                key,
            )
        }
    };
    builder.begin_layer().map_err(build_err)?;
    let unpacked = unpack::apply_layer(builder, &mut stream);
    let fetched = stream.finish();
    let outcome = match (fetched, unpacked) {
        // The fetching side's error is the cause when both failed.
        (Err(source), _) if !matches!(source, FetchError::Stopped { .. }) => {
            Err(PullError::Fetch {
                reference: reference.clone(),
                index,
                source: Box::new(source),
            })
        }
        (_, Err(source)) => Err(PullError::Unpack {
            reference: reference.clone(),
            digest: descriptor.digest,
            source: Box::new(source),
        }),
        (Err(source), Ok(_)) => Err(PullError::Fetch {
            reference: reference.clone(),
            index,
            source: Box::new(source),
        }),
        (Ok(digests), Ok(stats)) => {
            if digests.blob != descriptor.digest || digests.blob_size != descriptor.size {
                Err(PullError::DigestMismatch(Box::new(DigestMismatch {
                    reference: reference.clone(),
                    what: format!("layer blob {index}"),
                    expected: descriptor.digest,
                    expected_size: format!(" ({} bytes)", descriptor.size),
                    actual: digests.blob,
                    actual_size: digests.blob_size,
                })))
            } else if digests.decrypted != expected_plain {
                Err(PullError::DigestMismatch(Box::new(DigestMismatch {
                    reference: reference.clone(),
                    what: format!("decrypted layer {index} ({})", descriptor.digest),
                    expected: expected_plain.unwrap_or(descriptor.digest),
                    expected_size: String::new(),
                    actual: digests.decrypted.unwrap_or(digests.blob),
                    actual_size: 0,
                })))
            } else if digests.diff_id != expected_diff {
                Err(PullError::DigestMismatch(Box::new(DigestMismatch {
                    reference: reference.clone(),
                    what: format!(
                        "uncompressed layer {index} ({}) [diff_id]",
                        descriptor.digest
                    ),
                    expected: expected_diff,
                    expected_size: String::new(),
                    actual: digests.diff_id,
                    actual_size: 0,
                })))
            } else {
                Ok(stats)
            }
        }
    };
    match outcome {
        Ok(stats) => {
            builder.commit_layer().map_err(build_err)?;
            if let Some(p) = &options.progress {
                p.layer_done(index);
            }
            Ok(stats)
        }
        Err(e) => {
            builder.abort_layer().map_err(build_err)?;
            Err(e)
        }
    }
}

fn document_kind(reference: &str, what: &str, media_type: &str) -> Result<DocumentKind, PullError> {
    DocumentKind::from_media_type(media_type).ok_or_else(|| PullError::MediaType {
        reference: reference.to_owned(),
        what: what.to_owned(),
        media_type: media_type.to_owned(),
    })
}

fn parse<T: serde::de::DeserializeOwned>(
    reference: &str,
    what: &str,
    bytes: &[u8],
) -> Result<T, PullError> {
    serde_json::from_slice(bytes).map_err(|source| PullError::Document {
        reference: reference.to_owned(),
        what: what.to_owned(),
        source,
    })
}

fn check_digest(
    reference: &str,
    what: &str,
    expected: &Digest,
    size: Option<u64>,
    bytes: &[u8],
) -> Result<(), PullError> {
    let actual = Digest::of(bytes);
    let size_ok = size.is_none_or(|s| s == bytes.len() as u64);
    if actual == *expected && size_ok {
        return Ok(());
    }
    Err(PullError::DigestMismatch(Box::new(DigestMismatch {
        reference: reference.to_owned(),
        what: what.to_owned(),
        expected: *expected,
        expected_size: size.map(|s| format!(" ({s} bytes)")).unwrap_or_default(),
        actual,
        actual_size: bytes.len() as u64,
    })))
}
