//! Bounds on the work a layer's unverified bytes can cause. Plain layers reach the tar
//! parser before their digests are known (streaming is why the pull is fast), so every
//! size an entry declares is checked before its data is read, and the bytes the parser
//! reads for one entry's headers (PAX records, GNU long names, GNU sparse maps) are capped
//! before it reads them: a refused entry costs at most the limit, never what it declares.

use std::cell::Cell;
use std::io::{self, Read};
use std::rc::Rc;

/// Limits on what one image's layers may hold; defaults that real images never reach.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnpackLimits {
    /// Bytes of tar stream plus sparse holes, over all layers of the image (default 64 GiB).
    pub unpacked_bytes: u64,
    /// Entries in one layer, whiteouts included (default 1,000,000).
    pub entries: u64,
    /// Bytes of an entry's name or link target (default 4096, Linux's `PATH_MAX`).
    pub path_bytes: u64,
    /// Bytes of one entry's headers: PAX records, GNU long names, GNU sparse maps
    /// (default 1 MiB; a sparse map of 2,000 extension blocks is about 1 MiB).
    pub header_bytes: u64,
    /// Extended attributes of one entry (default 128).
    pub xattrs: u64,
    /// Bytes of one entry's extended attribute names and values (default 256 KiB).
    pub xattr_bytes: u64,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        Self {
            unpacked_bytes: 64 << 30,
            entries: 1_000_000,
            path_bytes: 4096,
            header_bytes: 1 << 20,
            xattrs: 128,
            xattr_bytes: 256 << 10,
        }
    }
}

/// A limit name that [`UnpackLimits::set`] does not know, or a value that is not a number.
#[derive(Debug, thiserror::Error)]
#[error("unknown unpack limit {0:?} (known: unpacked-bytes, entries, path-bytes, header-bytes, xattrs, xattr-bytes; values are numbers with an optional K, M or G suffix)")]
pub struct LimitNameError(pub String);

impl UnpackLimits {
    /// Sets the limit `name` (`unpacked-bytes`, `entries`, `path-bytes`, `header-bytes`,
    /// `xattrs`, `xattr-bytes`) from `value`, a number with an optional `K`, `M` or `G`
    /// (binary) suffix.
    pub fn set(&mut self, name: &str, value: &str) -> Result<(), LimitNameError> {
        let bad = || LimitNameError(format!("{name}={value}"));
        let (digits, shift) = match value.as_bytes().last() {
            Some(b'K' | b'k') => (&value[..value.len() - 1], 10),
            Some(b'M' | b'm') => (&value[..value.len() - 1], 20),
            Some(b'G' | b'g') => (&value[..value.len() - 1], 30),
            _ => (value, 0),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        let n = n.checked_mul(1 << shift).ok_or_else(bad)?;
        let field = match name {
            "unpacked-bytes" => &mut self.unpacked_bytes,
            "entries" => &mut self.entries,
            "path-bytes" => &mut self.path_bytes,
            "header-bytes" => &mut self.header_bytes,
            "xattrs" => &mut self.xattrs,
            "xattr-bytes" => &mut self.xattr_bytes,
            _ => return Err(bad()),
        };
        *field = n;
        Ok(())
    }
}

/// Position and allowance of the tar stream, shared by the [`Metered`] reader the parser
/// reads from and the layer loop that moves the allowance.
#[derive(Default)]
pub(super) struct Meter {
    pos: Cell<u64>,
    limit: Cell<u64>,
    tripped: Cell<bool>,
}

impl Meter {
    /// Bytes read from the stream so far.
    pub fn pos(&self) -> u64 {
        self.pos.get()
    }

    /// Reads may go up to absolute position `limit`; beyond it they fail.
    pub fn allow_until(&self, limit: u64) {
        self.limit.set(limit);
    }

    /// Whether a read was refused since the last call.
    pub fn take_tripped(&self) -> bool {
        self.tripped.replace(false)
    }
}

/// The tar stream as the parser sees it: reads past the meter's limit fail.
pub(super) struct Metered<R> {
    pub inner: R,
    pub meter: Rc<Meter>,
}

impl<R: Read> Read for Metered<R> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        let (pos, limit) = (self.meter.pos.get(), self.meter.limit.get());
        if buf.is_empty() {
            return Ok(0);
        }
        if pos >= limit {
            self.meter.tripped.set(true);
            return Err(io::Error::other("tar stream limit reached"));
        }
        let room = usize::try_from(limit - pos).unwrap_or(usize::MAX);
        let want = buf.len().min(room);
        let n = self.inner.read(&mut buf[..want])?;
        self.meter.pos.set(pos + n as u64);
        Ok(n)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn set_parses_names_and_suffixes() {
        let mut l = UnpackLimits::default();
        l.set("unpacked-bytes", "64M").unwrap();
        l.set("entries", "1000").unwrap();
        assert_eq!(l.unpacked_bytes, 64 << 20);
        assert_eq!(l.entries, 1000);
        assert!(l.set("nonsense", "1").is_err());
        assert!(l.set("entries", "x").is_err());
        assert!(l.set("entries", "99999999999999999999G").is_err());
    }

    #[test]
    fn metered_reads_stop_at_the_limit() {
        let meter = Rc::new(Meter::default());
        meter.allow_until(10);
        let mut r = Metered {
            inner: &[7u8; 100][..],
            meter: Rc::clone(&meter),
        };
        let mut buf = [0u8; 64];
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert!(r.read(&mut buf).is_err());
        assert!(meter.take_tripped());
        meter.allow_until(20);
        assert_eq!(r.read(&mut buf).unwrap(), 10);
        assert_eq!(meter.pos(), 20);
    }
}
