//! The FUSE operations: a read-only [`Filesystem`] over a [`RootfsReader`].
//!
//! Requests are served statelessly from the reader; recent directory listings are cached,
//! since the kernel reads them a page at a time. Mutations never reach here (the mount is
//! read-only); if one did, fuser's default answers `ENOSYS`.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

use fuser::{
    AccessFlags, Errno, FileAttr, FileHandle, FileType, Filesystem, FopenFlags, Generation,
    INodeNo, InitFlags, IoctlFlags, KernelConfig, LockOwner, OpenAccMode, OpenFlags, ReplyAttr,
    ReplyData, ReplyDirectory, ReplyDirectoryPlus, ReplyEmpty, ReplyEntry, ReplyIoctl, ReplyOpen,
    ReplyStatfs, ReplyXattr, Request,
};

use super::attr::{file_attr, file_type, negative_entry};
use super::error_chain;
use crate::format::{FileKind, BLOCK_SIZE, NAME_MAX};
use crate::reader::{DirEntry, Inode, ReadError, RootfsReader, Xattr};

/// How long the kernel may cache entries (also missing ones) and attributes: the image
/// never changes.
const TTL: Duration = Duration::from_secs(24 * 60 * 60);

/// Capabilities asked for when the kernel has them: readdirplus for every listing
/// (attributes come with the names, so `ls -l`, `find` and `tar` need no lookups), cached
/// symlink targets, and lookups in one directory in parallel.
const WANTED: [InitFlags; 3] = [
    InitFlags::FUSE_DO_READDIRPLUS,
    InitFlags::FUSE_CACHE_SYMLINKS,
    InitFlags::FUSE_PARALLEL_DIROPS,
];

/// The largest read request (and write, though none comes): a 1 MiB readahead window, or
/// the window a page fault in a mapped library starts, then arrives as 8 requests that the
/// server's threads decrypt and verify in parallel, and the faulting page's request does
/// not wait for the whole window. A warm start of the python image (`tests/bench/startup.sh`)
/// took 9% less time than with 1 MiB requests, the same with 32 or 64 KiB.
const MAX_REQUEST: u32 = 128 * 1024;

/// Background requests (readahead) the kernel may have in flight.
const MAX_BACKGROUND: u16 = 64;

/// Images with at most this many inodes have their inode table scanned for xattrs when
/// mounted (96 bytes each: 6 MiB to decrypt and verify at most, ~10 ms; 0.3 ms for the
/// 3,000 inodes of a python image).
const XATTR_SCAN_MAX: u64 = 65_536;

/// Directory listings kept; the cache is emptied when it fills.
const LISTINGS_MAX: usize = 256;

/// A directory listing: `.`, `..`, then the entries in name order.
type Listing = Arc<Vec<DirEntry>>;

/// The file system.
pub(super) struct RootfsFs {
    reader: Arc<RootfsReader>,
    /// Recently listed directories, by inode: the kernel reads a listing a page at a time.
    listings: Mutex<HashMap<u64, Listing>>,
    /// Whether the kernel lets `open`/`opendir` be declined with `ENOSYS`: it then opens
    /// without asking, caches as with `FOPEN_KEEP_CACHE` (and `FOPEN_CACHE_DIR`), and sends
    /// no release, which saves two round trips per file.
    no_open: bool,
    no_opendir: bool,
    /// Files and directories opened and not yet released; see [`Self::open_handles`].
    open: Arc<AtomicUsize>,
    /// Whether no inode of the image has xattrs: `getxattr` is then declined with `ENOSYS`,
    /// after which the kernel answers every `getxattr` itself (`EOPNOTSUPP`, as a file
    /// system without xattrs) and stops asking. That saves a round trip for each of the
    /// `trusted.overlay.*` attributes overlayfs reads of every lower entry it looks up, and
    /// for `security.capability` on each exec.
    no_xattrs: bool,
}

impl RootfsFs {
    pub(super) fn new(reader: Arc<RootfsReader>) -> Self {
        // Lookups and first reads walk the metadata and the Merkle tree: have the host read
        // both ahead while the mount is set up and the container starts.
        reader.advise_index();
        let no_xattrs = reader.inode_count() <= XATTR_SCAN_MAX
            && match reader.has_xattrs() {
                Ok(has) => !has,
                Err(e) => {
                    // Serve as usual: the broken block fails the requests that need it.
                    log::warn!("cannot scan the inode table: {}", error_chain(&e));
                    false
                }
            };
        Self {
            reader,
            listings: Mutex::new(HashMap::new()),
            no_open: false,
            no_opendir: false,
            open: Arc::new(AtomicUsize::new(0)),
            no_xattrs,
        }
    }

    /// The number of open files and directories (when the kernel sends opens). The kernel
    /// releases a closed file asynchronously and the mount stays busy until the release is
    /// answered, so an unmount right after a close waits for this to drop to zero.
    pub(super) fn open_handles(&self) -> Arc<AtomicUsize> {
        self.open.clone()
    }

    /// Logs a failed read of the image and picks the errno.
    fn fail(&self, op: &str, ino: u64, e: &ReadError) -> Errno {
        log::error!("FUSE {op} of inode {ino}: {}", error_chain(e));
        match e {
            ReadError::NotFound { .. } => Errno::ENOENT,
            ReadError::WrongKind {
                expected: "directory",
                ..
            } => Errno::ENOTDIR,
            ReadError::WrongKind { .. } => Errno::EINVAL,
            _ => Errno::EIO,
        }
    }

    fn inode(&self, op: &str, ino: INodeNo) -> Result<Inode, Errno> {
        self.reader
            .inode(ino.0)
            .map_err(|e| self.fail(op, ino.0, &e))
    }

    /// The inode `ino`, which must be of `kind` (else `wrong`).
    fn inode_of(
        &self,
        op: &str,
        ino: INodeNo,
        kind: FileKind,
        wrong: Errno,
    ) -> Result<Inode, Errno> {
        let inode = self.inode(op, ino)?;
        if inode.kind != kind {
            return Err(wrong);
        }
        Ok(inode)
    }

    fn attr(&self, op: &str, inode: &Inode) -> Result<FileAttr, Errno> {
        file_attr(inode).ok_or_else(|| {
            log::error!(
                "FUSE {op} of inode {}: device number {:#x} does not fit FUSE",
                inode.ino,
                inode.rdev
            );
            Errno::EOVERFLOW
        })
    }

    fn listing(&self, op: &str, ino: INodeNo) -> Result<Listing, Errno> {
        if let Some(listing) = self.listings().get(&ino.0) {
            return Ok(listing.clone());
        }
        let dir = self.inode_of(op, ino, FileKind::Directory, Errno::ENOTDIR)?;
        let mut entries = self
            .reader
            .read_dir(&dir)
            .map_err(|e| self.fail(op, ino.0, &e))?;
        let dots: [(&[u8], u64); 2] = [(b".", dir.ino), (b"..", dir.parent)];
        entries.splice(
            0..0,
            dots.map(|(name, ino)| DirEntry {
                name: name.to_vec(),
                ino,
            }),
        );
        let listing = Arc::new(entries);
        let mut listings = self.listings();
        if listings.len() >= LISTINGS_MAX {
            listings.clear();
        }
        listings.insert(ino.0, listing.clone());
        Ok(listing)
    }

    fn listings(&self) -> MutexGuard<'_, HashMap<u64, Listing>> {
        // A cache: whatever a panicking holder left in it is still valid.
        self.listings.lock().unwrap_or_else(PoisonError::into_inner)
    }

    fn xattrs(&self, op: &str, ino: INodeNo) -> Result<Vec<Xattr>, Errno> {
        let inode = self.inode(op, ino)?;
        self.reader
            .xattrs(&inode)
            .map_err(|e| self.fail(op, ino.0, &e))
    }
}

impl Filesystem for RootfsFs {
    fn init(&mut self, _req: &Request, config: &mut KernelConfig) -> io::Result<()> {
        // The readahead window cannot exceed what the kernel offers; take all of it. Reads
        // are asked in requests of at most MAX_REQUEST (fuser derives max_pages from
        // max_write), so that a window is served by several threads at once.
        if let Err(max) = config.set_max_readahead(u32::MAX) {
            let _ = config.set_max_readahead(max);
        }
        let _ = config.set_max_write(MAX_REQUEST);
        let _ = config.set_max_background(MAX_BACKGROUND);
        for flag in WANTED {
            if let Err(missing) = config.add_capabilities(flag) {
                log::debug!("the kernel lacks FUSE capability {missing:?}");
            }
        }
        self.no_open = config
            .add_capabilities(InitFlags::FUSE_NO_OPEN_SUPPORT)
            .is_ok();
        self.no_opendir = config
            .add_capabilities(InitFlags::FUSE_NO_OPENDIR_SUPPORT)
            .is_ok();
        Ok(())
    }

    fn lookup(&self, _req: &Request, parent: INodeNo, name: &OsStr, reply: ReplyEntry) {
        let name = name.as_bytes();
        if name.len() > NAME_MAX {
            return reply.error(Errno::ENAMETOOLONG);
        }
        let dir = match self.inode_of("lookup", parent, FileKind::Directory, Errno::ENOTDIR) {
            Ok(dir) => dir,
            Err(e) => return reply.error(e),
        };
        match self.reader.lookup(&dir, name) {
            Ok(Some(inode)) => match self.attr("lookup", &inode) {
                Ok(attr) => reply.entry(&TTL, &attr, Generation(0)),
                Err(e) => reply.error(e),
            },
            // Node id 0 tells the kernel to cache the name as missing.
            Ok(None) => reply.entry(&TTL, &negative_entry(), Generation(0)),
            Err(e) => reply.error(self.fail("lookup", parent.0, &e)),
        }
    }

    fn getattr(&self, _req: &Request, ino: INodeNo, _fh: Option<FileHandle>, reply: ReplyAttr) {
        match self
            .inode("getattr", ino)
            .and_then(|i| self.attr("getattr", &i))
        {
            Ok(attr) => reply.attr(&TTL, &attr),
            Err(e) => reply.error(e),
        }
    }

    fn readlink(&self, _req: &Request, ino: INodeNo, reply: ReplyData) {
        let link = match self.inode_of("readlink", ino, FileKind::Symlink, Errno::EINVAL) {
            Ok(link) => link,
            Err(e) => return reply.error(e),
        };
        match self.reader.read_link(&link) {
            Ok(target) => reply.data(&target),
            Err(e) => reply.error(self.fail("readlink", ino.0, &e)),
        }
    }

    fn open(&self, _req: &Request, ino: INodeNo, flags: OpenFlags, reply: ReplyOpen) {
        if flags.acc_mode() != OpenAccMode::O_RDONLY {
            return reply.error(Errno::EROFS);
        }
        match self.inode_of("open", ino, FileKind::Regular, Errno::EINVAL) {
            // Declined: the kernel opens this and every later file itself, keeping cached
            // pages across opens, and sends no release.
            Ok(_) if self.no_open => reply.error(Errno::ENOSYS),
            // The image never changes: keep cached pages across opens.
            Ok(_) => {
                self.open.fetch_add(1, Ordering::SeqCst);
                reply.opened(FileHandle(0), FopenFlags::FOPEN_KEEP_CACHE);
            }
            Err(e) => reply.error(e),
        }
    }

    fn flush(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _lock_owner: LockOwner,
        reply: ReplyEmpty,
    ) {
        // Nothing to flush; ENOSYS (without fuser's warning) stops the kernel sending more.
        reply.error(Errno::ENOSYS);
    }

    fn ioctl(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: IoctlFlags,
        _cmd: u32,
        _in_data: &[u8],
        _out_size: u32,
        reply: ReplyIoctl,
    ) {
        // No ioctl is served: ENOTTY, what a file without ioctls answers (programs probe
        // with TCGETS and FS_IOC_GETFLAGS), and without fuser's warning for each.
        reply.error(Errno::ENOTTY);
    }

    fn release(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        _flush: bool,
        reply: ReplyEmpty,
    ) {
        reply.ok();
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    fn read(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        size: u32,
        _flags: OpenFlags,
        _lock_owner: Option<LockOwner>,
        reply: ReplyData,
    ) {
        let file = match self.inode_of("read", ino, FileKind::Regular, Errno::EINVAL) {
            Ok(file) => file,
            Err(e) => return reply.error(e),
        };
        // At most `size` (a u32), so the cast cannot truncate.
        let len = file.size.saturating_sub(offset).min(u64::from(size)) as usize;
        let mut buf = vec![0u8; len];
        match self.reader.read(&file, offset, &mut buf) {
            Ok(n) => {
                buf.truncate(n);
                reply.data(&buf);
            }
            Err(e) => reply.error(self.fail("read", ino.0, &e)),
        }
    }

    fn opendir(&self, _req: &Request, ino: INodeNo, _flags: OpenFlags, reply: ReplyOpen) {
        match self.inode_of("opendir", ino, FileKind::Directory, Errno::ENOTDIR) {
            // Declined as in `open`; the kernel then also caches listings.
            Ok(_) if self.no_opendir => reply.error(Errno::ENOSYS),
            Ok(_) => {
                self.open.fetch_add(1, Ordering::SeqCst);
                let flags = FopenFlags::FOPEN_KEEP_CACHE | FopenFlags::FOPEN_CACHE_DIR;
                reply.opened(FileHandle(0), flags);
            }
            Err(e) => reply.error(e),
        }
    }

    fn readdir(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectory,
    ) {
        let listing = match self.listing("readdir", ino) {
            Ok(listing) => listing,
            Err(e) => return reply.error(e),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, entry) in listing.iter().enumerate().skip(skip) {
            let kind = match i {
                0 | 1 => FileType::Directory,
                _ => match self.inode("readdir", INodeNo(entry.ino)) {
                    Ok(inode) => file_type(inode.kind),
                    Err(e) => return reply.error(e),
                },
            };
            let name = OsStr::from_bytes(&entry.name);
            if reply.add(INodeNo(entry.ino), i as u64 + 1, kind, name) {
                break;
            }
        }
        reply.ok();
    }

    fn readdirplus(
        &self,
        _req: &Request,
        ino: INodeNo,
        _fh: FileHandle,
        offset: u64,
        mut reply: ReplyDirectoryPlus,
    ) {
        let listing = match self.listing("readdirplus", ino) {
            Ok(listing) => listing,
            Err(e) => return reply.error(e),
        };
        let skip = usize::try_from(offset).unwrap_or(usize::MAX);
        for (i, entry) in listing.iter().enumerate().skip(skip) {
            let attr = self
                .inode("readdirplus", INodeNo(entry.ino))
                .and_then(|inode| self.attr("readdirplus", &inode));
            let attr = match attr {
                Ok(attr) => attr,
                Err(e) => return reply.error(e),
            };
            let name = OsStr::from_bytes(&entry.name);
            let next = i as u64 + 1;
            if reply.add(INodeNo(entry.ino), next, name, &TTL, &attr, Generation(0)) {
                break;
            }
        }
        reply.ok();
    }

    fn releasedir(
        &self,
        _req: &Request,
        _ino: INodeNo,
        _fh: FileHandle,
        _flags: OpenFlags,
        reply: ReplyEmpty,
    ) {
        reply.ok();
        self.open.fetch_sub(1, Ordering::SeqCst);
    }

    fn statfs(&self, _req: &Request, _ino: INodeNo, reply: ReplyStatfs) {
        let info = self.reader.info();
        let bsize = BLOCK_SIZE as u32;
        reply.statfs(
            info.slots,
            0,
            0,
            info.inodes,
            0,
            bsize,
            NAME_MAX as u32,
            bsize,
        );
    }

    fn getxattr(&self, _req: &Request, ino: INodeNo, name: &OsStr, size: u32, reply: ReplyXattr) {
        if self.no_xattrs {
            return reply.error(Errno::ENOSYS);
        }
        let xattrs = match self.xattrs("getxattr", ino) {
            Ok(xattrs) => xattrs,
            Err(e) => return reply.error(e),
        };
        match xattrs
            .into_iter()
            .find(|(n, _)| n.as_slice() == name.as_bytes())
        {
            Some((_, value)) => reply_sized(reply, size, &value),
            None => reply.error(Errno::NO_XATTR),
        }
    }

    fn listxattr(&self, _req: &Request, ino: INodeNo, size: u32, reply: ReplyXattr) {
        let xattrs = match self.xattrs("listxattr", ino) {
            Ok(xattrs) => xattrs,
            Err(e) => return reply.error(e),
        };
        let mut names = Vec::new();
        for (name, _) in xattrs {
            names.extend_from_slice(&name);
            names.push(0);
        }
        reply_sized(reply, size, &names);
    }

    fn access(&self, _req: &Request, ino: INodeNo, mask: AccessFlags, reply: ReplyEmpty) {
        // Only called without default_permissions; modes are the kernel's job then too.
        if mask.contains(AccessFlags::W_OK) {
            return reply.error(Errno::EROFS);
        }
        match self.inode("access", ino) {
            Ok(_) => reply.ok(),
            Err(e) => reply.error(e),
        }
    }
}

/// Answers an xattr request: the size when asked with size 0, `ERANGE` when the buffer is
/// too small, else the data.
fn reply_sized(reply: ReplyXattr, size: u32, data: &[u8]) {
    match u32::try_from(data.len()) {
        Ok(len) if size == 0 => reply.size(len),
        Ok(len) if len <= size => reply.data(data),
        _ => reply.error(Errno::ERANGE),
    }
}
