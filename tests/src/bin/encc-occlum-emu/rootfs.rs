//! MountRootFS (syscall 363), as Occlum 0.30.1 implements it:
//! - src/libos/src/fs/syscalls.rs, `do_mount_rootfs(key_ptr, rootfs_config_ptr)`: a NULL
//!   key means the sealing-key-derived key; a NULL config means Occlum.json's app config;
//! - src/libos/src/config.rs, `ConfigApp::from_user`: `len` must be
//!   `size_of::<user_rootfs_config>()` (56) or EINVAL; a non-NULL envp is merged over
//!   `env.default` first (`combine_trusted_envs`); NULL layer paths keep Occlum.json's; a
//!   non-NULL `entry_point` replaces `entry_points` (it is not checked further); a
//!   `hostfs_source` replaces the first hostfs mount (target `hostfs_target` or "/host");
//! - src/libos/src/fs/fs_ops/mount.rs, `do_mount_rootfs`: EPERM after one success
//!   (`MOUNT_ONCE`); both layers opened as SEFS (`open_root_fs_according_to`), every app
//!   mount made on the new root (`mount_nonroot_fs_according_to`: the target must exist,
//!   a hostfs source must be a directory), then the swap, then /etc/resolv.conf,
//!   /etc/hostname and /etc/hosts written into the new root (`write_host_file`; an error
//!   there is returned although the root is already swapped).
//!
//! The equivalent here: an overlay of the lower layer's directory (read-only) with an upper
//! layer in memory (tmpfs; Occlum keeps it as an SEFS at the upper path, which must exist),
//! then the app stage's mounts, all under the emulator's scratch directory.

use std::io::Write as _;
use std::path::{Path, PathBuf};

use nix::errno::Errno;
use nix::fcntl::{openat2, OFlag, OpenHow, ResolveFlag};
use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sys::stat::Mode;

use crate::instance::MountConf;
use crate::memory::Caller;
use crate::rules::{combine_trusted_envs, USER_ROOTFS_CONFIG_LEN};
use crate::supervisor::{bind_at, fd_path, log, mount_ramfs, open_in, Emu, Swapped};

/// What `user_rootfs_config` asked for (None: keep Occlum.json's).
#[derive(Debug, Default)]
struct Request {
    upper: Option<PathBuf>,
    lower: Option<PathBuf>,
    entry_point: Option<PathBuf>,
    hostfs: Option<(PathBuf, PathBuf)>,
}

/// Handles one MountRootFS call; `valid` checks the caller still waits (after reading).
pub fn mount_rootfs(
    emu: &Emu,
    caller: Caller,
    key_ptr: u64,
    config_ptr: u64,
    valid: impl Fn() -> Result<(), Errno>,
) -> Result<(), Errno> {
    let key: Option<[u8; 16]> = match key_ptr {
        0 => None,
        ptr => {
            let raw = caller.bytes(ptr, 16)?;
            let mut key = [0u8; 16];
            key.copy_from_slice(&raw);
            Some(key)
        }
    };
    let request = match config_ptr {
        0 => Request::default(),
        ptr => read_config(emu, caller, ptr)?,
    };
    valid()?;
    // "the root UnionFS is not valid" / "the image SEFS in layers is not valid"
    let (image, container) = emu.json.root_layers().ok_or(Errno::ENOENT)?;
    let lower = request.lower.unwrap_or(image);
    let upper = request.upper.unwrap_or(container);
    let mut entry_points = emu.json.entry_points.clone();
    if let Some(ep) = request.entry_point {
        entry_points = vec![ep];
    }
    let mut mounts = emu.json.app_mounts();
    if let Some((source, target)) = request.hostfs {
        let hostfs = mounts
            .iter_mut()
            .find(|m| m.fs_type == "hostfs")
            .ok_or(Errno::ENOENT)?; // "the HostFS is not valid"
        hostfs.source = Some(source);
        hostfs.target = target;
    }
    // fs_ops::do_mount_rootfs, after ConfigApp::from_user.
    if emu.lock().swapped.is_some() {
        return Err(Errno::EPERM); // "rootfs cannot be mounted more than once"
    }
    log(format!(
        "MountRootFS lower={} upper={} entry_point={}",
        lower.display(),
        upper.display(),
        entry_points
            .iter()
            .map(|p| p.display().to_string())
            .collect::<Vec<_>>()
            .join(":")
    ));
    let root = build_root(emu, &lower, &upper, key.as_ref(), &mounts)?;
    emu.lock().swapped = Some(Swapped {
        root: root.clone(),
        entry_points,
    });
    write_host_files(emu, &root)
}

fn read_config(emu: &Emu, caller: Caller, ptr: u64) -> Result<Request, Errno> {
    let raw = caller.bytes(ptr, USER_ROOTFS_CONFIG_LEN)?;
    let field = |i: usize| {
        let mut word = [0u8; 8];
        word.copy_from_slice(&raw[i * 8..i * 8 + 8]);
        u64::from_le_bytes(word)
    };
    if field(0) != USER_ROOTFS_CONFIG_LEN as u64 {
        log(format!(
            "MountRootFS: len {} is not {USER_ROOTFS_CONFIG_LEN}",
            field(0)
        ));
        return Err(Errno::EINVAL);
    }
    if field(6) != 0 {
        let user = caller.strings(field(6))?;
        let mut state = emu.lock();
        state.trusted_env = combine_trusted_envs(&user, &emu.json.env.default);
    }
    let path = |i: usize| Ok::<_, Errno>(caller.optional_string(field(i))?.map(PathBuf::from));
    let hostfs_target = path(5)?.unwrap_or_else(|| PathBuf::from("/host"));
    Ok(Request {
        upper: path(1)?,
        lower: path(2)?,
        entry_point: path(3)?,
        hostfs: path(4)?.map(|source| (source, hostfs_target)),
    })
}

/// The overlay root with the app mounts under `work/app`; all of it undone on error.
fn build_root(
    emu: &Emu,
    lower: &Path,
    upper: &Path,
    key: Option<&[u8; 16]>,
    mounts: &[MountConf],
) -> Result<PathBuf, Errno> {
    let lower = emu.open_sefs(lower, key)?;
    emu.open_sefs(upper, key)?;
    let app = emu.work.join("app");
    std::fs::create_dir_all(&app).map_err(|_| Errno::EIO)?;
    mount(
        Some("app"),
        &app,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0700"),
    )?;
    let built = stack(emu, &app, &lower, mounts);
    if built.is_err() {
        let _ = umount2(&app, MntFlags::MNT_DETACH);
    }
    built
}

fn stack(emu: &Emu, app: &Path, lower: &Path, mounts: &[MountConf]) -> Result<PathBuf, Errno> {
    let (ro, upper, work, root) = (
        app.join("lower"),
        app.join("upper"),
        app.join("work"),
        app.join("root"),
    );
    for dir in [&ro, &upper, &work, &root] {
        std::fs::create_dir(dir).map_err(|_| Errno::EIO)?;
    }
    mount(
        Some(lower),
        &ro,
        None::<&str>,
        MsFlags::MS_BIND,
        None::<&str>,
    )?;
    mount(
        None::<&str>,
        &ro,
        None::<&str>,
        MsFlags::MS_BIND | MsFlags::MS_REMOUNT | MsFlags::MS_RDONLY,
        None::<&str>,
    )?;
    let options = format!(
        "lowerdir={},upperdir={},workdir={}",
        ro.display(),
        upper.display(),
        work.display()
    );
    mount(
        Some("overlay"),
        &root,
        Some("overlay"),
        MsFlags::empty(),
        Some(options.as_str()),
    )?;
    let root_fd = nix::fcntl::open(
        &root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for m in mounts.iter().filter(|m| m.target != Path::new("/")) {
        if !m.target.is_absolute() {
            return Err(Errno::EINVAL); // "The target path must be absolute"
        }
        app_mount(emu, &root_fd, m).inspect_err(|e| {
            log(format!(
                "app mount {} {}: {e}",
                m.fs_type,
                m.target.display()
            ))
        })?;
    }
    Ok(root)
}

fn app_mount(emu: &Emu, root: &std::os::fd::OwnedFd, m: &MountConf) -> Result<(), Errno> {
    match m.fs_type.as_str() {
        "hostfs" => {
            let source = m.source.as_deref().map(|s| emu.host_path(s));
            let source = source.filter(|s| s.is_dir()).ok_or(Errno::EINVAL)?;
            bind_at(&source, &open_in(root, &m.target, false)?)
        }
        "sefs" => {
            let dir = m.source.as_deref().ok_or(Errno::EINVAL)?;
            let dir = emu.open_sefs(dir, None)?;
            bind_at(&dir, &open_in(root, &m.target, false)?)
        }
        "procfs" => {
            let at = open_in(root, &m.target, false)?;
            mount(
                Some("proc"),
                &fd_path(&at),
                Some("proc"),
                MsFlags::empty(),
                None::<&str>,
            )
        }
        "devfs" => make_dev(&fd_path(&open_in(root, &m.target, false)?)),
        "ramfs" => mount_ramfs(&open_in(root, &m.target, false)?),
        _ => Err(Errno::EINVAL), // unionfs below the root: not emulated
    }
}

/// Occlum's devfs, approximately: a tmpfs with null, zero, random, urandom (bound from the
/// host) and the fd links.
pub fn make_dev(at: &Path) -> Result<(), Errno> {
    mount(
        Some("devfs"),
        at,
        Some("tmpfs"),
        MsFlags::MS_NOSUID,
        Some("mode=0755"),
    )?;
    for node in ["null", "zero", "random", "urandom"] {
        let path = at.join(node);
        std::fs::File::create(&path).map_err(|_| Errno::EIO)?;
        mount(
            Some(Path::new("/dev").join(node).as_path()),
            &path,
            None::<&str>,
            MsFlags::MS_BIND,
            None::<&str>,
        )?;
    }
    for (link, target) in [
        ("fd", "/proc/self/fd"),
        ("stdin", "/proc/self/fd/0"),
        ("stdout", "/proc/self/fd/1"),
        ("stderr", "/proc/self/fd/2"),
    ] {
        std::os::unix::fs::symlink(target, at.join(link)).map_err(|_| Errno::EIO)?;
    }
    Ok(())
}

/// `write_host_file` for the three host files: created or truncated in the new root (mode
/// 0666), with the host's content when the host has the file.
fn write_host_files(emu: &Emu, root: &Path) -> Result<(), Errno> {
    let root_fd = nix::fcntl::open(
        root,
        OFlag::O_PATH | OFlag::O_DIRECTORY | OFlag::O_CLOEXEC,
        Mode::empty(),
    )?;
    for (path, content) in &emu.host_files {
        let fd = openat2(
            &root_fd,
            *path,
            OpenHow::new()
                .flags(OFlag::O_RDWR | OFlag::O_CREAT | OFlag::O_TRUNC | OFlag::O_CLOEXEC)
                .mode(Mode::from_bits_truncate(0o666))
                .resolve(ResolveFlag::RESOLVE_IN_ROOT),
        )
        .inspect_err(|e| log(format!("writing {path} into the new root: {e}")))?;
        if let Some(content) = content {
            std::fs::File::from(fd)
                .write_all(content)
                .map_err(|_| Errno::EIO)?;
        }
    }
    Ok(())
}
