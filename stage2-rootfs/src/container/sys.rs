//! The unsafe edges of stage 2: fds handed across exec, the pre-exec hooks, the capability
//! system calls and `close_range`.
//!
//! The enclave-side hook ([`keep_on_exec`]) runs in a child forked from the enclave's PID 1,
//! which runs FUSE server threads, so it makes only async-signal-safe system calls.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::sys::signal::{SigSet, SigmaskHow};

/// Keeps `fds` open across the exec of `command` (they are close-on-exec in this process,
/// so no other child inherits them).
pub(super) fn keep_on_exec(command: &mut Command, fds: [RawFd; 2]) {
    let hook = move || -> std::io::Result<()> {
        for fd in fds {
            // SAFETY: fcntl on an fd this process holds; clears FD_CLOEXEC only.
            if unsafe { libc::fcntl(fd, libc::F_SETFD, 0) } != 0 {
                return Err(std::io::Error::last_os_error());
            }
        }
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec and only calls fcntl, which is
    // async-signal-safe, on integers copied before the fork.
    unsafe {
        command.pre_exec(hook);
    }
}

/// Takes ownership of an fd this process inherited at exec, whose number the parent gave;
/// marks it close-on-exec again.
pub(super) fn inherited_fd(fd: RawFd) -> std::io::Result<OwnedFd> {
    if fd <= 2 {
        return Err(std::io::Error::from_raw_os_error(libc::EBADF));
    }
    // SAFETY: fcntl on a plain integer; fails with EBADF when the fd is not open.
    if unsafe { libc::fcntl(fd, libc::F_SETFD, libc::FD_CLOEXEC) } != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the fd is open (checked above) and was inherited at exec: nothing else in this
    // freshly started process knows its number, and it is wrapped exactly once (the caller
    // parses each number once at start-up).
    Ok(unsafe { OwnedFd::from_raw_fd(fd) })
}

/// The hook of the entrypoint's child: every inherited fd above stderr close-on-exec, the
/// signal mask (the reaper blocks the signals it forwards) empty.
pub(super) fn clean_exec(command: &mut Command) {
    let hook = || -> std::io::Result<()> {
        close_range_cloexec(3)?;
        nix::sys::signal::sigprocmask(SigmaskHow::SIG_SETMASK, Some(&SigSet::empty()), None)?;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec; close_range and sigprocmask
    // are async-signal-safe and take no data from the parent.
    unsafe {
        command.pre_exec(hook);
    }
}

/// `PR_CAPBSET_DROP` for `cap`; `Ok(false)` when the kernel has no such capability.
pub(super) fn drop_bounding(cap: u32) -> std::io::Result<bool> {
    // SAFETY: prctl with plain integer arguments.
    match unsafe { libc::prctl(libc::PR_CAPBSET_DROP, cap as libc::c_ulong, 0, 0, 0) } {
        0 => Ok(true),
        _ => match std::io::Error::last_os_error() {
            e if e.raw_os_error() == Some(libc::EINVAL) => Ok(false),
            e => Err(e),
        },
    }
}

/// Empties the ambient capability set.
pub(super) fn clear_ambient() -> std::io::Result<()> {
    // SAFETY: prctl with plain integer arguments.
    let rc = unsafe {
        libc::prctl(
            libc::PR_CAP_AMBIENT,
            libc::PR_CAP_AMBIENT_CLEAR_ALL as libc::c_ulong,
            0,
            0,
            0,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: libc::c_int,
}

#[repr(C)]
#[derive(Clone, Copy, Default)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

const LINUX_CAPABILITY_VERSION_3: u32 = 0x2008_0522;

/// `capset` of this thread: effective and permitted `set`, inheritable empty.
pub(super) fn capset(set: u64) -> std::io::Result<()> {
    let header = CapHeader {
        version: LINUX_CAPABILITY_VERSION_3,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    for (i, half) in data.iter_mut().enumerate() {
        let bits = (set >> (32 * i)) as u32;
        half.effective = bits;
        half.permitted = bits;
    }
    // SAFETY: version 3 takes a header and an array of two data structs, both #[repr(C)]
    // as in <linux/capability.h>, alive for the call.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &header, data.as_ptr()) };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}

/// Makes this process non-dumpable: its memory, environment, fds and root under
/// `/proc/PID` and ptrace need CAP_SYS_PTRACE, which containers never have.
pub(super) fn set_undumpable() -> std::io::Result<()> {
    nix::sys::prctl::set_dumpable(false).map_err(std::io::Error::from)
}

/// Runs `spawn` with this thread's new children going into a new PID namespace (the first
/// child is its PID 1), then puts this thread's children back into its own namespace.
pub(super) fn in_new_pid_namespace<T>(
    spawn: impl FnOnce() -> std::io::Result<T>,
) -> std::io::Result<T> {
    use nix::sched::{setns, unshare, CloneFlags};
    let own = std::fs::File::open("/proc/thread-self/ns/pid")?;
    unshare(CloneFlags::CLONE_NEWPID)?;
    let spawned = spawn();
    // Entering one's own active namespace again resets where children go.
    setns(&own, CloneFlags::CLONE_NEWPID)?;
    spawned
}

/// Marks every fd from `first` up close-on-exec (std's exec-error pipe must stay open
/// until exec, so the fds are not closed outright).
fn close_range_cloexec(first: u32) -> std::io::Result<()> {
    // SAFETY: close_range only changes fd flags of this process; it takes plain integers.
    let rc = unsafe {
        libc::syscall(
            libc::SYS_close_range,
            first,
            u32::MAX,
            libc::CLOSE_RANGE_CLOEXEC,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(std::io::Error::last_os_error())
    }
}
