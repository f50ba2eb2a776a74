//! The shim's helper processes and the channel to them. Each application container is one
//! *runner* (this binary again, in the runner role): a process of its own that loads the PAL
//! (one enclave per process, as with Occlum's PAL), boots the enclave and starts the entry
//! program. The pod sandbox is one *holder* (the holder role): a process that only holds the
//! pod's namespaces. Requests and answers are JSON packets on a `SOCK_SEQPACKET` pair (the
//! encoding of `encc_interface::protocol`), stdio fds attached with `SCM_RIGHTS`.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Mutex;

use encc_interface::protocol::{self, ChannelError};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};
use serde::{Deserialize, Serialize};

use super::spec::Namespaces;
use super::sys;

/// Selects the role of this binary in a helper process: [`RUNNER_ROLE`] or [`HOLDER_ROLE`].
pub const ROLE_ENV: &str = "ENCC_SHIM_ROLE";
/// The runner role.
pub const RUNNER_ROLE: &str = "runner";
/// The sandbox holder role.
pub const HOLDER_ROLE: &str = "holder";
/// The helper's end of the channel (an fd number).
pub const CHANNEL_FD_ENV: &str = "ENCC_SHIM_CHANNEL_FD";
/// The bundle file holding the helper's pid, for `delete` after a dead shim.
pub const PID_FILE: &str = "encc-helper.pid";

/// Shim → helper.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Request {
    /// First message to either role: the namespaces to enter or make.
    Setup { namespaces: Namespaces },
    /// Runner: the PAL's init (stage 1 in the enclave).
    Boot {
        /// The instance directory holding `boot.json` (the node's boot config).
        instance: PathBuf,
        /// The image reference (untrusted).
        image: String,
        /// The PAL library.
        pal: PathBuf,
    },
    /// Runner: create_process + exec of the entry program; stdin, stdout, stderr attached.
    Start { argv: Vec<String>, env: Vec<String> },
    /// Runner: a signal to the container (`all`: every process in the enclave).
    Kill { signal: i32, all: bool },
}

/// Helper → shim.
#[derive(Debug, Serialize, Deserialize)]
#[serde(tag = "event", rename_all = "snake_case")]
pub enum Reply {
    /// Setup or kill done.
    Done,
    /// Boot done: the rootfs measurement and the entry program.
    Ready {
        root_hash: String,
        entry_program: String,
    },
    /// The entry program runs (pid in the enclave).
    Started { pid: i32 },
    /// The request failed; `message` is for the user (it ends up in the container's status).
    Failed { message: String },
}

/// Errors talking to a helper.
#[derive(Debug, thiserror::Error)]
pub enum HelperError {
    #[error("cannot start the {role} process {exe}")]
    Spawn {
        role: &'static str,
        exe: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the encc {role} process {pid} stopped answering")]
    Channel {
        role: &'static str,
        pid: u32,
        #[source]
        source: ChannelError,
    },
}

/// Held while a helper is spawned, so that no other child inherits its channel end.
static SPAWN: Mutex<()> = Mutex::new(());

/// The shim's end of a helper process.
#[derive(Debug)]
pub struct Helper {
    role: &'static str,
    pid: u32,
    channel: Mutex<OwnedFd>,
}

impl Helper {
    /// Starts this binary in `role`, stderr to `log` (the enclave's log reaches containerd's
    /// through the shim's log fifo).
    pub fn spawn(role: &'static str, log: Option<OwnedFd>) -> Result<Self, HelperError> {
        let exe = PathBuf::from("/proc/self/exe");
        let spawn_err = |source: std::io::Error| HelperError::Spawn {
            role,
            exe: exe.clone(),
            source,
        };
        let (ours, theirs) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| spawn_err(e.into()))?;
        let mut command = Command::new(&exe);
        command
            .env(ROLE_ENV, role)
            .env(CHANNEL_FD_ENV, theirs.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(log.map_or_else(Stdio::null, Stdio::from));
        sys::inherit_fd(&mut command, theirs.as_raw_fd());
        let child = {
            let _spawning = SPAWN.lock().unwrap_or_else(|e| e.into_inner());
            command.spawn().map_err(spawn_err)?
        };
        drop(theirs);
        // The shim's reaper (containerd-shim's SIGCHLD handler) waits for it; its exit code
        // reaches the task through the exit monitor.
        let pid = child.id();
        drop(child);
        Ok(Self {
            role,
            pid,
            channel: Mutex::new(ours),
        })
    }

    /// The helper's host pid.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// Sends `request` (with `fds`) and waits for the answer.
    pub fn call(&self, request: &Request, fds: &[OwnedFd]) -> Result<Reply, HelperError> {
        let channel = self.channel.lock().unwrap_or_else(|e| e.into_inner());
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        let err = |source| HelperError::Channel {
            role: self.role,
            pid: self.pid,
            source,
        };
        protocol::send(channel.as_fd(), request, &raw).map_err(err)?;
        protocol::receive::<Reply>(channel.as_fd())
            .map(|(reply, _)| reply)
            .map_err(err)
    }
}

/// The helper side: its channel end, from [`CHANNEL_FD_ENV`].
pub fn helper_channel() -> Result<OwnedFd, String> {
    let fd = std::env::var(CHANNEL_FD_ENV)
        .ok()
        .and_then(|v| v.parse::<i32>().ok())
        .ok_or_else(|| format!("{CHANNEL_FD_ENV} is not set to an fd number"))?;
    // Not passed on to the enclave (it reports host variables it does not know).
    std::env::remove_var(CHANNEL_FD_ENV);
    std::env::remove_var(ROLE_ENV);
    sys::own_fd(fd).map_err(|e| format!("{CHANNEL_FD_ENV}={fd} is not an open socket: {e}"))
}

/// Writes the helper's pid into the bundle (for `delete` after a dead shim).
pub fn write_pid_file(bundle: &Path, pid: u32) -> std::io::Result<()> {
    std::fs::write(bundle.join(PID_FILE), pid.to_string())
}
