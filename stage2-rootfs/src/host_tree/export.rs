//! Recreating an image's tree in a host directory.

use std::collections::HashMap;
use std::ffi::OsStr;
use std::fs::{self, File};
use std::io::{Seek, SeekFrom, Write};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{lchown, PermissionsExt};
use std::path::{Path, PathBuf};

use crate::{FileKind, Inode, RootfsReader, BLOCK_SIZE};
use filetime::FileTime;
use nix::sys::stat::{mknod, Mode, SFlag};

use super::{host, HostTreeError};

const CHUNK: usize = 1 << 20;

/// What an extraction wrote.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ExtractSummary {
    /// Entries created (hardlinks included).
    pub entries: u64,
    /// File bytes written.
    pub bytes: u64,
}

/// What [`extract_with`] recreates besides files, directories, links, owners, modes, mtimes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ExtractOptions {
    /// Device nodes and fifos (skipped with a warning when false).
    pub special_files: bool,
    /// Extended attributes (skipped when false).
    pub xattrs: bool,
}

impl ExtractOptions {
    /// Everything.
    pub const ALL: Self = Self {
        special_files: true,
        xattrs: true,
    };
}

/// Recreates the whole tree of `reader` under `dest` (created if missing; must be empty):
/// content (holes stay holes), modes, owners, mtimes, symlinks, hardlinks, devices, fifos,
/// xattrs. Owners and device nodes need root, as with `tar -x`.
pub fn extract(reader: &RootfsReader, dest: &Path) -> Result<ExtractSummary, HostTreeError> {
    extract_with(reader, dest, ExtractOptions::ALL)
}

/// [`extract`] with a choice of what besides the tree is recreated (Occlum's LibOS has no
/// `mknod` and no `setxattr`).
pub fn extract_with(
    reader: &RootfsReader,
    dest: &Path,
    options: ExtractOptions,
) -> Result<ExtractSummary, HostTreeError> {
    match fs::read_dir(dest) {
        Ok(mut entries) => {
            if entries.next().is_some() {
                return Err(HostTreeError::DestinationNotEmpty(dest.to_owned()));
            }
        }
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
            fs::create_dir_all(dest).map_err(host("create directory", dest))?;
        }
        Err(e) => return Err(host("read directory", dest)(e)),
    }
    let mut ex = Extractor {
        reader,
        links: HashMap::new(),
        options,
        summary: ExtractSummary::default(),
        buf: vec![0u8; CHUNK],
    };
    let root = reader.root()?;
    ex.dir(&root, dest)?;
    ex.finish(&root, dest)?;
    Ok(ex.summary)
}

struct Extractor<'a> {
    reader: &'a RootfsReader,
    /// Image inode → first host path, for hardlinks.
    links: HashMap<u64, PathBuf>,
    options: ExtractOptions,
    summary: ExtractSummary,
    buf: Vec<u8>,
}

impl Extractor<'_> {
    /// Creates the entries of `dir` under `host_dir`, depth first; directory metadata is set
    /// after their entries so that their mtimes and modes stick.
    fn dir(&mut self, dir: &Inode, host_dir: &Path) -> Result<(), HostTreeError> {
        for entry in self.reader.read_dir(dir)? {
            let path = host_dir.join(OsStr::from_bytes(&entry.name));
            let inode = self.reader.inode(entry.ino)?;
            let special = matches!(
                inode.kind,
                FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo
            );
            if special && !self.options.special_files {
                log::warn!("{}: device node or fifo skipped", path.display());
                continue;
            }
            self.summary.entries += 1;
            if inode.kind != FileKind::Directory {
                if let Some(first) = self.links.get(&inode.ino) {
                    fs::hard_link(first, &path).map_err(host("hardlink", &path))?;
                    continue;
                }
                if inode.nlink > 1 {
                    self.links.insert(inode.ino, path.clone());
                }
            }
            match inode.kind {
                FileKind::Directory => {
                    fs::create_dir(&path).map_err(host("create directory", &path))?;
                    self.dir(&inode, &path)?;
                }
                FileKind::Regular => self.file(&inode, &path)?,
                FileKind::Symlink => {
                    let target = self.reader.read_link(&inode)?;
                    std::os::unix::fs::symlink(OsStr::from_bytes(&target), &path)
                        .map_err(host("create symlink", &path))?;
                }
                FileKind::CharDevice | FileKind::BlockDevice | FileKind::Fifo => {
                    let kind = match inode.kind {
                        FileKind::CharDevice => SFlag::S_IFCHR,
                        FileKind::BlockDevice => SFlag::S_IFBLK,
                        _ => SFlag::S_IFIFO,
                    };
                    mknod(&path, kind, Mode::from_bits_truncate(0o600), inode.rdev)
                        .map_err(|e| host("create node", &path)(e.into()))?;
                }
            }
            self.finish(&inode, &path)?;
        }
        Ok(())
    }

    /// Writes a file's content; all-zero blocks are skipped so holes stay holes.
    fn file(&mut self, inode: &Inode, path: &Path) -> Result<(), HostTreeError> {
        let mut out = File::create(path).map_err(host("create", path))?;
        let mut offset = 0u64;
        while offset < inode.size {
            let n = self.reader.read(inode, offset, &mut self.buf)?;
            if n == 0 {
                break;
            }
            for block in self.buf[..n].chunks(BLOCK_SIZE) {
                if block.iter().fold(0u8, |a, &b| a | b) == 0 {
                    out.seek(SeekFrom::Current(block.len() as i64))
                        .map_err(host("write", path))?;
                } else {
                    out.write_all(block).map_err(host("write", path))?;
                }
            }
            offset += n as u64;
        }
        out.set_len(inode.size).map_err(host("write", path))?;
        self.summary.bytes += inode.size;
        Ok(())
    }

    /// Owner, mode, xattrs and mtime, in the order that keeps each (chown clears setuid).
    fn finish(&self, inode: &Inode, path: &Path) -> Result<(), HostTreeError> {
        lchown(path, Some(inode.uid), Some(inode.gid)).map_err(host("chown", path))?;
        if inode.kind != FileKind::Symlink {
            fs::set_permissions(path, fs::Permissions::from_mode(inode.mode & 0o7777))
                .map_err(host("chmod", path))?;
        }
        let xattrs = match self.options.xattrs {
            true => self.reader.xattrs(inode)?,
            false => Vec::new(),
        };
        for (name, value) in xattrs {
            xattr::set(path, OsStr::from_bytes(&name), &value)
                .map_err(host("set xattr on", path))?;
        }
        let mtime = FileTime::from_unix_time(inode.mtime.sec, inode.mtime.nsec);
        filetime::set_symlink_file_times(path, mtime, mtime).map_err(host("set times of", path))?;
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildOptions, DataKey};

    #[test]
    fn occlum_options_skip_special_files_and_xattrs() {
        let dir = tempfile::tempdir().unwrap();
        let src = dir.path().join("src");
        fs::create_dir(&src).unwrap();
        fs::write(src.join("a"), b"data").unwrap();
        nix::unistd::mkfifo(&src.join("p"), Mode::from_bits_truncate(0o644)).unwrap();
        let has_xattrs = xattr::set(src.join("a"), "user.t", b"1").is_ok();
        let key = DataKey::generate().unwrap();
        let image = dir.path().join("img");
        super::super::build_from_dir(&src, &image, &key, BuildOptions::default()).unwrap();
        let reader = RootfsReader::open(&image, &key).unwrap();

        let plain = dir.path().join("plain");
        let options = ExtractOptions {
            special_files: false,
            xattrs: false,
        };
        let summary = extract_with(&reader, &plain, options).unwrap();
        assert_eq!(summary.entries, 1);
        assert_eq!(fs::read(plain.join("a")).unwrap(), b"data");
        assert!(fs::symlink_metadata(plain.join("p")).is_err());
        assert_eq!(xattr::get(plain.join("a"), "user.t").unwrap(), None);

        let all = dir.path().join("all");
        extract(&reader, &all).unwrap();
        assert!(fs::symlink_metadata(all.join("p")).is_ok());
        if has_xattrs {
            assert_eq!(
                xattr::get(all.join("a"), "user.t").unwrap(),
                Some(b"1".to_vec())
            );
        }
    }
}
