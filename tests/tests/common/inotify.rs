//! A minimal inotify watch on one directory, as a hostile host uses it to time its moves.

use std::ffi::CString;
use std::io;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd};
use std::os::unix::ffi::OsStrExt;
use std::path::Path;

/// Entries created in or moved into the directory.
pub const NEW_ENTRIES: u32 = libc::IN_CREATE | libc::IN_MOVED_TO;

/// One event: the entry's name and the inotify mask (`IN_ISDIR` for directories).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Event {
    pub name: String,
    pub mask: u32,
}

impl Event {
    pub fn is_dir(&self) -> bool {
        self.mask & libc::IN_ISDIR != 0
    }
}

/// An inotify instance watching one directory.
pub struct Watch {
    fd: OwnedFd,
}

impl Watch {
    /// Watches `dir` for the events in `mask`.
    pub fn new(dir: &Path, mask: u32) -> io::Result<Self> {
        // SAFETY: inotify_init1 takes flags only; the fd it returns is owned right below.
        let raw = unsafe { libc::inotify_init1(libc::IN_CLOEXEC) };
        if raw < 0 {
            return Err(io::Error::last_os_error());
        }
        // SAFETY: a new fd nothing else owns.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let path = CString::new(dir.as_os_str().as_bytes()).map_err(io::Error::other)?;
        // SAFETY: a valid fd and a NUL-terminated path.
        if unsafe { libc::inotify_add_watch(fd.as_raw_fd(), path.as_ptr(), mask) } < 0 {
            return Err(io::Error::last_os_error());
        }
        Ok(Self { fd })
    }

    /// Blocks until events arrive and returns them.
    pub fn read(&self) -> io::Result<Vec<Event>> {
        let mut buf = vec![0u8; 64 * 1024];
        let n = loop {
            // SAFETY: buf is writable for its whole length.
            let n = unsafe { libc::read(self.fd.as_raw_fd(), buf.as_mut_ptr().cast(), buf.len()) };
            if n >= 0 {
                break n as usize;
            }
            let e = io::Error::last_os_error();
            if e.kind() != io::ErrorKind::Interrupted {
                return Err(e);
            }
        };
        let header = std::mem::size_of::<libc::inotify_event>();
        let mut events = Vec::new();
        let mut at = 0;
        while at + header <= n {
            // SAFETY: the kernel wrote a whole inotify_event header at `at`;
            // read_unaligned copes with any alignment of the buffer.
            let event: libc::inotify_event =
                unsafe { std::ptr::read_unaligned(buf[at..].as_ptr().cast()) };
            let name_start = at + header;
            let name_end = (name_start + event.len as usize).min(n);
            let raw = &buf[name_start..name_end];
            let name = raw.split(|b| *b == 0).next().unwrap_or_default();
            events.push(Event {
                name: String::from_utf8_lossy(name).into_owned(),
                mask: event.mask,
            });
            at = name_end;
        }
        Ok(events)
    }
}
