//! Sealing plaintext blocks into slots: encrypt, hash for the Merkle tree, append. Three
//! threads share the work: the caller (reading files or decompressing layers) fills batches
//! laid out as slots, a sealer thread encrypts them in place and hashes the leaves, and a
//! writer thread appends them to the image. Slots are numbered on the caller's side and
//! sealed in order, so output is deterministic.
//!
//! A full batch is 256 slots, exactly 257 pages, and batches start page-aligned in memory and
//! in the file, so the writer appends them with `O_DIRECT` where the file system allows it:
//! the image is synced to disk at the end anyway, and going around the page cache saves the
//! copy into it (the largest single cost of a pull on the project's VM). A file system that
//! refuses `O_DIRECT` (tmpfs on older kernels, FUSE) gets ordinary writes; the bytes are the
//! same either way.

use std::fs::File;
use std::io;
use std::os::unix::fs::FileExt;
use std::path::Path;
use std::sync::mpsc::{sync_channel, Receiver, SyncSender};
use std::thread::JoinHandle;

use rustix::fs::{fcntl_getfl, fcntl_setfl, OFlags};

use crate::crypto::{leaf_hash, ImageCipher};
use crate::format::{BLOCK_SIZE, SLOT_SIZE, TAG_LEN};
use crate::merkle::TreeWriter;

/// Blocks per batch: 256 slots of 4112 bytes are 257 pages of 4096.
const BATCH_BLOCKS: usize = 256;
/// Alignment `O_DIRECT` needs of buffers, lengths and offsets (the page size covers every
/// logical block size in use).
const ALIGN: usize = 4096;
/// Batches queued before each of the two threads (memory bound: about 2 × (DEPTH + 1) + 1
/// batches of 1 MiB).
const DEPTH: usize = 2;

const _: () = assert!((BATCH_BLOCKS * SLOT_SIZE).is_multiple_of(ALIGN));

/// A batch of slots: page-aligned memory, plaintext blocks at a slot's stride, sealed in
/// place (ciphertext and tag) by the sealer.
struct SlotBuf {
    mem: Vec<u8>,
    start: usize,
    blocks: usize,
    /// Slot index of the first block.
    first: u64,
}

impl SlotBuf {
    fn new() -> Self {
        let mem = vec![0u8; BATCH_BLOCKS * SLOT_SIZE + ALIGN];
        // `align_offset` may decline to answer; the writer then just does not use O_DIRECT.
        let start = match mem.as_ptr().align_offset(ALIGN) {
            n if n < ALIGN => n,
            _ => 0,
        };
        Self {
            mem,
            start,
            blocks: 0,
            first: 0,
        }
    }

    fn push(&mut self, block: &[u8; BLOCK_SIZE]) {
        let at = self.start + self.blocks * SLOT_SIZE;
        self.mem[at..at + BLOCK_SIZE].copy_from_slice(block);
        self.blocks += 1;
    }

    fn is_full(&self) -> bool {
        self.blocks == BATCH_BLOCKS
    }

    fn slots(&self) -> &[u8] {
        &self.mem[self.start..self.start + self.blocks * SLOT_SIZE]
    }

    fn slots_mut(&mut self) -> &mut [u8] {
        &mut self.mem[self.start..self.start + self.blocks * SLOT_SIZE]
    }
}

/// What the sealer owns and hands back at the end.
struct Sealer {
    cipher: ImageCipher,
    tree: TreeWriter,
}

/// The writer's end: the image file and the offset of the next slot.
struct Out {
    file: File,
    offset: u64,
    direct: bool,
}

/// Appends sealed slots to the image file and collects their leaf hashes.
pub(super) struct BlockWriter {
    tx: Option<SyncSender<SlotBuf>>,
    sealer: Option<JoinHandle<io::Result<Sealer>>>,
    writer: Option<JoinHandle<io::Result<Out>>>,
    /// Batches the writer is done with, for reuse.
    pool: Receiver<SlotBuf>,
    batch: SlotBuf,
    next: u64,
}

impl BlockWriter {
    /// `file` is positioned at the first slot; the tree spool goes to `dir`.
    pub fn new(file: File, cipher: ImageCipher, dir: &Path) -> io::Result<Self> {
        Self::with_direct(file, cipher, dir, true)
    }

    /// Like [`new`](Self::new); `direct`: try `O_DIRECT`.
    fn with_direct(file: File, cipher: ImageCipher, dir: &Path, direct: bool) -> io::Result<Self> {
        let mut sealer = Sealer {
            cipher,
            tree: TreeWriter::new(dir)?,
        };
        let out = Out::new(file, direct)?;
        let (tx, rx) = sync_channel::<SlotBuf>(DEPTH);
        let (sealed_tx, sealed_rx) = sync_channel::<SlotBuf>(DEPTH);
        let (pool_tx, pool) = sync_channel::<SlotBuf>(2 * DEPTH + 3);
        let writer = std::thread::Builder::new()
            .name("rootfs-writer".into())
            .spawn(move || out.run(sealed_rx, pool_tx))?;
        let sealer = std::thread::Builder::new()
            .name("rootfs-sealer".into())
            .spawn(move || {
                for mut batch in rx {
                    sealer.seal(&mut batch)?;
                    if sealed_tx.send(batch).is_err() {
                        // The writer failed; its error is reported from `join`.
                        break;
                    }
                }
                Ok(sealer)
            })?;
        Ok(Self {
            tx: Some(tx),
            sealer: Some(sealer),
            writer: Some(writer),
            pool,
            batch: SlotBuf::new(),
            next: 0,
        })
    }

    /// Index the next block will get.
    pub fn next_slot(&self) -> u64 {
        self.next
    }

    /// Queues `block` for the next slot; returns its index. An error of the workers (a
    /// failed write) shows up here or in [`finish`](Self::finish).
    pub fn write(&mut self, block: &[u8; BLOCK_SIZE]) -> io::Result<u64> {
        if self.batch.blocks == 0 {
            self.batch.first = self.next;
        }
        self.batch.push(block);
        let index = self.next;
        self.next += 1;
        if self.batch.is_full() {
            self.flush_batch()?;
        }
        Ok(index)
    }

    fn flush_batch(&mut self) -> io::Result<()> {
        if self.batch.blocks == 0 {
            return Ok(());
        }
        let mut fresh = self.pool.try_recv().unwrap_or_else(|_| SlotBuf::new());
        fresh.blocks = 0;
        let batch = std::mem::replace(&mut self.batch, fresh);
        match self.tx.as_ref().map(|tx| tx.send(batch)) {
            Some(Ok(())) => Ok(()),
            // A worker stopped: its error is the one to report.
            _ => Err(self
                .join()
                .err()
                .unwrap_or_else(|| io::Error::other("the sealing thread stopped"))),
        }
    }

    /// Stops the workers once they are done with what is queued; the writer's error first.
    fn join(&mut self) -> io::Result<(Sealer, Out)> {
        self.tx = None;
        let sealer = match self.sealer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the sealing thread panicked"))),
            None => Err(io::Error::other("the sealing threads already stopped")),
        };
        let out = match self.writer.take() {
            Some(h) => h
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("the writing thread panicked"))),
            None => Err(io::Error::other("the sealing threads already stopped")),
        };
        let out = out?;
        Ok((sealer?, out))
    }

    /// Seals what is queued and hands back the file (positioned after the last slot),
    /// cipher and tree.
    pub fn finish(mut self) -> io::Result<(File, ImageCipher, TreeWriter)> {
        self.flush_batch()?;
        let (sealer, out) = self.join()?;
        Ok((out.into_file()?, sealer.cipher, sealer.tree))
    }
}

impl Drop for BlockWriter {
    fn drop(&mut self) {
        // An abandoned build: stop the workers (their output goes with the temporary file).
        if self.sealer.is_some() || self.writer.is_some() {
            let _ = self.join();
        }
    }
}

impl Sealer {
    fn seal(&mut self, batch: &mut SlotBuf) -> io::Result<()> {
        let first = batch.first;
        for (i, slot) in batch.slots_mut().chunks_exact_mut(SLOT_SIZE).enumerate() {
            let (block, tag_out) = slot.split_at_mut(BLOCK_SIZE);
            let tag = self
                .cipher
                .seal_block(first + i as u64, block)
                .map_err(io::Error::other)?;
            tag_out[..TAG_LEN].copy_from_slice(&tag);
            self.tree.push(&leaf_hash(slot))?;
        }
        Ok(())
    }
}

impl Out {
    fn new(mut file: File, direct: bool) -> io::Result<Self> {
        let offset = io::Seek::stream_position(&mut file)?;
        let mut out = Self {
            file,
            offset,
            direct: false,
        };
        if direct && offset.is_multiple_of(ALIGN as u64) {
            // Refused by the file system: ordinary writes.
            out.direct = out.set_direct(true).is_ok();
        }
        Ok(out)
    }

    fn run(mut self, sealed: Receiver<SlotBuf>, pool: SyncSender<SlotBuf>) -> io::Result<Self> {
        for batch in sealed {
            self.append(batch.slots())?;
            // A full pool or a finished builder: the batch is simply freed.
            let _ = pool.try_send(batch);
        }
        Ok(self)
    }

    fn append(&mut self, bytes: &[u8]) -> io::Result<()> {
        let aligned =
            (bytes.as_ptr() as usize).is_multiple_of(ALIGN) && bytes.len().is_multiple_of(ALIGN);
        if self.direct && !aligned {
            // Only the last batch is short: it and everything after go through the cache.
            self.set_direct(false)?;
        }
        match self.file.write_all_at(bytes, self.offset) {
            // The file system took the flag but not the write: write it again, cached.
            Err(e) if self.direct && e.raw_os_error() == Some(libc::EINVAL) => {
                self.set_direct(false)?;
                self.file.write_all_at(bytes, self.offset)?;
            }
            result => result?,
        }
        self.offset += bytes.len() as u64;
        Ok(())
    }

    fn set_direct(&mut self, on: bool) -> io::Result<()> {
        let flags = fcntl_getfl(&self.file)?;
        let flags = if on {
            flags | OFlags::DIRECT
        } else {
            flags - OFlags::DIRECT
        };
        fcntl_setfl(&self.file, flags)?;
        self.direct = on;
        Ok(())
    }

    /// The file with `O_DIRECT` off, positioned after the last slot.
    fn into_file(mut self) -> io::Result<File> {
        if self.direct {
            self.set_direct(false)?;
        }
        io::Seek::seek(&mut self.file, io::SeekFrom::Start(self.offset))?;
        Ok(self.file)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::crypto::key_id;
    use crate::format::{Header, VERSION};
    use crate::key::DataKey;
    use std::io::{Read, Seek, Write};

    /// Writes `count` blocks after a one-block header; returns the file's bytes and the root.
    fn build(dir: &Path, count: u64, direct: bool) -> (Vec<u8>, [u8; 32]) {
        let key = DataKey::from_bytes(&[3u8; 32]);
        let header = Header {
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            key_id: key_id(&key),
            image_id: [4u8; 16],
        };
        let mut file = tempfile::tempfile_in(dir).unwrap();
        file.write_all(&[0u8; BLOCK_SIZE]).unwrap();
        let cipher = ImageCipher::new(&key, header);
        let mut w = BlockWriter::with_direct(file, cipher, dir, direct).unwrap();
        for i in 0..count {
            let mut block = [0u8; BLOCK_SIZE];
            block[..8].copy_from_slice(&i.to_le_bytes());
            assert_eq!(w.write(&block).unwrap(), i);
        }
        let (mut file, _, tree) = w.finish().unwrap();
        let end = file.stream_position().unwrap();
        assert_eq!(end, (BLOCK_SIZE + count as usize * SLOT_SIZE) as u64);
        let root = tree.write_to(&file, end).unwrap();
        let mut bytes = Vec::new();
        file.rewind().unwrap();
        file.read_to_end(&mut bytes).unwrap();
        (bytes, root)
    }

    /// Whole batches (O_DIRECT where the file system takes it), a short last batch (cached
    /// writes) and ordinary writes throughout give the same bytes, slot for slot.
    #[test]
    fn direct_and_cached_writes_give_the_same_image() {
        let dir =
            tempfile::tempdir_in(std::env::var_os("TMPDIR").unwrap_or("/var/tmp".into())).unwrap();
        for count in [1, 255, 256, 257, 3 * 256 + 17] {
            let (direct, root_direct) = build(dir.path(), count, true);
            let (cached, root_cached) = build(dir.path(), count, false);
            assert_eq!(root_direct, root_cached, "{count} blocks");
            assert!(direct == cached, "{count} blocks: the image bytes differ");
            // Each slot holds the sealed block with its index: open it back.
            let key = DataKey::from_bytes(&[3u8; 32]);
            let cipher = ImageCipher::new(
                &key,
                Header {
                    version: VERSION,
                    block_size: BLOCK_SIZE as u32,
                    key_id: key_id(&key),
                    image_id: [4u8; 16],
                },
            );
            let last = count - 1;
            let at = BLOCK_SIZE + last as usize * SLOT_SIZE;
            let mut block = direct[at..at + BLOCK_SIZE].to_vec();
            let tag = &direct[at + BLOCK_SIZE..at + SLOT_SIZE];
            cipher.open_block(last, &mut block, tag).unwrap();
            assert_eq!(block[..8], last.to_le_bytes());
        }
    }
}
