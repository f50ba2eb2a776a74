//! On-disk layout constants and the encodings of the superblock, inode records, directory
//! records, extents and xattrs. `FORMAT.md` beside the crate is the prose version of this file.

/// Size of a plaintext block and of the superblock region.
pub const BLOCK_SIZE: usize = 4096;
/// AEAD tag length (AES-256-GCM-SIV).
pub const TAG_LEN: usize = 16;
/// A stored block: ciphertext followed by its tag.
pub const SLOT_SIZE: usize = BLOCK_SIZE + TAG_LEN;
/// Size of a Merkle tree node (SHA-256).
pub const NODE_SIZE: usize = 32;
/// Magic at offset 0 of every image.
pub const MAGIC: [u8; 8] = *b"ENCCRFS\0";
/// The format version this code writes and reads.
pub const VERSION: u32 = 1;
/// Plaintext header: magic, version, block size, key id, image id.
pub const HEADER_LEN: usize = 8 + 4 + 4 + 8 + 16;
/// Encrypted superblock body (fields, then zero padding), filling the region up to the tag.
pub const SUPER_BODY_LEN: usize = BLOCK_SIZE - HEADER_LEN - TAG_LEN;
/// Size of an inode record in the inode table.
pub const INODE_SIZE: usize = 96;
/// Size of a directory record.
pub const DIRENT_SIZE: usize = 24;
/// Size of a file extent record.
pub const EXTENT_SIZE: usize = 24;
/// Longest file name, as Linux's NAME_MAX.
pub const NAME_MAX: usize = 255;
/// Inode number of the root directory (also FUSE's root id).
pub const ROOT_INO: u64 = 1;

/// Byte offset of slot `index` in the image.
pub fn slot_offset(index: u64) -> u64 {
    BLOCK_SIZE as u64 + index * SLOT_SIZE as u64
}

/// The kind of an inode, from the `S_IFMT` bits of its mode.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// A directory.
    Directory,
    /// A regular file.
    Regular,
    /// A symbolic link.
    Symlink,
    /// A character device.
    CharDevice,
    /// A block device.
    BlockDevice,
    /// A named pipe.
    Fifo,
}

impl FileKind {
    /// The `S_IFMT` bits of this kind.
    pub fn mode_bits(self) -> u32 {
        match self {
            Self::Directory => libc::S_IFDIR,
            Self::Regular => libc::S_IFREG,
            Self::Symlink => libc::S_IFLNK,
            Self::CharDevice => libc::S_IFCHR,
            Self::BlockDevice => libc::S_IFBLK,
            Self::Fifo => libc::S_IFIFO,
        }
    }

    /// The kind encoded in a full `st_mode`, if it is one an image may hold.
    pub fn from_mode(mode: u32) -> Option<Self> {
        Some(match mode & libc::S_IFMT {
            libc::S_IFDIR => Self::Directory,
            libc::S_IFREG => Self::Regular,
            libc::S_IFLNK => Self::Symlink,
            libc::S_IFCHR => Self::CharDevice,
            libc::S_IFBLK => Self::BlockDevice,
            libc::S_IFIFO => Self::Fifo,
            _ => return None,
        })
    }
}

/// The plaintext part of the superblock (authenticated as AAD, not secret).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// Block size; always [`BLOCK_SIZE`] in version 1.
    pub block_size: u32,
    /// Identifies the key (a hash of it), so a wrong key is reported as such.
    pub key_id: [u8; 8],
    /// Identifies the image; bound into every block's nonce and AAD.
    pub image_id: [u8; 16],
}

impl Header {
    /// Encodes the header.
    pub fn encode(&self) -> [u8; HEADER_LEN] {
        let mut out = [0u8; HEADER_LEN];
        out[..8].copy_from_slice(&MAGIC);
        out[8..12].copy_from_slice(&self.version.to_le_bytes());
        out[12..16].copy_from_slice(&self.block_size.to_le_bytes());
        out[16..24].copy_from_slice(&self.key_id);
        out[24..40].copy_from_slice(&self.image_id);
        out
    }

    /// Decodes a header; `None` when the magic is not encc's.
    pub fn decode(bytes: &[u8; HEADER_LEN]) -> Option<Self> {
        if bytes[..8] != MAGIC {
            return None;
        }
        let mut r = Cursor::new(&bytes[8..]);
        Some(Self {
            version: r.u32(),
            block_size: r.u32(),
            key_id: r.array(),
            image_id: r.array(),
        })
    }
}

/// The encrypted superblock fields.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct SuperBody {
    /// Merkle root over all slots: the rootfs measurement.
    pub root_hash: [u8; 32],
    /// Number of slots (leaves of the Merkle tree).
    pub slot_count: u64,
    /// First slot of the metadata region (slots before it hold file data).
    pub meta_slot: u64,
    /// Length of the metadata region in bytes (inode table followed by the heap).
    pub meta_len: u64,
    /// Number of inodes; inode `n` is record `n - 1` of the table.
    pub inode_count: u64,
    /// Offset of the heap within the metadata region.
    pub heap_offset: u64,
    /// Total image length in bytes (header, slots, tree).
    pub image_len: u64,
    /// Directory entries in the tree (names, hardlinks counted once each).
    pub entry_count: u64,
    /// Sum of regular file sizes (each inode counted once).
    pub file_bytes: u64,
    /// Number of regular files, directories, symlinks and other inodes.
    pub files: u64,
    /// Number of directories.
    pub directories: u64,
    /// Number of symlinks.
    pub symlinks: u64,
    /// Number of device nodes and fifos.
    pub specials: u64,
    /// Heap offset of the attachment records.
    pub attachments_offset: u64,
    /// Length of the attachment records in bytes.
    pub attachments_len: u64,
    /// Number of attachments.
    pub attachments_count: u64,
}

impl SuperBody {
    /// Encodes the body, zero-padded to [`SUPER_BODY_LEN`].
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(SUPER_BODY_LEN);
        out.extend_from_slice(&self.root_hash);
        for v in [
            self.slot_count,
            self.meta_slot,
            self.meta_len,
            self.inode_count,
            self.heap_offset,
            self.image_len,
            self.entry_count,
            self.file_bytes,
            self.files,
            self.directories,
            self.symlinks,
            self.specials,
            self.attachments_offset,
            self.attachments_len,
            self.attachments_count,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.resize(SUPER_BODY_LEN, 0);
        out
    }

    /// Decodes a body; `None` if it is too short or its padding is not zero.
    pub fn decode(bytes: &[u8]) -> Option<Self> {
        if bytes.len() != SUPER_BODY_LEN {
            return None;
        }
        let mut r = Cursor::new(bytes);
        let body = Self {
            root_hash: r.array(),
            slot_count: r.u64(),
            meta_slot: r.u64(),
            meta_len: r.u64(),
            inode_count: r.u64(),
            heap_offset: r.u64(),
            image_len: r.u64(),
            entry_count: r.u64(),
            file_bytes: r.u64(),
            files: r.u64(),
            directories: r.u64(),
            symlinks: r.u64(),
            specials: r.u64(),
            attachments_offset: r.u64(),
            attachments_len: r.u64(),
            attachments_count: r.u64(),
        };
        bytes[r.pos..].iter().all(|&b| b == 0).then_some(body)
    }
}

/// An inode record of the inode table.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct InodeRecord {
    /// Full `st_mode`: file type and permission bits.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Number of hard links (directories: 2 + subdirectories).
    pub nlink: u32,
    /// File size in bytes; symlink target length; directory entry count.
    pub size: u64,
    /// Modification time, seconds since the epoch.
    pub mtime_sec: i64,
    /// Modification time, nanoseconds.
    pub mtime_nsec: u32,
    /// Number of xattrs.
    pub xattr_count: u32,
    /// Device number of a device node.
    pub rdev: u64,
    /// Heap offset of the body: extents, directory records or symlink target.
    pub body_offset: u64,
    /// Length of the body in bytes.
    pub body_len: u64,
    /// Heap offset of the xattr records.
    pub xattr_offset: u64,
    /// Length of the xattr records in bytes.
    pub xattr_len: u64,
    /// Directories: inode of the parent (the root is its own parent).
    pub parent: u64,
    /// Number of stored (non-hole) data blocks.
    pub blocks: u64,
}

impl InodeRecord {
    /// Encodes the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.mode, self.uid, self.gid, self.nlink] {
            out.extend_from_slice(&v.to_le_bytes());
        }
        out.extend_from_slice(&self.size.to_le_bytes());
        out.extend_from_slice(&self.mtime_sec.to_le_bytes());
        out.extend_from_slice(&self.mtime_nsec.to_le_bytes());
        out.extend_from_slice(&self.xattr_count.to_le_bytes());
        for v in [
            self.rdev,
            self.body_offset,
            self.body_len,
            self.xattr_offset,
            self.xattr_len,
            self.parent,
            self.blocks,
        ] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8; INODE_SIZE]) -> Self {
        let mut r = Cursor::new(bytes);
        Self {
            mode: r.u32(),
            uid: r.u32(),
            gid: r.u32(),
            nlink: r.u32(),
            size: r.u64(),
            mtime_sec: r.u64() as i64,
            mtime_nsec: r.u32(),
            xattr_count: r.u32(),
            rdev: r.u64(),
            body_offset: r.u64(),
            body_len: r.u64(),
            xattr_offset: r.u64(),
            xattr_len: r.u64(),
            parent: r.u64(),
            blocks: r.u64(),
        }
    }
}

/// A directory record; the names of a directory follow its records in the heap.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DirentRecord {
    /// Inode of the entry.
    pub ino: u64,
    /// Heap offset of the name.
    pub name_offset: u64,
    /// Length of the name.
    pub name_len: u16,
}

impl DirentRecord {
    /// Encodes the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(&self.ino.to_le_bytes());
        out.extend_from_slice(&self.name_offset.to_le_bytes());
        out.extend_from_slice(&self.name_len.to_le_bytes());
        out.extend_from_slice(&[0u8; 6]);
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8; DIRENT_SIZE]) -> Self {
        let mut r = Cursor::new(bytes);
        Self {
            ino: r.u64(),
            name_offset: r.u64(),
            name_len: r.u16(),
        }
    }
}

/// A run of stored data blocks of a regular file; blocks not covered by an extent are holes
/// (all zeros).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Extent {
    /// First file block (file offset / [`BLOCK_SIZE`]).
    pub file_block: u64,
    /// Slot holding that block; the run's blocks are in consecutive slots.
    pub slot: u64,
    /// Number of blocks in the run.
    pub count: u64,
}

impl Extent {
    /// Encodes the record.
    pub fn encode(&self, out: &mut Vec<u8>) {
        for v in [self.file_block, self.slot, self.count] {
            out.extend_from_slice(&v.to_le_bytes());
        }
    }

    /// Decodes a record.
    pub fn decode(bytes: &[u8; EXTENT_SIZE]) -> Self {
        let mut r = Cursor::new(bytes);
        Self {
            file_block: r.u64(),
            slot: r.u64(),
            count: r.u64(),
        }
    }
}

/// Little-endian field reader over a slice whose length the caller has checked.
struct Cursor<'a> {
    bytes: &'a [u8],
    pos: usize,
}

impl<'a> Cursor<'a> {
    fn new(bytes: &'a [u8]) -> Self {
        Self { bytes, pos: 0 }
    }

    fn array<const N: usize>(&mut self) -> [u8; N] {
        let mut out = [0u8; N];
        // Every caller decodes a fixed-size array sized for its fields; a short slice
        // yields zeros rather than panicking.
        if let Some(src) = self.bytes.get(self.pos..self.pos + N) {
            out.copy_from_slice(src);
        }
        self.pos += N;
        out
    }

    fn u16(&mut self) -> u16 {
        u16::from_le_bytes(self.array())
    }

    fn u32(&mut self) -> u32 {
        u32::from_le_bytes(self.array())
    }

    fn u64(&mut self) -> u64 {
        u64::from_le_bytes(self.array())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes_add_up() {
        let mut v = Vec::new();
        InodeRecord::default().encode(&mut v);
        assert_eq!(v.len(), INODE_SIZE);
        v.clear();
        DirentRecord {
            ino: 1,
            name_offset: 2,
            name_len: 3,
        }
        .encode(&mut v);
        assert_eq!(v.len(), DIRENT_SIZE);
        v.clear();
        Extent {
            file_block: 1,
            slot: 2,
            count: 3,
        }
        .encode(&mut v);
        assert_eq!(v.len(), EXTENT_SIZE);
        assert_eq!(SuperBody::default().encode().len(), SUPER_BODY_LEN);
        assert_eq!(HEADER_LEN + SUPER_BODY_LEN + TAG_LEN, BLOCK_SIZE);
    }

    #[test]
    fn records_round_trip() {
        let rec = InodeRecord {
            mode: 0o100644,
            uid: 1,
            gid: 2,
            nlink: 3,
            size: 1 << 40,
            mtime_sec: -5,
            mtime_nsec: 999_999_999,
            xattr_count: 2,
            rdev: 0x0103,
            body_offset: 7,
            body_len: 8,
            xattr_offset: 9,
            xattr_len: 10,
            parent: 11,
            blocks: 12,
        };
        let mut v = Vec::new();
        rec.encode(&mut v);
        let arr: [u8; INODE_SIZE] = v.try_into().unwrap();
        assert_eq!(InodeRecord::decode(&arr), rec);

        let body = SuperBody {
            root_hash: [7; 32],
            slot_count: 1,
            inode_count: 3,
            specials: 9,
            ..Default::default()
        };
        assert_eq!(SuperBody::decode(&body.encode()), Some(body));
        let mut padded = body.encode();
        *padded.last_mut().unwrap() = 1;
        assert_eq!(SuperBody::decode(&padded), None);
    }

    #[test]
    fn header_rejects_foreign_magic() {
        let h = Header {
            version: VERSION,
            block_size: BLOCK_SIZE as u32,
            key_id: [1; 8],
            image_id: [2; 16],
        };
        let mut enc = h.encode();
        assert_eq!(Header::decode(&enc), Some(h));
        enc[0] = b'X';
        assert_eq!(Header::decode(&enc), None);
    }
}
