//! A safe host-side loader for any library with Occlum's PAL ABI: Occlum's own
//! `libocclum-pal.so` on SGX machines, or encc's `libencc_pal.so`.
//!
//! [`Pal::load`] resolves the six `occlum_pal_*` symbols up front; each call then turns the
//! PAL's `-1`/errno into a [`PalError`] that names the call, the library and the OS error.

use std::ffi::{c_int, CString, NulError, OsStr};
use std::io;
use std::os::fd::RawFd;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};

use crate::ffi::occlum_stdio_fds_t;

#[allow(unsafe_code)]
mod sys;

/// Errors of the PAL loader.
#[derive(Debug, thiserror::Error)]
pub enum PalError {
    /// dlopen of the library failed (missing file, wrong ELF, unresolved dependency).
    #[error("failed to load PAL library {path}")]
    Load {
        path: PathBuf,
        #[source]
        source: libloading::Error,
    },
    /// The library lacks one of the Occlum PAL entry points.
    #[error("PAL library {path} does not export {symbol}")]
    Symbol {
        path: PathBuf,
        symbol: &'static str,
        #[source]
        source: libloading::Error,
    },
    /// `occlum_pal_get_version` returned a value that is not a version (≤ 0).
    #[error("PAL library {path} reports an invalid PAL API version {version}")]
    Version { path: PathBuf, version: c_int },
    /// An argument holds a NUL byte and cannot be passed as a C string.
    #[error("the {argument} argument of {call} for PAL library {path} contains a NUL byte")]
    Argument {
        call: &'static str,
        argument: &'static str,
        path: PathBuf,
        #[source]
        source: NulError,
    },
    /// A PAL call failed; `source` carries the errno it reported.
    #[error("{call} failed in PAL library {path}")]
    Call {
        call: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl PalError {
    /// The errno a failed call reported (e.g. `EACCES` for a path outside the entry points).
    pub fn raw_os_error(&self) -> Option<i32> {
        match self {
            Self::Call { source, .. } => source.raw_os_error(),
            _ => None,
        }
    }
}

/// Host file descriptors for a new process's standard I/O (`occlum_stdio_fds_t`). They must
/// stay open until `create_process` returns.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StdioFds {
    pub stdin: RawFd,
    pub stdout: RawFd,
    pub stderr: RawFd,
}

/// A wait(2)-encoded status, as `occlum_pal_exec` returns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct WaitStatus(pub c_int);

impl WaitStatus {
    /// The exit code, if the process exited.
    pub fn exited(self) -> Option<i32> {
        libc::WIFEXITED(self.0).then(|| libc::WEXITSTATUS(self.0))
    }

    /// The signal number, if the process was killed by a signal.
    pub fn signaled(self) -> Option<i32> {
        libc::WIFSIGNALED(self.0).then(|| libc::WTERMSIG(self.0))
    }

    /// The shell's convention: the exit code, or 128 + the signal number.
    pub fn shell_code(self) -> i32 {
        match (self.exited(), self.signaled()) {
            (Some(code), _) => code,
            (None, Some(signal)) => 128 + signal,
            // Stopped/continued statuses are not final; report them as a launch failure.
            (None, None) => 127,
        }
    }
}

/// A loaded PAL library. Calls take `&self`, so one thread may `kill` while another waits in
/// `exec` (how a launcher forwards signals); the order init → create_process → exec →
/// destroy is the PAL's to enforce.
pub struct Pal {
    path: PathBuf,
    symbols: sys::OcclumSymbols,
}

impl std::fmt::Debug for Pal {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pal")
            .field("path", &self.path)
            .finish_non_exhaustive()
    }
}

impl Pal {
    /// Loads the library at `path` (dlopen with RTLD_NOW) and resolves the six Occlum PAL
    /// symbols. Loading runs the library's initialisers: load only a PAL you trust.
    pub fn load(path: impl AsRef<Path>) -> Result<Self, PalError> {
        let path = path.as_ref().to_path_buf();
        match sys::OcclumSymbols::open(&path) {
            Ok(symbols) => Ok(Self { path, symbols }),
            Err(sys::OpenError::Library(source)) => Err(PalError::Load { path, source }),
            Err(sys::OpenError::Symbol(symbol, source)) => Err(PalError::Symbol {
                path,
                symbol,
                source,
            }),
        }
    }

    /// The path the library was loaded from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// `occlum_pal_get_version`: the PAL API version (2 for current Occlum and for encc).
    pub fn version(&self) -> Result<c_int, PalError> {
        match self.symbols.get_version() {
            version if version > 0 => Ok(version),
            version => Err(PalError::Version {
                path: self.path.clone(),
                version,
            }),
        }
    }

    /// `occlum_pal_init`: creates the enclave from the instance directory. `log_level` is one
    /// of Occlum's levels ("off" … "trace"); `None` means "off".
    pub fn init(&self, instance_dir: &Path, log_level: Option<&str>) -> Result<(), PalError> {
        const CALL: &str = "occlum_pal_init";
        let dir = self.c_string(CALL, "instance_dir", instance_dir.as_os_str())?;
        let level = log_level
            .map(|l| self.c_string(CALL, "log_level", OsStr::new(l)))
            .transpose()?;
        self.symbols
            .init(&dir, level.as_deref())
            .map_err(|e| self.call_error(CALL, e))
    }

    /// `occlum_pal_create_process`: creates (but does not run) `path` inside the enclave and
    /// returns its pid. `argv` is the whole argument vector, argv[0] included; `env` holds
    /// untrusted `NAME=value` items, filtered by the enclave; `None` stdio means the
    /// launcher's own.
    pub fn create_process<A: AsRef<OsStr>, E: AsRef<OsStr>>(
        &self,
        path: impl AsRef<OsStr>,
        argv: &[A],
        env: &[E],
        stdio: Option<StdioFds>,
    ) -> Result<c_int, PalError> {
        const CALL: &str = "occlum_pal_create_process";
        let path = self.c_string(CALL, "path", path.as_ref())?;
        let argv = sys::CStrArray::new(argv).map_err(|e| self.argument_error(CALL, "argv", e))?;
        let env = sys::CStrArray::new(env).map_err(|e| self.argument_error(CALL, "env", e))?;
        let stdio = stdio.map(|s| occlum_stdio_fds_t {
            stdin_fd: s.stdin,
            stdout_fd: s.stdout,
            stderr_fd: s.stderr,
        });
        self.symbols
            .create_process(&path, &argv, &env, stdio.as_ref())
            .map_err(|e| self.call_error(CALL, e))
    }

    /// `occlum_pal_exec`: runs the process created with `pid` and waits for it to end.
    pub fn exec(&self, pid: c_int) -> Result<WaitStatus, PalError> {
        self.symbols
            .exec(pid)
            .map(WaitStatus)
            .map_err(|e| self.call_error("occlum_pal_exec", e))
    }

    /// `occlum_pal_kill`: sends `sig` (Occlum allows SIGKILL and SIGTERM) to `pid`, or to
    /// every process in the enclave when `pid` is -1.
    pub fn kill(&self, pid: c_int, sig: c_int) -> Result<(), PalError> {
        self.symbols
            .kill(pid, sig)
            .map_err(|e| self.call_error("occlum_pal_kill", e))
    }

    /// The program `create_process` may start, from encc's optional
    /// `encc_pal_entry_program` extension (after `init`); `None` when the PAL lacks it
    /// (Occlum's own PAL).
    pub fn entry_program(&self) -> Option<Result<String, PalError>> {
        self.symbols.entry_program().map(|r| {
            r.map_err(|source| PalError::Call {
                call: "encc_pal_entry_program",
                path: self.path.clone(),
                source,
            })
        })
    }

    /// Why the last failed call failed, from encc's optional `encc_pal_last_error`
    /// extension (the enclave's explanation behind the errno); `None` when the PAL lacks it
    /// (Occlum's own PAL logs it instead) or no call failed.
    pub fn last_error(&self) -> Option<String> {
        self.symbols.last_error()
    }

    /// `occlum_pal_destroy`: tears the enclave down.
    pub fn destroy(&self) -> Result<(), PalError> {
        self.symbols
            .destroy()
            .map_err(|e| self.call_error("occlum_pal_destroy", e))
    }

    fn c_string(
        &self,
        call: &'static str,
        argument: &'static str,
        value: &OsStr,
    ) -> Result<CString, PalError> {
        CString::new(value.as_bytes()).map_err(|e| self.argument_error(call, argument, e))
    }

    fn argument_error(&self, call: &'static str, argument: &'static str, e: NulError) -> PalError {
        PalError::Argument {
            call,
            argument,
            path: self.path.clone(),
            source: e,
        }
    }

    fn call_error(&self, call: &'static str, source: io::Error) -> PalError {
        PalError::Call {
            call,
            path: self.path.clone(),
            source,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wait_status_decodes_exit_and_signal() {
        assert_eq!(WaitStatus(0).exited(), Some(0));
        assert_eq!(WaitStatus(3 << 8).shell_code(), 3);
        assert_eq!(WaitStatus(libc::SIGTERM).signaled(), Some(libc::SIGTERM));
        assert_eq!(WaitStatus(libc::SIGTERM).shell_code(), 143);
        assert_eq!(WaitStatus(libc::SIGINT).shell_code(), 130);
    }

    #[test]
    fn load_error_names_the_library() {
        let err = Pal::load("/nonexistent/libnope.so").unwrap_err();
        assert!(matches!(err, PalError::Load { .. }));
        assert!(err.to_string().contains("/nonexistent/libnope.so"), "{err}");
    }
}
