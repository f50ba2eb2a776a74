//! The supervisor: answers the system calls init's filter stops (`mount`, `umount2`,
//! MountRootFS) the way Occlum's LibOS would, by doing the Linux equivalent in the
//! emulator's mount namespace. It shares that namespace with init, whose root is the
//! initfs (chroot), so init's paths are resolved inside `/proc/PID/root` with
//! `openat2(RESOLVE_IN_ROOT)`.
//!
//! Linux has no hostfs and no SEFS. A hostfs mount becomes a bind mount of the host
//! directory. An SEFS becomes a bind mount of its host directory, holding plain files: the
//! emulator cannot show SEFS's encryption. What it does keep of SEFS: the directory must
//! exist (Occlum's `SgxStorage` creates files in it and never the directory itself), and
//! a layer written under one key does not open under another.

use std::collections::HashMap;
use std::os::fd::{AsFd as _, AsRawFd as _, OwnedFd};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;
use nix::unistd::Pid;
use sha2::{Digest as _, Sha256};

use crate::instance::OcclumJson;
use crate::memory::Caller;
use crate::rules::{parse_mount, parse_umount, MountRequest};
use crate::sys::{self, Notification};
use crate::table::SYS_MOUNT_ROOTFS;

/// What the root swap left for the app stage.
#[derive(Debug, Clone)]
pub struct Swapped {
    /// Host path of the new root (overlay + app-stage mounts).
    pub root: PathBuf,
    /// `ENTRY_POINTS` after the swap.
    pub entry_points: Vec<PathBuf>,
}

/// Mutable LibOS state.
#[derive(Debug, Default)]
pub struct State {
    /// SEFS host directories the emulator has opened, with a hash of their key (None: the
    /// enclave's sealing-key-derived key).
    pub sefs: HashMap<PathBuf, Option<[u8; 32]>>,
    /// `TRUSTED_ENVS` (env.default, or MountRootFS's merge).
    pub trusted_env: Vec<String>,
    /// Set once MountRootFS succeeded (`MOUNT_ONCE`).
    pub swapped: Option<Swapped>,
}

/// The emulated LibOS.
#[derive(Debug)]
pub struct Emu {
    /// The instance directory: where relative host paths start (`occlum run`'s cwd).
    pub instance: PathBuf,
    pub json: OcclumJson,
    /// Scratch space (a tmpfs in the emulator's namespace).
    pub work: PathBuf,
    /// The host's /etc/resolv.conf, /etc/hostname and /etc/hosts, read at start as the PAL
    /// does, written into the new root by MountRootFS.
    pub host_files: Vec<(&'static str, Option<Vec<u8>>)>,
    pub state: Mutex<State>,
}

impl Emu {
    /// A host path as the LibOS's host calls see it (relative to the instance directory).
    pub fn host_path(&self, path: &Path) -> PathBuf {
        self.instance.join(path)
    }

    /// Opens the SEFS at host directory `dir` with `key`: ENOENT when the directory is
    /// missing, EIO when it was written under another key or holds files the emulator did
    /// not write (Occlum could not authenticate them).
    pub fn open_sefs(&self, dir: &Path, key: Option<&[u8; 16]>) -> Result<PathBuf, Errno> {
        let dir = self.host_path(dir);
        let canonical = std::fs::canonicalize(&dir).map_err(|_| Errno::ENOENT)?;
        if !canonical.is_dir() {
            return Err(Errno::ENOTDIR);
        }
        let tag = key.map(|k| <[u8; 32]>::from(Sha256::digest(k)));
        let mut state = self.lock();
        match state.sefs.get(&canonical) {
            Some(known) if *known != tag => {
                log(format!("SEFS {}: opened with another key", dir.display()));
                Err(Errno::EIO)
            }
            Some(_) => Ok(canonical),
            None => {
                let empty = std::fs::read_dir(&canonical)
                    .map_err(|_| Errno::EIO)?
                    .next()
                    .is_none();
                if !empty {
                    log(format!("SEFS {}: holds files no SEFS wrote", dir.display()));
                    return Err(Errno::EIO);
                }
                state.sefs.insert(canonical.clone(), tag);
                Ok(canonical)
            }
        }
    }

    pub fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// Answers notifications until every process under the filter is gone.
    pub fn serve(&self, listener: &OwnedFd) {
        loop {
            let mut fds = [nix::poll::PollFd::new(
                listener.as_fd(),
                nix::poll::PollFlags::POLLIN,
            )];
            match nix::poll::poll(&mut fds, nix::poll::PollTimeout::NONE) {
                Ok(_) => {}
                Err(Errno::EINTR) => continue,
                Err(e) => return log(format!("poll on the listener failed: {e}")),
            }
            let revents = fds[0].revents().unwrap_or(nix::poll::PollFlags::POLLHUP);
            if !revents.contains(nix::poll::PollFlags::POLLIN) {
                return; // POLLHUP: the filter has no users left.
            }
            let notif = match sys::recv(listener.as_fd()) {
                Ok(n) => n,
                Err(e) if e.raw_os_error() == Some(libc::ENOENT) => continue,
                Err(e) => return log(format!("SECCOMP_IOCTL_NOTIF_RECV failed: {e}")),
            };
            let result = self.answer(listener, &notif);
            if let Err(e) = sys::respond(listener.as_fd(), notif.id, result) {
                log(format!("answering syscall {} failed: {e}", notif.nr));
            }
        }
    }

    fn answer(&self, listener: &OwnedFd, n: &Notification) -> Result<(), Errno> {
        let caller = Caller(Pid::from_raw(n.pid as i32));
        let valid = || match sys::id_valid(listener.as_fd(), n.id) {
            true => Ok(()),
            false => Err(Errno::ESRCH),
        };
        match i64::from(n.nr) {
            libc::SYS_mount => {
                let target = caller.string(n.args[1])?;
                let fs_type = caller.string(n.args[2])?;
                let options = caller.optional_string(n.args[4])?;
                valid()?;
                let cwd = cwd_of(n.pid)?;
                let parsed = parse_mount(&target, &fs_type, n.args[3], options.as_deref(), &cwd);
                let result = parsed.and_then(|(t, req)| self.mount(n.pid, &t, &req, n.args[3]));
                log(format!("mount {fs_type} on {target:?}: {}", show(result)));
                result
            }
            libc::SYS_umount2 => {
                let target = caller.string(n.args[0])?;
                valid()?;
                let result = parse_umount(&target, n.args[1], &cwd_of(n.pid)?)
                    .and_then(|t| self.umount(n.pid, &t));
                log(format!("umount {target:?}: {}", show(result)));
                result
            }
            nr if nr == i64::from(SYS_MOUNT_ROOTFS) => {
                let result = crate::rootfs::mount_rootfs(self, caller, n.args[0], n.args[1], valid);
                log(format!("MountRootFS: {}", show(result)));
                result
            }
            _ => Err(Errno::ENOSYS),
        }
    }

    fn mount(&self, pid: u32, target: &Path, req: &MountRequest, flags: u64) -> Result<(), Errno> {
        let nofollow = flags & libc::MS_NOSYMFOLLOW != 0;
        let bind = |source: &Path| {
            let at = open_in(&proc_root(pid)?, target, nofollow)?;
            bind_at(source, &at)
        };
        match req {
            MountRequest::HostFs { dir } => {
                let dir = self.host_path(dir);
                if !dir.is_dir() {
                    return Err(Errno::EINVAL); // "Source is expected for HostFS"
                }
                bind(&dir)
            }
            MountRequest::Sefs { dir, key } => bind(&self.open_sefs(dir, key.as_ref())?),
            MountRequest::RamFs => mount_ramfs(&open_in(&proc_root(pid)?, target, nofollow)?),
            // Occlum stacks two SEFS here; init does not use it and it is not emulated.
            MountRequest::UnionFs { .. } => Err(Errno::EOPNOTSUPP),
        }
    }

    fn umount(&self, pid: u32, target: &Path) -> Result<(), Errno> {
        let at = open_in(&proc_root(pid)?, target, false)?;
        umount2(&fd_path(&at), MntFlags::MNT_DETACH)
    }
}

/// One line on stderr, prefixed.
pub fn log(line: String) {
    eprintln!("encc-occlum-emu: {line}");
}

fn show(result: Result<(), Errno>) -> String {
    match result {
        Ok(()) => "0".into(),
        Err(e) => format!("{e}"),
    }
}

/// An O_PATH handle on `/proc/PID/root`.
fn proc_root(pid: u32) -> Result<OwnedFd, Errno> {
    nix::fcntl::open(
        format!("/proc/{pid}/root").as_str(),
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )
}

/// The caller's working directory as a path inside its root (Occlum's
/// `convert_to_abs_path` makes relative targets absolute against it).
fn cwd_of(pid: u32) -> Result<PathBuf, Errno> {
    let root = std::fs::read_link(format!("/proc/{pid}/root")).map_err(|_| Errno::ESRCH)?;
    let cwd = std::fs::read_link(format!("/proc/{pid}/cwd")).map_err(|_| Errno::ESRCH)?;
    Ok(Path::new("/").join(cwd.strip_prefix(&root).unwrap_or(Path::new(""))))
}

/// Opens the directory `path` inside the root `root` (RESOLVE_IN_ROOT).
pub fn open_in(root: &OwnedFd, path: &Path, nofollow: bool) -> Result<OwnedFd, Errno> {
    let mut resolve = ResolveFlag::RESOLVE_IN_ROOT;
    if nofollow {
        resolve |= ResolveFlag::RESOLVE_NO_SYMLINKS;
    }
    openat2(
        root,
        path,
        OpenHow::new()
            .flags(OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC)
            .resolve(resolve),
    )
}

/// `/proc/self/fd/N` of an fd: a mount target that cannot be swapped under us.
pub fn fd_path(fd: &OwnedFd) -> PathBuf {
    PathBuf::from(format!("/proc/self/fd/{}", fd.as_raw_fd()))
}

/// Bind-mounts `source` onto the directory `at`.
pub fn bind_at(source: &Path, at: &OwnedFd) -> Result<(), Errno> {
    mount(
        Some(source),
        &fd_path(at),
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )
}

/// Mounts an in-memory file system (Occlum's ramfs, a tmpfs here) on the directory `at`.
pub fn mount_ramfs(at: &OwnedFd) -> Result<(), Errno> {
    mount(
        Some("ramfs"),
        &fd_path(at),
        Some("tmpfs"),
        MsFlags::empty(),
        None::<&str>,
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    fn emu(instance: &Path) -> Emu {
        let json = r#"{"entry_points": ["/bin"], "env": {}, "mount": []}"#;
        Emu {
            instance: instance.to_owned(),
            json: serde_json::from_str(json).unwrap(),
            work: instance.join("work"),
            host_files: Vec::new(),
            state: Mutex::new(State::default()),
        }
    }

    #[test]
    fn an_sefs_layer_opens_only_under_the_key_it_was_written_with() {
        let dir = tempfile::tempdir().unwrap();
        let emu = emu(dir.path());
        std::fs::create_dir(dir.path().join("lower")).unwrap();
        let (k1, k2) = ([1u8; 16], [2u8; 16]);
        // Relative host paths start at the instance directory.
        let opened = emu.open_sefs(Path::new("lower"), Some(&k1)).unwrap();
        std::fs::write(opened.join("file"), b"x").unwrap();
        assert!(emu.open_sefs(Path::new("lower"), Some(&k1)).is_ok());
        assert_eq!(
            emu.open_sefs(Path::new("lower"), Some(&k2)),
            Err(Errno::EIO)
        );
        assert_eq!(emu.open_sefs(Path::new("lower"), None), Err(Errno::EIO));
        // SgxStorage never creates its directory.
        assert_eq!(
            emu.open_sefs(Path::new("missing"), None),
            Err(Errno::ENOENT)
        );
        // Files no SEFS wrote (the host planted them) do not authenticate.
        let planted = dir.path().join("planted");
        std::fs::create_dir(&planted).unwrap();
        std::fs::write(planted.join("bin"), b"x").unwrap();
        assert_eq!(emu.open_sefs(&planted, Some(&k1)), Err(Errno::EIO));
    }
}
