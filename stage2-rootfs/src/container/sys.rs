//! The unsafe edges of stage 2: the pre-exec hook that moves a freshly forked child into
//! the container root, and `close_range`.
//!
//! Everything the hook needs is prepared before the fork ([`EnterPlan`]); in the child it
//! makes only async-signal-safe system calls (no allocation, no locks), because the parent
//! (the enclave's PID 1) runs FUSE server threads.

#![allow(unsafe_code)]

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::os::unix::process::CommandExt;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{SigSet, SigmaskHow};
use nix::unistd::{chdir, pivot_root, setgroups, setresgid, setresuid, Gid, Uid};

/// What the child does between fork and exec, all paths prepared in advance.
pub(super) struct EnterPlan {
    /// A detached copy of the container's mount tree, for this process alone.
    pub root: OwnedFd,
    /// Working directory inside the new root (already created).
    pub cwd: CString,
    /// Credentials.
    pub uid: u32,
    /// Primary group.
    pub gid: u32,
    /// Supplementary groups.
    pub groups: Vec<Gid>,
}

/// Installs the hook on `command`: new mount namespace, private propagation, the plan's
/// root tree attached on top of `/` and pivoted into, the old root detached, working dir,
/// groups, gid, uid, `no_new_privs`, every inherited fd above stderr marked close-on-exec, signal mask empty.
pub(super) fn enter_on_exec(command: &mut Command, plan: EnterPlan) {
    let hook = move || -> std::io::Result<()> {
        let sys = |r: nix::Result<()>| r.map_err(std::io::Error::from);
        sys(unshare(CloneFlags::CLONE_NEWNS))?;
        sys(mount(
            None::<&str>,
            "/",
            None::<&str>,
            MsFlags::MS_REC | MsFlags::MS_PRIVATE,
            None::<&str>,
        ))?;
        // The tree is entered through its fd, never through a path.
        crate::detached::enter_over_root(&plan.root)?;
        // pivot_root(".", ".") stacks the old root on top of the new one; detaching "."
        // then removes the old root, leaving only the container's tree in this namespace.
        sys(pivot_root(".", "."))?;
        sys(umount2(".", MntFlags::MNT_DETACH))?;
        sys(chdir("/"))?;
        sys(chdir(plan.cwd.as_c_str()))?;
        sys(setgroups(&plan.groups))?;
        sys(setresgid(
            Gid::from_raw(plan.gid),
            Gid::from_raw(plan.gid),
            Gid::from_raw(plan.gid),
        ))?;
        sys(setresuid(
            Uid::from_raw(plan.uid),
            Uid::from_raw(plan.uid),
            Uid::from_raw(plan.uid),
        ))?;
        sys(nix::sys::prctl::set_no_new_privs())?;
        close_range_cloexec(3)?;
        sys(nix::sys::signal::sigprocmask(
            SigmaskHow::SIG_SETMASK,
            Some(&SigSet::empty()),
            None,
        ))?;
        Ok(())
    };
    // SAFETY: the hook runs in the forked child before exec. It only calls async-signal-safe
    // system calls (unshare, mount, move_mount, fchdir, pivot_root, umount2, chdir,
    // setgroups, setres[ug]id, prctl, close_range, sigprocmask) on data prepared before the
    // fork; nix's and rustix's path arguments are `CStr`s or short `&str`s copied to the
    // stack, so nothing allocates or locks.
    unsafe {
        command.pre_exec(hook);
    }
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
