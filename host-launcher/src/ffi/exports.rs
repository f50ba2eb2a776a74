//! Every function `libencc_pal.so` exports: Occlum's six `occlum_pal_*` calls (0 or -1 with
//! errno) and rune's seven `pal_*` calls (0 or a negative errno), declared in
//! `include/encc_pal.h`. Each body runs inside [`guard`] (a panic becomes EIO, never an
//! unwind into C), checks every pointer for NULL, copies C strings out, and calls the safe
//! [`crate::native`] module.

use std::ffi::{c_char, c_int, c_void, CStr};
use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};

use super::{
    guard, occlum_pal_attr_t, occlum_pal_create_process_args, occlum_pal_exec_args, pal_attr_v3_t,
    pal_create_process_args, pal_exec_args, Convention, OCCLUM_PAL_VERSION, RUNE_PAL_VERSION,
};
use crate::native::{self, InitArgs};

/// Test hook: when this variable names an exported call, that call panics inside its
/// panic boundary, so tests can check that a panic becomes an error return.
pub const PANIC_HOOK_ENV: &str = "ENCC_PAL_TEST_PANIC";

/// Most argv/env entries accepted from a caller.
const MAX_VECTOR: usize = 1 << 16;

fn entry(name: &str, convention: Convention, body: impl FnOnce() -> Result<c_int, c_int>) -> c_int {
    guard(convention, || {
        if std::env::var_os(PANIC_HOOK_ENV).is_some_and(|v| v == name) {
            #[allow(clippy::panic)]
            {
                panic!("{PANIC_HOOK_ENV} asked {name} to panic");
            }
        }
        body()
    })
}

/// Copies a C string. NULL or non-UTF-8 is EINVAL.
///
/// # Safety
/// `ptr` is NULL or points to a NUL-terminated string valid for the call.
unsafe fn string(ptr: *const c_char) -> Result<String, c_int> {
    if ptr.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: non-NULL and NUL-terminated per the caller's contract.
    let s = unsafe { CStr::from_ptr(ptr) };
    s.to_str().map(str::to_owned).map_err(|_| libc::EINVAL)
}

/// Copies a NULL-terminated vector of C strings; a NULL vector is empty.
///
/// # Safety
/// `ptr` is NULL or points to a NULL-terminated array of valid C strings.
unsafe fn strings(ptr: *const *const c_char) -> Result<Vec<String>, c_int> {
    let mut out = Vec::new();
    if ptr.is_null() {
        return Ok(out);
    }
    for i in 0..MAX_VECTOR {
        // SAFETY: the array is NULL-terminated and we stop at the terminator.
        let item = unsafe { *ptr.add(i) };
        if item.is_null() {
            return Ok(out);
        }
        // SAFETY: a non-NULL entry is a valid C string per the contract.
        out.push(unsafe { string(item) }?);
    }
    Err(libc::E2BIG)
}

/// The directory this library was loaded from (where `init` is installed beside it).
fn library_dir() -> Option<PathBuf> {
    let mut info = std::mem::MaybeUninit::<libc::Dl_info>::zeroed();
    let addr = library_dir as *const c_void;
    // SAFETY: dladdr only reads the loader's tables and writes `info`; `addr` is code of
    // this library.
    let found = unsafe { libc::dladdr(addr, info.as_mut_ptr()) };
    if found == 0 {
        return None;
    }
    // SAFETY: dladdr succeeded, so `info` is initialised; dli_fname is NULL or a C string
    // owned by the loader for the library's lifetime.
    let fname = unsafe { info.assume_init() }.dli_fname;
    // SAFETY: as above.
    let name = unsafe { string(fname) }.ok()?;
    let path = std::fs::canonicalize(name).ok()?;
    path.parent().map(Path::to_owned)
}

/// Borrows three caller fds for the duration of a call; NULL means 0, 1, 2.
///
/// # Safety
/// The fds stay open for the call (the caller's contract).
unsafe fn stdio<'a>(fds: Option<[c_int; 3]>) -> Result<[BorrowedFd<'a>; 3], c_int> {
    let fds = fds.unwrap_or([0, 1, 2]);
    if fds.iter().any(|fd| *fd < 0) {
        return Err(libc::EBADF);
    }
    // SAFETY: non-negative fds the caller keeps open during the call.
    Ok(fds.map(|fd| unsafe { BorrowedFd::borrow_raw(fd) }))
}

/// Shared create_process body.
///
/// # Safety
/// All pointers follow the PAL ABI contract.
unsafe fn create_process(
    path: *const c_char,
    argv: *const *const c_char,
    env: *const *const c_char,
    fds: Option<[c_int; 3]>,
    pid: *mut c_int,
) -> Result<c_int, c_int> {
    if pid.is_null() || argv.is_null() {
        return Err(libc::EINVAL);
    }
    // SAFETY: per the contract.
    let (path, argv, env) = unsafe { (string(path)?, strings(argv)?, strings(env)?) };
    // SAFETY: per the contract.
    let stdio = unsafe { stdio(fds) }?;
    let new_pid = native::create_process(&path, &argv, &env, stdio)?;
    // SAFETY: checked non-NULL; the caller provides a writable int.
    unsafe { *pid = new_pid };
    Ok(0)
}

/// Shared exec body.
///
/// # Safety
/// `exit_value` is NULL or writable.
unsafe fn exec(pid: c_int, exit_value: *mut c_int) -> Result<c_int, c_int> {
    if exit_value.is_null() {
        return Err(libc::EINVAL);
    }
    let status = native::exec(pid)?;
    // SAFETY: checked non-NULL.
    unsafe { *exit_value = status };
    Ok(0)
}

// ---- Occlum ---------------------------------------------------------------------------------

/// `occlum_pal_get_version`.
#[no_mangle]
pub extern "C" fn occlum_pal_get_version() -> c_int {
    entry("occlum_pal_get_version", Convention::Occlum, || {
        Ok(OCCLUM_PAL_VERSION)
    })
}

/// `occlum_pal_init`: `instance_dir/boot.json` is the boot config; the image reference is
/// the untrusted `ENCC_IMAGE` variable.
///
/// # Safety
/// `attr` is NULL or points to a valid `occlum_pal_attr_t`.
#[no_mangle]
pub unsafe extern "C" fn occlum_pal_init(attr: *const occlum_pal_attr_t) -> c_int {
    entry("occlum_pal_init", Convention::Occlum, || {
        if attr.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL per the check; valid per the contract.
        let attr = unsafe { *attr };
        // SAFETY: members are NULL or C strings per the contract.
        let dir = unsafe { string(attr.instance_dir) }?;
        let log_level = if attr.log_level.is_null() {
            None
        } else {
            // SAFETY: as above.
            Some(unsafe { string(attr.log_level) }?)
        };
        let image = std::env::var(native::IMAGE_ENV).map_err(|_| {
            log::error!(
                "{} must name the image for occlum_pal_init",
                native::IMAGE_ENV
            );
            libc::EINVAL
        })?;
        let args = InitArgs {
            boot_config: Path::new(&dir).join(encc_interface::names::BOOT_CONFIG_FILE),
            image,
            log_level,
        };
        native::init(&args, library_dir().as_deref()).map(|()| 0)
    })
}

/// `occlum_pal_create_process`.
///
/// # Safety
/// `args` is NULL or valid per `occlum_pal_api.h`.
#[no_mangle]
pub unsafe extern "C" fn occlum_pal_create_process(
    args: *mut occlum_pal_create_process_args,
) -> c_int {
    entry("occlum_pal_create_process", Convention::Occlum, || {
        if args.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL; valid per the contract.
        let a = unsafe { *args };
        let fds = if a.stdio.is_null() {
            None
        } else {
            // SAFETY: non-NULL; valid per the contract.
            let s = unsafe { *a.stdio };
            Some([s.stdin_fd, s.stdout_fd, s.stderr_fd])
        };
        // SAFETY: per the contract.
        unsafe { create_process(a.path, a.argv, a.env, fds, a.pid) }
    })
}

/// `occlum_pal_exec`.
///
/// # Safety
/// `args` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn occlum_pal_exec(args: *mut occlum_pal_exec_args) -> c_int {
    entry("occlum_pal_exec", Convention::Occlum, || {
        if args.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL; valid per the contract.
        let a = unsafe { *args };
        // SAFETY: per the contract.
        unsafe { exec(a.pid, a.exit_value) }
    })
}

/// `occlum_pal_kill`.
#[no_mangle]
pub extern "C" fn occlum_pal_kill(pid: c_int, sig: c_int) -> c_int {
    entry("occlum_pal_kill", Convention::Occlum, || {
        native::kill(pid, sig).map(|()| 0)
    })
}

/// `occlum_pal_destroy`.
#[no_mangle]
pub extern "C" fn occlum_pal_destroy() -> c_int {
    entry("occlum_pal_destroy", Convention::Occlum, || {
        native::destroy().map(|()| 0)
    })
}

/// `encc_pal_entry_program`: copies the entry program recorded by stage 1 into `buf`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn encc_pal_entry_program(buf: *mut c_char, len: usize) -> c_int {
    entry("encc_pal_entry_program", Convention::Occlum, || {
        if buf.is_null() {
            return Err(libc::EINVAL);
        }
        let program = native::entry_program()?;
        // SAFETY: `buf` is non-NULL and writable for `len` bytes per the contract.
        unsafe { copy_c_string(&program, buf, len) }
    })
}

/// `encc_pal_last_error`: copies the explanation of the last failed PAL call into `buf`.
///
/// # Safety
/// `buf` is NULL or writable for `len` bytes.
#[no_mangle]
pub unsafe extern "C" fn encc_pal_last_error(buf: *mut c_char, len: usize) -> c_int {
    entry("encc_pal_last_error", Convention::Occlum, || {
        if buf.is_null() {
            return Err(libc::EINVAL);
        }
        let message = native::last_error().ok_or(libc::ENOENT)?;
        // A message with a NUL byte is cut there rather than refused.
        let message = message.split('\0').next().unwrap_or_default();
        // SAFETY: `buf` is non-NULL and writable for `len` bytes per the contract.
        unsafe { copy_c_string(message, buf, len) }
    })
}

/// Copies `text` and a NUL into `buf`; returns the length without the NUL.
///
/// # Safety
/// `buf` is non-NULL and writable for `len` bytes.
unsafe fn copy_c_string(text: &str, buf: *mut c_char, len: usize) -> Result<c_int, c_int> {
    let bytes = text.as_bytes();
    if bytes.len() >= len || bytes.contains(&0) {
        return Err(libc::ENOSPC);
    }
    // SAFETY: `buf` is writable for `len` > bytes.len() bytes; the regions are disjoint.
    unsafe {
        std::ptr::copy_nonoverlapping(bytes.as_ptr().cast::<c_char>(), buf, bytes.len());
        *buf.add(bytes.len()) = 0;
    }
    c_int::try_from(bytes.len()).map_err(|_| libc::ENOSPC)
}

// ---- rune -----------------------------------------------------------------------------------

/// `pal_get_version`: API v3.
#[no_mangle]
pub extern "C" fn pal_get_version() -> c_int {
    entry("pal_get_version", Convention::Rune, || Ok(RUNE_PAL_VERSION))
}

/// `pal_init` (v3 attr): `args` holds `boot_config=PATH image=REF [log_level=LEVEL]`.
///
/// # Safety
/// `attr` is NULL or points to a valid `pal_attr_v3_t`.
#[no_mangle]
pub unsafe extern "C" fn pal_init(attr: *const pal_attr_v3_t) -> c_int {
    entry("pal_init", Convention::Rune, || {
        if attr.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL; valid per the contract.
        let attr = unsafe { *attr };
        // SAFETY: a C string per the contract.
        let text = unsafe { string(attr.attr_v1.args) }?;
        let mut args = native::parse_rune_args(&text).map_err(|e| {
            log::error!("{e}");
            libc::EINVAL
        })?;
        if args.log_level.is_none() && !attr.attr_v1.log_level.is_null() {
            // SAFETY: a C string per the contract.
            args.log_level = Some(unsafe { string(attr.attr_v1.log_level) }?);
        }
        native::init(&args, library_dir().as_deref()).map(|()| 0)
    })
}

/// `pal_create_process`.
///
/// # Safety
/// `args` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn pal_create_process(args: *mut pal_create_process_args) -> c_int {
    entry("pal_create_process", Convention::Rune, || {
        if args.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL; valid per the contract.
        let a = unsafe { *args };
        let fds = if a.stdio.is_null() {
            None
        } else {
            // SAFETY: non-NULL; valid per the contract.
            let s = unsafe { *a.stdio };
            Some([s.stdin_fd, s.stdout_fd, s.stderr_fd])
        };
        // SAFETY: per the contract.
        unsafe { create_process(a.path, a.argv as _, a.env as _, fds, a.pid) }
    })
}

/// `pal_exec`.
///
/// # Safety
/// `args` is NULL or valid.
#[no_mangle]
pub unsafe extern "C" fn pal_exec(args: *mut pal_exec_args) -> c_int {
    entry("pal_exec", Convention::Rune, || {
        if args.is_null() {
            return Err(libc::EINVAL);
        }
        // SAFETY: non-NULL; valid per the contract.
        let a = unsafe { *args };
        // SAFETY: per the contract.
        unsafe { exec(a.pid, a.exit_value) }
    })
}

/// `pal_kill`.
#[no_mangle]
pub extern "C" fn pal_kill(pid: c_int, sig: c_int) -> c_int {
    entry("pal_kill", Convention::Rune, || {
        native::kill(pid, sig).map(|()| 0)
    })
}

/// `pal_destroy`.
#[no_mangle]
pub extern "C" fn pal_destroy() -> c_int {
    entry("pal_destroy", Convention::Rune, || {
        native::destroy().map(|()| 0)
    })
}

/// `pal_get_local_report`: the native platform has no SGX report to give (ENOTSUP).
///
/// # Safety
/// Pointers are not dereferenced.
#[no_mangle]
pub unsafe extern "C" fn pal_get_local_report(
    _targetinfo: *mut c_void,
    _targetinfo_len: c_int,
    _report: *mut c_void,
    _report_len: *mut c_int,
) -> c_int {
    entry("pal_get_local_report", Convention::Rune, || {
        log::error!("pal_get_local_report: the native platform has no SGX report");
        Err(libc::ENOTSUP)
    })
}
