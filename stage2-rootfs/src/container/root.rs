//! The container root on the native platform: the protected image served read-only by the
//! FUSE server, an overlayfs over it whose upper and work dirs live on a size-limited tmpfs
//! (container writes stay in memory), `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`,
//! then `/proc`, a minimal `/dev`, `/sys` read-only and `/tmp`.
//!
//! Every mount target inside the root is opened with `openat2(RESOLVE_IN_ROOT)` and mounted
//! through its `/proc/self/fd` path, so a symlink in a hostile image can never point a
//! mount or a write outside the root. The `/etc` files are written before `/proc` and
//! `/sys` exist inside the root.

use std::os::fd::{AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::OFlag;
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::{makedev, mknodat, Mode, SFlag};
use nix::unistd::symlinkat;

use super::in_root;
use super::user::{resolve_user, Credentials};
use super::ContainerError;
use crate::fuse::{self, Mount};
use crate::RootfsReader;

/// What the root is made of besides the image.
#[derive(Debug, Clone)]
pub struct RootSetup {
    /// Size limit of the tmpfs that holds the writable layer, in bytes.
    pub tmpfs_size: u64,
    /// Size limit of `/tmp`, in bytes.
    pub tmp_size: u64,
    /// Container hostname, written to `/etc/hostname` and `/etc/hosts`.
    pub hostname: String,
    /// Extra `/etc/hosts` lines (`ADDRESS NAME…`).
    pub hosts: Vec<String>,
    /// Name servers for `/etc/resolv.conf` (none: the file is left as the image has it).
    pub dns: Vec<String>,
    /// The image's `User`, resolved through the image's own passwd and group files.
    pub user: String,
}

/// A prepared container root; [`PreparedRoot::teardown`] (or drop) unmounts everything.
pub struct PreparedRoot {
    staging: PathBuf,
    merged: PathBuf,
    fuse: Option<Mount>,
    mounts: Vec<PathBuf>,
    credentials: Credentials,
    reader: Arc<RootfsReader>,
}

/// Device nodes of the minimal `/dev`: name, major, minor.
const DEVICES: [(&str, u64, u64); 6] = [
    ("null", 1, 3),
    ("zero", 1, 5),
    ("full", 1, 7),
    ("random", 1, 8),
    ("urandom", 1, 9),
    ("tty", 5, 0),
];

impl PreparedRoot {
    /// Builds the root under a new directory in `staging_parent` (which must be in a
    /// private mount namespace: the mounts are made there).
    pub fn prepare(
        reader: Arc<RootfsReader>,
        staging_parent: &Path,
        setup: &RootSetup,
    ) -> Result<Self, ContainerError> {
        let staging = tempfile::Builder::new()
            .prefix(".encc-root-")
            .tempdir_in(staging_parent)
            .map_err(|source| ContainerError::Io {
                what: "create the staging directory in",
                path: staging_parent.to_owned(),
                source,
            })?
            .keep();
        let mut root = Self {
            merged: staging.join("root"),
            staging,
            fuse: None,
            mounts: Vec::new(),
            credentials: Credentials {
                uid: 0,
                gid: 0,
                groups: Vec::new(),
                home: "/".into(),
            },
            reader,
        };
        // On error, drop tears down whatever was mounted so far.
        root.build(setup)?;
        Ok(root)
    }

    fn build(&mut self, setup: &RootSetup) -> Result<(), ContainerError> {
        let staging = self.staging.clone();
        let size = format!("size={},mode=0700", setup.tmpfs_size);
        self.mount_fs("tmpfs", "tmpfs", &staging, MsFlags::MS_NODEV, Some(&size))?;
        for dir in ["lower", "upper", "work", "root"] {
            let path = staging.join(dir);
            std::fs::create_dir(&path).map_err(|source| ContainerError::Io {
                what: "create",
                path,
                source,
            })?;
        }
        let lower = staging.join("lower");
        self.fuse =
            Some(fuse::mount(Arc::clone(&self.reader), &lower).map_err(ContainerError::Fuse)?);
        let overlay = format!(
            "lowerdir={},upperdir={},workdir={}",
            lower.display(),
            staging.join("upper").display(),
            staging.join("work").display()
        );
        let merged = self.merged.clone();
        self.mount_fs(
            "overlay",
            "overlay",
            &merged,
            MsFlags::MS_NODEV,
            Some(&overlay),
        )?;

        let root_fd = in_root::open_root(&merged)?;
        self.write_etc_files(&root_fd, setup)?;
        let passwd = in_root::read_small(&root_fd, "etc/passwd")?;
        let group = in_root::read_small(&root_fd, "etc/group")?;
        self.credentials = resolve_user(&setup.user, &passwd, &group)?;

        let tmp = format!("size={},mode=1777", setup.tmp_size);
        self.mount_in_root(
            &root_fd,
            "tmp",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some(&tmp),
        )?;
        self.mount_dev(&root_fd)?;
        // /proc is mounted by the container's PID 1, in its own PID namespace.
        let rw = MsFlags::MS_NOSUID | MsFlags::MS_NODEV | MsFlags::MS_NOEXEC;
        self.mount_in_root(&root_fd, "sys", "sysfs", rw | MsFlags::MS_RDONLY, None)?;
        Ok(())
    }

    /// The root directory to pivot into.
    pub fn merged(&self) -> &Path {
        &self.merged
    }

    /// The container process's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Creates `dir` (absolute, inside the root) and its missing parents, like runc does
    /// for the working directory.
    pub fn create_dir_all(&self, dir: &str) -> Result<(), ContainerError> {
        in_root::mkdir_all(&in_root::open_root(&self.merged)?, dir)
    }

    fn errno(&self, what: &'static str, path: &str, errno: Errno) -> ContainerError {
        ContainerError::Io {
            what,
            path: PathBuf::from(path),
            source: errno.into(),
        }
    }

    fn write_etc_files(
        &mut self,
        root_fd: &OwnedFd,
        setup: &RootSetup,
    ) -> Result<(), ContainerError> {
        in_root::dir(root_fd, "etc")?;
        let mut hosts = format!(
            "127.0.0.1\tlocalhost\n::1\tlocalhost ip6-localhost ip6-loopback\n127.0.1.1\t{}\n",
            setup.hostname
        );
        for line in &setup.hosts {
            hosts.push_str(line);
            hosts.push('\n');
        }
        let mut files = vec![
            ("etc/hostname", format!("{}\n", setup.hostname)),
            ("etc/hosts", hosts),
        ];
        if !setup.dns.is_empty() {
            let resolv: String = setup
                .dns
                .iter()
                .map(|s| format!("nameserver {s}\n"))
                .collect();
            files.push(("etc/resolv.conf", resolv));
        }
        for (name, contents) in files {
            let fd = in_root::create_file(root_fd, name)?;
            std::io::Write::write_all(&mut std::fs::File::from(fd), contents.as_bytes()).map_err(
                |source| ContainerError::Io {
                    what: "write",
                    path: PathBuf::from("/").join(name),
                    source,
                },
            )?;
        }
        Ok(())
    }

    fn mount_dev(&mut self, root_fd: &OwnedFd) -> Result<(), ContainerError> {
        let flags = MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC;
        self.mount_in_root(
            root_fd,
            "dev",
            "tmpfs",
            flags,
            Some("size=65536k,mode=0755"),
        )?;
        let dev = in_root::open(root_fd, "dev", OFlag::O_DIRECTORY | OFlag::O_RDONLY)?;
        for (name, major, minor) in DEVICES {
            mknodat(
                &dev,
                name,
                SFlag::S_IFCHR,
                Mode::from_bits_truncate(0o666),
                makedev(major, minor),
            )
            .map_err(|e| self.errno("create device", name, e))?;
            // mknod applies the umask; devices must be 0666.
            nix::sys::stat::fchmodat(
                &dev,
                name,
                Mode::from_bits_truncate(0o666),
                nix::sys::stat::FchmodatFlags::FollowSymlink,
            )
            .map_err(|e| self.errno("chmod device", name, e))?;
        }
        for (target, name) in [
            ("/proc/self/fd", "fd"),
            ("/proc/self/fd/0", "stdin"),
            ("/proc/self/fd/1", "stdout"),
            ("/proc/self/fd/2", "stderr"),
            ("pts/ptmx", "ptmx"),
        ] {
            symlinkat(target, &dev, name).map_err(|e| self.errno("create symlink", name, e))?;
        }
        for dir in ["pts", "shm"] {
            nix::sys::stat::mkdirat(&dev, dir, Mode::from_bits_truncate(0o755))
                .map_err(|e| self.errno("create", dir, e))?;
        }
        self.mount_in_root(
            root_fd,
            "dev/pts",
            "devpts",
            MsFlags::MS_NOSUID | MsFlags::MS_NOEXEC,
            Some("newinstance,ptmxmode=0666,mode=0620"),
        )?;
        self.mount_in_root(
            root_fd,
            "dev/shm",
            "tmpfs",
            MsFlags::MS_NOSUID | MsFlags::MS_NODEV,
            Some("mode=1777,size=65536k"),
        )?;
        Ok(())
    }

    /// Mounts `fstype` on `name` inside the root (created when missing, symlinks resolved
    /// inside the root).
    fn mount_in_root(
        &mut self,
        root_fd: &OwnedFd,
        name: &str,
        fstype: &str,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), ContainerError> {
        let target = in_root::dir(root_fd, name)?;
        let via = PathBuf::from(format!("/proc/self/fd/{}", target.as_raw_fd()));
        mount(Some(fstype), &via, Some(fstype), flags, data).map_err(|e| {
            ContainerError::Mount {
                fstype: fstype.to_owned(),
                target: PathBuf::from("/").join(name),
                source: e.into(),
            }
        })?;
        self.mounts.push(self.merged.join(name));
        Ok(())
    }

    fn mount_fs(
        &mut self,
        source: &str,
        fstype: &str,
        target: &Path,
        flags: MsFlags,
        data: Option<&str>,
    ) -> Result<(), ContainerError> {
        mount(Some(source), target, Some(fstype), flags, data).map_err(|e| {
            ContainerError::Mount {
                fstype: fstype.to_owned(),
                target: target.to_owned(),
                source: e.into(),
            }
        })?;
        self.mounts.push(target.to_owned());
        Ok(())
    }

    /// Unmounts everything in reverse order and removes the staging directory. Call when no
    /// container process is left.
    pub fn teardown(mut self) -> Result<(), ContainerError> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<(), ContainerError> {
        // The overlay and everything in it first (newest first), then the FUSE server, then
        // the staging tmpfs under it; every step is tried, the first error is returned.
        let staging_tmpfs = (!self.mounts.is_empty()).then(|| self.mounts.remove(0));
        let mut results: Vec<Result<(), ContainerError>> =
            self.mounts.drain(..).rev().map(detach).collect();
        if let Some(fuse) = self.fuse.take() {
            results.push(fuse.unmount().map_err(ContainerError::Fuse));
        }
        results.extend(staging_tmpfs.map(detach));
        if self.staging.exists() {
            results.push(std::fs::remove_dir_all(&self.staging).map_err(|source| {
                ContainerError::Io {
                    what: "remove",
                    path: self.staging.clone(),
                    source,
                }
            }));
        }
        results
            .into_iter()
            .find_map(Result::err)
            .map_or(Ok(()), Err)
    }
}

/// Lazily unmounts `path` (its submounts with it).
fn detach(path: PathBuf) -> Result<(), ContainerError> {
    umount2(&path, MntFlags::MNT_DETACH).map_err(|e| {
        log::warn!("cannot unmount {}: {e}", path.display());
        ContainerError::Mount {
            fstype: "unmount".into(),
            target: path,
            source: e.into(),
        }
    })
}

impl Drop for PreparedRoot {
    fn drop(&mut self) {
        if !self.mounts.is_empty() || self.fuse.is_some() {
            if let Err(e) = self.unmount_all() {
                log::warn!("tearing down {}: {e}", self.staging.display());
            }
        }
    }
}

impl std::fmt::Debug for PreparedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRoot")
            .field("staging", &self.staging)
            .field("mounts", &self.mounts.len())
            .finish()
    }
}
