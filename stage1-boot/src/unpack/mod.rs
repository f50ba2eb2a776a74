//! Applying one layer's tar stream to the rootfs builder, with OCI whiteout semantics.
//!
//! Hostile input is contained or refused, never followed outside the image:
//! - absolute names (`/etc/x`) and `./` prefixes are taken relative to the image root, as
//!   tar and umoci do;
//! - a `..` component in an entry name, hardlink target or whiteout refuses the layer;
//! - symlinks in the parent components of a name are resolved inside the image root
//!   (`RootfsBuilder::resolve_in_root`), so `link/../../x` or a link to `/` can only reach
//!   paths inside the image;
//! - hardlinks must point at an existing non-directory entry of the image;
//! - device nodes are only entries in the image (nothing is created on the host);
//! - sizes are whatever the stream really holds: a size field larger than the stream ends in
//!   a truncated-stream error, and the layer's digests are checked before it is committed;
//! - the work is bounded ([`UnpackLimits`]): declared sizes (GNU sparse holes and PAX sizes
//!   included) against what is left of the image's unpacked-size limit before any data is
//!   read, header bytes per entry, entries per layer, name and link lengths, xattrs.
//!
//! Whiteouts kept hand-written over the `tar` crate: `oci-spec` has only the types, and
//! `ocidir`/`containers-image-proxy` do not apply layers into a custom builder.

use std::io;

use encc_rootfs::BuildError;

mod entry;
mod limits;
mod meta;
mod run;

pub use limits::{LimitNameError, UnpackLimits};
pub use run::Unpacker;

/// What a layer held.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LayerStats {
    /// Entries added (files, directories, links, nodes).
    pub entries: u64,
    /// Whiteouts applied (opaque markers included).
    pub whiteouts: u64,
    /// Entries skipped (types an image cannot hold, such as global PAX headers).
    pub skipped: u64,
}

/// Why a layer's tar stream could not be applied. Each names the entry.
#[derive(Debug, thiserror::Error)]
pub enum UnpackError {
    /// The tar stream is malformed or ended early.
    #[error("malformed or truncated tar stream")]
    Tar(#[source] io::Error),
    /// An entry tries to reach outside the image or is otherwise refused.
    #[error("tar entry {path:?} refused: {reason}")]
    Refused {
        /// The entry name as in the archive.
        path: String,
        /// Why.
        reason: String,
    },
    /// The headers of the entry after `after` (PAX records, GNU long names, a GNU sparse
    /// map) are larger than the limit; the parser stopped before reading more of them.
    #[error("tar headers after entry {after:?} refused: more than the limit of {limit} bytes (header-bytes) of PAX records, GNU long names or sparse map for one entry")]
    Headers {
        /// The entry before (empty for the first).
        after: String,
        /// The limit.
        limit: u64,
    },
    /// The tar stream (with sparse holes) is larger than what is left of the limit.
    #[error("tar stream after entry {after:?} refused: the image's unpacked size exceeds the limit of {limit} bytes (unpacked-bytes)")]
    Unpacked {
        /// The last entry read (empty for none).
        after: String,
        /// The limit.
        limit: u64,
    },
    /// The builder refused an entry.
    #[error("tar entry {path:?} could not be added")]
    Build {
        /// The entry name as in the archive.
        path: String,
        /// The builder's error.
        #[source]
        source: BuildError,
    },
}

/// An entry name for messages: lossy UTF-8, cut after 256 characters.
fn show(raw: &[u8]) -> String {
    let text = String::from_utf8_lossy(raw);
    match text.char_indices().nth(256) {
        Some((cut, _)) => format!("{}…", &text[..cut]),
        None => text.into_owned(),
    }
}

fn refused(shown: &str, reason: &str) -> UnpackError {
    UnpackError::Refused {
        path: shown.to_owned(),
        reason: reason.to_owned(),
    }
}

/// An entry over a count or size limit.
fn over(shown: &str, what: &str, value: u64, limit: u64) -> UnpackError {
    refused(
        shown,
        &format!("{value} {what} exceed the limit of {limit}"),
    )
}
