//! One image's layers through the tar parser, with the meter that bounds what it reads.

use std::collections::HashSet;
use std::io::{self, Read};
use std::rc::Rc;

use encc_rootfs::RootfsBuilder;

use super::entry::Layer;
use super::limits::{Meter, Metered, UnpackLimits};
use super::{over, refused, show, LayerStats, UnpackError};

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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::unpack::UnpackError;
    use encc_rootfs::{BuildOptions, DataKey};

    fn builder(dir: &std::path::Path) -> RootfsBuilder {
        let key = DataKey::from_bytes(&[9u8; 32]);
        let mut b = RootfsBuilder::create(&dir.join("img"), &key, BuildOptions::default()).unwrap();
        b.begin_layer().unwrap();
        b
    }

    fn tar_of(entries: &[(&str, usize)]) -> Vec<u8> {
        let mut t = tar::Builder::new(Vec::new());
        for (name, size) in entries {
            let mut h = tar::Header::new_gnu();
            h.set_size(*size as u64);
            h.set_mode(0o644);
            h.set_uid(0);
            h.set_gid(0);
            h.set_mtime(1);
            h.set_cksum();
            t.append_data(&mut h, name, &vec![1u8; *size][..]).unwrap();
        }
        t.into_inner().unwrap()
    }

    #[test]
    fn sizes_count_against_the_image_limit_across_layers() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(dir.path());
        let limits = UnpackLimits {
            unpacked_bytes: 40_000,
            ..UnpackLimits::default()
        };
        let mut unpacker = Unpacker::new(limits);
        let first = tar_of(&[("a", 10_000)]);
        unpacker.apply_layer(&mut b, &first[..], false).unwrap();
        let second = tar_of(&[("b", 10_000), ("c", 20_000)]);
        let err = unpacker
            .apply_layer(&mut b, &second[..], false)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("tar entry \"c\" refused: its size of 20000 bytes"),
            "{err}"
        );
    }

    #[test]
    fn entry_and_name_limits_name_the_entry() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(dir.path());
        let limits = UnpackLimits {
            entries: 2,
            path_bytes: 8,
            ..UnpackLimits::default()
        };
        let many = tar_of(&[("x1", 1), ("x2", 1), ("x3", 1)]);
        let err = Unpacker::new(limits.clone())
            .apply_layer(&mut b, &many[..], false)
            .unwrap_err();
        assert!(
            err.to_string().contains("\"x3\" refused: 3 entries"),
            "{err}"
        );
        let long = tar_of(&[("abcdefghij", 1)]);
        let err = Unpacker::new(limits)
            .apply_layer(&mut b, &long[..], false)
            .unwrap_err();
        assert!(
            err.to_string()
                .contains("10 bytes of name exceed the limit of 8"),
            "{err}"
        );
    }

    #[test]
    fn trailing_data_counts_too() {
        let dir = tempfile::tempdir().unwrap();
        let mut b = builder(dir.path());
        let mut stream = tar_of(&[("a", 100)]);
        stream.extend(vec![0u8; 50_000]);
        let limits = UnpackLimits {
            unpacked_bytes: 20_000,
            ..UnpackLimits::default()
        };
        let err = Unpacker::new(limits)
            .apply_layer(&mut b, &stream[..], false)
            .unwrap_err();
        assert!(matches!(err, UnpackError::Unpacked { .. }), "{err}");
    }
}
