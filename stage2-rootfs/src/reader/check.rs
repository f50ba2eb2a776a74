//! Whole-image verification: every slot's AEAD tag and leaf hash, every stored tree node,
//! and the root against the superblock. Streams; memory does not grow with the image.

use std::os::unix::fs::FileExt;

use crate::crypto::leaf_hash;
use crate::format::{SuperBody, BLOCK_SIZE, NODE_SIZE, SLOT_SIZE, TAG_LEN};
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
    let image = || store.path.clone();
    let io = |what: String| {
        move |source| ReadError::Io {
            image: store.path.clone(),
            what,
            source,
        }
    };
    let slots = store.slot_count();
    let shape = &store.shape;
    let mut raw = vec![0u8; BATCH as usize * SLOT_SIZE];
    let mut stored = vec![0u8; BATCH as usize * NODE_SIZE];
    let mut first = 0u64;
    while first < slots {
        let n = (slots - first).min(BATCH);
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
        for (i, slot_bytes) in raw.chunks_exact(SLOT_SIZE).enumerate() {
            let slot = first + i as u64;
            if leaf_hash(slot_bytes) != node_at(stored, i) {
                return Err(ReadError::Tampered {
                    image: image(),
                    slot,
                });
            }
            let mut block = [0u8; BLOCK_SIZE];
            block.copy_from_slice(&slot_bytes[..BLOCK_SIZE]);
            let mut tag = [0u8; TAG_LEN];
            tag.copy_from_slice(&slot_bytes[BLOCK_SIZE..]);
            store
                .cipher
                .open_block(slot, &mut block, &tag)
                .map_err(|_| ReadError::Unauthentic {
                    image: image(),
                    slot,
                })?;
        }
        first += n;
    }

    // Each level must be exactly the parents of the level below.
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
    Ok(VerifyReport {
        root_hash: RootHash(store.root),
        slots,
        nodes: shape.total_nodes(),
        bytes: sb.image_len,
    })
}
