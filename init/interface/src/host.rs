//! The host side of a native enclave: starts an enclave process (PID 1 of fresh mount, pid,
//! ipc and uts namespaces) and drives it with the PAL calls over the control channel. Used
//! by the `init` binary, `encc rootfs run` and the native PAL library (which links none of
//! the enclave's code: the enclave is another program, started here).

use std::collections::HashMap;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, OwnedFd};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};

use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::config::BootConfig;
use crate::names::CONTROL_FD_ENV;
use crate::protocol::{self, ChannelError, KeyHex, Reply, Request, RootHash};

/// What `init`/`open` reports.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Ready {
    /// The rootfs measurement.
    pub root_hash: RootHash,
    /// The program create_process may start.
    pub entry_program: String,
}

/// A failed PAL call.
#[derive(Debug, thiserror::Error)]
pub enum EnclaveError {
    /// The enclave refused or failed the call.
    #[error("{message}")]
    Refused {
        /// errno for the PAL.
        errno: i32,
        /// The enclave's explanation.
        message: String,
    },
    /// The enclave process could not be started.
    #[error("cannot start the enclave process {exe}")]
    Spawn {
        /// The program.
        exe: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The control channel failed (the enclave died).
    #[error(transparent)]
    Channel(#[from] ChannelError),
    /// The enclave answered something unexpected.
    #[error("unexpected answer from the enclave: {0:?}")]
    Unexpected(Reply),
}

impl EnclaveError {
    /// The errno a PAL call returns for this error.
    pub fn errno(&self) -> i32 {
        match self {
            Self::Refused { errno, .. } => *errno,
            Self::Spawn { source, .. } => source.raw_os_error().unwrap_or(libc::EIO),
            _ => libc::EIO,
        }
    }
}

#[derive(Default)]
struct State {
    replies: Vec<Reply>,
    exits: HashMap<i32, i32>,
    closed: bool,
}

struct Shared {
    state: Mutex<State>,
    changed: Condvar,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `take` finds what it wants in the state, or the channel closes.
    fn wait_for<T>(
        &self,
        mut take: impl FnMut(&mut State) -> Option<T>,
    ) -> Result<T, EnclaveError> {
        let mut state = self.lock();
        loop {
            if let Some(found) = take(&mut state) {
                return Ok(found);
            }
            if state.closed {
                return Err(ChannelError::Closed.into());
            }
            state = self.changed.wait(state).unwrap_or_else(|e| e.into_inner());
        }
    }
}

/// A running native enclave.
pub struct Enclave {
    control: OwnedFd,
    shared: Arc<Shared>,
    requests: Mutex<()>,
    process: Mutex<Option<Child>>,
}

impl Enclave {
    /// Starts `exe` (a binary that calls `encc_init::enclave::run_if_requested` first) as
    /// the enclave's PID 1. Its stderr is this process's stderr (the enclave's log).
    pub fn spawn(exe: &Path) -> Result<Self, EnclaveError> {
        let spawn_err = |source| EnclaveError::Spawn {
            exe: exe.display().to_string(),
            source,
        };
        let (host_end, enclave_end) = socketpair(
            AddressFamily::Unix,
            SockType::SeqPacket,
            None,
            SockFlag::SOCK_CLOEXEC,
        )
        .map_err(|e| spawn_err(e.into()))?;
        let mut command = Command::new(exe);
        command
            .env(CONTROL_FD_ENV, enclave_end.as_raw_fd().to_string())
            .stdin(Stdio::null())
            .stdout(Stdio::null());
        crate::sys::enter_namespaces_on_exec(&mut command, enclave_end.as_raw_fd());
        let child = command.spawn().map_err(spawn_err)?;
        drop(enclave_end);

        let shared = Arc::new(Shared {
            state: Mutex::new(State::default()),
            changed: Condvar::new(),
        });
        let reader_fd = host_end.try_clone().map_err(spawn_err)?;
        let reader_shared = Arc::clone(&shared);
        std::thread::Builder::new()
            .name("encc-enclave-events".into())
            .spawn(move || read_events(reader_fd, reader_shared))
            .map_err(spawn_err)?;
        Ok(Self {
            control: host_end,
            shared,
            requests: Mutex::new(()),
            process: Mutex::new(Some(child)),
        })
    }

    /// Sends a request and waits for its answer (not an exit report).
    fn call(&self, request: &Request, fds: &[BorrowedFd<'_>]) -> Result<Reply, EnclaveError> {
        let _serial = self.requests.lock().unwrap_or_else(|e| e.into_inner());
        let raw: Vec<i32> = fds.iter().map(|f| f.as_raw_fd()).collect();
        protocol::send(self.control.as_fd(), request, &raw)?;
        self.shared
            .wait_for(|state| (!state.replies.is_empty()).then(|| state.replies.remove(0)))
    }

    fn expect_ready(reply: Reply) -> Result<Ready, EnclaveError> {
        match reply {
            Reply::Ready {
                root_hash,
                entry_program,
            } => Ok(Ready {
                root_hash,
                entry_program,
            }),
            Reply::Failed { errno, message } => Err(EnclaveError::Refused { errno, message }),
            other => Err(EnclaveError::Unexpected(other)),
        }
    }

    /// The PAL's `init`: stage 1 (pull, verify, decrypt, build) and stage 2 preparation,
    /// run to completion inside the enclave. On failure the enclave has exited, leaving
    /// nothing mounted or running.
    pub fn boot(&self, boot_config: &Path, image: &str) -> Result<Ready, EnclaveError> {
        let reply = self.call(
            &Request::Boot {
                boot_config: boot_config.to_owned(),
                image: image.to_owned(),
            },
            &[],
        )?;
        Self::expect_ready(reply)
    }

    /// Debugging: serve an already pulled image under its data key (raw bytes) instead of
    /// running stage 1.
    pub fn open(
        &self,
        image: &Path,
        key: &[u8],
        config: &BootConfig,
    ) -> Result<Ready, EnclaveError> {
        let reply = self.call(
            &Request::Open {
                image_path: image.to_owned(),
                key_hex: KeyHex(hex::encode(key)),
                config: Box::new(config.clone()),
            },
            &[],
        )?;
        Self::expect_ready(reply)
    }

    /// The PAL's `create_process`: returns the pid in the enclave.
    pub fn create_process(
        &self,
        path: &str,
        argv: &[String],
        env: &[String],
        stdio: [BorrowedFd<'_>; 3],
    ) -> Result<i32, EnclaveError> {
        let reply = self.call(
            &Request::CreateProcess {
                path: path.to_owned(),
                argv: argv.to_vec(),
                env: env.to_vec(),
            },
            &stdio,
        )?;
        match reply {
            Reply::Started { pid } => Ok(pid),
            Reply::Failed { errno, message } => Err(EnclaveError::Refused { errno, message }),
            other => Err(EnclaveError::Unexpected(other)),
        }
    }

    /// The PAL's `exec`: waits for a container process and returns its wait(2) status.
    pub fn wait(&self, pid: i32) -> Result<i32, EnclaveError> {
        self.shared.wait_for(|state| state.exits.remove(&pid))
    }

    /// The PAL's `kill` (pid -1: every container process).
    pub fn kill(&self, pid: i32, signal: i32) -> Result<(), EnclaveError> {
        match self.call(&Request::Kill { pid, signal }, &[])? {
            Reply::Done => Ok(()),
            Reply::Failed { errno, message } => Err(EnclaveError::Refused { errno, message }),
            other => Err(EnclaveError::Unexpected(other)),
        }
    }

    /// The PAL's `destroy`: kills what is left, unmounts, and waits for the enclave to end.
    pub fn destroy(&self) -> Result<(), EnclaveError> {
        let result = match self.call(&Request::Destroy, &[]) {
            Ok(Reply::Done) | Err(EnclaveError::Channel(ChannelError::Closed)) => Ok(()),
            Ok(Reply::Failed { errno, message }) => Err(EnclaveError::Refused { errno, message }),
            Ok(other) => Err(EnclaveError::Unexpected(other)),
            Err(e) => Err(e),
        };
        self.reap_process();
        result
    }

    /// Waits for the enclave process once it has ended (after destroy or a failed boot).
    pub fn reap_process(&self) {
        let child = self
            .process
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .take();
        if let Some(mut child) = child {
            let _ = nix::sys::socket::shutdown(
                self.control.as_raw_fd(),
                nix::sys::socket::Shutdown::Both,
            );
            let _ = child.wait();
        }
    }
}

impl Drop for Enclave {
    fn drop(&mut self) {
        // Closing the channel makes PID 1 tear everything down.
        self.reap_process();
    }
}

fn read_events(fd: OwnedFd, shared: Arc<Shared>) {
    loop {
        let event = protocol::receive::<Reply>(fd.as_fd());
        let mut state = shared.lock();
        match event {
            Ok((Reply::Exited { pid, status }, _)) => {
                state.exits.insert(pid, status);
            }
            Ok((reply, _)) => state.replies.push(reply),
            Err(e) => {
                if !matches!(e, ChannelError::Closed) {
                    log::warn!("{e}");
                }
                state.closed = true;
                shared.changed.notify_all();
                return;
            }
        }
        shared.changed.notify_all();
    }
}
