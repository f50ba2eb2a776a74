//! The builder's public types: entry metadata, options, the root hash, errors.

use std::collections::BTreeMap;
use std::fmt;
use std::io;
use std::path::PathBuf;
use std::str::FromStr;

use crate::path::RootfsPath;

/// A modification time.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, PartialOrd, Ord)]
pub struct Timestamp {
    /// Seconds since the epoch (may be negative).
    pub sec: i64,
    /// Nanoseconds, below 10^9.
    pub nsec: u32,
}

/// Metadata common to every entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryMeta {
    /// Permission bits (`0o7777`, setuid/setgid/sticky included); the file type comes from
    /// the kind of entry.
    pub mode: u32,
    /// Owner.
    pub uid: u32,
    /// Group.
    pub gid: u32,
    /// Modification time.
    pub mtime: Timestamp,
    /// Extended attributes, by name.
    pub xattrs: BTreeMap<Vec<u8>, Vec<u8>>,
}

impl EntryMeta {
    /// Metadata of a directory created implicitly as the parent of an entry: 0755, root,
    /// epoch mtime.
    pub fn default_dir() -> Self {
        Self {
            mode: 0o755,
            uid: 0,
            gid: 0,
            mtime: Timestamp::default(),
            xattrs: BTreeMap::new(),
        }
    }
}

/// A device node or fifo.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Special {
    /// A character device with its device number.
    CharDevice(u64),
    /// A block device with its device number.
    BlockDevice(u64),
    /// A named pipe.
    Fifo,
}

/// The rootfs measurement: the Merkle root over every slot of an image.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct RootHash(pub [u8; 32]);

impl fmt::Display for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for RootHash {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "RootHash({self})")
    }
}

/// A root hash that is not 64 hex characters.
#[derive(Debug, Clone, thiserror::Error)]
#[error("root hash {0:?} is not 64 hex characters")]
pub struct RootHashParseError(String);

impl FromStr for RootHash {
    type Err = RootHashParseError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes).map_err(|_| RootHashParseError(s.to_owned()))?;
        Ok(Self(bytes))
    }
}

/// Options of a build.
#[derive(Debug, Clone, Default)]
pub struct BuildOptions {
    /// The image id bound into every block. Default: derived from the key, which keeps
    /// builds deterministic; give distinct ids to images that share a key.
    pub image_id: Option<[u8; 16]>,
}

/// What a finished build reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BuildSummary {
    /// The rootfs measurement.
    pub root_hash: RootHash,
    /// Directory entries in the image.
    pub entries: u64,
    /// Inodes in the image.
    pub inodes: u64,
    /// Image size in bytes.
    pub bytes: u64,
    /// Sum of regular file sizes.
    pub file_bytes: u64,
}

/// Errors while building an image. Each names the image or the entry.
#[derive(Debug, thiserror::Error)]
pub enum BuildError {
    /// The temporary image file could not be created.
    #[error("failed to create a temporary image file in {dir}")]
    Create {
        /// Directory of the destination.
        dir: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Writing the image failed.
    #[error("failed to write image {path}")]
    Write {
        /// The destination image.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// Reading an entry's data from its source failed; the entry was not added.
    #[error("failed to read the data of {path}")]
    ReadData {
        /// The entry.
        path: RootfsPath,
        /// The I/O error.
        #[source]
        source: io::Error,
    },
    /// The root directory can only be given metadata, not replaced or removed.
    #[error("the root directory can only be a directory and cannot be removed")]
    IsRoot,
    /// A parent of the entry exists and is not a directory.
    #[error("cannot add {path}: {parent} is not a directory")]
    NotADirectory {
        /// The entry.
        path: RootfsPath,
        /// Its parent that is not a directory.
        parent: RootfsPath,
    },
    /// A hardlink's target does not exist.
    #[error("cannot link {path} to {target}: the target does not exist")]
    LinkTargetMissing {
        /// The new link.
        path: RootfsPath,
        /// Its target.
        target: RootfsPath,
    },
    /// A hardlink's target is a directory.
    #[error("cannot link {path} to {target}: the target is a directory")]
    LinkToDirectory {
        /// The new link.
        path: RootfsPath,
        /// Its target.
        target: RootfsPath,
    },
    /// Resolving a path met too many symlinks.
    #[error("cannot resolve {path}: too many levels of symbolic links")]
    SymlinkLoop {
        /// The path being resolved.
        path: RootfsPath,
    },
    /// `begin_layer` while a layer is open, `commit_layer`/`abort_layer` without one, or
    /// `finish` with a layer still open.
    #[error("layer transaction misuse: {0}")]
    Layer(&'static str),
    /// An entry's metadata is out of range.
    #[error("invalid entry {path}: {reason}")]
    Invalid {
        /// The entry.
        path: RootfsPath,
        /// What is wrong.
        reason: &'static str,
    },
}
