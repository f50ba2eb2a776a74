//! Sealing plaintext blocks into slots: encrypt, hash for the Merkle tree, append.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;

use crate::crypto::{leaf_hash, ImageCipher};
use crate::format::{BLOCK_SIZE, SLOT_SIZE};
use crate::merkle::TreeWriter;

/// Appends sealed slots to the image file and collects their leaf hashes.
pub(super) struct BlockWriter {
    out: BufWriter<File>,
    cipher: ImageCipher,
    tree: TreeWriter,
    slot: Box<[u8; SLOT_SIZE]>,
}

impl BlockWriter {
    /// `file` is positioned at the first slot; the tree spool goes to `dir`.
    pub fn new(file: File, cipher: ImageCipher, dir: &Path) -> io::Result<Self> {
        Ok(Self {
            out: BufWriter::with_capacity(1 << 20, file),
            cipher,
            tree: TreeWriter::new(dir)?,
            slot: Box::new([0u8; SLOT_SIZE]),
        })
    }

    /// Index the next sealed block will get.
    pub fn next_slot(&self) -> u64 {
        self.tree.leaf_count()
    }

    /// Seals `block` (overwritten with ciphertext) into the next slot; returns its index.
    pub fn write(&mut self, block: &mut [u8; BLOCK_SIZE]) -> io::Result<u64> {
        let index = self.next_slot();
        let tag = self
            .cipher
            .seal_block(index, block)
            .map_err(io::Error::other)?;
        self.slot[..BLOCK_SIZE].copy_from_slice(block);
        self.slot[BLOCK_SIZE..].copy_from_slice(&tag);
        self.out.write_all(&self.slot[..])?;
        self.tree.push(&leaf_hash(&self.slot[..]))?;
        Ok(index)
    }

    /// Flushes the slots and hands back the file, cipher and tree.
    pub fn finish(self) -> io::Result<(File, ImageCipher, TreeWriter)> {
        let file = self
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok((file, self.cipher, self.tree))
    }
}
