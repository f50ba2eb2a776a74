//! One layer of a pull, inside a builder layer transaction.

use std::sync::Arc;

use encc_rootfs::RootfsBuilder;

use super::{DigestMismatch, PullError, PullOptions};
use crate::digest::Digest;
use crate::kbs::KbsClient;
use crate::layer::{self, FetchError, LayerStream, StreamDigests};
use crate::manifest::{Descriptor, LayerType};
use crate::ocicrypt::blockcipher::{layer_key, LayerKey};
use crate::ocicrypt::keyprovider::{KekSource, PROVIDER_ATTESTATION_AGENT};
use crate::prefetch::Prefetch;
use crate::source::Source;
use crate::unpack::{self, LayerStats};

/// Where a layer's blob comes from.
pub(super) enum LayerInput<'a> {
    /// Straight from the source.
    Source,
    /// From the spool the prefetcher fills.
    Spooled(&'a Prefetch),
}

/// One layer being applied: what it is and where it goes.
struct Job<'a> {
    reference: String,
    descriptor: &'a Descriptor,
    index: usize,
    expected_diff: Digest,
}

/// Streams one layer into the builder inside a layer transaction.
pub(super) fn apply(
    source: &Arc<dyn Source>,
    builder: &mut RootfsBuilder,
    descriptor: &Descriptor,
    index: usize,
    expected_diff: Digest,
    options: &PullOptions,
    input: LayerInput<'_>,
) -> Result<LayerStats, PullError> {
    let job = Job {
        reference: source.reference().to_string(),
        descriptor,
        index,
        expected_diff,
    };
    let build_err = |source| PullError::Build {
        reference: job.reference.clone(),
        source,
    };
    let layer_type =
        LayerType::from_media_type(&descriptor.media_type).ok_or_else(|| PullError::MediaType {
            reference: job.reference.clone(),
            what: format!("layer {}", descriptor.digest),
            media_type: descriptor.media_type.clone(),
        })?;
    let key = if layer_type.encrypted {
        Some(job.layer_key(options)?)
    } else {
        None
    };
    let expected_plain = key.as_ref().map(|k| k.plain_digest);
    let mut stream = job.open(source, layer_type, options, input, key)?;
    builder.begin_layer().map_err(build_err)?;
    let unpacked = unpack::apply_layer(builder, &mut stream);
    let outcome = job.outcome(stream.finish(), unpacked, expected_plain);
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

impl Job<'_> {
    /// The key of an encrypted layer, from the configured keys or the KBS.
    fn layer_key(&self, options: &PullOptions) -> Result<LayerKey, PullError> {
        let descriptor = self.descriptor;
        if options.decryption_keys.is_empty()
            && options.kbs.is_none()
            && !descriptor
                .annotations
                .contains_key(PROVIDER_ATTESTATION_AGENT)
        {
            return Err(PullError::Encrypted {
                reference: self.reference.clone(),
                digest: descriptor.digest,
                media_type: descriptor.media_type.clone(),
            });
        }
        let kbs = options
            .kbs
            .as_deref()
            .map(|k: &KbsClient| k as &dyn KekSource);
        layer_key(&descriptor.annotations, &options.decryption_keys, kbs).map_err(|source| {
            PullError::LayerKey {
                reference: self.reference.clone(),
                digest: descriptor.digest,
                source: Box::new(source),
            }
        })
    }

    /// Starts the layer's byte pipeline from the source or from its prefetched spool.
    fn open(
        &self,
        source: &Arc<dyn Source>,
        layer_type: LayerType,
        options: &PullOptions,
        input: LayerInput<'_>,
        key: Option<LayerKey>,
    ) -> Result<LayerStream, PullError> {
        let (descriptor, index) = (self.descriptor, self.index);
        Ok(match input {
            LayerInput::Source => layer::start(
                Arc::clone(source),
                descriptor.clone(),
                layer_type.compression,
                index,
                options.progress.clone(),
                key,
            ),
            LayerInput::Spooled(prefetch) => {
                let spool = prefetch
                    .take(index)
                    .map_err(|source| self.fetch_err(source))?;
                layer::start_spooled(
                    spool,
                    descriptor.clone(),
                    layer_type.compression,
                    index,
                    key,
                )
            }
        })
    }

    fn fetch_err(&self, source: FetchError) -> PullError {
        PullError::Fetch {
            reference: self.reference.clone(),
            index: self.index,
            source: Box::new(source),
        }
    }

    /// The layer's result from both sides of the pipeline and its digests.
    fn outcome(
        &self,
        fetched: Result<StreamDigests, FetchError>,
        unpacked: Result<LayerStats, unpack::UnpackError>,
        expected_plain: Option<Digest>,
    ) -> Result<LayerStats, PullError> {
        match (fetched, unpacked) {
            // The fetching side's error is the cause when both failed.
            (Err(source), _) if !matches!(source, FetchError::Stopped { .. }) => {
                Err(self.fetch_err(source))
            }
            (_, Err(source)) => Err(PullError::Unpack {
                reference: self.reference.clone(),
                digest: self.descriptor.digest,
                source: Box::new(source),
            }),
            (Err(source), Ok(_)) => Err(self.fetch_err(source)),
            (Ok(digests), Ok(stats)) => self.check(&digests, expected_plain).map(|()| stats),
        }
    }

    /// Blob digest and size, decrypted digest, diff_id.
    fn check(
        &self,
        digests: &StreamDigests,
        expected_plain: Option<Digest>,
    ) -> Result<(), PullError> {
        let (descriptor, index) = (self.descriptor, self.index);
        let mismatch = |what: String, expected, expected_size, actual, actual_size| {
            Err(PullError::DigestMismatch(Box::new(DigestMismatch {
                reference: self.reference.clone(),
                what,
                expected,
                expected_size,
                actual,
                actual_size,
            })))
        };
        if digests.blob != descriptor.digest || digests.blob_size != descriptor.size {
            mismatch(
                format!("layer blob {index}"),
                descriptor.digest,
                format!(" ({} bytes)", descriptor.size),
                digests.blob,
                digests.blob_size,
            )
        } else if digests.decrypted != expected_plain {
            mismatch(
                format!("decrypted layer {index} ({})", descriptor.digest),
                expected_plain.unwrap_or(descriptor.digest),
                String::new(),
                digests.decrypted.unwrap_or(digests.blob),
                0,
            )
        } else if digests.diff_id != self.expected_diff {
            mismatch(
                format!(
                    "uncompressed layer {index} ({}) [diff_id]",
                    descriptor.digest
                ),
                self.expected_diff,
                String::new(),
                digests.diff_id,
                0,
            )
        } else {
            Ok(())
        }
    }
}
