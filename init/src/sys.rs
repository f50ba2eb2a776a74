//! The unsafe edges of the native enclave: taking ownership of the control fd, and
//! bringing up loopback in a new network namespace.

#![allow(unsafe_code)]

use std::os::fd::{FromRawFd, OwnedFd, RawFd};

/// Takes ownership of the control fd the host side left open across exec.
pub(crate) fn owned_fd(fd: RawFd) -> OwnedFd {
    // SAFETY: the control fd is inherited across exec and owned by nothing else in this
    // process; it is wrapped exactly once, at start.
    unsafe { OwnedFd::from_raw_fd(fd) }
}

/// Brings the loopback interface of the current network namespace up (a new namespace
/// starts with `lo` down).
pub(crate) fn loopback_up() -> std::io::Result<()> {
    use std::os::fd::AsRawFd;
    // SAFETY: socket takes plain integers; the fd it returns is owned right below.
    let raw = unsafe { libc::socket(libc::AF_INET, libc::SOCK_DGRAM | libc::SOCK_CLOEXEC, 0) };
    if raw < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: a new fd nothing else owns.
    let sock = unsafe { OwnedFd::from_raw_fd(raw) };
    // SAFETY: ifreq is plain data; all-zero is a valid value.
    let mut ifr: libc::ifreq = unsafe { std::mem::zeroed() };
    for (dst, src) in ifr.ifr_name.iter_mut().zip(b"lo\0") {
        *dst = *src as libc::c_char;
    }
    // SAFETY: SIOCGIFFLAGS reads the name and writes the flags of this ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCGIFFLAGS, &mut ifr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: the union member SIOCGIFFLAGS filled.
    unsafe { ifr.ifr_ifru.ifru_flags |= libc::IFF_UP as libc::c_short };
    // SAFETY: SIOCSIFFLAGS reads the name and flags of this ifreq.
    if unsafe { libc::ioctl(sock.as_raw_fd(), libc::SIOCSIFFLAGS, &ifr) } < 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}
