//! Sealing plaintext blocks into slots: encrypt, hash for the Merkle tree, append. The
//! crypto and the writes run on a worker thread fed in batches through a bounded channel,
//! so the caller (reading files or decompressing layers) and the sealing use two cores.
//! Slots are numbered on the caller's side and sealed in order, so output is deterministic.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::Path;
use std::sync::mpsc::{sync_channel, SyncSender};
use std::thread::JoinHandle;

use crate::crypto::{leaf_hash, ImageCipher};
use crate::format::{BLOCK_SIZE, SLOT_SIZE};
use crate::merkle::TreeWriter;

/// Blocks per batch handed to the worker.
const BATCH_BLOCKS: usize = 64;
/// Batches in flight (memory bound: depth × 256 KiB).
const DEPTH: usize = 4;

/// What the worker owns and hands back at the end.
struct Sealer {
    out: BufWriter<File>,
    cipher: ImageCipher,
    tree: TreeWriter,
}

/// A batch: the slot of its first block and the plaintext blocks.
type Batch = (u64, Vec<u8>);

/// Appends sealed slots to the image file and collects their leaf hashes.
pub(super) struct BlockWriter {
    tx: Option<SyncSender<Batch>>,
    worker: Option<JoinHandle<io::Result<Sealer>>>,
    batch: Vec<u8>,
    batch_first: u64,
    next: u64,
}

impl BlockWriter {
    /// `file` is positioned at the first slot; the tree spool goes to `dir`.
    pub fn new(file: File, cipher: ImageCipher, dir: &Path) -> io::Result<Self> {
        let mut sealer = Sealer {
            out: BufWriter::with_capacity(1 << 20, file),
            cipher,
            tree: TreeWriter::new(dir)?,
        };
        let (tx, rx) = sync_channel::<Batch>(DEPTH);
        let worker = std::thread::Builder::new()
            .name("rootfs-sealer".into())
            .spawn(move || {
                for (first, mut blocks) in rx {
                    sealer.seal(first, &mut blocks)?;
                }
                Ok(sealer)
            })?;
        Ok(Self {
            tx: Some(tx),
            worker: Some(worker),
            batch: Vec::with_capacity(BATCH_BLOCKS * BLOCK_SIZE),
            batch_first: 0,
            next: 0,
        })
    }

    /// Index the next block will get.
    pub fn next_slot(&self) -> u64 {
        self.next
    }

    /// Queues `block` for the next slot; returns its index. An error of the worker (a
    /// failed write) shows up here or in [`finish`](Self::finish).
    pub fn write(&mut self, block: &[u8; BLOCK_SIZE]) -> io::Result<u64> {
        if self.batch.is_empty() {
            self.batch_first = self.next;
        }
        self.batch.extend_from_slice(block);
        let index = self.next;
        self.next += 1;
        if self.batch.len() == BATCH_BLOCKS * BLOCK_SIZE {
            self.flush_batch()?;
        }
        Ok(index)
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let batch = std::mem::replace(
            &mut self.batch,
            Vec::with_capacity(BATCH_BLOCKS * BLOCK_SIZE),
        );
        let sent = self
            .tx
            .as_ref()
            .map(|tx| tx.send((self.batch_first, batch)));
        match sent {
            Some(Ok(())) => Ok(()),
            // The worker stopped: its error is the one to report.
            _ => Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the sealing thread stopped"))),
        }
    }

    fn join(&mut self) -> io::Result<Sealer> {
        self.tx = None;
        match self.worker.take() {
            Some(worker) => worker
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the sealing thread panicked"))),
            None => Err(io::Error::other("the sealing thread already stopped")),
        }
    }

    /// Seals what is queued and hands back the file, cipher and tree.
    pub fn finish(mut self) -> io::Result<(File, ImageCipher, TreeWriter)> {
        self.flush_batch()?;
        let sealer = self.join()?;
        let file = sealer
            .out
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        Ok((file, sealer.cipher, sealer.tree))
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // An abandoned build: stop the worker (its output goes with the temporary file).
        if self.worker.is_some() {
            let _ = self.join();
        }
    }
}

impl Sealer {
    fn seal(&mut self, first: u64, blocks: &mut [u8]) -> io::Result<()> {
        let mut slot = [0u8; SLOT_SIZE];
        for (i, block) in blocks.chunks_exact_mut(BLOCK_SIZE).enumerate() {
            let index = first + i as u64;
            let tag = self
                .cipher
                .seal_block(index, block)
                .map_err(io::Error::other)?;
            slot[..BLOCK_SIZE].copy_from_slice(block);
            slot[BLOCK_SIZE..].copy_from_slice(&tag);
            self.out.write_all(&slot)?;
            self.tree.push(&leaf_hash(&slot))?;
        }
        Ok(())
    }
}
