//! The shim's only `unsafe`: handing a channel fd to a helper across exec, and taking
//! ownership of the inherited one.

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

/// Clears `FD_CLOEXEC` on `fd` in the child between fork and exec, so the helper inherits it
/// (every other fd of the shim stays close-on-exec).
pub fn inherit_fd(command: &mut Command, fd: RawFd) {
    // SAFETY: the closure runs between fork and exec and calls only fcntl(2), which is
    // async-signal-safe; it allocates nothing and touches no lock.
    unsafe {
        command.pre_exec(move || {
            if libc::fcntl(fd, libc::F_SETFD, 0) == -1 {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
}

/// Takes ownership of an inherited fd after checking that it is open, and marks it
/// close-on-exec again (the enclave process must not inherit it).
pub fn own_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    // SAFETY: F_SETFD on an arbitrary number only fails (EBADF) when it is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } == -1 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: `fd` is open (checked above) and was handed to this process for it alone: the
    // environment variable naming it is read once, at start-up.
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}
