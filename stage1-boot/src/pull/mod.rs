//! Pulling an image into a protected rootfs: resolve the manifest (checking every digest),
//! fetch and check the config, then stream each layer through fetch → sha256 → decompress →
//! diff_id → tar → whiteouts → builder, committing a layer only once both of its digests
//! match. A failed pull leaves no image behind.
//!
//! - `resolve`: manifest, index and config, every digest checked, no layer fetched;
//! - `image`: the builder, the prefetcher and the layer loop;
//! - `apply`: one layer inside a builder transaction;
//! - `types`: options and summaries.

use encc_rootfs::BuildError;

use crate::digest::Digest;
use crate::layer::FetchError;
use crate::manifest::Platform;
use crate::ocicrypt::blockcipher::LayerKeyError;
use crate::source::SourceError;
use crate::unpack::UnpackError;

mod apply;
mod image;
mod resolve;
mod types;

/// One layer blob, held in memory, through the whole plain-layer pipeline of a pull:
/// decompression (sniffed as a pull sniffs it when `compression` is `None`), diff_id, tar,
/// whiteouts and `builder` (inside a layer transaction the caller opened), then the digests.
/// The fuzz target `layer_stream` drives it; a pull goes through [`pull`].
pub fn apply_layer_blob(
    builder: &mut encc_rootfs::RootfsBuilder,
    blob: Vec<u8>,
    compression: crate::manifest::Compression,
    limits: UnpackLimits,
) -> Result<crate::layer::StreamDigests, Box<dyn std::error::Error + Send + Sync>> {
    let mut stream = crate::layer::start_in_memory(blob, compression);
    let applied = crate::unpack::Unpacker::new(limits).apply_layer(builder, &mut stream, false);
    let digests = stream.finish();
    applied?;
    Ok(digests?)
}

pub use crate::unpack::{LimitNameError, UnpackLimits};
pub use image::{pull, pull_resolved};
pub use resolve::resolve;
pub(crate) use resolve::{checked_config, index_entry};
pub use types::{LayerSummary, PullOptions, PullSummary, ResolvedImage, DEFAULT_STALL_TIMEOUT};

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
    /// An encrypted layer failed after its ciphertext was received: its blob digest, its
    /// HMAC, decompression, its tar stream or its diff_id. Which one is not said, here or in
    /// any log: the registry must not learn anything about the plaintext from the answer.
    #[error("encrypted layer {digest} of {reference} failed verification or unpacking")]
    EncryptedLayer {
        /// The reference.
        reference: String,
        /// The layer (its blob digest in the manifest).
        digest: Digest,
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
