//! The control channel between the host side and a native enclave's PID 1: one JSON
//! message per `SOCK_SEQPACKET` packet, stdio fds attached with `SCM_RIGHTS`. It carries the
//! PAL calls (init, create_process, kill, destroy) and the enclave's answers.

use std::io::{IoSlice, IoSliceMut};
use std::os::fd::{AsRawFd, BorrowedFd, OwnedFd, RawFd};
use std::path::PathBuf;

use nix::sys::socket::{recvmsg, sendmsg, ControlMessage, ControlMessageOwned, MsgFlags};
use serde::{Deserialize, Serialize};

use crate::config::BootConfig;

/// Largest message (a launch request with a large environment still fits).
pub const MAX_MESSAGE: usize = 1 << 20;

/// Host → enclave.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// Stage 1 then prepare stage 2: the PAL's `init`.
    Boot {
        /// The boot config file (read and measured inside the enclave).
        boot_config: PathBuf,
        /// Image reference (untrusted).
        image: String,
    },
    /// Debugging: skip stage 1 and serve an already pulled image.
    Open {
        /// The protected image.
        image_path: PathBuf,
        /// Its data key (the debugging tool was given it by the user).
        key_hex: KeyHex,
        /// Settings to apply.
        config: Box<BootConfig>,
    },
    /// The PAL's `create_process`; stdin, stdout, stderr attached.
    CreateProcess {
        /// Program path; must be the image's entry program.
        path: String,
        /// The host's full argv (`argv[0]` names the program: see `encc_exec::compose_argv`).
        argv: Vec<String>,
        /// Host environment (filtered by the boot config's allowlist).
        env: Vec<String>,
    },
    /// The PAL's `kill` (pid -1: every container process).
    Kill {
        /// Target.
        pid: i32,
        /// Signal number.
        signal: i32,
    },
    /// The PAL's `destroy`.
    Destroy,
}

/// A data key in hex on the channel: zeroized on drop, never shown by `Debug`.
#[derive(Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyHex(pub String);

impl Drop for KeyHex {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl std::fmt::Debug for KeyHex {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("KeyHex(<redacted>)")
    }
}

/// A rootfs measurement (the Merkle root hash of the protected image), hex on the wire.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(into = "String", try_from = "String")]
pub struct RootHash(pub [u8; 32]);

impl std::fmt::Display for RootHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl std::fmt::Debug for RootHash {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RootHash({self})")
    }
}

impl From<RootHash> for String {
    fn from(hash: RootHash) -> String {
        hash.to_string()
    }
}

impl TryFrom<String> for RootHash {
    type Error = hex::FromHexError;

    fn try_from(s: String) -> Result<Self, hex::FromHexError> {
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(&s, &mut bytes)?;
        Ok(Self(bytes))
    }
}

/// Enclave → host.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// Boot or open succeeded.
    Ready {
        /// The rootfs measurement (Merkle root hash).
        root_hash: RootHash,
        /// The only program create_process may start.
        entry_program: String,
    },
    /// A request failed.
    Failed {
        /// errno for the PAL.
        errno: i32,
        /// What went wrong, for the user: the error and its causes on one line, naming the
        /// object (reference, digest, path, URL) and the reason. The host prints it (the
        /// PAL's `encc_pal_last_error`), so it holds no secret: encc's error types name
        /// keys by location, never by value, as its log lines do.
        message: String,
    },
    /// create_process started a process.
    Started {
        /// Its pid (in the enclave's pid namespace).
        pid: i32,
    },
    /// A container process ended.
    Exited {
        /// Its pid.
        pid: i32,
        /// wait(2)-encoded status.
        status: i32,
    },
    /// A kill or destroy request was carried out.
    Done,
}

/// Errors on the channel.
#[derive(Debug, thiserror::Error)]
pub enum ChannelError {
    /// The socket failed.
    #[error("control channel {op} failed")]
    Io {
        /// send or receive.
        op: &'static str,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The peer closed the channel.
    #[error("control channel closed by the other side")]
    Closed,
    /// A message that does not parse.
    #[error("malformed control message")]
    Malformed(#[source] serde_json::Error),
}

/// Sends one message with optional fds.
pub fn send<T: Serialize>(
    sock: BorrowedFd<'_>,
    msg: &T,
    fds: &[RawFd],
) -> Result<(), ChannelError> {
    // Zeroized: an `open` request carries a data key.
    let bytes = zeroize::Zeroizing::new(serde_json::to_vec(msg).map_err(ChannelError::Malformed)?);
    let iov = [IoSlice::new(&bytes)];
    let cmsgs = [ControlMessage::ScmRights(fds)];
    let cmsgs: &[ControlMessage<'_>] = if fds.is_empty() { &[] } else { &cmsgs };
    sendmsg::<()>(sock.as_raw_fd(), &iov, cmsgs, MsgFlags::MSG_NOSIGNAL, None).map_err(|e| {
        ChannelError::Io {
            op: "send",
            source: e.into(),
        }
    })?;
    Ok(())
}

/// Receives one message and the fds attached to it.
pub fn receive<T: for<'de> Deserialize<'de>>(
    sock: BorrowedFd<'_>,
) -> Result<(T, Vec<OwnedFd>), ChannelError> {
    let mut buf = zeroize::Zeroizing::new(vec![0u8; MAX_MESSAGE]);
    let mut cmsg = nix::cmsg_space!([RawFd; 4]);
    let (len, fds) = {
        let mut iov = [IoSliceMut::new(&mut buf)];
        let msg = recvmsg::<()>(
            sock.as_raw_fd(),
            &mut iov,
            Some(&mut cmsg),
            MsgFlags::MSG_CMSG_CLOEXEC,
        )
        .map_err(|e| ChannelError::Io {
            op: "receive",
            source: e.into(),
        })?;
        let mut fds = Vec::new();
        if let Ok(cmsgs) = msg.cmsgs() {
            for c in cmsgs {
                if let ControlMessageOwned::ScmRights(raw) = c {
                    fds.extend(raw.into_iter().map(crate::sys::owned_fd));
                }
            }
        }
        (msg.bytes, fds)
    };
    if len == 0 {
        return Err(ChannelError::Closed);
    }
    let msg = serde_json::from_slice(&buf[..len]).map_err(ChannelError::Malformed)?;
    Ok((msg, fds))
}
