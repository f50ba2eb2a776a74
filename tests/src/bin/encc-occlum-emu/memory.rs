//! Reading a stopped caller's arguments from its memory (process_vm_readv), the way
//! Occlum's `from_user` helpers copy them: a pointer that cannot be read is EFAULT.

use std::io::IoSliceMut;

use nix::errno::Errno;
use nix::sys::uio::{process_vm_readv, RemoteIoVec};
use nix::unistd::Pid;

/// Longest C string read (Occlum has no limit of its own; paths stay far below).
const MAX_STRING: usize = 64 * 1024;
/// Most entries of a NULL-terminated string array.
const MAX_ARRAY: usize = 4096;
const PAGE: usize = 4096;

/// A thread whose memory is read.
#[derive(Debug, Clone, Copy)]
pub struct Caller(pub Pid);

impl Caller {
    /// Exactly `len` bytes at `addr`.
    pub fn bytes(self, addr: u64, len: usize) -> Result<Vec<u8>, Errno> {
        if addr == 0 {
            return Err(Errno::EFAULT);
        }
        let mut buf = vec![0u8; len];
        let base = usize::try_from(addr).map_err(|_| Errno::EFAULT)?;
        let read = process_vm_readv(
            self.0,
            &mut [IoSliceMut::new(&mut buf)],
            &[RemoteIoVec { base, len }],
        )
        .map_err(|_| Errno::EFAULT)?;
        match read == len {
            true => Ok(buf),
            false => Err(Errno::EFAULT),
        }
    }

    /// A little-endian u64 at `addr`.
    pub fn u64(self, addr: u64) -> Result<u64, Errno> {
        let raw = self.bytes(addr, 8)?;
        let mut word = [0u8; 8];
        word.copy_from_slice(&raw);
        Ok(u64::from_le_bytes(word))
    }

    /// The NUL-terminated string at `addr`, read page by page (a string may end just before
    /// an unmapped page), as lossy UTF-8 like Occlum's `to_string_lossy`.
    pub fn string(self, addr: u64) -> Result<String, Errno> {
        let mut out = Vec::new();
        let mut at = addr;
        while out.len() < MAX_STRING {
            let to_page_end = PAGE - (at as usize % PAGE);
            let chunk = self.bytes(at, to_page_end)?;
            if let Some(end) = chunk.iter().position(|b| *b == 0) {
                out.extend_from_slice(&chunk[..end]);
                return Ok(String::from_utf8_lossy(&out).into_owned());
            }
            out.extend_from_slice(&chunk);
            at = at.checked_add(to_page_end as u64).ok_or(Errno::EFAULT)?;
        }
        Err(Errno::ENAMETOOLONG)
    }

    /// None for a NULL pointer, else the string.
    pub fn optional_string(self, addr: u64) -> Result<Option<String>, Errno> {
        match addr {
            0 => Ok(None),
            _ => self.string(addr).map(Some),
        }
    }

    /// The NULL-terminated array of strings at `addr` (Occlum's `clone_cstrings_safely`).
    pub fn strings(self, addr: u64) -> Result<Vec<String>, Errno> {
        let mut out = Vec::new();
        for i in 0..MAX_ARRAY as u64 {
            let ptr = self.u64(addr.checked_add(i * 8).ok_or(Errno::EFAULT)?)?;
            if ptr == 0 {
                return Ok(out);
            }
            out.push(self.string(ptr)?);
        }
        Err(Errno::E2BIG)
    }
}
