//! Whole-image verification: every slot's AEAD tag and leaf hash, every stored tree node,
//! and the root against the superblock. Streams; memory does not grow with the image.

use std::os::unix::fs::FileExt;

use crate::crypto::leaf_hash;
use crate::format::{SuperBody, BLOCK_SIZE, NODE_SIZE, SLOT_SIZE};
use crate::merkle::{node_at, parent};

use super::slots::SlotStore;
use super::ReadError;
use crate::builder::RootHash;

/// Slots checked per I/O call.
const BATCH: u64 = 256;

/// What a successful verification checked.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyReport {
    /// The root hash every slot chains up to.
    pub root_hash: RootHash,
    /// Slots checked.
    pub slots: u64,
    /// Tree nodes checked.
    pub nodes: u64,
    /// Bytes read.
    pub bytes: u64,
}

pub(super) fn verify_all(store: &SlotStore, sb: &SuperBody) -> Result<VerifyReport, ReadError> {
    let slots = store.slot_count();
    let shape = &store.shape;
    // Slots are checked in parallel ranges (crypto bound); the first bad slot is reported.
    let threads = std::thread::available_parallelism()
        .map_or(1, |n| n.get())
        .clamp(1, 4) as u64;
    let per = slots.div_ceil(threads).max(1);
    let results: Vec<Result<(), ReadError>> = std::thread::scope(|scope| {
        let handles: Vec<_> = (0..threads)
            .map(|t| {
                let (start, end) = ((t * per).min(slots), ((t + 1) * per).min(slots));
                scope.spawn(move || check_slots(store, start, end))
            })
            .collect();
        handles
            .into_iter()
            .map(|h| {
                h.join().unwrap_or_else(|_| {
                    Err(ReadError::BadMetadata {
                        image: store.path.clone(),
                        reason: "a verification thread panicked".into(),
                    })
                })
            })
            .collect()
    });
    results.into_iter().collect::<Result<Vec<()>, _>>()?;
    check_tree(store)?;
    Ok(VerifyReport {
        root_hash: RootHash(store.root),
        slots,
        nodes: shape.total_nodes(),
        bytes: sb.image_len,
    })
}

/// Checks slots `start..end`: leaf hash against the stored level 0, then the AEAD tag.
fn check_slots(store: &SlotStore, start: u64, end: u64) -> Result<(), ReadError> {
    let image = || store.path.clone();
    let io = |what: String| io_error(store, what);
    let mut raw = vec![0u8; BATCH as usize * SLOT_SIZE];
    let mut stored = vec![0u8; BATCH as usize * NODE_SIZE];
    let mut first = start;
    while first < end {
        let n = (end - first).min(BATCH);
        let raw = &mut raw[..n as usize * SLOT_SIZE];
        store
            .file
            .read_exact_at(raw, crate::format::slot_offset(first))
            .map_err(io(format!("blocks {first}..{}", first + n)))?;
        let stored = &mut stored[..n as usize * NODE_SIZE];
        store
            .file
            .read_exact_at(stored, store.tree_offset + first * NODE_SIZE as u64)
            .map_err(io(format!("Merkle leaves {first}..{}", first + n)))?;
        for (i, slot_bytes) in raw.chunks_exact_mut(SLOT_SIZE).enumerate() {
            let slot = first + i as u64;
            if leaf_hash(slot_bytes) != node_at(stored, i) {
                return Err(ReadError::Tampered {
                    image: image(),
                    slot,
                });
            }
            let (block, tag) = slot_bytes.split_at_mut(BLOCK_SIZE);
            store
                .cipher
                .open_block(slot, block, tag)
                .map_err(|_| ReadError::Unauthentic {
                    image: image(),
                    slot,
                })?;
        }
        first += n;
    }
    Ok(())
}

/// Each stored level must be exactly the parents of the level below, and the top the root.
fn check_tree(store: &SlotStore) -> Result<(), ReadError> {
    let image = || store.path.clone();
    let io = |what: String| io_error(store, what);
    let shape = &store.shape;
    let mut below = vec![0u8; 2 * BATCH as usize * NODE_SIZE];
    let mut here = vec![0u8; BATCH as usize * NODE_SIZE];
    for level in 1..shape.levels() {
        let count = shape.len(level);
        let below_count = shape.len(level - 1);
        let mut index = 0u64;
        while index < count {
            let n = (count - index).min(BATCH);
            let child_first = index * 2;
            let child_n = (below_count - child_first).min(2 * n);
            let below = &mut below[..child_n as usize * NODE_SIZE];
            let at =
                |lvl: usize, i: u64| store.tree_offset + (shape.start(lvl) + i) * NODE_SIZE as u64;
            store
                .file
                .read_exact_at(below, at(level - 1, child_first))
                .map_err(io(format!("Merkle level {}", level - 1)))?;
            let here = &mut here[..n as usize * NODE_SIZE];
            store
                .file
                .read_exact_at(here, at(level, index))
                .map_err(io(format!("Merkle level {level}")))?;
            for (i, pair) in below.chunks(2 * NODE_SIZE).enumerate() {
                let right = (pair.len() == 2 * NODE_SIZE).then(|| node_at(pair, 1));
                if parent(&node_at(pair, 0), right.as_ref()) != node_at(here, i) {
                    return Err(ReadError::TreeMismatch {
                        image: image(),
                        level,
                        index: index + i as u64,
                    });
                }
            }
            index += n;
        }
    }
    let top = shape.levels() - 1;
    if store.stored_node(top, 0)? != store.root {
        return Err(ReadError::TreeMismatch {
            image: image(),
            level: top,
            index: 0,
        });
    }
    Ok(())
}

/// An I/O error reading `what` of the image.
fn io_error(store: &SlotStore, what: String) -> impl FnOnce(std::io::Error) -> ReadError + '_ {
    move |source| ReadError::Io {
        image: store.path.clone(),
        what,
        source,
    }
}
