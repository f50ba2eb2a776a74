//! Occlum's MountRootFS system call: its number, the `user_rootfs_config` struct it reads
//! and the one unsafe call, behind [`mount_rootfs`].
//!
//! Checked against Occlum 0.29–0.30 (`src/libos/src/syscall/mod.rs`:
//! `(MountRootFS = 363) => do_mount_rootfs(key_ptr: *const sgx_key_128bit_t,
//! rootfs_config_ptr: *const user_rootfs_config)`, and `src/libos/src/config.rs`, which
//! rejects a config whose `len` is not `size_of::<user_rootfs_config>()`). A NULL key makes
//! Occlum derive the SEFS key from the enclave's sealing key; a NULL path keeps the value
//! from Occlum.json; a NULL `hostfs_target` means "/host".

#![allow(unsafe_code)]

use std::ffi::{c_char, c_long, CString};
use std::io;
use std::mem::size_of;
use std::ptr;

/// Occlum's MountRootFS (syscall 363). Unassigned on Linux x86_64 (numbers 335–423 are
/// skipped there), where it fails with ENOSYS.
pub(super) const SYS_MOUNT_ROOTFS: c_long = 363;

/// `sgx_key_128bit_t`: the SEFS key, passed by pointer.
#[allow(non_camel_case_types)]
pub(super) type sgx_key_128bit_t = [u8; 16];

/// `user_rootfs_config` as Occlum's LibOS reads it from the caller's memory.
#[repr(C)]
#[allow(non_camel_case_types)]
#[derive(Debug, Clone, Copy)]
pub(super) struct user_rootfs_config {
    /// `size_of::<user_rootfs_config>()`; Occlum checks it (EINVAL otherwise).
    pub len: usize,
    /// Host path of the read-write SEFS layer (UnionFS upper layer).
    pub upper_layer_path: *const c_char,
    /// Host path of the read-only SEFS layer (UnionFS lower layer, the image).
    pub lower_layer_path: *const c_char,
    /// Replaces Occlum.json's `entry_points` for the app stage.
    pub entry_point: *const c_char,
    /// Host directory for the app stage's (first) hostfs mount.
    pub hostfs_source: *const c_char,
    /// Its mount point; NULL means "/host".
    pub hostfs_target: *const c_char,
    /// NULL-terminated `NAME=value` array merged over Occlum.json's `env.default`.
    pub envp: *const *const c_char,
}

/// The owned strings behind one [`user_rootfs_config`].
#[derive(Debug)]
pub(super) struct RootfsArgs {
    pub upper_layer: CString,
    pub lower_layer: CString,
    pub entry_point: CString,
    pub hostfs_source: Option<CString>,
    pub hostfs_target: Option<CString>,
    /// Empty: no envp (Occlum keeps `env.default`).
    pub env: Vec<CString>,
}

/// Calls MountRootFS with `args` and `key` (None: Occlum's sealing-key-derived key).
pub(super) fn mount_rootfs(key: Option<&sgx_key_128bit_t>, args: &RootfsArgs) -> io::Result<()> {
    let optional = |s: &Option<CString>| s.as_ref().map_or(ptr::null(), |s| s.as_ptr());
    let envp: Vec<*const c_char> = args
        .env
        .iter()
        .map(|e| e.as_ptr())
        .chain(std::iter::once(ptr::null()))
        .collect();
    let config = user_rootfs_config {
        len: size_of::<user_rootfs_config>(),
        upper_layer_path: args.upper_layer.as_ptr(),
        lower_layer_path: args.lower_layer.as_ptr(),
        entry_point: args.entry_point.as_ptr(),
        hostfs_source: optional(&args.hostfs_source),
        hostfs_target: optional(&args.hostfs_target),
        envp: if args.env.is_empty() {
            ptr::null()
        } else {
            envp.as_ptr()
        },
    };
    let key_ptr: *const sgx_key_128bit_t = key.map_or(ptr::null(), ptr::from_ref);
    // SAFETY: `config`, the strings and the envp array it points to (owned by `args` and
    // `envp`) and the key all outlive the call; Occlum only reads them. On a kernel without
    // this syscall the call has no effect and fails with ENOSYS.
    let ret = unsafe { libc::syscall(SYS_MOUNT_ROOTFS, key_ptr, &config as *const _) };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of};

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn user_rootfs_config_matches_occlum_on_x86_64() {
        type C = user_rootfs_config;
        assert_eq!((size_of::<C>(), align_of::<C>()), (56, 8));
        assert_eq!(offset_of!(C, len), 0);
        assert_eq!(offset_of!(C, upper_layer_path), 8);
        assert_eq!(offset_of!(C, lower_layer_path), 16);
        assert_eq!(offset_of!(C, entry_point), 24);
        assert_eq!(offset_of!(C, hostfs_source), 32);
        assert_eq!(offset_of!(C, hostfs_target), 40);
        assert_eq!(offset_of!(C, envp), 48);
        assert_eq!(
            (
                size_of::<sgx_key_128bit_t>(),
                align_of::<sgx_key_128bit_t>()
            ),
            (16, 1)
        );
    }

    /// On Linux x86_64 outside Occlum, 363 is not a system call: the whole marshalling path
    /// runs and the kernel answers ENOSYS (EPERM under a seccomp filter that denies it).
    #[cfg(all(target_os = "linux", target_arch = "x86_64"))]
    #[test]
    fn outside_occlum_the_syscall_is_not_there() {
        let c = |s: &str| CString::new(s).unwrap();
        let args = RootfsArgs {
            upper_layer: c("run/upper"),
            lower_layer: c("run/lower"),
            entry_point: c("/.encc/exec"),
            hostfs_source: Some(c("/var/lib/encc")),
            hostfs_target: None,
            env: vec![c("A=1")],
        };
        let err = mount_rootfs(Some(&[7; 16]), &args).unwrap_err();
        assert!(
            matches!(err.raw_os_error(), Some(libc::ENOSYS) | Some(libc::EPERM)),
            "{err}"
        );
    }
}
