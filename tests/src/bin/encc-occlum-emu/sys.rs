//! The raw calls of the emulator: installing a seccomp filter (with a user-notification
//! listener) and the listener's ioctls. Everything else uses nix's safe wrappers.

#![allow(unsafe_code)]

use std::io;
use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};

use nix::errno::Errno;

/// One system call stopped by the filter.
#[derive(Debug, Clone, Copy)]
pub struct Notification {
    /// The cookie to answer with.
    pub id: u64,
    /// The calling thread (in the emulator's PID namespace).
    pub pid: u32,
    /// The system call number.
    pub nr: i32,
    /// Its six arguments.
    pub args: [u64; 6],
}

/// Installs `prog` on the calling thread (after PR_SET_NO_NEW_PRIVS); with `listener`,
/// returns the user-notification fd (SECCOMP_FILTER_FLAG_NEW_LISTENER).
pub fn install_filter(prog: &[libc::sock_filter], listener: bool) -> io::Result<Option<OwnedFd>> {
    let len =
        u16::try_from(prog.len()).map_err(|_| io::Error::from(io::ErrorKind::InvalidInput))?;
    let fprog = libc::sock_fprog {
        len,
        filter: prog.as_ptr().cast_mut(),
    };
    // SAFETY: PR_SET_NO_NEW_PRIVS takes plain integers.
    if unsafe { libc::prctl(libc::PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let flags = match listener {
        true => libc::SECCOMP_FILTER_FLAG_NEW_LISTENER,
        false => 0,
    };
    // SAFETY: `fprog` points to `prog`, which outlives the call; the kernel copies it.
    let ret = unsafe {
        libc::syscall(
            libc::SYS_seccomp,
            libc::SECCOMP_SET_MODE_FILTER,
            flags,
            &fprog as *const libc::sock_fprog,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    match listener {
        // SAFETY: with NEW_LISTENER the kernel returns a new fd that nothing else owns.
        true => Ok(Some(unsafe { OwnedFd::from_raw_fd(ret as i32) })),
        false => Ok(None),
    }
}

/// Waits for the next notification (SECCOMP_IOCTL_NOTIF_RECV).
pub fn recv(listener: BorrowedFd<'_>) -> io::Result<Notification> {
    // SAFETY: seccomp_notif is plain data; the kernel requires it zeroed.
    let mut notif: libc::seccomp_notif = unsafe { std::mem::zeroed() };
    // SAFETY: the ioctl writes one seccomp_notif into `notif`.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_RECV,
            &mut notif as *mut libc::seccomp_notif,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(Notification {
        id: notif.id,
        pid: notif.pid,
        nr: notif.data.nr,
        args: notif.data.args,
    })
}

/// Whether the call `id` still waits (SECCOMP_IOCTL_NOTIF_ID_VALID): the caller's memory
/// read before this belongs to the thread that made the call.
pub fn id_valid(listener: BorrowedFd<'_>, id: u64) -> bool {
    // SAFETY: the ioctl reads one u64.
    unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_ID_VALID,
            &id as *const u64,
        ) == 0
    }
}

/// Answers the call `id` with 0 or an errno.
pub fn respond(listener: BorrowedFd<'_>, id: u64, result: Result<(), Errno>) -> io::Result<()> {
    let mut resp = libc::seccomp_notif_resp {
        id,
        val: 0,
        error: 0,
        flags: 0,
    };
    if let Err(errno) = result {
        resp.error = -(errno as i32);
    }
    // SAFETY: the ioctl reads one seccomp_notif_resp.
    let ret = unsafe {
        libc::ioctl(
            listener.as_raw_fd(),
            libc::SECCOMP_IOCTL_NOTIF_SEND,
            &mut resp as *mut libc::seccomp_notif_resp,
        )
    };
    if ret < 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

/// Takes ownership of the inherited fd `raw` (the emulator passed its number).
pub fn take_inherited_fd(raw: i32) -> io::Result<OwnedFd> {
    // F_GETFD fails with EBADF when `raw` is not open.
    // SAFETY: fcntl(F_GETFD) on any integer is harmless.
    if unsafe { libc::fcntl(raw, libc::F_GETFD) } < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: the fd is open and was passed to this process for it alone to use.
    Ok(unsafe { OwnedFd::from_raw_fd(raw) })
}

/// Sends `fd` over the unix socket `sock` (SCM_RIGHTS).
pub fn send_fd(sock: BorrowedFd<'_>, fd: BorrowedFd<'_>) -> io::Result<()> {
    use nix::sys::socket::{sendmsg, ControlMessage, MsgFlags};
    let fds = [fd.as_raw_fd()];
    let iov = [io::IoSlice::new(b"L")];
    sendmsg::<()>(
        sock.as_raw_fd(),
        &iov,
        &[ControlMessage::ScmRights(&fds)],
        MsgFlags::empty(),
        None,
    )?;
    Ok(())
}

/// Receives one fd over `sock`; None when the peer closed without sending one.
pub fn recv_fd(sock: BorrowedFd<'_>) -> io::Result<Option<OwnedFd>> {
    use nix::sys::socket::{recvmsg, ControlMessageOwned, MsgFlags};
    let mut byte = [0u8; 1];
    let mut iov = [io::IoSliceMut::new(&mut byte)];
    let mut space = nix::cmsg_space!([std::os::fd::RawFd; 1]);
    let msg = recvmsg::<()>(
        sock.as_raw_fd(),
        &mut iov,
        Some(&mut space),
        MsgFlags::MSG_CMSG_CLOEXEC,
    )?;
    for cmsg in msg.cmsgs()? {
        if let ControlMessageOwned::ScmRights(fds) = cmsg {
            if let Some(raw) = fds.first() {
                // SAFETY: SCM_RIGHTS installed this new fd in our table; nothing else owns it.
                return Ok(Some(unsafe { OwnedFd::from_raw_fd(*raw) }));
            }
        }
    }
    Ok(None)
}

/// Makes `cmd` chroot into `root`, chdir to "/" and install `prog` (no listener) in the
/// child before it executes the program.
pub fn confine_child(
    cmd: &mut std::process::Command,
    root: std::path::PathBuf,
    prog: Vec<libc::sock_filter>,
) {
    use std::os::unix::process::CommandExt as _;
    // SAFETY: the closure runs between fork and exec; chroot, chdir, prctl and seccomp are
    // async-signal-safe system calls, and it allocates nothing (the path and the program
    // were built before the fork; nix keeps short paths on the stack).
    unsafe {
        cmd.pre_exec(move || {
            nix::unistd::chroot(&root)?;
            nix::unistd::chdir("/")?;
            install_filter(&prog, false)?;
            Ok(())
        });
    }
}
