//! The unsafe edges of the host side of a native enclave: taking ownership of received
//! fds, and the pre-exec hook that creates the enclave's namespaces and makes the exec'd
//! program their PID 1.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sched::{unshare, CloneFlags};
use nix::sys::wait::{waitpid, WaitStatus};
use nix::unistd::{fork, ForkResult};

/// Takes ownership of an fd the kernel just installed (SCM_RIGHTS).
pub(crate) fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: fds received with SCM_RIGHTS are new descriptors of this process that nothing
    // else owns; each is wrapped exactly once.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Makes `command` start in a new session and in new mount, pid, ipc and uts namespaces as
/// PID 1 of the new pid namespace, keeping `control` (the enclave's end of the control socket) open across exec.
///
/// In the forked child the hook unshares the namespaces and forks again: the grandchild
/// (PID 1) goes on to exec; the child stays behind as a waiter that closes every fd and
/// exits with PID 1's status, so the `Child` the caller holds ends when the enclave ends.
pub(crate) fn enter_namespaces_on_exec(command: &mut Command, control: RawFd) {
    let hook = move || -> std::io::Result<()> {
        // A session of its own: the terminal's SIGINT/SIGQUIT/SIGTSTP reach only the host
        // side, which forwards them, so the container never gets a signal twice.
        nix::unistd::setsid()?;
        unshare(
            CloneFlags::CLONE_NEWNS
                | CloneFlags::CLONE_NEWPID
                | CloneFlags::CLONE_NEWIPC
                | CloneFlags::CLONE_NEWUTS,
        )?;
        // SAFETY: fork in a forked child of a possibly multi-threaded parent: both sides
        // only make async-signal-safe calls (fcntl, close_range, waitpid, _exit) until exec.
        match unsafe { fork() }? {
            ForkResult::Child => {
                // SAFETY: fcntl on an fd this process holds; clears FD_CLOEXEC only.
                if unsafe { libc::fcntl(control, libc::F_SETFD, 0) } != 0 {
                    return Err(std::io::Error::last_os_error());
                }
                Ok(())
            }
            ForkResult::Parent { child } => {
                // SAFETY: plain integers; closes this waiter's copies of every fd (std's
                // exec-error pipe included, so the caller's spawn returns at PID 1's exec).
                unsafe { libc::syscall(libc::SYS_close_range, 0u32, u32::MAX, 0u32) };
                let code = loop {
                    match waitpid(child, None) {
                        Ok(WaitStatus::Exited(_, code)) => break code,
                        Ok(WaitStatus::Signaled(_, sig, _)) => break 128 + sig as i32,
                        Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                        Err(_) => break 1,
                    }
                };
                // SAFETY: _exit ends this waiter without running the parent's atexit
                // handlers or destructors, which belong to the parent's copy.
                unsafe { libc::_exit(code) }
            }
        }
    };
    // SAFETY: see the comments inside the hook: only async-signal-safe calls.
    unsafe {
        command.pre_exec(hook);
    }
}
