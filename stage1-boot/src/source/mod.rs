//! Where images come from: a registry (distribution v2 API) or an OCI image layout.

mod layout;
pub mod registry;

use std::io::{self, Read};

use crate::digest::Digest;
use crate::manifest::{Descriptor, MAX_DOCUMENT_BYTES};
use crate::reference::ImageRef;

pub use layout::LayoutSource;
pub use registry::{RegistryOptions, RegistrySource};

/// A manifest or index as fetched: bytes and the media type the source gave for them.
#[derive(Debug, Clone)]
pub struct Fetched {
    /// The document.
    pub bytes: Vec<u8>,
    /// Its media type (from the transport, or from the document itself).
    pub media_type: String,
}

/// Errors of a source. Each names the image reference and the object.
#[derive(Debug, thiserror::Error)]
pub enum SourceError {
    /// A local file could not be read.
    #[error("failed to read {what} of {reference}")]
    Io {
        /// The image reference.
        reference: String,
        /// What was read (path or digest).
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The image or tag does not exist.
    #[error("{what} not found in {reference}")]
    NotFound {
        /// The image reference.
        reference: String,
        /// What is missing.
        what: String,
    },
    /// The source's own structure is invalid (bad index.json, oci-layout, …).
    #[error("{reference}: {reason}")]
    Invalid {
        /// The image reference.
        reference: String,
        /// What is wrong.
        reason: String,
    },
    /// A document is larger than encc accepts.
    #[error("{what} of {reference} is larger than {MAX_DOCUMENT_BYTES} bytes")]
    TooLarge {
        /// The image reference.
        reference: String,
        /// Which document.
        what: String,
    },
    /// A registry request failed.
    #[error(transparent)]
    Registry(#[from] registry::RegistryError),
}

/// An image source.
pub trait Source: Send + Sync {
    /// The reference this source serves, for messages.
    fn reference(&self) -> &ImageRef;

    /// The manifest or index the reference names (by tag or pinned digest).
    fn root_manifest(&self) -> Result<Fetched, SourceError>;

    /// The digest the root manifest must have: the reference's pinned digest, or the
    /// layout index's descriptor.
    fn expected_root_digest(&self) -> Option<Digest>;

    /// The manifest under another tag of the same repository (signature attachments);
    /// `None` when there is no such tag.
    fn manifest_by_tag(&self, tag: &str) -> Result<Option<Fetched>, SourceError>;

    /// A manifest by digest (an entry of an index).
    fn manifest(&self, descriptor: &Descriptor) -> Result<Fetched, SourceError>;

    /// A blob's content, streamed from `offset`; the caller verifies size and digest.
    fn blob(
        &self,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError>;
}

/// Opens the source for a reference.
pub fn open(
    reference: &ImageRef,
    options: &RegistryOptions,
) -> Result<Box<dyn Source>, SourceError> {
    Ok(match reference {
        ImageRef::Docker(r) => Box::new(RegistrySource::new(r.clone(), options)?),
        ImageRef::Layout(l) => Box::new(LayoutSource::open(reference.clone(), l.clone())?),
    })
}

/// Reads a whole document, refusing more than [`MAX_DOCUMENT_BYTES`].
pub fn read_document(
    mut r: impl Read,
    reference: &ImageRef,
    what: &str,
) -> Result<Vec<u8>, SourceError> {
    let mut bytes = Vec::new();
    (&mut r)
        .take(MAX_DOCUMENT_BYTES + 1)
        .read_to_end(&mut bytes)
        .map_err(|source| SourceError::Io {
            reference: reference.to_string(),
            what: what.to_owned(),
            source,
        })?;
    if bytes.len() as u64 > MAX_DOCUMENT_BYTES {
        return Err(SourceError::TooLarge {
            reference: reference.to_string(),
            what: what.to_owned(),
        });
    }
    Ok(bytes)
}

/// The `mediaType` field of a JSON document, if it has one.
pub(crate) fn embedded_media_type(bytes: &[u8]) -> Option<String> {
    #[derive(serde::Deserialize)]
    struct Probe {
        #[serde(rename = "mediaType")]
        media_type: Option<String>,
    }
    serde_json::from_slice::<Probe>(bytes).ok()?.media_type
}

/// Digest helper for callers that hold a descriptor.
pub(crate) fn blob_path_name(digest: &Digest) -> String {
    digest.hex()
}
