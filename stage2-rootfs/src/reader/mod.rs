//! Reading a protected rootfs image: random access by path and inode, every byte verified.

mod check;
mod slots;
mod types;

pub use types::{DirEntry, ImageInfo, Inode, OpenError, ReadError, Xattr};

use std::fs::File;
use std::os::unix::fs::FileExt;
use std::path::Path;

use crate::builder::{RootHash, Timestamp};
use crate::crypto::{key_id, ImageCipher};
use crate::format::{
    slot_offset, DirentRecord, Extent, FileKind, Header, InodeRecord, SuperBody, BLOCK_SIZE,
    DIRENT_SIZE, EXTENT_SIZE, HEADER_LEN, INODE_SIZE, ROOT_INO, VERSION,
};
use crate::key::DataKey;
use crate::merkle::TreeShape;
use crate::path::RootfsPath;
use slots::{SlotStore, SLOTS_PER_READ};

pub use check::VerifyReport;

/// An open image. Safe to share between threads.
pub struct RootfsReader {
    store: SlotStore,
    header: Header,
    sb: SuperBody,
}

impl RootfsReader {
    /// Opens an image: checks magic, version, key and the superblock's authentication and
    /// consistency, and that the file has exactly the length the superblock says.
    pub fn open(path: &Path, key: &DataKey) -> Result<Self, OpenError> {
        let io = |source| OpenError::Io {
            path: path.to_owned(),
            source,
        };
        let file = File::open(path).map_err(io)?;
        let actual = file.metadata().map_err(io)?.len();
        let mut region = vec![0u8; BLOCK_SIZE];
        if actual < BLOCK_SIZE as u64 {
            let mut magic = [0u8; 8];
            if actual < 8
                || file.read_exact_at(&mut magic, 0).is_err()
                || magic != crate::format::MAGIC
            {
                return Err(OpenError::NotAnImage {
                    path: path.to_owned(),
                });
            }
            return Err(OpenError::Truncated {
                path: path.to_owned(),
                expected: BLOCK_SIZE as u64,
                actual,
            });
        }
        file.read_exact_at(&mut region, 0).map_err(io)?;
        let mut header_bytes = [0u8; HEADER_LEN];
        header_bytes.copy_from_slice(&region[..HEADER_LEN]);
        let header = Header::decode(&header_bytes).ok_or_else(|| OpenError::NotAnImage {
            path: path.to_owned(),
        })?;
        if header.version != VERSION {
            return Err(OpenError::UnsupportedVersion {
                path: path.to_owned(),
                version: header.version,
            });
        }
        let corrupt = |reason| OpenError::CorruptSuperblock {
            path: path.to_owned(),
            reason,
        };
        if header.block_size != BLOCK_SIZE as u32 {
            return Err(corrupt("unsupported block size"));
        }
        if header.key_id != key_id(key) {
            return Err(OpenError::WrongKey {
                path: path.to_owned(),
            });
        }
        let cipher = ImageCipher::new(key, header);
        let body = cipher
            .open_superblock(&region[HEADER_LEN..])
            .map_err(|_| corrupt("authentication failed"))?;
        let sb = SuperBody::decode(&body).ok_or_else(|| corrupt("bad padding"))?;
        let expected = check_superblock(&sb).ok_or_else(|| corrupt("inconsistent sizes"))?;
        if actual < expected {
            return Err(OpenError::Truncated {
                path: path.to_owned(),
                expected,
                actual,
            });
        }
        if actual > expected {
            return Err(OpenError::TrailingData {
                path: path.to_owned(),
                expected,
                actual,
            });
        }
        let store = SlotStore::new(path, file, cipher, sb.root_hash, sb.slot_count);
        Ok(Self { store, header, sb })
    }

    /// The rootfs measurement.
    pub fn root_hash(&self) -> RootHash {
        RootHash(self.sb.root_hash)
    }

    /// The image file.
    pub fn path(&self) -> &Path {
        &self.store.path
    }

    /// Superblock facts.
    pub fn info(&self) -> ImageInfo {
        let sb = &self.sb;
        ImageInfo {
            version: self.header.version,
            block_size: self.header.block_size,
            image_id: hex::encode(self.header.image_id),
            root_hash: self.root_hash(),
            slots: sb.slot_count,
            data_slots: sb.meta_slot,
            metadata_bytes: sb.meta_len,
            tree_levels: self.store.shape.levels(),
            image_bytes: sb.image_len,
            inodes: sb.inode_count,
            entries: sb.entry_count,
            files: sb.files,
            directories: sb.directories,
            symlinks: sb.symlinks,
            specials: sb.specials,
            file_bytes: sb.file_bytes,
        }
    }

    /// Hints the host's page cache to read the image's metadata and Merkle tree ahead (for
    /// a mount about to serve it); see the FUSE server.
    pub fn advise_index(&self) {
        self.store.advise_index(self.sb.meta_slot);
    }

    /// Number of inodes; valid inode numbers are 1 to this.
    pub fn inode_count(&self) -> u64 {
        self.sb.inode_count
    }

    /// The root directory.
    pub fn root(&self) -> Result<Inode, ReadError> {
        self.inode(ROOT_INO)
    }

    /// The inode with number `ino`.
    pub fn inode(&self, ino: u64) -> Result<Inode, ReadError> {
        if ino == 0 || ino > self.sb.inode_count {
            return Err(ReadError::NoInode {
                image: self.store.path.clone(),
                ino,
            });
        }
        let bytes = self.read_meta((ino - 1) * INODE_SIZE as u64, INODE_SIZE as u64)?;
        let mut arr = [0u8; INODE_SIZE];
        arr.copy_from_slice(&bytes);
        let rec = InodeRecord::decode(&arr);
        let kind = FileKind::from_mode(rec.mode)
            .ok_or_else(|| self.bad(format!("inode {ino} has file type bits {:o}", rec.mode)))?;
        Ok(Inode {
            ino,
            kind,
            mode: rec.mode,
            uid: rec.uid,
            gid: rec.gid,
            nlink: rec.nlink,
            size: rec.size,
            mtime: Timestamp {
                sec: rec.mtime_sec,
                nsec: rec.mtime_nsec,
            },
            rdev: rec.rdev,
            blocks: rec.blocks,
            parent: rec.parent,
            record: rec,
        })
    }

    /// All entries of a directory, in name order (without `.` and `..`).
    pub fn read_dir(&self, dir: &Inode) -> Result<Vec<DirEntry>, ReadError> {
        let records = self.dirents(dir)?;
        records
            .iter()
            .map(|r| {
                Ok(DirEntry {
                    name: self.heap(r.name_offset, u64::from(r.name_len))?,
                    ino: r.ino,
                })
            })
            .collect()
    }

    /// The entry `name` of a directory, by binary search.
    pub fn lookup(&self, dir: &Inode, name: &[u8]) -> Result<Option<Inode>, ReadError> {
        let records = self.dirents(dir)?;
        let (mut lo, mut hi) = (0usize, records.len());
        while lo < hi {
            let mid = lo + (hi - lo) / 2;
            let rec = &records[mid];
            let here = self.heap(rec.name_offset, u64::from(rec.name_len))?;
            match here.as_slice().cmp(name) {
                std::cmp::Ordering::Less => lo = mid + 1,
                std::cmp::Ordering::Greater => hi = mid,
                std::cmp::Ordering::Equal => return self.inode(rec.ino).map(Some),
            }
        }
        Ok(None)
    }

    /// The inode at `path`; symlinks are not followed.
    pub fn resolve(&self, path: &RootfsPath) -> Result<Inode, ReadError> {
        let mut node = self.root()?;
        for name in path.names() {
            if node.kind != FileKind::Directory {
                return Err(self.wrong_kind(path.to_string(), "directory"));
            }
            node = self
                .lookup(&node, name)?
                .ok_or_else(|| ReadError::NotFound {
                    image: self.store.path.clone(),
                    path: path.clone(),
                })?;
        }
        Ok(node)
    }

    /// The target of a symlink.
    pub fn read_link(&self, link: &Inode) -> Result<Vec<u8>, ReadError> {
        if link.kind != FileKind::Symlink {
            return Err(self.wrong_kind(format!("inode {}", link.ino), "symlink"));
        }
        self.heap(link.record.body_offset, link.record.body_len)
    }

    /// Whether any inode has extended attributes. Reads the whole inode table (verified
    /// and decrypted like every read) in runs of slots, past the metadata cache, and stops
    /// at the first inode that has some.
    pub fn has_xattrs(&self) -> Result<bool, ReadError> {
        let table = self
            .sb
            .inode_count
            .checked_mul(INODE_SIZE as u64)
            .filter(|&t| t <= self.sb.meta_len)
            .ok_or_else(|| self.bad("inode table beyond the metadata".into()))?;
        let blocks = table.div_ceil(BLOCK_SIZE as u64);
        let mut pending = Vec::with_capacity(BLOCK_SIZE + INODE_SIZE);
        let mut left = table;
        let mut found = false;
        let mut first = 0;
        while first < blocks && !found {
            let count = (blocks - first).min(SLOTS_PER_READ as u64);
            self.store
                .read_slots_with(self.sb.meta_slot + first, count as usize, |_, block| {
                    let take = left.min(BLOCK_SIZE as u64) as usize;
                    left -= take as u64;
                    pending.extend_from_slice(&block[..take]);
                    let whole = pending.len() - pending.len() % INODE_SIZE;
                    found |= pending[..whole].chunks_exact(INODE_SIZE).any(|rec| {
                        let mut arr = [0u8; INODE_SIZE];
                        arr.copy_from_slice(rec);
                        InodeRecord::decode(&arr).xattr_count != 0
                    });
                    pending.drain(..whole);
                })?;
            first += count;
        }
        Ok(found)
    }

    /// The extended attributes of an inode, in name order.
    pub fn xattrs(&self, inode: &Inode) -> Result<Vec<Xattr>, ReadError> {
        let rec = &inode.record;
        let bytes = self.heap(rec.xattr_offset, rec.xattr_len)?;
        parse_records(&bytes, u64::from(rec.xattr_count))
            .ok_or_else(|| self.bad(format!("xattrs of inode {}", inode.ino)))
    }

    /// All attachments stored with [`crate::RootfsBuilder::attach`], in name order.
    pub fn attachments(&self) -> Result<Vec<(String, Vec<u8>)>, ReadError> {
        let sb = &self.sb;
        let bytes = self.heap(sb.attachments_offset, sb.attachments_len)?;
        let records = parse_records(&bytes, sb.attachments_count)
            .ok_or_else(|| self.bad("attachment records".into()))?;
        records
            .into_iter()
            .map(|(name, value)| {
                String::from_utf8(name)
                    .map(|name| (name, value))
                    .map_err(|_| self.bad("attachment name is not UTF-8".into()))
            })
            .collect()
    }

    /// The attachment called `name`, if there is one.
    pub fn attachment(&self, name: &str) -> Result<Option<Vec<u8>>, ReadError> {
        Ok(self
            .attachments()?
            .into_iter()
            .find_map(|(n, v)| (n == name).then_some(v)))
    }

    /// Reads file data at `offset` into `buf`; returns the bytes read (0 at end of file).
    pub fn read(&self, file: &Inode, offset: u64, buf: &mut [u8]) -> Result<usize, ReadError> {
        if file.kind != FileKind::Regular {
            return Err(self.wrong_kind(format!("inode {}", file.ino), "regular file"));
        }
        if offset >= file.size || buf.is_empty() {
            return Ok(0);
        }
        let len = (file.size - offset).min(buf.len() as u64) as usize;
        let extents = self.extents(file)?;
        let bs = BLOCK_SIZE as u64;
        let mut done = 0usize;
        while done < len {
            let pos = offset + done as u64;
            let file_block = pos / bs;
            let in_block = (pos % bs) as usize;
            // Blocks wanted from here on, and how many of them one run can serve.
            let want_blocks = (in_block + (len - done)).div_ceil(BLOCK_SIZE) as u64;
            let idx = extents.partition_point(|e| e.file_block + e.count <= file_block);
            let (slot, run) = match extents.get(idx) {
                Some(e) if e.file_block <= file_block => {
                    let skip = file_block - e.file_block;
                    (Some(e.slot + skip), (e.count - skip).min(want_blocks))
                }
                Some(e) => (None, (e.file_block - file_block).min(want_blocks)),
                None => (None, want_blocks),
            };
            let run = run.min(SLOTS_PER_READ as u64) as usize;
            let take = (run * BLOCK_SIZE - in_block).min(len - done);
            let out = &mut buf[done..done + take];
            match slot {
                Some(slot) => {
                    if slot
                        .checked_add(run as u64)
                        .is_none_or(|end| end > self.sb.meta_slot)
                    {
                        return Err(self.bad(format!("extent of inode {} outside data", file.ino)));
                    }
                    self.store.read_slots_with(slot, run, |i, block| {
                        // Block i holds bytes [i*B - in_block, (i+1)*B - in_block) of `out`.
                        let src = if i == 0 { in_block } else { 0 };
                        let dst = i * BLOCK_SIZE + src - in_block;
                        let n = (BLOCK_SIZE - src).min(take.saturating_sub(dst));
                        out[dst..dst + n].copy_from_slice(&block[src..src + n]);
                    })?;
                }
                None => out.fill(0),
            }
            done += take;
        }
        Ok(len)
    }

    /// Checks every slot and every tree node; see [`VerifyReport`].
    pub fn verify_all(&self) -> Result<VerifyReport, ReadError> {
        check::verify_all(&self.store, &self.sb)
    }

    fn dirents(&self, dir: &Inode) -> Result<Vec<DirentRecord>, ReadError> {
        if dir.kind != FileKind::Directory {
            return Err(self.wrong_kind(format!("inode {}", dir.ino), "directory"));
        }
        let count = dir.size;
        let bytes = self.heap(
            dir.record.body_offset,
            count.saturating_mul(DIRENT_SIZE as u64),
        )?;
        Ok(bytes
            .chunks_exact(DIRENT_SIZE)
            .map(|c| {
                let mut arr = [0u8; DIRENT_SIZE];
                arr.copy_from_slice(c);
                DirentRecord::decode(&arr)
            })
            .collect())
    }

    /// The extent list of a regular file, checked to be what the builder writes: runs of at
    /// least one block, in file order without overlap, ending inside the file's blocks and
    /// inside the data slots. `read`'s search and arithmetic rely on it.
    pub(crate) fn extents(&self, file: &Inode) -> Result<Vec<Extent>, ReadError> {
        let bytes = self.heap(file.record.body_offset, file.record.body_len)?;
        if bytes.len() % EXTENT_SIZE != 0 {
            return Err(self.bad(format!(
                "extent list of inode {} is {} bytes, not a whole number of records",
                file.ino,
                bytes.len()
            )));
        }
        let file_blocks = file.size.div_ceil(BLOCK_SIZE as u64);
        let mut next_block = 0u64;
        let mut extents = Vec::with_capacity(bytes.len() / EXTENT_SIZE);
        for (i, chunk) in bytes.chunks_exact(EXTENT_SIZE).enumerate() {
            let mut arr = [0u8; EXTENT_SIZE];
            arr.copy_from_slice(chunk);
            let e = Extent::decode(&arr);
            let fits = e.count > 0
                && e.file_block >= next_block
                && e.file_block
                    .checked_add(e.count)
                    .is_some_and(|end| end <= file_blocks)
                && e.slot
                    .checked_add(e.count)
                    .is_some_and(|end| end <= self.sb.meta_slot);
            if !fits {
                return Err(self.bad(format!(
                    "extent {i} of inode {} (file block {}, slot {}, {} blocks) is out of order or \
                     outside the file's {file_blocks} blocks or the data slots",
                    file.ino, e.file_block, e.slot, e.count
                )));
            }
            next_block = e.file_block + e.count;
            extents.push(e);
        }
        Ok(extents)
    }

    /// Bytes of the heap.
    fn heap(&self, offset: u64, len: u64) -> Result<Vec<u8>, ReadError> {
        let start = self
            .sb
            .heap_offset
            .checked_add(offset)
            .ok_or_else(|| self.bad("heap offset overflows".into()))?;
        self.read_meta(start, len)
    }

    /// Bytes of the metadata region, through the verified block cache.
    fn read_meta(&self, offset: u64, len: u64) -> Result<Vec<u8>, ReadError> {
        let end = offset
            .checked_add(len)
            .filter(|&e| e <= self.sb.meta_len)
            .ok_or_else(|| {
                self.bad(format!(
                    "metadata range {offset}+{len} beyond {}",
                    self.sb.meta_len
                ))
            })?;
        let mut out = Vec::with_capacity(len as usize);
        let mut pos = offset;
        while pos < end {
            let block = self
                .store
                .cached_block(self.sb.meta_slot + pos / BLOCK_SIZE as u64)?;
            let in_block = (pos % BLOCK_SIZE as u64) as usize;
            let take = ((end - pos) as usize).min(BLOCK_SIZE - in_block);
            out.extend_from_slice(&block[in_block..in_block + take]);
            pos += take as u64;
        }
        Ok(out)
    }

    fn bad(&self, reason: String) -> ReadError {
        ReadError::BadMetadata {
            image: self.store.path.clone(),
            reason,
        }
    }

    fn wrong_kind(&self, what: String, expected: &'static str) -> ReadError {
        ReadError::WrongKind {
            image: self.store.path.clone(),
            what,
            expected,
        }
    }
}

/// Parses `count` records `{name_len u32, value_len u32, name, value}`; `None` if they do
/// not fit in `bytes`.
fn parse_records(bytes: &[u8], count: u64) -> Option<Vec<(Vec<u8>, Vec<u8>)>> {
    // Capacity from the byte length, not the stored count: each record takes 8 bytes or more.
    let mut out = Vec::with_capacity((bytes.len() as u64 / 8).min(count) as usize);
    let mut pos = 0usize;
    let field = |pos: usize| -> Option<usize> {
        let b = bytes.get(pos..pos.checked_add(4)?)?;
        Some(u32::from_le_bytes([b[0], b[1], b[2], b[3]]) as usize)
    };
    for _ in 0..count {
        let (nlen, vlen) = (field(pos)?, field(pos + 4)?);
        let name_end = pos.checked_add(8)?.checked_add(nlen)?;
        let value_end = name_end.checked_add(vlen)?;
        out.push((
            bytes.get(pos + 8..name_end)?.to_vec(),
            bytes.get(name_end..value_end)?.to_vec(),
        ));
        pos = value_end;
    }
    Some(out)
}

/// Checks the superblock's sizes against each other; returns the expected image length.
fn check_superblock(sb: &SuperBody) -> Option<u64> {
    let meta_slots = sb.meta_len.div_ceil(BLOCK_SIZE as u64);
    let consistent = sb.slot_count >= 1
        && sb.slot_count < (1 << 48)
        && sb.meta_slot.checked_add(meta_slots)? == sb.slot_count
        && sb.inode_count >= 1
        && sb.heap_offset == sb.inode_count.checked_mul(INODE_SIZE as u64)?
        && sb.heap_offset <= sb.meta_len;
    let len =
        slot_offset(sb.slot_count).checked_add(TreeShape::new(sb.slot_count).total_bytes())?;
    (consistent && len == sb.image_len).then_some(len)
}
