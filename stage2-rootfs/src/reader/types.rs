//! The reader's public types: inodes, directory entries, image facts, errors.

use std::path::PathBuf;

use crate::builder::{RootHash, Timestamp};
use crate::format::{FileKind, InodeRecord, VERSION};
use crate::path::RootfsPath;

/// Errors opening an image. Each names the image file.
#[derive(Debug, thiserror::Error)]
pub enum OpenError {
    /// The file could not be opened or read.
    #[error("failed to read image {path}")]
    Io {
        /// The image.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The file does not start with encc's magic.
    #[error("{path} is not an encc rootfs image (bad magic)")]
    NotAnImage {
        /// The image.
        path: PathBuf,
    },
    /// The image has another format version.
    #[error("{path} has format version {version}; this encc reads version {VERSION}")]
    UnsupportedVersion {
        /// The image.
        path: PathBuf,
        /// Its version.
        version: u32,
    },
    /// The key is not the one the image was written with.
    #[error("wrong key for image {path} (or its superblock was tampered with)")]
    WrongKey {
        /// The image.
        path: PathBuf,
    },
    /// The superblock failed authentication or holds impossible values.
    #[error("superblock of {path} is corrupt or was tampered with: {reason}")]
    CorruptSuperblock {
        /// The image.
        path: PathBuf,
        /// What failed.
        reason: &'static str,
    },
    /// The file is shorter than the superblock says.
    #[error("image {path} is truncated: {actual} bytes, expected {expected}")]
    Truncated {
        /// The image.
        path: PathBuf,
        /// Length from the superblock.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
    /// The file is longer than the superblock says.
    #[error("image {path} has trailing data: {actual} bytes, expected {expected}")]
    TrailingData {
        /// The image.
        path: PathBuf,
        /// Length from the superblock.
        expected: u64,
        /// Actual length.
        actual: u64,
    },
}

/// Errors reading from an open image.
#[derive(Debug, thiserror::Error)]
pub enum ReadError {
    /// Reading the image file failed.
    #[error("failed to read {what} of image {image}")]
    Io {
        /// The image.
        image: PathBuf,
        /// What was being read.
        what: String,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A block does not match the Merkle tree.
    #[error("block {slot} of image {image} failed Merkle verification")]
    Tampered {
        /// The image.
        image: PathBuf,
        /// The block (slot index).
        slot: u64,
    },
    /// A block's AEAD tag does not verify.
    #[error("block {slot} of image {image} failed authenticated decryption")]
    Unauthentic {
        /// The image.
        image: PathBuf,
        /// The block (slot index).
        slot: u64,
    },
    /// Part of the Merkle tree does not match the root.
    #[error("Merkle tree of image {image} does not match its root hash at node {index} of level {level}")]
    TreeMismatch {
        /// The image.
        image: PathBuf,
        /// Tree level (0 = leaves).
        level: usize,
        /// Node index within the level.
        index: u64,
    },
    /// Verified metadata is inconsistent (a bug in the writer, or a forged image made with
    /// the real key).
    #[error("metadata of image {image} is inconsistent: {reason}")]
    BadMetadata {
        /// The image.
        image: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// No such inode.
    #[error("image {image} has no inode {ino}")]
    NoInode {
        /// The image.
        image: PathBuf,
        /// The inode number.
        ino: u64,
    },
    /// No entry at the path.
    #[error("{path} does not exist in image {image}")]
    NotFound {
        /// The image.
        image: PathBuf,
        /// The path.
        path: RootfsPath,
    },
    /// A component of the path, or the inode asked for, is of the wrong kind.
    #[error("{what} in image {image} is not a {expected}")]
    WrongKind {
        /// The image.
        image: PathBuf,
        /// The path or inode.
        what: String,
        /// The kind needed.
        expected: &'static str,
    },
}

/// An extended attribute: name and value.
pub type Xattr = (Vec<u8>, Vec<u8>);

/// An inode's attributes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Inode {
    /// Inode number (root = 1).
    pub ino: u64,
    /// File type.
    pub kind: FileKind,
    /// Full `st_mode`.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Link count.
    pub nlink: u32,
    /// Size: bytes of a file, target length of a symlink, entries of a directory.
    pub size: u64,
    /// Modification time.
    pub mtime: Timestamp,
    /// Device number of a device node.
    pub rdev: u64,
    /// Stored 4 KiB data blocks.
    pub blocks: u64,
    /// Directories: the parent's inode.
    pub parent: u64,
    pub(crate) record: InodeRecord,
}

/// A directory entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DirEntry {
    /// The name.
    pub name: Vec<u8>,
    /// Its inode.
    pub ino: u64,
}

/// Facts from the superblock.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ImageInfo {
    /// Format version.
    pub version: u32,
    /// Block size.
    pub block_size: u32,
    /// Image id (hex).
    pub image_id: String,
    /// The rootfs measurement.
    pub root_hash: RootHash,
    /// Number of slots (data and metadata blocks).
    pub slots: u64,
    /// Slots holding file data.
    pub data_slots: u64,
    /// Bytes of metadata.
    pub metadata_bytes: u64,
    /// Merkle tree levels.
    pub tree_levels: usize,
    /// Image size in bytes.
    pub image_bytes: u64,
    /// Inodes.
    pub inodes: u64,
    /// Directory entries.
    pub entries: u64,
    /// Regular files.
    pub files: u64,
    /// Directories.
    pub directories: u64,
    /// Symlinks.
    pub symlinks: u64,
    /// Device nodes and fifos.
    pub specials: u64,
    /// Sum of file sizes.
    pub file_bytes: u64,
}
