//! One tar entry applied to the builder: names cleaned and resolved inside the image,
//! whiteouts, hardlinks, and the other entry types.

use std::collections::HashSet;
use std::io::Read;

use encc_rootfs::{BuildError, FileKind, RootfsBuilder, RootfsPath, Special};
use tar::EntryType;

use super::limits::UnpackLimits;
use super::meta::{makedev, metadata};
use super::{over, refused, show, LayerStats, UnpackError};

/// Whiteout prefix and the opaque-directory marker.
const WHITEOUT: &[u8] = b".wh.";
const OPAQUE: &[u8] = b".wh..wh..opq";

/// One layer's entries being applied.
pub(super) struct Layer<'a> {
    pub builder: &'a mut RootfsBuilder,
    /// Paths this layer created, and their ancestors: whiteouts never hide them.
    pub touched: HashSet<RootfsPath>,
    pub stats: LayerStats,
    pub limits: &'a UnpackLimits,
    /// The layer was encrypted: its entry names never reach a log.
    pub confidential: bool,
}

impl Layer<'_> {
    /// Applies one entry; `shown` is its name for messages.
    pub fn entry<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        raw: &[u8],
        shown: &str,
    ) -> Result<(), UnpackError> {
        let kind = entry.header().entry_type();
        if matches!(kind, EntryType::XGlobalHeader | EntryType::XHeader) {
            self.stats.skipped += 1;
            return Ok(());
        }
        let name = clean(raw, shown)?;
        let build = |source| UnpackError::Build {
            path: shown.to_owned(),
            source,
        };

        let Some((parent, last)) = name.split_last() else {
            // The root directory itself ("./"): only its metadata can change.
            if kind == EntryType::Directory {
                let meta = metadata(entry, shown, self.limits)?;
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
                let target = join(&parent, hidden, shown)?;
                if !self.touched.contains(&target) {
                    self.builder.remove(&target).map_err(build)?;
                }
            }
            return Ok(());
        }
        let path = join(&parent, last, shown)?;
        self.touch(&path);
        self.stats.entries += 1;

        if kind == EntryType::Link {
            let raw_target = self.link_target(entry, shown, "hardlink")?;
            let target = clean(&raw_target, &show(&raw_target))?;
            let target = self.builder.resolve_in_root(&target, true).map_err(build)?;
            return self.builder.add_hardlink(&path, &target).map_err(build);
        }
        self.add_node(entry, kind, &path, shown)
    }

    /// Adds a file, directory, symlink, device or FIFO at `path`.
    fn add_node<R: Read>(
        &mut self,
        entry: &mut tar::Entry<'_, R>,
        kind: EntryType,
        path: &RootfsPath,
        shown: &str,
    ) -> Result<(), UnpackError> {
        let build = |source| UnpackError::Build {
            path: shown.to_owned(),
            source,
        };
        let path = path.clone();
        let meta = metadata(entry, shown, self.limits)?;
        match kind {
            EntryType::Regular | EntryType::Continuous | EntryType::GNUSparse => {
                self.builder.add_file(&path, meta, entry).map_err(build)?;
            }
            EntryType::Directory => self.builder.add_directory(&path, meta).map_err(build)?,
            EntryType::Symlink => {
                let target = self.link_target(entry, shown, "symlink")?;
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
                // An encrypted layer's entries (names, types) never reach a log.
                if !self.confidential {
                    log::warn!("skipping tar entry {shown:?} of unsupported type {other:?}");
                }
                self.stats.entries -= 1;
                self.stats.skipped += 1;
            }
        }
        Ok(())
    }

    /// A link's target, within the path length limit.
    fn link_target<R: Read>(
        &self,
        entry: &tar::Entry<'_, R>,
        shown: &str,
        what: &str,
    ) -> Result<Vec<u8>, UnpackError> {
        let target = entry
            .link_name_bytes()
            .ok_or_else(|| refused(shown, &format!("{what} without a target")))?;
        let len = target.len() as u64;
        if len > self.limits.path_bytes {
            return Err(over(
                shown,
                "bytes of link target",
                len,
                self.limits.path_bytes,
            ));
        }
        Ok(target.into_owned())
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
pub(super) fn clean(raw: &[u8], shown: &str) -> Result<RootfsPath, UnpackError> {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cleaning() {
        assert_eq!(clean(b"./a/b", "").unwrap().to_string(), "/a/b");
        assert_eq!(clean(b"/abs/x", "").unwrap().to_string(), "/abs/x");
        assert!(clean(b"a/../b", "").is_err());
        assert!(clean(b"../x", "").is_err());
    }
}
