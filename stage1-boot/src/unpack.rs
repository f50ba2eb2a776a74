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
//!   a truncated-stream error, and the layer's digests are checked before it is committed.

use std::collections::HashSet;
use std::io::{self, Read};

use encc_rootfs::{BuildError, EntryMeta, FileKind, RootfsBuilder, RootfsPath, Special, Timestamp};
use tar::EntryType;

/// Whiteout prefix and the opaque-directory marker.
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";
const XATTR_PAX: &str = "SCHILY.xattr.";

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

/// Applies a layer's (decompressed) tar stream to `builder`, reading the stream to its end.
/// The caller wraps this in a builder layer transaction and commits only after the layer's
/// digests check out.
pub fn apply_layer(
    builder: &mut RootfsBuilder,
    stream: impl Read,
) -> Result<LayerStats, UnpackError> {
    let mut archive = tar::Archive::new(stream);
    let mut layer = Layer {
        builder,
        touched: HashSet::new(),
        stats: LayerStats::default(),
    };
    for entry in archive.entries().map_err(UnpackError::Tar)? {
        let mut entry = entry.map_err(UnpackError::Tar)?;
        layer.entry(&mut entry)?;
    }
    // Read the end-of-archive blocks and any padding too: the diff_id covers every byte.
    let mut rest = archive.into_inner();
    io::copy(&mut rest, &mut io::sink()).map_err(UnpackError::Tar)?;
    Ok(layer.stats)
}

struct Layer<'a> {
    builder: &'a mut RootfsBuilder,
    /// Paths this layer created, and their ancestors: whiteouts never hide them.
    touched: HashSet<RootfsPath>,
    stats: LayerStats,
}

impl Layer<'_> {
    fn entry<R: Read>(&mut self, entry: &mut tar::Entry<'_, R>) -> Result<(), UnpackError> {
        let raw = entry.path_bytes().into_owned();
        let shown = String::from_utf8_lossy(&raw).into_owned();
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            self.stats.skipped += 1;
            return Ok(());
        }
        let name = clean(&raw, &shown)?;
        let build = |source| UnpackError::Build {
            path: shown.clone(),
            source,
        };

        let Some((parent, last)) = name.split_last() else {
            // The root directory itself ("./"): only its metadata can change.
            if kind == EntryType::Directory {
                let meta = metadata(entry, &shown)?;
                self.builder
                    .add_directory(&RootfsPath::root(), meta)
                    .map_err(build)?;
                self.stats.entries += 1;
            }
            return Ok(());
        };
        let parent = self.builder.resolve_in_root(&parent, true).map_err(build)?;
        if let Some(hidden) = last.strip_prefix(WHITEOUT) {
            self.stats.whiteouts += 1;
            if last == OPAQUE {
                self.opaque(&parent).map_err(build)?;
            } else {
                let target = join(&parent, hidden, &shown)?;
                if !self.touched.contains(&target) {
                    self.builder.remove(&target).map_err(build)?;
                }
            }
            return Ok(());
        }
        let path = join(&parent, last, &shown)?;
        self.touch(&path);
        self.stats.entries += 1;

        if kind == EntryType::Link {
            let raw_target = entry
                .link_name_bytes()
                .ok_or_else(|| refused(&shown, "hardlink without a target"))?
                .into_owned();
            let target_shown = String::from_utf8_lossy(&raw_target).into_owned();
            let target = clean(&raw_target, &target_shown)?;
            let target = self.builder.resolve_in_root(&target, true).map_err(build)?;
            return self.builder.add_hardlink(&path, &target).map_err(build);
        }
        let meta = metadata(entry, &shown)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.builder.add_file(&path, meta, entry).map_err(build)?;
            }
            EntryType::Directory => self.builder.add_directory(&path, meta).map_err(build)?,
            EntryType::Symlink => {
                let target = entry
                    .link_name_bytes()
                    .ok_or_else(|| refused(&shown, "symlink without a target"))?
                    .into_owned();
                self.builder
                    .add_symlink(&path, meta, &target)
                    .map_err(build)?;
            }
            EntryType::Char | EntryType::Block => {
                let header = entry.header();
                let major = header.device_major().ok().flatten().unwrap_or(0);
                let minor = header.device_minor().ok().flatten().unwrap_or(0);
                let rdev = makedev(major, minor);
                let special = if kind == EntryType::Char {
                    Special::CharDevice(rdev)
                } else {
                    Special::BlockDevice(rdev)
                };
                self.builder
                    .add_special(&path, meta, special)
                    .map_err(build)?;
            }
            EntryType::Fifo => self
                .builder
                .add_special(&path, meta, Special::Fifo)
                .map_err(build)?,
            other => {
                log::warn!("skipping tar entry {shown:?} of unsupported type {other:?}");
                self.stats.entries -= 1;
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }

    fn touch(&mut self, path: &RootfsPath) {
        let mut p = path.clone();
        while self.touched.insert(p.clone()) {
            match p.split_last() {
                Some((parent, _)) => p = parent,
                None => break,
            }
        }
    }

    /// `.wh..wh..opq`: hides everything under `dir` that lower layers put there, keeping what
    /// this layer added (before or after the marker).
    fn opaque(&mut self, dir: &RootfsPath) -> Result<(), BuildError> {
        for name in self.builder.children(dir) {
            let Ok(child) = dir.join(&name) else { continue };
            if !self.touched.contains(&child) {
                self.builder.remove(&child)?;
            } else if self.builder.kind_of(&child) == Some(FileKind::Directory) {
                self.opaque(&child)?;
            }
        }
        Ok(())
    }
}

/// An archive name as an image path: leading `/` and `./` dropped, `..` refused.
fn clean(raw: &[u8], shown: &str) -> Result<RootfsPath, UnpackError> {
    if raw.split(|&b| b == b'/').any(|c| c == b"..") {
        return Err(refused(shown, "a '..' path component"));
    }
    RootfsPath::parse(raw).map_err(|e| refused(shown, &e.to_string()))
}

fn join(dir: &RootfsPath, name: &[u8], shown: &str) -> Result<RootfsPath, UnpackError> {
    if name == b"." || name == b".." || name.is_empty() {
        return Err(refused(shown, "an empty, '.' or '..' name"));
    }
    dir.join(name).map_err(|e| refused(shown, &e.to_string()))
}

fn refused(shown: &str, reason: &str) -> UnpackError {
    UnpackError::Refused {
        path: shown.to_owned(),
        reason: reason.to_owned(),
    }
}

/// Mode, owner, mtime (with PAX sub-second precision and large ids) and PAX xattrs.
fn metadata<R: Read>(entry: &mut tar::Entry<'_, R>, shown: &str) -> Result<EntryMeta, UnpackError> {
    let header = entry.header();
    let bad = |what: &str| refused(shown, &format!("invalid {what} field"));
    let mut meta = EntryMeta {
        mode: header.mode().map_err(|_| bad("mode"))? & 0o7777,
        uid: header
            .uid()
            .map_err(|_| bad("uid"))?
            .try_into()
            .map_err(|_| bad("uid"))?,
        gid: header
            .gid()
            .map_err(|_| bad("gid"))?
            .try_into()
            .map_err(|_| bad("gid"))?,
        mtime: Timestamp {
            sec: header
                .mtime()
                .map_err(|_| bad("mtime"))?
                .try_into()
                .map_err(|_| bad("mtime"))?,
            nsec: 0,
        },
        xattrs: Default::default(),
    };
    if let Some(pax) = entry.pax_extensions().map_err(UnpackError::Tar)? {
        for ext in pax {
            let ext = ext.map_err(UnpackError::Tar)?;
            let Ok(key) = ext.key() else { continue };
            let value = ext.value_bytes();
            let text = std::str::from_utf8(value).ok();
            match key {
                "uid" => {
                    meta.uid = text
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX uid"))?
                }
                "gid" => {
                    meta.gid = text
                        .and_then(|v| v.parse().ok())
                        .ok_or_else(|| bad("PAX gid"))?
                }
                "mtime" => {
                    meta.mtime = text
                        .and_then(parse_pax_time)
                        .ok_or_else(|| bad("PAX mtime"))?
                }
                _ => {
                    if let Some(name) = key.strip_prefix(XATTR_PAX) {
                        meta.xattrs.insert(name.as_bytes().to_vec(), value.to_vec());
                    }
                }
            }
        }
    }
    Ok(meta)
}

/// PAX time: decimal seconds with an optional fraction, possibly negative.
fn parse_pax_time(s: &str) -> Option<Timestamp> {
    let (neg, digits) = match s.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, s),
    };
    let (whole, frac) = digits.split_once('.').unwrap_or((digits, ""));
    let sec: i64 = whole.parse().ok()?;
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut nsec_digits: String = frac.chars().take(9).collect();
    while nsec_digits.len() < 9 {
        nsec_digits.push('0');
    }
    let nsec: u32 = nsec_digits.parse().ok()?;
    Some(if neg && nsec > 0 {
        Timestamp {
            sec: -sec - 1,
            nsec: 1_000_000_000 - nsec,
        }
    } else if neg {
        Timestamp { sec: -sec, nsec: 0 }
    } else {
        Timestamp { sec, nsec }
    })
}

/// Linux's `makedev`.
fn makedev(major: u32, minor: u32) -> u64 {
    let (major, minor) = (u64::from(major), u64::from(minor));
    ((major & 0xffff_f000) << 32)
        | ((major & 0xfff) << 8)
        | ((minor & 0xffff_ff00) << 12)
        | (minor & 0xff)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pax_times() {
        assert_eq!(
            parse_pax_time("1700000000.5"),
            Some(Timestamp {
                sec: 1_700_000_000,
                nsec: 500_000_000
            })
        );
        assert_eq!(parse_pax_time("12"), Some(Timestamp { sec: 12, nsec: 0 }));
        assert_eq!(
            parse_pax_time("-1.25"),
            Some(Timestamp {
                sec: -2,
                nsec: 750_000_000
            })
        );
        assert_eq!(parse_pax_time("x"), None);
    }

    #[test]
    fn makedev_matches_linux() {
        assert_eq!(makedev(1, 3), 0x103);
        assert_eq!(makedev(259, 65536), 0x1001_0300);
    }

    #[test]
    fn cleaning() {
        assert_eq!(clean(b"./a/b", "").unwrap().to_string(), "/a/b");
        assert_eq!(clean(b"/abs/x", "").unwrap().to_string(), "/abs/x");
        assert!(clean(b"a/../b", "").is_err());
        assert!(clean(b"../x", "").is_err());
    }
}
