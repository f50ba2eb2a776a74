//! Resolving a reference to one platform's manifest and its verified config.

use super::{DigestMismatch, PullError, ResolvedImage};
use crate::digest::Digest;
use crate::manifest::{
    Descriptor, DocumentKind, ImageConfig, Index, LayerType, Manifest, Platform,
};
use crate::source::{read_document, Source, SourceError};

/// Resolves the reference's manifest for a platform and fetches its config, checking every
/// digest and size. Nothing of any layer is fetched.
pub fn resolve(
    source: &dyn Source,
    platform: Option<&Platform>,
) -> Result<ResolvedImage, PullError> {
    let reference = source.reference().to_string();
    let fetched = source.root_manifest().map_err(|e| src_err(&reference, e))?;
    let root_digest = Digest::of(&fetched.bytes);
    if let Some(expected) = source.expected_root_digest() {
        check_digest(&reference, "manifest", &expected, None, &fetched.bytes)?;
    }
    let kind = document_kind(&reference, "manifest", &fetched.media_type)?;
    let (manifest_bytes, manifest_digest, index_digest) = match kind {
        DocumentKind::Manifest => (fetched.bytes, root_digest, None),
        DocumentKind::Index => {
            let (bytes, digest) = from_index(source, &reference, &fetched.bytes, platform)?;
            (bytes, digest, Some(root_digest))
        }
    };
    let manifest: Manifest = parse(&reference, "manifest", &manifest_bytes)?;
    let (config_bytes, config) = config(source, &reference, &manifest)?;
    Ok(ResolvedImage {
        manifest_digest,
        manifest_bytes,
        manifest,
        index_digest,
        config_bytes,
        config,
    })
}

fn src_err(reference: &str, source: SourceError) -> PullError {
    PullError::Source {
        reference: reference.to_owned(),
        source: Box::new(source),
    }
}

/// The platform's manifest from an index: its bytes (digest checked) and digest.
fn from_index(
    source: &dyn Source,
    reference: &str,
    index_bytes: &[u8],
    platform: Option<&Platform>,
) -> Result<(Vec<u8>, Digest), PullError> {
    let entry = index_entry(reference, index_bytes, platform)?;
    let what = format!("manifest {} (from index)", entry.digest);
    let child = source.manifest(&entry).map_err(|e| src_err(reference, e))?;
    check_digest(
        reference,
        &what,
        &entry.digest,
        Some(entry.size),
        &child.bytes,
    )?;
    if document_kind(reference, &what, &child.media_type)? != DocumentKind::Manifest {
        return Err(PullError::MediaType {
            reference: reference.to_owned(),
            what,
            media_type: child.media_type,
        });
    }
    Ok((child.bytes, entry.digest))
}

/// The index's entry for a platform (the host's when none is given): the first that the
/// platform accepts.
pub(crate) fn index_entry(
    reference: &str,
    index_bytes: &[u8],
    platform: Option<&Platform>,
) -> Result<Descriptor, PullError> {
    let index: Index = parse(reference, "index", index_bytes)?;
    let wanted = platform.cloned().unwrap_or_else(Platform::host);
    let found = index
        .manifests
        .iter()
        .find(|d| d.platform.as_ref().is_some_and(|p| wanted.accepts(p)))
        .cloned();
    found.ok_or_else(|| PullError::NoPlatform {
        reference: reference.to_owned(),
        available: index
            .manifests
            .iter()
            .filter_map(|d| d.platform.as_ref().map(ToString::to_string))
            .collect::<Vec<_>>()
            .join(", "),
        platform: wanted,
    })
}

/// The manifest's config (digest checked) and its agreement with the layer list.
fn config(
    source: &dyn Source,
    reference: &str,
    manifest: &Manifest,
) -> Result<(Vec<u8>, ImageConfig), PullError> {
    let what = format!("config {}", manifest.config.digest);
    let config_bytes = source
        .blob(&manifest.config, 0)
        .and_then(|reader| read_document(reader, source.reference(), &what))
        .map_err(|e| src_err(reference, e))?;
    check_digest(
        reference,
        &what,
        &manifest.config.digest,
        Some(manifest.config.size),
        &config_bytes,
    )?;
    let config = checked_config(reference, manifest, &config_bytes)?;
    Ok((config_bytes, config))
}

/// An image config (its digest already checked) parsed and checked against the manifest:
/// one diff_id per layer, and every layer of a media type encc unpacks.
pub(crate) fn checked_config(
    reference: &str,
    manifest: &Manifest,
    config_bytes: &[u8],
) -> Result<ImageConfig, PullError> {
    let what = format!("config {}", manifest.config.digest);
    let config: ImageConfig = parse(reference, &what, config_bytes)?;
    if config.rootfs.diff_ids.len() != manifest.layers.len() {
        return Err(PullError::LayerCount {
            reference: reference.to_owned(),
            layers: manifest.layers.len(),
            diff_ids: config.rootfs.diff_ids.len(),
        });
    }
    for layer in &manifest.layers {
        if LayerType::from_media_type(&layer.media_type).is_none() {
            return Err(PullError::MediaType {
                reference: reference.to_owned(),
                what: format!("layer {}", layer.digest),
                media_type: layer.media_type.clone(),
            });
        }
    }
    Ok(config)
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

pub(super) fn check_digest(
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
