//! Inode attributes in FUSE's terms.

use std::time::{Duration, SystemTime, UNIX_EPOCH};

use fuser::{FileAttr, FileType, INodeNo};

use crate::builder::Timestamp;
use crate::format::{FileKind, BLOCK_SIZE};
use crate::reader::Inode;

/// The attributes of `inode`: mode bits, owner, size, link count and device number as
/// stored, the mtime also as atime and ctime, `blocks` in 512-byte units. `None` when the
/// device number does not fit FUSE's 32 bits (no Linux device number is that large).
pub(super) fn file_attr(inode: &Inode) -> Option<FileAttr> {
    // FUSE carries a device number in the kernel's 32-bit encoding, which is the low half
    // of glibc's dev_t for every major below 4096 and minor below 2^20.
    let rdev = u32::try_from(inode.rdev).ok()?;
    let time = system_time(inode.mtime);
    Some(FileAttr {
        ino: INodeNo(inode.ino),
        size: inode.size,
        blocks: inode.blocks.saturating_mul(BLOCK_SIZE as u64 / 512),
        atime: time,
        mtime: time,
        ctime: time,
        crtime: time,
        kind: file_type(inode.kind),
        perm: (inode.mode & 0o7777) as u16,
        nlink: inode.nlink,
        uid: inode.uid,
        gid: inode.gid,
        rdev,
        blksize: BLOCK_SIZE as u32,
        flags: 0,
    })
}

pub(super) fn file_type(kind: FileKind) -> FileType {
    match kind {
        FileKind::Directory => FileType::Directory,
        FileKind::Regular => FileType::RegularFile,
        FileKind::Symlink => FileType::Symlink,
        FileKind::CharDevice => FileType::CharDevice,
        FileKind::BlockDevice => FileType::BlockDevice,
        FileKind::Fifo => FileType::NamedPipe,
    }
}

/// The attributes of a negative entry: node id 0 makes the kernel cache the name as
/// missing; the rest is ignored.
pub(super) fn negative_entry() -> FileAttr {
    FileAttr {
        ino: INodeNo(0),
        size: 0,
        blocks: 0,
        atime: UNIX_EPOCH,
        mtime: UNIX_EPOCH,
        ctime: UNIX_EPOCH,
        crtime: UNIX_EPOCH,
        kind: FileType::RegularFile,
        perm: 0,
        nlink: 0,
        uid: 0,
        gid: 0,
        rdev: 0,
        blksize: BLOCK_SIZE as u32,
        flags: 0,
    }
}

/// A timestamp as `SystemTime`; times before 1970 count back from the epoch (the nanoseconds
/// always count forward, as in `struct timespec`).
fn system_time(t: Timestamp) -> SystemTime {
    let secs = Duration::from_secs(t.sec.unsigned_abs());
    let base = if t.sec >= 0 {
        UNIX_EPOCH.checked_add(secs)
    } else {
        UNIX_EPOCH.checked_sub(secs)
    };
    base.and_then(|b| b.checked_add(Duration::from_nanos(u64::from(t.nsec))))
        .unwrap_or(UNIX_EPOCH)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn times_before_and_after_the_epoch() {
        let t = |sec, nsec| system_time(Timestamp { sec, nsec });
        assert_eq!(t(0, 0), UNIX_EPOCH);
        assert_eq!(t(5, 7), UNIX_EPOCH + Duration::new(5, 7));
        // -1.75 s is -2 s plus 0.25 s.
        assert_eq!(t(-2, 250_000_000), UNIX_EPOCH - Duration::from_millis(1750));
        assert_eq!(t(i64::MIN, 0), UNIX_EPOCH - Duration::from_secs(1 << 63));
    }

    #[test]
    fn kinds_map_one_to_one() {
        let kinds = [
            FileKind::Directory,
            FileKind::Regular,
            FileKind::Symlink,
            FileKind::CharDevice,
            FileKind::BlockDevice,
            FileKind::Fifo,
        ];
        let types: std::collections::HashSet<_> = kinds.map(file_type).into_iter().collect();
        assert_eq!(types.len(), kinds.len());
        assert_eq!(file_type(FileKind::Fifo), FileType::NamedPipe);
    }

    #[test]
    fn negative_entries_have_node_id_zero() {
        assert_eq!(negative_entry().ino, INodeNo(0));
    }
}
