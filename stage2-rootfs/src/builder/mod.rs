//! Writing a protected rootfs image from a stream of entries.
//!
//! The builder keeps the tree (names, metadata, extents) in memory and streams file data
//! straight into sealed slots, so its memory does not grow with file sizes. The image is
//! written to an unlinked-on-drop temporary file beside the destination and renamed into
//! place by [`RootfsBuilder::finish`]; a builder dropped before that leaves nothing behind.

mod blocks;
mod partial;
mod serialize;
mod tree;
mod types;

pub use partial::exit_removing_partials;
pub use types::{
    BuildError, BuildOptions, BuildSummary, EntryMeta, RootHash, RootHashParseError, Special,
    Timestamp,
};

use std::collections::BTreeMap;
use std::io::{self, Read, Seek, Write};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};

use crate::crypto::{default_image_id, key_id, ImageCipher};
use crate::format::{Extent, FileKind, Header, SuperBody, BLOCK_SIZE, NAME_MAX, VERSION};
use crate::key::DataKey;
use crate::merkle::{read_full, TreeShape};
use crate::path::RootfsPath;
use blocks::BlockWriter;
use partial::Partial;
use tree::{Body, Node, Tree};

/// Symlinks followed while resolving one path, as Linux's MAXSYMLINKS.
const MAX_SYMLINKS: usize = 40;
/// Longest symlink target (PATH_MAX less the NUL).
const SYMLINK_MAX: usize = 4095;
/// Largest xattr value Linux accepts.
const XATTR_VALUE_MAX: usize = 65536;

/// Writes a protected rootfs image; see the module docs.
pub struct RootfsBuilder {
    dest: PathBuf,
    partial: Partial,
    blocks: BlockWriter,
    tree: Tree,
    /// The tree as it was when the open layer began.
    layer_start: Option<Tree>,
    attachments: BTreeMap<String, Vec<u8>>,
    scratch: Box<[u8; BLOCK_SIZE]>,
}

impl RootfsBuilder {
    /// Starts an image that [`finish`](Self::finish) will write to `dest`.
    pub fn create(dest: &Path, key: &DataKey, options: BuildOptions) -> Result<Self, BuildError> {
        let dir = match dest.parent() {
            Some(p) if !p.as_os_str().is_empty() => p.to_owned(),
            _ => PathBuf::from("."),
        };
        let create_err = |source| BuildError::Create {
            dir: dir.clone(),
            source,
        };
        let name = dest.file_name().map(|n| n.to_string_lossy().into_owned());
        let (mut file, partial) =
            Partial::create(&dir, name.as_deref().unwrap_or("image")).map_err(create_err)?;
        let header = Header {
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            key_id: key_id(key),
            image_id: options.image_id.unwrap_or_else(|| default_image_id(key)),
        };
        file.write_all(&[0u8; BLOCK_SIZE])
            .map_err(|source| BuildError::Write {
                path: dest.to_owned(),
                source,
            })?;
        let blocks =
            BlockWriter::new(file, ImageCipher::new(key, header), &dir).map_err(create_err)?;
        Ok(Self {
            dest: dest.to_owned(),
            partial,
            blocks,
            tree: Tree::new(),
            layer_start: None,
            attachments: BTreeMap::new(),
            scratch: Box::new([0u8; BLOCK_SIZE]),
        })
    }

    /// Adds a directory, or updates the metadata of an existing one (keeping its entries).
    /// The root directory is the empty path.
    pub fn add_directory(&mut self, path: &RootfsPath, meta: EntryMeta) -> Result<(), BuildError> {
        check_meta(path, &meta)?;
        if let Some(id) = self.tree.lookup(path) {
            if matches!(self.tree.nodes[id].body, Body::Dir(_)) {
                self.tree.nodes[id].meta = meta;
                return Ok(());
            }
        }
        let (dir, name) = self.tree.parent_for(path)?;
        self.tree.insert(
            dir,
            name,
            Node {
                meta,
                body: Body::Dir(BTreeMap::new()),
            },
        );
        Ok(())
    }

    /// Adds a regular file whose content is read from `data` until its end; replaces what
    /// was at `path`. All-zero blocks are stored as holes. Returns the file size.
    pub fn add_file(
        &mut self,
        path: &RootfsPath,
        meta: EntryMeta,
        data: &mut dyn Read,
    ) -> Result<u64, BuildError> {
        check_meta(path, &meta)?;
        let (dir, name) = self.tree.parent_for(path)?;
        let mut extents: Vec<Extent> = Vec::new();
        let (mut size, mut file_block, mut stored) = (0u64, 0u64, 0u64);
        loop {
            let n =
                read_full(data, &mut self.scratch[..]).map_err(|source| BuildError::ReadData {
                    path: path.clone(),
                    source,
                })?;
            if n == 0 {
                break;
            }
            self.scratch[n..].fill(0);
            size += n as u64;
            if !is_zero(&self.scratch[..]) {
                let slot =
                    self.blocks
                        .write(&self.scratch)
                        .map_err(|source| BuildError::Write {
                            path: self.dest.clone(),
                            source,
                        })?;
                stored += 1;
                match extents.last_mut() {
                    Some(e) if e.file_block + e.count == file_block && e.slot + e.count == slot => {
                        e.count += 1
                    }
                    _ => extents.push(Extent {
                        file_block,
                        slot,
                        count: 1,
                    }),
                }
            }
            file_block += 1;
            if n < BLOCK_SIZE {
                break;
            }
        }
        let body = Body::File {
            size,
            extents,
            blocks: stored,
        };
        self.tree.insert(dir, name, Node { meta, body });
        Ok(size)
    }

    /// Adds a symlink to `target` (stored verbatim, never resolved); replaces what was there.
    pub fn add_symlink(
        &mut self,
        path: &RootfsPath,
        meta: EntryMeta,
        target: &[u8],
    ) -> Result<(), BuildError> {
        check_meta(path, &meta)?;
        if target.is_empty() || target.len() > SYMLINK_MAX || target.contains(&0) {
            return Err(BuildError::Invalid {
                path: path.clone(),
                reason: "symlink target must be 1 to 4095 bytes without NUL",
            });
        }
        let (dir, name) = self.tree.parent_for(path)?;
        self.tree.insert(
            dir,
            name,
            Node {
                meta,
                body: Body::Symlink(target.to_vec()),
            },
        );
        Ok(())
    }

    /// Adds a device node or fifo; replaces what was there.
    pub fn add_special(
        &mut self,
        path: &RootfsPath,
        meta: EntryMeta,
        special: Special,
    ) -> Result<(), BuildError> {
        check_meta(path, &meta)?;
        let (kind, rdev) = match special {
            Special::CharDevice(rdev) => (FileKind::CharDevice, rdev),
            Special::BlockDevice(rdev) => (FileKind::BlockDevice, rdev),
            Special::Fifo => (FileKind::Fifo, 0),
        };
        let (dir, name) = self.tree.parent_for(path)?;
        self.tree.insert(
            dir,
            name,
            Node {
                meta,
                body: Body::Special { kind, rdev },
            },
        );
        Ok(())
    }

    /// Adds `path` as another name of the (non-directory) inode at `target`; replaces what was
    /// at `path`. Both names then share data and metadata.
    pub fn add_hardlink(
        &mut self,
        path: &RootfsPath,
        target: &RootfsPath,
    ) -> Result<(), BuildError> {
        let Some(id) = self.tree.lookup(target) else {
            return Err(BuildError::LinkTargetMissing {
                path: path.clone(),
                target: target.clone(),
            });
        };
        if matches!(self.tree.nodes[id].body, Body::Dir(_)) {
            return Err(BuildError::LinkToDirectory {
                path: path.clone(),
                target: target.clone(),
            });
        }
        let (dir, name) = self.tree.parent_for(path)?;
        self.tree.link(dir, name, id);
        Ok(())
    }

    /// Removes `path` (with everything under it); returns whether it existed. The data of
    /// removed files stays in already written slots but is no longer reachable.
    pub fn remove(&mut self, path: &RootfsPath) -> Result<bool, BuildError> {
        let Some((parent, name)) = path.split_last() else {
            return Err(BuildError::IsRoot);
        };
        Ok(match self.tree.lookup(&parent) {
            Some(dir) => self.tree.unlink(dir, name),
            None => false,
        })
    }

    /// The kind of the entry at `path`, if there is one (symlinks are not followed).
    pub fn kind_of(&self, path: &RootfsPath) -> Option<FileKind> {
        self.tree
            .lookup(path)
            .map(|id| self.tree.nodes[id].body.kind())
    }

    /// Resolves the symlinks in `path` inside the image, the way `openat2(RESOLVE_IN_ROOT)`
    /// and umoci do: an absolute target restarts at the image root, `..` stops at the root,
    /// so the result never leaves the image. With `follow_last` false, a symlink in the last
    /// component is kept (as `lstat` would). Components that do not exist are kept as they
    /// are.
    pub fn resolve_in_root(
        &self,
        path: &RootfsPath,
        follow_last: bool,
    ) -> Result<RootfsPath, BuildError> {
        let mut todo: std::collections::VecDeque<Vec<u8>> = path.names().iter().cloned().collect();
        let mut resolved: Vec<Vec<u8>> = Vec::new();
        let mut links = 0usize;
        while let Some(name) = todo.pop_front() {
            match name.as_slice() {
                b"" | b"." => continue,
                b".." => {
                    resolved.pop();
                    continue;
                }
                _ => resolved.push(name),
            }
            if todo.is_empty() && !follow_last {
                break;
            }
            let Some(id) = self.tree.lookup_names(&resolved) else {
                continue;
            };
            if let Body::Symlink(target) = &self.tree.nodes[id].body {
                links += 1;
                if links > MAX_SYMLINKS {
                    return Err(BuildError::SymlinkLoop { path: path.clone() });
                }
                resolved.pop();
                if target.first() == Some(&b'/') {
                    resolved.clear();
                }
                for part in target.split(|&b| b == b'/').rev() {
                    todo.push_front(part.to_vec());
                }
            }
        }
        Ok(RootfsPath::from_valid_names(resolved))
    }

    /// The target of the symlink at `path`, if that is a symlink.
    pub fn symlink_target(&self, path: &RootfsPath) -> Option<&[u8]> {
        match &self.tree.nodes[self.tree.lookup(path)?].body {
            Body::Symlink(target) => Some(target),
            _ => None,
        }
    }

    /// Names in the directory at `path` (none if it is not a directory).
    pub fn children(&self, path: &RootfsPath) -> Vec<Vec<u8>> {
        self.tree
            .lookup(path)
            .and_then(|id| self.tree.children(id))
            .map(|c| c.keys().cloned().collect())
            .unwrap_or_default()
    }

    /// Starts a layer: until [`commit_layer`](Self::commit_layer), every change can be undone
    /// with [`abort_layer`](Self::abort_layer), and [`finish`](Self::finish) refuses to run.
    pub fn begin_layer(&mut self) -> Result<(), BuildError> {
        if self.layer_start.is_some() {
            return Err(BuildError::Layer("a layer is already open"));
        }
        self.layer_start = Some(self.tree.clone());
        Ok(())
    }

    /// Makes the open layer's changes part of the image.
    pub fn commit_layer(&mut self) -> Result<(), BuildError> {
        self.layer_start
            .take()
            .map(|_| ())
            .ok_or(BuildError::Layer("no layer is open"))
    }

    /// Undoes every change since [`begin_layer`](Self::begin_layer). Data the layer wrote
    /// stays in its slots but is unreachable.
    pub fn abort_layer(&mut self) -> Result<(), BuildError> {
        self.tree = self
            .layer_start
            .take()
            .ok_or(BuildError::Layer("no layer is open"))?;
        Ok(())
    }

    /// Stores a named, opaque attachment (for example an image config) in the encrypted and
    /// authenticated metadata; a second call with the same name replaces the first.
    pub fn attach(&mut self, name: &str, data: Vec<u8>) {
        self.attachments.insert(name.to_owned(), data);
    }

    /// Writes metadata, tree and superblock, and renames the image into place.
    pub fn finish(self) -> Result<BuildSummary, BuildError> {
        if self.layer_start.is_some() {
            return Err(BuildError::Layer("finish with a layer still open"));
        }
        let write_err = |source| BuildError::Write {
            path: self.dest.clone(),
            source,
        };
        let mut blocks = self.blocks;
        let meta = serialize::serialize(&self.tree, &self.attachments);
        let meta_slot = blocks.next_slot();
        let mut block = [0u8; BLOCK_SIZE];
        for chunk in meta.bytes.chunks(BLOCK_SIZE) {
            block[..chunk.len()].copy_from_slice(chunk);
            block[chunk.len()..].fill(0);
            blocks.write(&block).map_err(write_err)?;
        }
        let (mut file, cipher, tree) = blocks.finish().map_err(write_err)?;
        let slot_count = tree.leaf_count();
        let tree_offset = file.stream_position().map_err(write_err)?;
        let root = tree.write_to(&file, tree_offset).map_err(write_err)?;
        let image_len = tree_offset + TreeShape::new(slot_count).total_bytes();

        let body = SuperBody {
            root_hash: root,
            slot_count,
            meta_slot,
            image_len,
            ..meta.counts
        };
        let mut region = Vec::with_capacity(BLOCK_SIZE);
        region.extend_from_slice(&cipher.header().encode());
        region.extend_from_slice(
            &cipher
                .seal_superblock(&body.encode())
                .map_err(|e| write_err(io::Error::other(e)))?,
        );
        debug_assert_eq!(region.len(), BLOCK_SIZE);
        file.write_all_at(&region, 0).map_err(write_err)?;
        file.sync_all().map_err(write_err)?;
        drop(file);
        self.partial
            .persist(&self.dest)
            .map_err(|source| BuildError::Write {
                path: self.dest.clone(),
                source,
            })?;
        Ok(BuildSummary {
            root_hash: RootHash(root),
            entries: body.entry_count,
            inodes: body.inode_count,
            bytes: image_len,
            file_bytes: body.file_bytes,
        })
    }
}

fn check_meta(path: &RootfsPath, meta: &EntryMeta) -> Result<(), BuildError> {
    let invalid = |reason| {
        Err(BuildError::Invalid {
            path: path.clone(),
            reason,
        })
    };
    if meta.mtime.nsec >= 1_000_000_000 {
        return invalid("mtime nanoseconds out of range");
    }
    for (name, value) in &meta.xattrs {
        if name.is_empty() || name.len() > NAME_MAX || name.contains(&0) {
            return invalid("xattr name must be 1 to 255 bytes without NUL");
        }
        if value.len() > XATTR_VALUE_MAX {
            return invalid("xattr value longer than 64 KiB");
        }
    }
    Ok(())
}

/// Whether a block is all zeros (an OR over the block vectorizes well).
fn is_zero(block: &[u8]) -> bool {
    block.iter().fold(0u8, |acc, &b| acc | b) == 0
}
