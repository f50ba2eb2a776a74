//! One layer of a pull, inside a builder layer transaction.
//!
//! A plain layer streams: fetch → sha256 → decompress → tar → builder, its digests checked
//! before the layer is committed. An encrypted layer is received whole first, its blob
//! digest and HMAC checked over the whole ciphertext before one byte is decrypted; whatever
//! fails after it was received gives one error text, [`PullError::EncryptedLayer`].

use std::path::Path;
use std::sync::Arc;

use encc_rootfs::RootfsBuilder;

use super::{DigestMismatch, PullError, PullOptions};
use crate::digest::Digest;
use crate::kbs::KbsClient;
use crate::layer::{self, FetchError, StreamDigests};
use crate::manifest::{Descriptor, LayerType};
use crate::ocicrypt::blockcipher::{layer_key, LayerKey};
use crate::ocicrypt::keyprovider::{KekSource, PROVIDER_ATTESTATION_AGENT};
use crate::prefetch::Prefetch;
use crate::source::Source;
use crate::unpack::{LayerStats, UnpackError, Unpacker};

/// What the layers of one pull share.
pub(super) struct Layers<'a> {
    pub source: &'a Arc<dyn Source>,
    pub options: &'a PullOptions,
    /// Where the first layer's blob is spooled when it is encrypted (the image's directory).
    pub spool_dir: &'a Path,
    /// Later layers' blobs.
    pub prefetch: &'a Prefetch,
    pub unpacker: Unpacker,
}

/// One layer being applied: what it is.
struct Job<'a> {
    reference: String,
    descriptor: &'a Descriptor,
    index: usize,
    expected_diff: Digest,
    layer_type: LayerType,
}

impl Layers<'_> {
    /// Applies one layer to the builder inside a layer transaction.
    pub fn apply(
        &mut self,
        builder: &mut RootfsBuilder,
        descriptor: &Descriptor,
        index: usize,
        expected_diff: Digest,
    ) -> Result<LayerStats, PullError> {
        let reference = self.source.reference().to_string();
        let layer_type = LayerType::from_media_type(&descriptor.media_type).ok_or_else(|| {
            PullError::MediaType {
                reference: reference.clone(),
                what: format!("layer {}", descriptor.digest),
                media_type: descriptor.media_type.clone(),
            }
        })?;
        let job = Job {
            reference,
            descriptor,
            index,
            expected_diff,
            layer_type,
        };
        let stats = if layer_type.encrypted {
            let key = job.layer_key(self.options)?;
            self.apply_encrypted(&job, builder, &key)?
        } else {
            self.apply_plain(&job, builder)?
        };
        if let Some(p) = &self.options.progress {
            p.layer_done(index);
        }
        Ok(stats)
    }

    fn apply_plain(
        &mut self,
        job: &Job<'_>,
        builder: &mut RootfsBuilder,
    ) -> Result<LayerStats, PullError> {
        let (descriptor, index) = (job.descriptor, job.index);
        let compression = job.layer_type.compression;
        let mut stream = if index == 0 {
            layer::start(
                Arc::clone(self.source),
                descriptor.clone(),
                compression,
                index,
                self.options.progress.clone(),
                self.options.stall_timeout,
            )
        } else {
            let spool = self
                .prefetch
                .take(index)
                .map_err(|source| job.fetch_err(source))?;
            layer::start_spooled(spool, descriptor, compression, index)
        };
        job.transaction(builder, |builder| {
            let unpacked = self.unpacker.apply_layer(builder, &mut stream, false);
            job.outcome(stream.finish(), unpacked)
        })
    }

    fn apply_encrypted(
        &mut self,
        job: &Job<'_>,
        builder: &mut RootfsBuilder,
        key: &LayerKey,
    ) -> Result<LayerStats, PullError> {
        let (descriptor, index) = (job.descriptor, job.index);
        // From the point the ciphertext is received, every failure is the same error.
        let opaque = || PullError::EncryptedLayer {
            reference: job.reference.clone(),
            digest: descriptor.digest,
        };
        // Receiving may fail on its own terms (download, stall, size): nothing is decrypted.
        let received = if index == 0 {
            layer::receive(
                Arc::clone(self.source),
                descriptor,
                index,
                self.options.progress.clone(),
                self.options.stall_timeout,
                self.spool_dir,
                key,
            )
            .map_err(|source| job.fetch_err(source))?
        } else {
            let spool = self
                .prefetch
                .take(index)
                .map_err(|source| job.fetch_err(source))?;
            layer::authenticate(spool, key).map_err(|_| opaque())?
        };
        if received.digest != descriptor.digest || received.size != descriptor.size {
            return Err(opaque());
        }
        let compression = job.layer_type.compression;
        let mut stream = layer::start_decrypting(received, key, descriptor, compression, index)
            .ok_or_else(opaque)?;
        job.transaction(builder, |builder| {
            let unpacked = self.unpacker.apply_layer(builder, &mut stream, true);
            match (stream.finish(), unpacked) {
                (Ok(digests), Ok(stats))
                    if digests.blob == key.plain_digest && digests.diff_id == job.expected_diff =>
                {
                    Ok(stats)
                }
                _ => Err(opaque()),
            }
        })
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

    /// Runs `body` inside a builder layer transaction: committed when it succeeds.
    fn transaction(
        &self,
        builder: &mut RootfsBuilder,
        body: impl FnOnce(&mut RootfsBuilder) -> Result<LayerStats, PullError>,
    ) -> Result<LayerStats, PullError> {
        let build_err = |source| PullError::Build {
            reference: self.reference.clone(),
            source,
        };
        builder.begin_layer().map_err(build_err)?;
        match body(builder) {
            Ok(stats) => {
                builder.commit_layer().map_err(build_err)?;
                Ok(stats)
            }
            Err(e) => {
                builder.abort_layer().map_err(build_err)?;
                Err(e)
            }
        }
    }

    fn fetch_err(&self, source: FetchError) -> PullError {
        PullError::Fetch {
            reference: self.reference.clone(),
            index: self.index,
            source: Box::new(source),
        }
    }

    /// A plain layer's result from both sides of the pipeline and its digests.
    fn outcome(
        &self,
        fetched: Result<StreamDigests, FetchError>,
        unpacked: Result<LayerStats, UnpackError>,
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
            (Ok(digests), Ok(stats)) => self.check(&digests).map(|()| stats),
        }
    }

    /// Blob digest and size, then diff_id.
    fn check(&self, digests: &StreamDigests) -> Result<(), PullError> {
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
