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

use std::collections::HashSet;
use std::io::{self, Read};
use std::rc::Rc;

use encc_rootfs::{BuildError, RootfsBuilder};

mod entry;
mod limits;
mod meta;

pub use limits::{LimitNameError, UnpackLimits};

use entry::Layer;
use limits::{Meter, Metered};

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

/// Applies the layers of one image, counting their unpacked bytes against the limits.
pub struct Unpacker {
    limits: UnpackLimits,
    /// Unpacked bytes of the layers applied so far.
    used: u64,
}

impl Unpacker {
    /// An unpacker for one image.
    pub fn new(limits: UnpackLimits) -> Self {
        Self { limits, used: 0 }
    }

    /// Applies a layer's (decompressed) tar stream to `builder`, reading the stream to its
    /// end. The caller wraps this in a builder layer transaction and commits only after the
    /// layer's digests check out. `confidential`: entry names never reach a log.
    pub fn apply_layer(
        &mut self,
        builder: &mut RootfsBuilder,
        stream: impl Read,
        confidential: bool,
    ) -> Result<LayerStats, UnpackError> {
        let meter = Rc::new(Meter::default());
        let mut run = Run {
            limits: &self.limits,
            meter: Rc::clone(&meter),
            budget: self.limits.unpacked_bytes.saturating_sub(self.used),
            holes: 0,
            previous: String::new(),
        };
        let mut archive = tar::Archive::new(Metered {
            inner: stream,
            meter: Rc::clone(&meter),
        });
        let mut layer = Layer {
            builder,
            touched: HashSet::new(),
            stats: LayerStats::default(),
            limits: &self.limits,
            confidential,
        };
        let mut count = 0u64;
        run.allow_headers();
        for entry in archive.entries().map_err(|e| run.error(e))? {
            let mut entry = entry.map_err(|e| run.error(e))?;
            count += 1;
            run.entry(&mut layer, &mut entry, count)?;
        }
        // Read the end-of-archive blocks and any padding too: the diff_id covers every byte.
        run.allow_data();
        let mut rest = archive.into_inner();
        io::copy(&mut rest, &mut io::sink()).map_err(|e| run.error(e))?;
        self.used += meter.pos() + run.holes;
        Ok(layer.stats)
    }
}

/// One layer's pass over its tar stream.
struct Run<'a> {
    limits: &'a UnpackLimits,
    meter: Rc<Meter>,
    /// Unpacked bytes this layer may use.
    budget: u64,
    /// Sparse holes so far (bytes an entry yields beyond what the stream holds).
    holes: u64,
    /// The last entry's name, for messages.
    previous: String,
}

impl Run<'_> {
    /// Checks and applies one entry, reading all of its data.
    fn entry<R: Read>(
        &mut self,
        layer: &mut Layer<'_>,
        entry: &mut tar::Entry<'_, R>,
        count: u64,
    ) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let shown = show(&raw);
        if count > self.limits.entries {
            return Err(over(
                &shown,
                "entries in the layer",
                count,
                self.limits.entries,
            ));
        }
        let len = raw.len() as u64;
        if len > self.limits.path_bytes {
            return Err(over(&shown, "bytes of name", len, self.limits.path_bytes));
        }
        // The size an entry yields (sparse holes included) is checked before it is read.
        let size = entry.size();
        let left = self.left();
        if size > left {
            return Err(refused(
                &shown,
                &format!(
                    "its size of {size} bytes exceeds the {left} bytes left of the image's unpacked-size limit of {} bytes (unpacked-bytes)",
                    self.limits.unpacked_bytes
                ),
            ));
        }
        self.allow_data();
        let start = self.meter.pos();
        let applied = layer.entry(entry, &raw, &shown);
        if self.meter.take_tripped() {
            return Err(self.unpacked());
        }
        applied?;
        // Data the entry did not use (a directory with a size) still counts.
        io::copy(entry, &mut io::sink()).map_err(|e| self.error(e))?;
        self.holes += size.saturating_sub(self.meter.pos() - start);
        self.previous = shown;
        self.allow_headers();
        Ok(())
    }

    /// Unpacked bytes left for this layer.
    fn left(&self) -> u64 {
        self.budget.saturating_sub(self.meter.pos() + self.holes)
    }

    /// Before the next entry: the parser may read its headers, up to the header limit.
    fn allow_headers(&self) {
        let pos = self.meter.pos();
        // Besides the limit: the previous entry's padding, the header blocks of this entry
        // and of its extension entry, and that one's padding.
        let headers = pos.saturating_add(2048 + self.limits.header_bytes);
        self.meter.allow_until(headers.min(pos + self.left()));
    }

    /// While an entry's data is read: up to what is left of the budget.
    fn allow_data(&self) {
        self.meter.allow_until(self.meter.pos() + self.left());
    }

    fn unpacked(&self) -> UnpackError {
        UnpackError::Unpacked {
            after: self.previous.clone(),
            limit: self.limits.unpacked_bytes,
        }
    }

    /// A parser error: a limit when the meter stopped it, else a malformed stream.
    fn error(&self, e: io::Error) -> UnpackError {
        if !self.meter.take_tripped() {
            return UnpackError::Tar(e);
        }
        if self.left() == 0 {
            return self.unpacked();
        }
        UnpackError::Headers {
            after: self.previous.clone(),
            limit: self.limits.header_bytes,
        }
    }
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
