//! The unsafe half of the loader: dlopen of a PAL library, dlsym of the Occlum symbol set
//! and the raw calls, each behind a safe method that owns the pointers it passes.

use std::ffi::{c_char, c_int, CStr, CString, NulError, OsStr};
use std::io;
use std::os::unix::ffi::OsStrExt;
use std::path::Path;
use std::ptr;

use libloading::os::unix::Library;

use crate::ffi::{
    occlum_pal_attr_t, occlum_pal_create_process_args, occlum_pal_exec_args, occlum_stdio_fds_t,
    EnccPalEntryProgramFn, EnccPalLastErrorFn, OcclumPalCreateProcessFn, OcclumPalDestroyFn,
    OcclumPalExecFn, OcclumPalGetVersionFn, OcclumPalInitFn, OcclumPalKillFn,
};

/// Why a PAL library could not be opened.
#[derive(Debug)]
pub(super) enum OpenError {
    Library(libloading::Error),
    Symbol(&'static str, libloading::Error),
}

/// The resolved Occlum entry points of one PAL library.
pub(super) struct OcclumSymbols {
    get_version: OcclumPalGetVersionFn,
    init: OcclumPalInitFn,
    create_process: OcclumPalCreateProcessFn,
    exec: OcclumPalExecFn,
    kill: OcclumPalKillFn,
    destroy: OcclumPalDestroyFn,
    /// encc's optional extension (absent from Occlum's own PAL).
    entry_program: Option<EnccPalEntryProgramFn>,
    /// encc's optional extension (absent from Occlum's own PAL).
    last_error: Option<EnccPalLastErrorFn>,
    /// Keeps the library loaded while the pointers above are callable.
    _library: Library,
}

impl OcclumSymbols {
    pub(super) fn open(path: &Path) -> Result<Self, OpenError> {
        // RTLD_NOW: fail here, not mid-launch, on an unresolved symbol. RTLD_NODELETE: a PAL
        // may leave threads running (a PAL that was never destroyed), so its code stays
        // mapped even after this handle is closed.
        let flags = libc::RTLD_NOW | libc::RTLD_LOCAL | libc::RTLD_NODELETE;
        // SAFETY: dlopen runs the library's initialisers. The PAL library is chosen by the
        // operator (like the program it launches) and is trusted as much as this binary.
        let library = unsafe { Library::open(Some(path), flags) }.map_err(OpenError::Library)?;
        // SAFETY (all six): each symbol has the C type of occlum_pal_api.h, mirrored by the
        // function-pointer types in `ffi`; the copied pointers live no longer than `_library`.
        let symbols = unsafe {
            Self {
                get_version: symbol(&library, "occlum_pal_get_version")?,
                init: symbol(&library, "occlum_pal_init")?,
                create_process: symbol(&library, "occlum_pal_create_process")?,
                exec: symbol(&library, "occlum_pal_exec")?,
                kill: symbol(&library, "occlum_pal_kill")?,
                destroy: symbol(&library, "occlum_pal_destroy")?,
                entry_program: symbol(&library, "encc_pal_entry_program").ok(),
                last_error: symbol(&library, "encc_pal_last_error").ok(),
                _library: library,
            }
        };
        Ok(symbols)
    }

    /// `encc_pal_entry_program()` when the library has it.
    pub(super) fn entry_program(&self) -> Option<io::Result<String>> {
        let call = self.entry_program?;
        let mut buf = vec![0u8; 4096];
        // SAFETY: `buf` is writable for its length; the function writes at most that many
        // bytes, NUL included.
        let ret = unsafe { call(buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
        Some(check(ret).map(|n| {
            buf.truncate(usize::try_from(n).unwrap_or(0));
            String::from_utf8_lossy(&buf).into_owned()
        }))
    }

    /// `encc_pal_last_error()` when the library has it; `None` also when no call failed.
    pub(super) fn last_error(&self) -> Option<String> {
        let call = self.last_error?;
        let mut buf = vec![0u8; 16 * 1024];
        // SAFETY: `buf` is writable for its length; the function writes at most that many
        // bytes, NUL included.
        let ret = unsafe { call(buf.as_mut_ptr().cast::<c_char>(), buf.len()) };
        let n = usize::try_from(ret).ok()?;
        buf.truncate(n);
        Some(String::from_utf8_lossy(&buf).into_owned())
    }

    /// `occlum_pal_get_version()`, returned as is (> 0 is a version).
    pub(super) fn get_version(&self) -> c_int {
        // SAFETY: no arguments; the library is loaded.
        unsafe { (self.get_version)() }
    }

    pub(super) fn init(&self, instance_dir: &CStr, log_level: Option<&CStr>) -> io::Result<()> {
        let attr = occlum_pal_attr_t {
            instance_dir: instance_dir.as_ptr(),
            log_level: log_level.map_or(ptr::null(), CStr::as_ptr),
        };
        clear_errno();
        // SAFETY: `attr` and the strings it points to outlive the call; the PAL only reads.
        let ret = unsafe { (self.init)(&attr) };
        check(ret).map(drop)
    }

    pub(super) fn create_process(
        &self,
        path: &CStr,
        argv: &CStrArray,
        env: &CStrArray,
        stdio: Option<&occlum_stdio_fds_t>,
    ) -> io::Result<c_int> {
        let mut pid: c_int = -1;
        let mut args = occlum_pal_create_process_args {
            path: path.as_ptr(),
            argv: argv.as_ptr(),
            env: env.as_ptr(),
            stdio: stdio.map_or(ptr::null(), ptr::from_ref),
            pid: &mut pid,
        };
        clear_errno();
        // SAFETY: every pointer in `args` is valid and NULL-terminated where the ABI says so
        // (`CStrArray`) for the duration of the call; `pid` is a live, writable c_int.
        let ret = unsafe { (self.create_process)(&mut args) };
        check(ret)?;
        Ok(pid)
    }

    pub(super) fn exec(&self, pid: c_int) -> io::Result<c_int> {
        let mut exit_value: c_int = 0;
        let mut args = occlum_pal_exec_args {
            pid,
            exit_value: &mut exit_value,
        };
        clear_errno();
        // SAFETY: `args.exit_value` points to a live, writable c_int for the whole call.
        let ret = unsafe { (self.exec)(&mut args) };
        check(ret)?;
        Ok(exit_value)
    }

    pub(super) fn kill(&self, pid: c_int, sig: c_int) -> io::Result<()> {
        clear_errno();
        // SAFETY: integer arguments only.
        let ret = unsafe { (self.kill)(pid, sig) };
        check(ret).map(drop)
    }

    pub(super) fn destroy(&self) -> io::Result<()> {
        clear_errno();
        // SAFETY: no arguments.
        let ret = unsafe { (self.destroy)() };
        check(ret).map(drop)
    }
}

/// # Safety
/// `T` must be the function-pointer type of the C symbol `name`.
unsafe fn symbol<T: Copy>(library: &Library, name: &'static str) -> Result<T, OpenError> {
    // SAFETY: forwarded to the caller (the type of the symbol).
    let found = unsafe { library.get::<T>(name.as_bytes()) };
    found.map(|s| *s).map_err(|e| OpenError::Symbol(name, e))
}

/// Occlum's convention is -1 with errno; a PAL that returns a negative errno instead (rune's
/// convention) is understood too. A failure without an errno is reported as EIO.
fn check(ret: c_int) -> io::Result<c_int> {
    if ret >= 0 {
        return Ok(ret);
    }
    let errno = if ret == -1 {
        io::Error::last_os_error().raw_os_error().unwrap_or(0)
    } else {
        ret.saturating_neg()
    };
    Err(io::Error::from_raw_os_error(if errno > 0 {
        errno
    } else {
        libc::EIO
    }))
}

fn clear_errno() {
    // SAFETY: `__errno_location` returns the calling thread's errno slot, valid for writes.
    unsafe { *libc::__errno_location() = 0 };
}

/// A NULL-terminated `const char *` array that owns its strings.
pub(super) struct CStrArray {
    _strings: Vec<CString>,
    pointers: Vec<*const c_char>,
}

impl CStrArray {
    pub(super) fn new<S: AsRef<OsStr>>(items: &[S]) -> Result<Self, NulError> {
        let strings = items
            .iter()
            .map(|s| CString::new(s.as_ref().as_bytes()))
            .collect::<Result<Vec<_>, _>>()?;
        // The CStrings' heap buffers do not move when `strings` is moved into `Self`.
        let mut pointers: Vec<*const c_char> = strings.iter().map(|s| s.as_ptr()).collect();
        pointers.push(ptr::null());
        Ok(Self {
            _strings: strings,
            pointers,
        })
    }

    fn as_ptr(&self) -> *const *const c_char {
        self.pointers.as_ptr()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn arrays_are_null_terminated() {
        let array = CStrArray::new(&["a", "bc"]).unwrap();
        assert_eq!(array.pointers.len(), 3);
        assert!(array.pointers[2].is_null());
        assert!(CStrArray::new::<&str>(&[]).unwrap().pointers[0].is_null());
        assert!(CStrArray::new(&["a\0b"]).is_err());
    }

    #[test]
    fn return_values_follow_both_conventions() {
        assert_eq!(check(0).unwrap(), 0);
        assert_eq!(
            check(-libc::EACCES).unwrap_err().raw_os_error(),
            Some(libc::EACCES)
        );
        clear_errno();
        assert_eq!(check(-1).unwrap_err().raw_os_error(), Some(libc::EIO));
    }
}
