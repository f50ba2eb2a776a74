//! The PAL ABI: every C type, symbol name and function-pointer type that encc shares with
//! Occlum-style launchers and with rune, plus the panic boundary for the exported functions.
//!
//! Two symbol sets, one library (`include/encc_pal.h` is the C side of this file):
//!
//! - **Occlum** (`occlum_pal_api.h`, `OCCLUM_PAL_VERSION` 2): `occlum_pal_get_version`,
//!   `occlum_pal_init`, `occlum_pal_create_process`, `occlum_pal_exec`, `occlum_pal_kill`,
//!   `occlum_pal_destroy`. They return 0 on success, or -1 with `errno` set.
//! - **rune** (inclavare-containers "Enclave Runtime PAL API" v2 and v3): the same calls named
//!   `pal_*`, plus `pal_get_local_report` (v3). They return 0 on success or a negative errno.
//!
//! Differences from the published texts, all checked against the sources rune is built from:
//! - rune's `spec_v2.md` shows `pal_create_process_args` and `pal_exec_args` with
//!   `__attribute__((packed))` and `char *argv[]` members; rune itself (its cgo callers and the
//!   skeleton PAL's `liberpal-skeleton.h`) declares them unpacked with `char **argv`. Packing
//!   would change `pal_exec_args` (12 bytes instead of 16), so the unpacked layout is the ABI.
//! - rune names the stdio members `stdin`, `stdout`, `stderr`; those are libc macros, so the
//!   header and this file call them `stdin_fd`, `stdout_fd`, `stderr_fd` (same layout).
//! - `pal_init` takes `pal_attr_v3_t *` when `pal_get_version` returns 3 (what this library
//!   reports), and a bare `pal_attr_v1_t *` (= `pal_attr_t`) for versions 1 and 2.
//!
//! Layouts are fixed for x86_64 Linux (LP64), the only platform Occlum and rune support; the
//! tests check every size, alignment and offset, and `tests/pal_header.rs` checks them against
//! a C compiler.
//!
//! Kept hand-written: `bindgen` would need libclang and Occlum's headers at build time for the
//! handful of structs and function types below, whose layouts the tests already pin.

#![allow(non_camel_case_types)]

mod exports;

pub use exports::PANIC_HOOK_ENV;

use std::ffi::{c_char, c_int, c_void};
use std::panic::{catch_unwind, AssertUnwindSafe};

/// `OCCLUM_PAL_VERSION`: the Occlum PAL API version this library implements.
pub const OCCLUM_PAL_VERSION: c_int = 2;

/// The rune PAL API version this library reports from `pal_get_version`.
pub const RUNE_PAL_VERSION: c_int = 3;

/// The six Occlum entry points, in the order a launcher calls them.
pub const OCCLUM_PAL_SYMBOLS: [&str; 6] = [
    "occlum_pal_get_version",
    "occlum_pal_init",
    "occlum_pal_create_process",
    "occlum_pal_exec",
    "occlum_pal_kill",
    "occlum_pal_destroy",
];

/// The seven rune entry points (API v3).
pub const RUNE_PAL_SYMBOLS: [&str; 7] = [
    "pal_get_version",
    "pal_init",
    "pal_create_process",
    "pal_exec",
    "pal_kill",
    "pal_destroy",
    "pal_get_local_report",
];

// ---- Occlum (occlum_pal_api.h, PAL version 2) ----------------------------------------------

/// `occlum_pal_attr_t`: the argument of `occlum_pal_init`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct occlum_pal_attr_t {
    /// The Occlum instance directory (Occlum's default is ".").
    pub instance_dir: *const c_char,
    /// "off", "error", "warn", "info", "debug" or "trace"; NULL means "off".
    pub log_level: *const c_char,
}

/// `occlum_stdio_fds_t`: host file descriptors for the new process's standard I/O.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct occlum_stdio_fds_t {
    pub stdin_fd: c_int,
    pub stdout_fd: c_int,
    pub stderr_fd: c_int,
}

/// `struct occlum_pal_create_process_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct occlum_pal_create_process_args {
    /// Path of the program inside the enclave; mandatory.
    pub path: *const c_char,
    /// NULL-terminated argument vector (argv[0] by convention the program name); mandatory.
    pub argv: *const *const c_char,
    /// NULL-terminated untrusted environment (`NAME=value`); optional.
    pub env: *const *const c_char,
    /// Standard I/O; NULL means the launcher's own.
    pub stdio: *const occlum_stdio_fds_t,
    /// Output: the new process's pid; mandatory.
    pub pid: *mut c_int,
}

/// `struct occlum_pal_exec_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct occlum_pal_exec_args {
    /// A pid returned by `occlum_pal_create_process`.
    pub pid: c_int,
    /// Output: the exit status in wait(2) encoding; mandatory.
    pub exit_value: *mut c_int,
}

// ---- rune (Enclave Runtime PAL API v2/v3) -----------------------------------------------------

/// `pal_attr_v1_t` (`struct pal_attr_t` in the spec): the argument of `pal_init` for API v1/v2.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pal_attr_v1_t {
    /// The `enclave.runtime.args` annotation, commas already turned into spaces by rune.
    pub args: *const c_char,
    /// The `enclave.runtime.loglevel` annotation.
    pub log_level: *const c_char,
}

/// `pal_attr_t`: the v1/v2 name of [`pal_attr_v1_t`].
pub type pal_attr_t = pal_attr_v1_t;

/// `pal_attr_v3_t`: the argument of `pal_init` for API v3.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pal_attr_v3_t {
    pub attr_v1: pal_attr_v1_t,
    /// An SGX enclave fd created by rune, or -1 when the PAL creates its own enclave.
    pub fd: c_int,
    /// The base address of that enclave (meaningful only when `fd` is not -1).
    pub addr: u64,
}

/// `pal_stdio_fds`.
#[repr(C)]
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct pal_stdio_fds {
    pub stdin_fd: c_int,
    pub stdout_fd: c_int,
    pub stderr_fd: c_int,
}

/// `pal_create_process_args` (rune's members are not const-qualified).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pal_create_process_args {
    pub path: *mut c_char,
    pub argv: *mut *mut c_char,
    pub env: *mut *mut c_char,
    pub stdio: *mut pal_stdio_fds,
    pub pid: *mut c_int,
}

/// `pal_exec_args`.
#[repr(C)]
#[derive(Debug, Clone, Copy)]
pub struct pal_exec_args {
    pub pid: c_int,
    pub exit_value: *mut c_int,
}

// ---- Function-pointer types for loading a PAL ----------------------------------------------

pub type OcclumPalGetVersionFn = unsafe extern "C" fn() -> c_int;
pub type OcclumPalInitFn = unsafe extern "C" fn(attr: *const occlum_pal_attr_t) -> c_int;
pub type OcclumPalCreateProcessFn =
    unsafe extern "C" fn(args: *mut occlum_pal_create_process_args) -> c_int;
pub type OcclumPalExecFn = unsafe extern "C" fn(args: *mut occlum_pal_exec_args) -> c_int;
pub type OcclumPalKillFn = unsafe extern "C" fn(pid: c_int, sig: c_int) -> c_int;
pub type OcclumPalDestroyFn = unsafe extern "C" fn() -> c_int;

/// `encc_pal_entry_program(buf, len)`: encc's own extension (not part of Occlum's or rune's
/// ABI) that tells a launcher which program `create_process` may start, after `init`.
/// Returns the string length (without NUL) or -1 with errno (EINVAL before init, ENOSPC).
pub type EnccPalEntryProgramFn = unsafe extern "C" fn(buf: *mut c_char, len: usize) -> c_int;
/// `encc_pal_last_error(buf, len)`: encc's own extension that tells a launcher why the most
/// recent call failed, as one line naming the object and the cause (the enclave's
/// own error text for `init`). At most [`ENCC_PAL_LAST_ERROR_MAX`] bytes and a NUL. Returns
/// the string length or -1 with errno (ENOENT when the most recent call did not fail with a
/// reason, EINVAL, ENOSPC).
pub type EnccPalLastErrorFn = unsafe extern "C" fn(buf: *mut c_char, len: usize) -> c_int;

/// Longest text `encc_pal_last_error` returns (without its NUL).
pub const ENCC_PAL_LAST_ERROR_MAX: usize = crate::native::LAST_ERROR_MAX;

/// encc's optional extensions: a launcher looks them up with dlsym and does without them
/// (Occlum's own PAL has neither).
pub const ENCC_PAL_EXTENSIONS: [&str; 2] = ["encc_pal_entry_program", "encc_pal_last_error"];
pub type PalGetVersionFn = unsafe extern "C" fn() -> c_int;
/// `pal_init` as called by rune for API v1 and v2.
pub type PalInitV1Fn = unsafe extern "C" fn(attr: *const pal_attr_v1_t) -> c_int;
/// `pal_init` as called by rune for API v3.
pub type PalInitV3Fn = unsafe extern "C" fn(attr: *const pal_attr_v3_t) -> c_int;
pub type PalCreateProcessFn = unsafe extern "C" fn(args: *mut pal_create_process_args) -> c_int;
pub type PalExecFn = unsafe extern "C" fn(args: *mut pal_exec_args) -> c_int;
pub type PalKillFn = unsafe extern "C" fn(pid: c_int, sig: c_int) -> c_int;
pub type PalDestroyFn = unsafe extern "C" fn() -> c_int;
pub type PalGetLocalReportFn = unsafe extern "C" fn(
    targetinfo: *mut c_void,
    targetinfo_len: c_int,
    report: *mut c_void,
    report_len: *mut c_int,
) -> c_int;

// ---- Panic boundary ---------------------------------------------------------------------------

/// Which error convention an exported function follows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Convention {
    /// `occlum_pal_*`: -1 with `errno` set.
    Occlum,
    /// `pal_*` (rune): the negative errno.
    Rune,
}

/// Runs the body of an exported function: `Ok(v)` returns `v`, `Err(errno)` returns the error
/// in `convention`, and a panic (caught here, never unwound into C) is reported as `EIO`.
///
/// The body is run as [`AssertUnwindSafe`]: shared state it touches must stay consistent if it
/// panics halfway (a poisoned `Mutex` is the usual sign, and callers should treat it as EIO).
pub fn guard<F>(convention: Convention, body: F) -> c_int
where
    F: FnOnce() -> Result<c_int, c_int>,
{
    let errno = match catch_unwind(AssertUnwindSafe(body)) {
        Ok(Ok(value)) => return value,
        Ok(Err(errno)) => errno,
        Err(_) => libc::EIO,
    };
    // An errno of 0 or below would read as success (or garbage) to the caller.
    let errno = if errno > 0 { errno } else { libc::EIO };
    match convention {
        Convention::Occlum => {
            set_errno(errno);
            -1
        }
        Convention::Rune => -errno,
    }
}

fn set_errno(errno: c_int) {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for writes
    // for the thread's lifetime.
    unsafe { *libc::__errno_location() = errno };
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::mem::{align_of, offset_of, size_of};

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn occlum_layouts_match_x86_64_c() {
        assert_eq!(
            (
                size_of::<occlum_pal_attr_t>(),
                align_of::<occlum_pal_attr_t>()
            ),
            (16, 8)
        );
        assert_eq!(offset_of!(occlum_pal_attr_t, instance_dir), 0);
        assert_eq!(offset_of!(occlum_pal_attr_t, log_level), 8);

        assert_eq!(
            (
                size_of::<occlum_stdio_fds_t>(),
                align_of::<occlum_stdio_fds_t>()
            ),
            (12, 4)
        );
        assert_eq!(offset_of!(occlum_stdio_fds_t, stdin_fd), 0);
        assert_eq!(offset_of!(occlum_stdio_fds_t, stdout_fd), 4);
        assert_eq!(offset_of!(occlum_stdio_fds_t, stderr_fd), 8);

        type Cp = occlum_pal_create_process_args;
        assert_eq!((size_of::<Cp>(), align_of::<Cp>()), (40, 8));
        assert_eq!(offset_of!(Cp, path), 0);
        assert_eq!(offset_of!(Cp, argv), 8);
        assert_eq!(offset_of!(Cp, env), 16);
        assert_eq!(offset_of!(Cp, stdio), 24);
        assert_eq!(offset_of!(Cp, pid), 32);

        type Ex = occlum_pal_exec_args;
        assert_eq!((size_of::<Ex>(), align_of::<Ex>()), (16, 8));
        assert_eq!(offset_of!(Ex, pid), 0);
        assert_eq!(offset_of!(Ex, exit_value), 8);
    }

    #[cfg(target_arch = "x86_64")]
    #[test]
    fn rune_layouts_match_x86_64_c() {
        assert_eq!(
            (size_of::<pal_attr_v1_t>(), align_of::<pal_attr_v1_t>()),
            (16, 8)
        );
        assert_eq!(offset_of!(pal_attr_v1_t, args), 0);
        assert_eq!(offset_of!(pal_attr_v1_t, log_level), 8);

        assert_eq!(
            (size_of::<pal_attr_v3_t>(), align_of::<pal_attr_v3_t>()),
            (32, 8)
        );
        assert_eq!(offset_of!(pal_attr_v3_t, attr_v1), 0);
        assert_eq!(offset_of!(pal_attr_v3_t, fd), 16);
        assert_eq!(offset_of!(pal_attr_v3_t, addr), 24);

        assert_eq!(
            (size_of::<pal_stdio_fds>(), align_of::<pal_stdio_fds>()),
            (12, 4)
        );
        assert_eq!(offset_of!(pal_stdio_fds, stdin_fd), 0);
        assert_eq!(offset_of!(pal_stdio_fds, stdout_fd), 4);
        assert_eq!(offset_of!(pal_stdio_fds, stderr_fd), 8);

        type Cp = pal_create_process_args;
        assert_eq!((size_of::<Cp>(), align_of::<Cp>()), (40, 8));
        assert_eq!(offset_of!(Cp, path), 0);
        assert_eq!(offset_of!(Cp, argv), 8);
        assert_eq!(offset_of!(Cp, env), 16);
        assert_eq!(offset_of!(Cp, stdio), 24);
        assert_eq!(offset_of!(Cp, pid), 32);

        // Unpacked, as rune builds it (the spec's `packed` would make this 12 bytes).
        assert_eq!(
            (size_of::<pal_exec_args>(), align_of::<pal_exec_args>()),
            (16, 8)
        );
        assert_eq!(offset_of!(pal_exec_args, pid), 0);
        assert_eq!(offset_of!(pal_exec_args, exit_value), 8);
    }

    #[test]
    fn symbol_sets_are_the_two_abis() {
        for (occlum, rune) in OCCLUM_PAL_SYMBOLS.iter().zip(RUNE_PAL_SYMBOLS.iter()) {
            assert_eq!(occlum.strip_prefix("occlum_"), Some(*rune));
        }
        assert_eq!(RUNE_PAL_SYMBOLS[6], "pal_get_local_report");
    }

    fn errno() -> c_int {
        std::io::Error::last_os_error().raw_os_error().unwrap_or(0)
    }

    #[test]
    fn guard_passes_values_through() {
        assert_eq!(guard(Convention::Occlum, || Ok(0)), 0);
        assert_eq!(guard(Convention::Rune, || Ok(2)), 2);
    }

    #[test]
    fn guard_reports_errors_in_each_convention() {
        set_errno(0);
        assert_eq!(guard(Convention::Occlum, || Err(libc::EACCES)), -1);
        assert_eq!(errno(), libc::EACCES);
        assert_eq!(guard(Convention::Rune, || Err(libc::EINVAL)), -libc::EINVAL);
    }

    #[test]
    fn guard_never_reports_success_for_an_error() {
        set_errno(0);
        assert_eq!(guard(Convention::Occlum, || Err(0)), -1);
        assert_eq!(errno(), libc::EIO);
        assert_eq!(guard(Convention::Rune, || Err(-5)), -libc::EIO);
    }

    #[test]
    fn guard_turns_a_panic_into_eio() {
        set_errno(0);
        let ret = guard(Convention::Occlum, || {
            panic!("forced panic in an occlum_pal_* body")
        });
        assert_eq!(ret, -1);
        assert_eq!(errno(), libc::EIO);
        let ret = guard(Convention::Rune, || panic!("forced panic in a pal_* body"));
        assert_eq!(ret, -libc::EIO);
    }
}
