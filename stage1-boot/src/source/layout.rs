//! OCI image layout directories (`oci:PATH[:TAG]`).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::path::PathBuf;

use serde::Deserialize;

use super::{blob_path_name, embedded_media_type, read_document, Fetched, Source, SourceError};
use crate::manifest::{Descriptor, Index};
use crate::reference::{ImageRef, LayoutRef};

/// Annotation naming a manifest in `index.json`.
const REF_NAME: &str = "org.opencontainers.image.ref.name";

/// An image in an OCI layout directory.
pub struct LayoutSource {
    reference: ImageRef,
    layout: LayoutRef,
    root: Descriptor,
}

impl LayoutSource {
    /// Opens the layout and picks the manifest the tag names (or the only one).
    pub fn open(reference: ImageRef, layout: LayoutRef) -> Result<Self, SourceError> {
        let invalid = |reason: String| SourceError::Invalid {
            reference: reference.to_string(),
            reason,
        };
        #[derive(Deserialize)]
        struct LayoutFile {
            #[serde(rename = "imageLayoutVersion")]
            version: String,
        }
        let marker = read_file(&reference, layout.path.join("oci-layout"))?;
        let marker: LayoutFile = serde_json::from_slice(&marker)
            .map_err(|e| invalid(format!("oci-layout is not valid JSON: {e}")))?;
        if marker.version != "1.0.0" {
            return Err(invalid(format!(
                "unsupported imageLayoutVersion {:?}",
                marker.version
            )));
        }
        let index = read_file(&reference, layout.path.join("index.json"))?;
        let index: Index = serde_json::from_slice(&index)
            .map_err(|e| invalid(format!("index.json is not a valid index: {e}")))?;
        let root = match &layout.tag {
            Some(tag) => index
                .manifests
                .into_iter()
                .find(|d| d.annotations.get(REF_NAME) == Some(tag))
                .ok_or_else(|| SourceError::NotFound {
                    reference: reference.to_string(),
                    what: format!("tag {tag:?}"),
                })?,
            None => {
                let mut all = index.manifests;
                if all.len() != 1 {
                    return Err(invalid(format!(
                        "index.json has {} manifests; name one with oci:PATH:TAG",
                        all.len()
                    )));
                }
                all.remove(0)
            }
        };
        Ok(Self {
            reference,
            layout,
            root,
        })
    }

    fn blob_path(&self, descriptor: &Descriptor) -> PathBuf {
        self.layout
            .path
            .join("blobs/sha256")
            .join(blob_path_name(&descriptor.digest))
    }
}

fn read_file(reference: &ImageRef, path: PathBuf) -> Result<Vec<u8>, SourceError> {
    let what = path.display().to_string();
    let file = File::open(&path).map_err(|source| match source.kind() {
        std::io::ErrorKind::NotFound => SourceError::NotFound {
            reference: reference.to_string(),
            what: what.clone(),
        },
        _ => SourceError::Io {
            reference: reference.to_string(),
            what: what.clone(),
            source,
        },
    })?;
    read_document(file, reference, &what)
}

impl Source for LayoutSource {
    fn reference(&self) -> &ImageRef {
        &self.reference
    }

    fn expected_root_digest(&self) -> Option<crate::digest::Digest> {
        Some(self.root.digest)
    }

    fn root_manifest(&self) -> Result<Fetched, SourceError> {
        self.manifest(&self.root.clone())
    }

    fn manifest_by_tag(&self, tag: &str) -> Result<Option<Fetched>, SourceError> {
        let index = read_file(&self.reference, self.layout.path.join("index.json"))?;
        let index: Index = serde_json::from_slice(&index).map_err(|e| SourceError::Invalid {
            reference: self.reference.to_string(),
            reason: format!("index.json is not a valid index: {e}"),
        })?;
        match index
            .manifests
            .iter()
            .find(|d| d.annotations.get(REF_NAME).map(String::as_str) == Some(tag))
        {
            Some(d) => self.manifest(d).map(Some),
            None => Ok(None),
        }
    }

    fn manifest(&self, descriptor: &Descriptor) -> Result<Fetched, SourceError> {
        let bytes = read_file(&self.reference, self.blob_path(descriptor))?;
        let media_type = if descriptor.media_type.is_empty() {
            embedded_media_type(&bytes).unwrap_or_default()
        } else {
            descriptor.media_type.clone()
        };
        Ok(Fetched { bytes, media_type })
    }

    fn blob(
        &self,
        descriptor: &Descriptor,
        offset: u64,
    ) -> Result<Box<dyn Read + Send>, SourceError> {
        let path = self.blob_path(descriptor);
        let io = |source| SourceError::Io {
            reference: self.reference.to_string(),
            what: path.display().to_string(),
            source,
        };
        let mut file = File::open(&path).map_err(io)?;
        file.seek(SeekFrom::Start(offset)).map_err(io)?;
        Ok(Box::new(file))
    }
}
