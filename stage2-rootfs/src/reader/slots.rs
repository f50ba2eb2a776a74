//! Verified access to slots: every block handed out has passed its Merkle path to the root
//! in the authenticated superblock and its AEAD tag.

use std::collections::HashMap;
use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use crate::crypto::{leaf_hash, ImageCipher};
use crate::format::slot_offset;
use crate::format::{BLOCK_SIZE, NODE_SIZE, SLOT_SIZE};
use crate::merkle::{node_at, parent, TreeShape};

use super::ReadError;

/// Verified tree nodes kept; the cache is emptied when it fills.
const NODE_CACHE_MAX: usize = 1 << 18;
/// Decrypted metadata blocks kept.
const META_CACHE_MAX: usize = 1024;
/// Slots read per I/O call.
pub(super) const SLOTS_PER_READ: usize = 64;

type Block = [u8; BLOCK_SIZE];

thread_local! {
    /// Raw slot bytes of the current read, reused across reads of the same thread.
    static RAW: std::cell::RefCell<Vec<u8>> = const { std::cell::RefCell::new(Vec::new()) };
}

/// Reads and verifies slots of one image.
pub(super) struct SlotStore {
    pub path: PathBuf,
    pub file: File,
    pub cipher: ImageCipher,
    pub root: [u8; 32],
    pub shape: TreeShape,
    pub tree_offset: u64,
    caches: Mutex<Caches>,
}

#[derive(Default)]
struct Caches {
    /// (level, index) → node value that has been checked against the root.
    nodes: HashMap<(usize, u64), [u8; 32]>,
    /// Slot → decrypted block, for metadata.
    blocks: HashMap<u64, Arc<Block>>,
}

impl SlotStore {
    pub fn new(
        path: &Path,
        file: File,
        cipher: ImageCipher,
        root: [u8; 32],
        slot_count: u64,
    ) -> Self {
        let shape = TreeShape::new(slot_count);
        Self {
            path: path.to_owned(),
            file,
            cipher,
            root,
            tree_offset: slot_offset(slot_count),
            shape,
            caches: Mutex::new(Caches::default()),
        }
    }

    /// Asks the host's page cache to read the Merkle tree and the slots from `first_meta`
    /// on (the metadata) ahead, asynchronously: lookups and the first read of each region
    /// need tree nodes scattered over the tree, one small read each, which on a cold cache
    /// would each wait for the disk. Only a hint: every byte is still verified when used.
    pub fn advise_index(&self, first_meta: u64) {
        let ranges = [
            (
                slot_offset(first_meta),
                self.tree_offset - slot_offset(first_meta),
            ),
            (self.tree_offset, self.shape.total_bytes()),
        ];
        for (offset, len) in ranges {
            let advised = rustix::fs::fadvise(
                &self.file,
                offset,
                std::num::NonZeroU64::new(len),
                rustix::fs::Advice::WillNeed,
            );
            if let Err(e) = advised {
                log::debug!(
                    "cannot advise {} at {offset}+{len}: {e}",
                    self.path.display()
                );
            }
        }
    }

    pub fn slot_count(&self) -> u64 {
        self.shape.len(0)
    }

    /// Reads `count` slots from `first`, verifies and decrypts each in place, and hands the
    /// plaintext blocks to `each` (with their index in the run), in order. The raw buffer is
    /// per thread and reused, so reads allocate nothing.
    pub fn read_slots_with(
        &self,
        first: u64,
        count: usize,
        mut each: impl FnMut(usize, &[u8]),
    ) -> Result<(), ReadError> {
        RAW.with(|raw| {
            let mut raw = raw.borrow_mut();
            let need = count * SLOT_SIZE;
            if raw.len() < need {
                raw.resize(need, 0);
            }
            let raw = &mut raw[..need];
            self.file
                .read_exact_at(raw, slot_offset(first))
                .map_err(|source| self.io_err(first, source))?;
            let leaves: Vec<[u8; 32]> = raw.chunks_exact(SLOT_SIZE).map(leaf_hash).collect();
            self.verify_run(first, &leaves)?;
            for (i, slot_bytes) in raw.chunks_exact_mut(SLOT_SIZE).enumerate() {
                let slot = first + i as u64;
                let (block, tag) = slot_bytes.split_at_mut(BLOCK_SIZE);
                self.cipher
                    .open_block(slot, block, tag)
                    .map_err(|_| ReadError::Unauthentic {
                        image: self.path.clone(),
                        slot,
                    })?;
                each(i, block);
            }
            Ok(())
        })
    }

    /// One verified block, cached (used for metadata).
    pub fn cached_block(&self, slot: u64) -> Result<Arc<Block>, ReadError> {
        if let Some(block) = self.lock().blocks.get(&slot) {
            return Ok(Arc::clone(block));
        }
        let mut block = [0u8; BLOCK_SIZE];
        self.read_slots_with(slot, 1, |_, plain| block.copy_from_slice(plain))?;
        let block = Arc::new(block);
        let mut caches = self.lock();
        if caches.blocks.len() >= META_CACHE_MAX {
            caches.blocks.clear();
        }
        caches.blocks.insert(slot, Arc::clone(&block));
        Ok(block)
    }

    /// Checks the leaves of consecutive slots `first..` against the root: parents are
    /// computed level by level from the run (reading stored siblings only at its edges) until
    /// every node of a level is already known to be good, or the root. On success every node
    /// used becomes known-good; on failure the bad slot is found slot by slot.
    fn verify_run(&self, first: u64, leaves: &[[u8; 32]]) -> Result<(), ReadError> {
        let top = self.shape.levels() - 1;
        let mut learned: Vec<((usize, u64), [u8; 32])> = Vec::new();
        let mut nodes = leaves.to_vec();
        let (mut level, mut start) = (0usize, first);
        let ok = loop {
            if nodes.is_empty() {
                break true;
            }
            let (mut all_known, mut mismatch) = (true, false);
            {
                let caches = self.lock();
                for (i, node) in nodes.iter().enumerate() {
                    match caches.nodes.get(&(level, start + i as u64)) {
                        Some(known) if known != node => mismatch = true,
                        Some(_) => {}
                        None => all_known = false,
                    }
                }
            }
            if mismatch {
                break false;
            }
            if all_known {
                break true;
            }
            if level == top {
                break nodes.len() == 1 && nodes[0] == self.root;
            }
            let len = self.shape.len(level);
            let end = start + nodes.len() as u64;
            let node = |index: u64, learned: &mut Vec<_>| -> Result<[u8; 32], ReadError> {
                if (start..end).contains(&index) {
                    Ok(nodes[(index - start) as usize])
                } else {
                    let stored = self.stored_node(level, index)?;
                    learned.push(((level, index), stored));
                    Ok(stored)
                }
            };
            let (parent_start, parent_end) = (start / 2, (end - 1) / 2 + 1);
            let mut parents = Vec::with_capacity((parent_end - parent_start) as usize);
            for p in parent_start..parent_end {
                let left = node(2 * p, &mut learned)?;
                let right = if 2 * p + 1 < len {
                    Some(node(2 * p + 1, &mut learned)?)
                } else {
                    None
                };
                parents.push(parent(&left, right.as_ref()));
            }
            learned.extend(
                nodes
                    .iter()
                    .enumerate()
                    .map(|(i, n)| ((level, start + i as u64), *n)),
            );
            nodes = parents;
            start = parent_start;
            level += 1;
        };
        if !ok {
            for (i, leaf) in leaves.iter().enumerate() {
                self.verify_leaf(first + i as u64, leaf)?;
            }
            // Each leaf checks out alone but not together: the tree itself is inconsistent.
            return Err(ReadError::Tampered {
                image: self.path.clone(),
                slot: first,
            });
        }
        let mut caches = self.lock();
        if caches.nodes.len() + learned.len() > NODE_CACHE_MAX {
            caches.nodes.clear();
        }
        caches.nodes.extend(learned);
        Ok(())
    }

    /// Checks `leaf` (the hash of slot `slot` as read) against the root, walking up until a
    /// node already known to be good. On success every node used becomes known-good.
    fn verify_leaf(&self, slot: u64, leaf: &[u8; 32]) -> Result<(), ReadError> {
        let top = self.shape.levels() - 1;
        let mut learned: Vec<((usize, u64), [u8; 32])> = Vec::new();
        let (mut level, mut index, mut cur) = (0usize, slot, *leaf);
        let ok = loop {
            if level == top {
                break cur == self.root;
            }
            if let Some(known) = self.lock().nodes.get(&(level, index)) {
                break *known == cur;
            }
            let sibling = index ^ 1;
            let next = if sibling < self.shape.len(level) {
                let stored = self.stored_node(level, sibling)?;
                learned.push(((level, sibling), stored));
                if index % 2 == 0 {
                    parent(&cur, Some(&stored))
                } else {
                    parent(&stored, Some(&cur))
                }
            } else {
                parent(&cur, None)
            };
            learned.push(((level, index), cur));
            cur = next;
            level += 1;
            index /= 2;
        };
        if !ok {
            return Err(ReadError::Tampered {
                image: self.path.clone(),
                slot,
            });
        }
        let mut caches = self.lock();
        if caches.nodes.len() + learned.len() > NODE_CACHE_MAX {
            caches.nodes.clear();
        }
        caches.nodes.extend(learned);
        Ok(())
    }

    /// A node as stored in the image (not yet verified).
    pub fn stored_node(&self, level: usize, index: u64) -> Result<[u8; 32], ReadError> {
        let mut node = [0u8; NODE_SIZE];
        let offset = self.tree_offset + (self.shape.start(level) + index) * NODE_SIZE as u64;
        self.file
            .read_exact_at(&mut node, offset)
            .map_err(|source| ReadError::Io {
                image: self.path.clone(),
                what: format!("Merkle tree node {index} of level {level}"),
                source,
            })?;
        Ok(node_at(&node, 0))
    }

    fn io_err(&self, slot: u64, source: std::io::Error) -> ReadError {
        ReadError::Io {
            image: self.path.clone(),
            what: format!("block {slot}"),
            source,
        }
    }

    fn lock(&self) -> MutexGuard<'_, Caches> {
        // A panic while holding the lock cannot leave the caches inconsistent (each update
        // is a single insert or clear), so a poisoned lock is still usable.
        self.caches.lock().unwrap_or_else(|e| e.into_inner())
    }
}
