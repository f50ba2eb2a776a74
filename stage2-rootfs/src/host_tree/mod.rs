//! Host directory ↔ protected rootfs image, keeping every kind of entry and its metadata
//! (mode, owner, mtime, xattrs, hardlink identity, device numbers).
//!
//! These are debugging and test tools: in the enclave, images are built straight from image
//! layers and never pass through a host directory.

mod export;
mod import;

use std::path::PathBuf;

pub use export::{extract, extract_with, ExtractOptions, ExtractSummary};
pub use import::build_from_dir;

/// Errors moving trees between host directories and images. Each names the host path.
#[derive(Debug, thiserror::Error)]
pub enum HostTreeError {
    /// A host file system call failed.
    #[error("failed to {op} {path}")]
    Host {
        /// The operation.
        op: &'static str,
        /// The host path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The destination directory exists and is not empty.
    #[error("destination {0} exists and is not an empty directory")]
    DestinationNotEmpty(PathBuf),
    /// A host file name cannot be an image path.
    #[error("host path {path} cannot be stored in an image")]
    Path {
        /// The host path.
        path: PathBuf,
        /// Why.
        #[source]
        source: crate::PathError,
    },
    /// The image builder refused an entry or failed to write.
    #[error(transparent)]
    Build(#[from] crate::BuildError),
    /// Reading the image failed.
    #[error(transparent)]
    Read(#[from] crate::ReadError),
}

/// Shorthand for a failed host call.
fn host(op: &'static str, path: &std::path::Path) -> impl FnOnce(std::io::Error) -> HostTreeError {
    let path = path.to_owned();
    move |source| HostTreeError::Host { op, path, source }
}
