//! Building an image from a host directory.

use std::collections::{BTreeMap, HashMap};
use std::fs::{self, File, Metadata};
use std::io::BufReader;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileTypeExt, MetadataExt};
use std::path::Path;

use crate::{
    BuildOptions, BuildSummary, DataKey, EntryMeta, RootfsBuilder, RootfsPath, Special, Timestamp,
};

use super::{host, HostTreeError};

/// Builds the image `dest` from the tree under `src` (entries in name order, so equal trees
/// give equal images). Sockets cannot be stored and are skipped with a warning.
pub fn build_from_dir(
    src: &Path,
    dest: &Path,
    key: &DataKey,
    options: BuildOptions,
) -> Result<BuildSummary, HostTreeError> {
    let mut builder = RootfsBuilder::create(dest, key, options)?;
    let root_meta = fs::symlink_metadata(src).map_err(host("stat", src))?;
    if !root_meta.is_dir() {
        return Err(HostTreeError::Host {
            op: "use as a source directory",
            path: src.to_owned(),
            source: std::io::Error::from_raw_os_error(libc::ENOTDIR),
        });
    }
    builder.add_directory(&RootfsPath::root(), entry_meta(src, &root_meta)?)?;
    let mut walk = Walk {
        builder: &mut builder,
        links: HashMap::new(),
    };
    walk.dir(src, &RootfsPath::root())?;
    Ok(builder.finish()?)
}

struct Walk<'a> {
    builder: &'a mut RootfsBuilder,
    /// (device, inode) of multiply-linked host files → their first image path.
    links: HashMap<(u64, u64), RootfsPath>,
}

impl Walk<'_> {
    fn dir(&mut self, host_dir: &Path, dir: &RootfsPath) -> Result<(), HostTreeError> {
        let mut names: Vec<_> = fs::read_dir(host_dir)
            .map_err(host("read directory", host_dir))?
            .map(|e| e.map(|e| e.file_name()))
            .collect::<Result<_, _>>()
            .map_err(host("read directory", host_dir))?;
        names.sort_by(|a, b| a.as_bytes().cmp(b.as_bytes()));
        for name in names {
            let host_path = host_dir.join(&name);
            let path = dir
                .join(name.as_bytes())
                .map_err(|source| HostTreeError::Path {
                    path: host_path.clone(),
                    source,
                })?;
            self.entry(&host_path, &path)?;
        }
        Ok(())
    }

    fn entry(&mut self, host_path: &Path, path: &RootfsPath) -> Result<(), HostTreeError> {
        let md = fs::symlink_metadata(host_path).map_err(host("stat", host_path))?;
        let ft = md.file_type();
        if !ft.is_dir() && md.nlink() > 1 {
            if let Some(first) = self.links.get(&(md.dev(), md.ino())) {
                self.builder.add_hardlink(path, first)?;
                return Ok(());
            }
            self.links.insert((md.dev(), md.ino()), path.clone());
        }
        if ft.is_socket() {
            log::warn!(
                "skipping socket {}: sockets cannot be stored in an image",
                host_path.display()
            );
            return Ok(());
        }
        let meta = entry_meta(host_path, &md)?;
        if ft.is_dir() {
            self.builder.add_directory(path, meta)?;
            self.dir(host_path, path)?;
        } else if ft.is_file() {
            let file = File::open(host_path).map_err(host("open", host_path))?;
            self.builder
                .add_file(path, meta, &mut BufReader::with_capacity(1 << 20, file))?;
        } else if ft.is_symlink() {
            let target = fs::read_link(host_path).map_err(host("read symlink", host_path))?;
            self.builder
                .add_symlink(path, meta, target.as_os_str().as_bytes())?;
        } else {
            let special = if ft.is_char_device() {
                Special::CharDevice(md.rdev())
            } else if ft.is_block_device() {
                Special::BlockDevice(md.rdev())
            } else {
                Special::Fifo
            };
            self.builder.add_special(path, meta, special)?;
        }
        Ok(())
    }
}

fn entry_meta(path: &Path, md: &Metadata) -> Result<EntryMeta, HostTreeError> {
    let mut xattrs = BTreeMap::new();
    for name in xattr::list(path).map_err(host("list xattrs of", path))? {
        if let Some(value) = xattr::get(path, &name).map_err(host("read xattrs of", path))? {
            xattrs.insert(name.as_bytes().to_vec(), value);
        }
    }
    Ok(EntryMeta {
        mode: md.mode() & 0o7777,
        uid: md.uid(),
        gid: md.gid(),
        mtime: Timestamp {
            sec: md.mtime(),
            nsec: md.mtime_nsec().clamp(0, 999_999_999) as u32,
        },
        xattrs,
    })
}
