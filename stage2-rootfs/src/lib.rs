//! The encc protected rootfs: a read-only filesystem image kept on untrusted host storage and
//! readable only with its data key.
//!
//! - [`RootfsBuilder`] writes an image from a stream of entries (directories, files,
//!   symlinks, hardlinks, devices, fifos), streaming file data into 4 KiB blocks sealed with
//!   AES-256-GCM-SIV and bound to their index and image.
//! - A Merkle tree (SHA-256, rs_merkle's node rule) over every block gives the root hash, the
//!   rootfs measurement, stored in the authenticated superblock.
//! - [`RootfsReader`] gives random access by path and inode; every block it returns has
//!   passed its Merkle path and its AEAD tag.
//! - [`fuse`] serves a reader as a read-only FUSE file system.
//! - [`host_tree`] moves trees between host directories and images (build, extract).
//! - [`container`] is stage 2 on the native platform: the container root over the FUSE
//!   server and processes started in it.
//!
//! The byte layout is described in `FORMAT.md` beside this crate.

#![deny(unsafe_code)]

mod builder;
pub mod container;
mod crypto;
mod detached;
mod format;
pub mod fuse;
#[cfg(feature = "fuzzing")]
#[doc(hidden)]
pub mod fuzzing;
pub mod host_tree;
mod key;
mod merkle;
pub mod occlum;
mod path;
mod reader;

pub use builder::{
    exit_removing_partials, BuildError, BuildOptions, BuildSummary, EntryMeta, RootHash,
    RootHashParseError, RootfsBuilder, Special, Timestamp,
};
pub use format::{FileKind, BLOCK_SIZE, ROOT_INO};
pub use key::{DataKey, KeyError, KEY_LEN};
pub use path::{PathError, RootfsPath};
pub use reader::{
    DirEntry, ImageInfo, Inode, OpenError, ReadError, RootfsReader, VerifyReport, Xattr,
};
