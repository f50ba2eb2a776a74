//! Occlum 0.30's rules that the emulator enforces, as pure functions. Each copies the code
//! named in its comment from github.com/occlum/occlum at tag v0.30.1 (commit 6eaad699).

use std::path::{Component, Path, PathBuf};

use nix::errno::Errno;

/// `size_of::<user_rootfs_config>()` on x86_64: seven 8-byte fields.
/// src/libos/src/config.rs, `ConfigApp::from_user`: "User Config Struct length not match".
pub const USER_ROOTFS_CONFIG_LEN: usize = 56;

/// Linux's PATH_MAX, which Occlum's `do_mount` applies to the target.
const PATH_MAX: usize = 4096;

/// src/libos/src/entry.rs, `validate_program_path`: the path `occlum_pal_create_process`
/// may start. Absolute, no `..` component, and `Path::starts_with` one of the entry points:
/// a prefix match component by component, so `/bin` admits `/bin/sh` but not `/binx`, and
/// a file `/encc/exec` admits only itself (or paths below it, which cannot be executed).
pub fn validate_program_path(path: &Path, entry_points: &[PathBuf]) -> Result<(), Errno> {
    if !path.is_absolute() {
        return Err(Errno::EINVAL);
    }
    if path.components().any(|c| c == Component::ParentDir) {
        return Err(Errno::EINVAL);
    }
    if !entry_points.iter().any(|prefix| path.starts_with(prefix)) {
        return Err(Errno::EACCES);
    }
    Ok(())
}

fn env_key(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(k, _)| k)
}

/// src/libos/src/entry.rs, `merge_env`: the trusted env (Occlum.json's `env.default`, or
/// what MountRootFS merged), minus the names the host overrides, then the host's entries
/// whose name `env.untrusted` lists.
pub fn merge_env(trusted: &[String], untrusted_names: &[String], host: &[String]) -> Vec<String> {
    let checked: Vec<&String> = host
        .iter()
        .filter(|e| untrusted_names.iter().any(|n| n == env_key(e)))
        .collect();
    let overridden: Vec<&str> = checked.iter().map(|e| env_key(e)).collect();
    trusted
        .iter()
        .filter(|e| !overridden.contains(&env_key(e)))
        .chain(checked)
        .cloned()
        .collect()
}

/// src/libos/src/fs/syscalls.rs + config.rs, `combine_trusted_envs`: MountRootFS's envp
/// first, then the `env.default` entries whose name it does not set.
pub fn combine_trusted_envs(user: &[String], default: &[String]) -> Vec<String> {
    let keys: Vec<&str> = user.iter().map(|e| env_key(e)).collect();
    user.iter()
        .chain(default.iter().filter(|e| !keys.contains(&env_key(e))))
        .cloned()
        .collect()
}

/// src/libos/src/config.rs, `parse_key` (and `parse_mac`, the same format): 16 parts
/// separated by '-', each `u8::from_str_radix(part, 16)`.
pub fn parse_key(text: &str) -> Result<[u8; 16], Errno> {
    let parts: Vec<&str> = text.split('-').collect();
    if parts.len() != 16 {
        return Err(Errno::EINVAL);
    }
    let mut key = [0u8; 16];
    for (byte, part) in key.iter_mut().zip(parts) {
        *byte = u8::from_str_radix(part, 16).map_err(|_| Errno::EINVAL)?;
    }
    Ok(key)
}

/// A `mount(2)` Occlum accepts (src/libos/src/fs/fs_ops/mount.rs, `MountOptions`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum MountRequest {
    /// `hostfs`, `dir=HOST_DIR`.
    HostFs { dir: PathBuf },
    /// `sefs`, `dir=HOST_DIR[,key=K][,mac=M]`.
    Sefs { dir: PathBuf, key: Option<[u8; 16]> },
    /// `unionfs`, `lowerdir=…,upperdir=…[,key=K]`.
    UnionFs {
        lower: PathBuf,
        upper: PathBuf,
        key: Option<[u8; 16]>,
    },
    /// `ramfs`.
    RamFs,
}

/// `MountFlags` bits Occlum knows (`MountFlags::from_bits` fails on any other: bit 9).
const KNOWN_FLAGS: u32 = !(1 << 9);
/// MS_REMOUNT, MS_BIND, MS_MOVE, MS_UNBINDABLE, MS_PRIVATE, MS_SLAVE, MS_SHARED:
/// "Only support to create a new mount" (fs_ops/mount.rs, `do_mount`).
const REFUSED_FLAGS: u32 = 32 | 4096 | 8192 | (1 << 17) | (1 << 18) | (1 << 19) | (1 << 20);

/// src/libos/src/fs/syscalls.rs `do_mount` and fs_ops/mount.rs `do_mount` up to the
/// mount itself: the target (made absolute against `cwd`), the file system and options.
/// `options` is None when the options pointer could not be read.
pub fn parse_mount(
    target: &str,
    fs_type: &str,
    flags: u64,
    options: Option<&str>,
    cwd: &Path,
) -> Result<(PathBuf, MountRequest), Errno> {
    if target.is_empty() {
        return Err(Errno::ENOENT);
    }
    if target.len() > PATH_MAX {
        return Err(Errno::ENAMETOOLONG);
    }
    let flags = u32::try_from(flags).map_err(|_| Errno::EINVAL)?;
    if flags & !KNOWN_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    let request = match fs_type {
        "hostfs" => MountRequest::HostFs {
            dir: option(options, "dir=")?.into(),
        },
        "sefs" => {
            let options = options.ok_or(Errno::EFAULT)?;
            if let Some(mac) = find(options, "mac=") {
                parse_key(mac)?;
            }
            MountRequest::Sefs {
                dir: option(Some(options), "dir=")?.into(),
                key: find(options, "key=").map(parse_key).transpose()?,
            }
        }
        "unionfs" => {
            let options = options.ok_or(Errno::EFAULT)?;
            MountRequest::UnionFs {
                lower: option(Some(options), "lowerdir=")?.into(),
                upper: option(Some(options), "upperdir=")?.into(),
                key: find(options, "key=").map(parse_key).transpose()?,
            }
        }
        "ramfs" => MountRequest::RamFs,
        // devfs, procfs: "unsupported fs type"; anything else: "Unsupported file system type".
        _ => return Err(Errno::EINVAL),
    };
    if target == "/" {
        return Err(Errno::EPERM);
    }
    let target = match target.starts_with('/') {
        true => PathBuf::from(target),
        false => cwd.join(target),
    };
    if flags & REFUSED_FLAGS != 0 {
        return Err(Errno::EINVAL);
    }
    Ok((target, request))
}

fn find<'a>(options: &'a str, prefix: &str) -> Option<&'a str> {
    options.split(',').find_map(|o| o.strip_prefix(prefix))
}

fn option<'a>(options: Option<&'a str>, prefix: &str) -> Result<&'a str, Errno> {
    find(options.ok_or(Errno::EFAULT)?, prefix).ok_or(Errno::EINVAL)
}

/// src/libos/src/fs/fs_ops/mount.rs `do_umount` and `UmountFlags`: not the root, known
/// flags only (MNT_FORCE, MNT_DETACH, UMOUNT_NOFOLLOW).
pub fn parse_umount(target: &str, flags: u64, cwd: &Path) -> Result<PathBuf, Errno> {
    if flags & !(1 | 2 | 8) != 0 {
        return Err(Errno::EINVAL);
    }
    if target == "/" {
        return Err(Errno::EPERM);
    }
    Ok(match target.starts_with('/') {
        true => PathBuf::from(target),
        false => cwd.join(target),
    })
}

/// src/libos/src/process/do_clone.rs, `check_clone_flags`: clone creates threads only.
/// Mandatory: CLONE_VM, CLONE_FS, CLONE_FILES, CLONE_SIGHAND, CLONE_THREAD, CLONE_SYSVSEM,
/// CLONE_SETTLS.
pub const CLONE_MANDATORY: u32 = 0x100 | 0x200 | 0x400 | 0x800 | 0x10000 | 0x40000 | 0x80000;
/// "Unsupported": CLONE_VFORK, CLONE_NEWCGROUP, CLONE_NEWIPC, CLONE_NEWNET, CLONE_NEWNS,
/// CLONE_NEWPID, CLONE_NEWUSER, CLONE_NEWUTS, CLONE_PIDFD, CLONE_PTRACE, CLONE_UNTRACED.
/// Occlum 0.30 tests them with bitflags' `contains`, so it refuses only a call that sets
/// all of them; copied as it is. What keeps processes out is the mandatory set: a
/// fork-like clone or posix_spawn's `CLONE_VM | CLONE_VFORK` lacks CLONE_THREAD.
pub const CLONE_UNSUPPORTED: u32 = 0x4000
    | 0x0200_0000
    | 0x0800_0000
    | 0x4000_0000
    | 0x0002_0000
    | 0x2000_0000
    | 0x1000_0000
    | 0x0400_0000
    | 0x1000
    | 0x2000
    | 0x0080_0000;

/// Whether Occlum's clone accepts `flags`.
pub fn clone_flags_ok(flags: u32) -> bool {
    flags & CLONE_MANDATORY == CLONE_MANDATORY && flags & CLONE_UNSUPPORTED != CLONE_UNSUPPORTED
}

#[cfg(test)]
mod tests {
    use super::*;

    fn eps(list: &[&str]) -> Vec<PathBuf> {
        list.iter().map(PathBuf::from).collect()
    }

    #[test]
    fn program_path_is_a_component_prefix_match() {
        let shim = eps(&["/encc/exec"]);
        assert_eq!(
            validate_program_path(Path::new("/encc/exec"), &shim),
            Ok(())
        );
        for refused in ["/encc/execx", "/bin/sh", "/encc", "/"] {
            assert_eq!(
                validate_program_path(Path::new(refused), &shim),
                Err(Errno::EACCES),
                "{refused}"
            );
        }
        let dir = eps(&["/bin"]);
        assert_eq!(validate_program_path(Path::new("/bin/sh"), &dir), Ok(()));
        assert_eq!(validate_program_path(Path::new("/bin//sh"), &dir), Ok(()));
        assert_eq!(
            validate_program_path(Path::new("/binx/sh"), &dir),
            Err(Errno::EACCES)
        );
        assert_eq!(
            validate_program_path(Path::new("/bin/../etc/x"), &dir),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            validate_program_path(Path::new("bin/sh"), &dir),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn env_merges_like_occlum() {
        let s = |v: &[&str]| v.iter().map(|x| x.to_string()).collect::<Vec<_>>();
        let trusted = s(&["OCCLUM=yes", "LANG=C", "MODE=prod"]);
        let merged = merge_env(
            &trusted,
            &s(&["LANG", "ENCC_IMAGE"]),
            &s(&["LANG=de", "SECRET=x", "ENCC_IMAGE=img", "MODE=host"]),
        );
        assert_eq!(
            merged,
            s(&["OCCLUM=yes", "MODE=prod", "LANG=de", "ENCC_IMAGE=img"])
        );
        assert_eq!(
            combine_trusted_envs(&s(&["MODE=x", "A=1"]), &trusted),
            s(&["MODE=x", "A=1", "OCCLUM=yes", "LANG=C"])
        );
    }

    #[test]
    fn keys_and_mount_options_parse_like_occlum() {
        let key = "00-01-02-03-04-05-06-07-08-09-0a-0b-0c-0d-0e-ff";
        assert_eq!(parse_key(key).unwrap()[15], 0xff);
        assert_eq!(parse_key("00-01"), Err(Errno::EINVAL));
        assert_eq!(parse_key(&key.replace("ff", "zz")), Err(Errno::EINVAL));
        let cwd = Path::new("/");
        let (target, req) = parse_mount(
            "/encc-lower",
            "sefs",
            0,
            Some(&format!("dir=/store/lower,key={key}")),
            cwd,
        )
        .unwrap();
        assert_eq!(target, Path::new("/encc-lower"));
        assert!(matches!(req, MountRequest::Sefs { key: Some(_), .. }));
        let hostfs =
            |flags, target: &str| parse_mount(target, "hostfs", flags, Some("dir=/s"), cwd);
        assert!(hostfs(0, "/s").is_ok());
        assert_eq!(hostfs(4096, "/s"), Err(Errno::EINVAL), "MS_BIND");
        assert_eq!(hostfs(1 << 9, "/s"), Err(Errno::EINVAL), "unknown flag");
        assert_eq!(hostfs(0, "/"), Err(Errno::EPERM));
        assert_eq!(hostfs(0, ""), Err(Errno::ENOENT));
        assert_eq!(hostfs(0, "rel").unwrap().0, Path::new("/rel"));
        assert_eq!(
            parse_mount("/p", "procfs", 0, None, cwd),
            Err(Errno::EINVAL)
        );
        assert_eq!(
            parse_mount("/p", "hostfs", 0, Some("nodir"), cwd),
            Err(Errno::EINVAL)
        );
    }

    #[test]
    fn clone_is_for_threads_only() {
        // glibc's pthread_create flags.
        let thread = CLONE_MANDATORY | 0x0010_0000 | 0x0020_0000;
        assert!(clone_flags_ok(thread));
        assert!(!clone_flags_ok(0x11), "fork-like clone (SIGCHLD only)");
        assert!(
            !clone_flags_ok(0x100 | 0x4000 | 0x11),
            "posix_spawn's VM|VFORK"
        );
        assert!(!clone_flags_ok(thread | CLONE_UNSUPPORTED));
    }
}
