//! The container root on the native platform: the protected image served read-only by the
//! FUSE server, an overlayfs over it whose upper and work dirs live on a size-limited tmpfs
//! (container writes stay in memory), `/etc/hostname`, `/etc/hosts`, `/etc/resolv.conf`,
//! then `/proc`, a minimal `/dev`, `/sys` read-only and `/tmp`.
//!
//! Nothing of it lives at a path: the staging tmpfs, the FUSE file system, the overlay and
//! everything mounted in it are detached mounts (the new mount API), stacked and attached
//! to each other through file descriptors, so the host (which owns the store and every
//! path the enclave shares with it) cannot rename, replace or symlink its way into them.
//! Each container process attaches its own copy of the tree in its own mount namespace and
//! pivots into it ([`PreparedRoot::spawn`]).
//!
//! Every mount target inside the root is opened with `openat2(RESOLVE_IN_ROOT)`, so a
//! symlink in a hostile image can never point a mount or a write outside the root. The
//! `/etc` files are written before `/proc` and `/sys` exist inside the root.

use std::os::fd::{AsFd, OwnedFd};
use std::path::PathBuf;
use std::sync::Arc;

use nix::errno::Errno;
use nix::fcntl::{openat, OFlag};
use nix::sys::stat::{makedev, mkdirat, mknodat, Mode, SFlag};
use nix::unistd::symlinkat;

use super::in_root;
use super::user::{resolve_user, Credentials};
use super::ContainerError;
use crate::detached::{self, MountAttrFlags as Attrs, Opt};
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
    /// The container's root: the overlay and the file systems mounted in it, one detached
    /// mount tree.
    tree: Option<OwnedFd>,
    /// The tmpfs holding the overlay's upper and work directories (detached).
    staging: Option<OwnedFd>,
    fuse: Option<Mount>,
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
    /// Builds the root as detached mounts, reachable only through this value.
    pub fn prepare(reader: Arc<RootfsReader>, setup: &RootSetup) -> Result<Self, ContainerError> {
        let mut root = Self {
            tree: None,
            staging: None,
            fuse: None,
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
        let size = setup.tmpfs_size.to_string();
        let staging = new_mount(
            "tmpfs",
            "the staging tmpfs",
            &[Opt::Str("size", &size), Opt::Str("mode", "0700")],
            Attrs::MOUNT_ATTR_NODEV,
        )?;
        let staging_dir = |name: &'static str| -> Result<OwnedFd, ContainerError> {
            let err = |e: Errno| ContainerError::Io {
                what: "create",
                path: PathBuf::from("staging tmpfs:").join(name),
                source: e.into(),
            };
            mkdirat(&staging, name, Mode::from_bits_truncate(0o755)).map_err(err)?;
            openat(
                &staging,
                name,
                OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
                Mode::empty(),
            )
            .map_err(err)
        };
        let (upper, work) = (staging_dir("upper")?, staging_dir("work")?);
        self.staging = Some(staging);
        let fuse = fuse::mount_detached(Arc::clone(&self.reader)).map_err(ContainerError::Fuse)?;
        let lower = fuse.detached().ok_or_else(|| ContainerError::Mount {
            fstype: "fuse".into(),
            target: fuse.mountpoint().to_owned(),
            source: std::io::ErrorKind::NotFound.into(),
        })?;
        let tree = new_mount(
            "overlay",
            "the container root",
            &[
                Opt::Fd("lowerdir+", lower),
                Opt::Fd("upperdir", upper.as_fd()),
                Opt::Fd("workdir", work.as_fd()),
            ],
            Attrs::MOUNT_ATTR_NODEV,
        );
        self.fuse = Some(fuse);
        let root_fd = tree?;
        self.write_etc_files(&root_fd, setup)?;
        let passwd = in_root::read_small(&root_fd, "etc/passwd")?;
        let group = in_root::read_small(&root_fd, "etc/group")?;
        self.credentials = resolve_user(&setup.user, &passwd, &group)?;

        let tmp = setup.tmp_size.to_string();
        let tmp_opts = [Opt::Str("size", &tmp), Opt::Str("mode", "1777")];
        let nosuid_nodev = Attrs::MOUNT_ATTR_NOSUID | Attrs::MOUNT_ATTR_NODEV;
        mount_in_root(&root_fd, "tmp", "tmpfs", &tmp_opts, nosuid_nodev)?;
        mount_dev(&root_fd)?;
        let rw = nosuid_nodev | Attrs::MOUNT_ATTR_NOEXEC;
        // /proc is mounted by the container's PID 1, in its own PID namespace.
        mount_in_root(&root_fd, "sys", "sysfs", &[], rw | Attrs::MOUNT_ATTR_RDONLY)?;
        self.tree = Some(root_fd);
        Ok(())
    }

    /// The root of the container's mount tree (detached).
    pub(super) fn tree(&self) -> Result<&OwnedFd, ContainerError> {
        self.tree.as_ref().ok_or_else(|| ContainerError::Io {
            what: "use",
            path: PathBuf::from("/"),
            source: std::io::Error::from_raw_os_error(libc::EBADF),
        })
    }

    /// The container process's credentials.
    pub fn credentials(&self) -> &Credentials {
        &self.credentials
    }

    /// Creates `dir` (absolute, inside the root) and its missing parents, like runc does
    /// for the working directory.
    pub fn create_dir_all(&self, dir: &str) -> Result<(), ContainerError> {
        in_root::mkdir_all(self.tree()?, dir)
    }

    fn write_etc_files(&self, root_fd: &OwnedFd, setup: &RootSetup) -> Result<(), ContainerError> {
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

    /// Unmounts everything. Call when no container process is left.
    pub fn teardown(mut self) -> Result<(), ContainerError> {
        self.unmount_all()
    }

    fn unmount_all(&mut self) -> Result<(), ContainerError> {
        // Closing the last handle of a detached tree unmounts it; the overlay (and its
        // submounts) first, then the staging tmpfs, then the FUSE file system the overlay
        // held. Copies in container mount namespaces went with their last process.
        drop(self.tree.take());
        drop(self.staging.take());
        match self.fuse.take() {
            Some(fuse) => fuse.unmount().map_err(ContainerError::Fuse),
            None => Ok(()),
        }
    }
}

impl Drop for PreparedRoot {
    fn drop(&mut self) {
        if let Err(e) = self.unmount_all() {
            log::warn!("tearing down the container root: {e}");
        }
    }
}

/// A new detached mount, `what` naming it in errors.
fn new_mount(
    fstype: &str,
    what: &str,
    options: &[Opt<'_>],
    attrs: Attrs,
) -> Result<OwnedFd, ContainerError> {
    detached::new_mount(fstype, options, attrs).map_err(|source| ContainerError::Mount {
        fstype: fstype.to_owned(),
        target: PathBuf::from(what),
        source,
    })
}

/// Mounts a new `fstype` on `name` inside the root (created when missing, symlinks resolved
/// inside the root).
fn mount_in_root(
    root_fd: &OwnedFd,
    name: &str,
    fstype: &str,
    options: &[Opt<'_>],
    attrs: Attrs,
) -> Result<(), ContainerError> {
    let target = in_root::dir(root_fd, name)?;
    let path = PathBuf::from("/").join(name);
    let mount = new_mount(fstype, &path.to_string_lossy(), options, attrs)?;
    attach(&mount, &target, fstype, path)
}

fn attach(
    mount: &OwnedFd,
    target: &OwnedFd,
    fstype: &str,
    path: PathBuf,
) -> Result<(), ContainerError> {
    detached::attach(mount, target).map_err(|source| ContainerError::Mount {
        fstype: fstype.to_owned(),
        target: path,
        source,
    })
}

/// The minimal `/dev`: a tmpfs with the device nodes, the standard symlinks, `pts` (a new
/// devpts instance) and `shm`, made on the new tmpfs before it is attached in the root.
fn mount_dev(root_fd: &OwnedFd) -> Result<(), ContainerError> {
    let dev = new_mount(
        "tmpfs",
        "/dev",
        &[Opt::Str("size", "65536k"), Opt::Str("mode", "0755")],
        Attrs::MOUNT_ATTR_NOSUID | Attrs::MOUNT_ATTR_NOEXEC,
    )?;
    let errno = |what: &'static str, name: &str, e: Errno| ContainerError::Io {
        what,
        path: PathBuf::from("/dev").join(name),
        source: e.into(),
    };
    for (name, major, minor) in DEVICES {
        mknodat(
            &dev,
            name,
            SFlag::S_IFCHR,
            Mode::from_bits_truncate(0o666),
            makedev(major, minor),
        )
        .map_err(|e| errno("create device", name, e))?;
        // mknod applies the umask; devices must be 0666.
        nix::sys::stat::fchmodat(
            &dev,
            name,
            Mode::from_bits_truncate(0o666),
            nix::sys::stat::FchmodatFlags::FollowSymlink,
        )
        .map_err(|e| errno("chmod device", name, e))?;
    }
    for (target, name) in [
        ("/proc/self/fd", "fd"),
        ("/proc/self/fd/0", "stdin"),
        ("/proc/self/fd/1", "stdout"),
        ("/proc/self/fd/2", "stderr"),
        ("pts/ptmx", "ptmx"),
    ] {
        symlinkat(target, &dev, name).map_err(|e| errno("create symlink", name, e))?;
    }
    for (name, fstype, options) in [
        (
            "pts",
            "devpts",
            [Opt::Str("ptmxmode", "0666"), Opt::Str("mode", "0620")],
        ),
        (
            "shm",
            "tmpfs",
            [Opt::Str("mode", "1777"), Opt::Str("size", "65536k")],
        ),
    ] {
        mkdirat(&dev, name, Mode::from_bits_truncate(0o755))
            .map_err(|e| errno("create", name, e))?;
        let target = openat(
            &dev,
            name,
            OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_NOFOLLOW | OFlag::O_CLOEXEC,
            Mode::empty(),
        )
        .map_err(|e| errno("open", name, e))?;
        let attrs = match fstype {
            "devpts" => Attrs::MOUNT_ATTR_NOSUID | Attrs::MOUNT_ATTR_NOEXEC,
            _ => Attrs::MOUNT_ATTR_NOSUID | Attrs::MOUNT_ATTR_NODEV,
        };
        let path = PathBuf::from("/dev").join(name);
        let mount = new_mount(fstype, &path.to_string_lossy(), &options, attrs)?;
        attach(&mount, &target, fstype, path)?;
    }
    let target = in_root::dir(root_fd, "dev")?;
    attach(&dev, &target, "tmpfs", PathBuf::from("/dev"))
}

impl std::fmt::Debug for PreparedRoot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("PreparedRoot")
            .field("tree", &self.tree)
            .field("staging", &self.staging)
            .field("fuse", &self.fuse.as_ref().map(Mount::mountpoint))
            .finish()
    }
}
