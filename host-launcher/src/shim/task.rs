//! One container of the shim: its helper process, its status, its stdio. An application
//! container's helper is a runner (one enclave); a pod sandbox's is a holder.

use std::fs::{File, OpenOptions};
use std::io::{Read, Write};
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use super::channel::{Helper, HelperError, Reply, Request};
use super::spec::{Bundle, Kind};

/// Where a container is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Status {
    /// The helper is being set up (the enclave boots); not yet known to containerd.
    Creating,
    /// Create answered: the enclave is ready, nothing of the image runs yet.
    Created,
    /// The entry program runs (or the sandbox holder holds the namespaces).
    Running,
    /// The helper ended with this exit code.
    Stopped { code: u32, at: SystemTime },
}

/// containerd's stdio fifo paths (empty: none).
#[derive(Debug, Clone, Default)]
pub struct StdioPaths {
    pub stdin: String,
    pub stdout: String,
    pub stderr: String,
}

/// A failed task operation, with the gRPC code containerd maps it to.
#[derive(Debug, thiserror::Error)]
pub enum TaskError {
    /// The user's error (policy rejection, failed pull, refused override, bad spec).
    #[error("{0}")]
    Failed(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Precondition(String),
    #[error("{0}")]
    Invalid(String),
    #[error(transparent)]
    Helper(#[from] HelperError),
    #[error("{what}")]
    Io {
        what: String,
        #[source]
        source: std::io::Error,
    },
}

/// One container.
#[derive(Debug)]
pub struct Task {
    pub id: String,
    pub bundle: PathBuf,
    pub stdio: StdioPaths,
    pub kind: Kind,
    pub spec: Bundle,
    pub helper: Helper,
    status: Mutex<Status>,
    changed: Condvar,
    /// The write end of the container's stdin pipe, while it is open (CloseIO drops it).
    stdin: Arc<Mutex<Option<File>>>,
}

impl Task {
    pub fn new(
        id: String,
        bundle: PathBuf,
        stdio: StdioPaths,
        spec: Bundle,
        helper: Helper,
    ) -> Self {
        Self {
            id,
            bundle,
            stdio,
            kind: spec.kind,
            spec,
            helper,
            status: Mutex::new(Status::Creating),
            changed: Condvar::new(),
            stdin: Arc::new(Mutex::new(None)),
        }
    }

    pub fn pid(&self) -> u32 {
        self.helper.pid()
    }

    fn lock(&self) -> MutexGuard<'_, Status> {
        self.status.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn status(&self) -> Status {
        *self.lock()
    }

    /// Moves Creating → Created or Created → Running; false when it has stopped meanwhile.
    pub fn advance(&self, to: Status) -> bool {
        let mut status = self.lock();
        if matches!(*status, Status::Stopped { .. }) {
            return false;
        }
        *status = to;
        self.changed.notify_all();
        true
    }

    /// Records the helper's exit; returns the previous status (None if already stopped).
    pub fn stopped(&self, code: i32) -> Option<Status> {
        let mut status = self.lock();
        let before = *status;
        if matches!(before, Status::Stopped { .. }) {
            return None;
        }
        *status = Status::Stopped {
            code: u32::try_from(code).unwrap_or(255),
            at: SystemTime::now(),
        };
        if let Ok(mut stdin) = self.stdin.lock() {
            stdin.take();
        }
        self.changed.notify_all();
        Some(before)
    }

    /// Waits until the helper has exited (`timeout`: at most that long).
    pub fn wait(&self, timeout: Option<Duration>) -> Option<(u32, SystemTime)> {
        let deadline = timeout.map(|t| std::time::Instant::now() + t);
        let mut status = self.lock();
        loop {
            if let Status::Stopped { code, at } = *status {
                return Some((code, at));
            }
            status = match deadline {
                None => self.changed.wait(status).unwrap_or_else(|e| e.into_inner()),
                Some(deadline) => {
                    let left = deadline.checked_duration_since(std::time::Instant::now())?;
                    self.changed
                        .wait_timeout(status, left)
                        .unwrap_or_else(|e| e.into_inner())
                        .0
                }
            };
        }
    }

    /// Starts the entry program (runner) with the container's stdio.
    pub fn start_runner(&self) -> Result<i32, TaskError> {
        let stdout = open_output(&self.stdio.stdout)?;
        let stderr = open_output(&self.stdio.stderr)?;
        let stdin = self.open_input()?;
        let request = Request::Start {
            argv: self.spec.args.clone(),
            env: self.spec.env.clone(),
        };
        match self.helper.call(&request, &[stdin, stdout, stderr])? {
            Reply::Started { pid } => Ok(pid),
            Reply::Failed { message } => Err(TaskError::Failed(message)),
            other => Err(TaskError::Failed(format!(
                "unexpected answer {other:?} from the encc runner"
            ))),
        }
    }

    /// The container's stdin: a pipe fed from containerd's fifo (so that CloseIO can end
    /// it), or /dev/null.
    fn open_input(&self) -> Result<OwnedFd, TaskError> {
        if self.stdio.stdin.is_empty() {
            return dev_null(false);
        }
        let (read, write) =
            nix::unistd::pipe2(nix::fcntl::OFlag::O_CLOEXEC).map_err(|e| TaskError::Io {
                what: format!("cannot make a stdin pipe for {}", self.id),
                source: e.into(),
            })?;
        *self.stdin.lock().unwrap_or_else(|e| e.into_inner()) = Some(File::from(write));
        let (path, writer, id) = (
            self.stdio.stdin.clone(),
            Arc::clone(&self.stdin),
            self.id.clone(),
        );
        std::thread::spawn(move || copy_stdin(&path, &writer, &id));
        Ok(read)
    }

    /// CloseIO: the container sees the end of its stdin.
    pub fn close_stdin(&self) {
        self.stdin.lock().unwrap_or_else(|e| e.into_inner()).take();
    }

    /// Removes what the shim put into the bundle.
    pub fn remove_files(&self) {
        let _ = std::fs::remove_file(self.bundle.join(super::channel::PID_FILE));
        let _ = std::fs::remove_dir_all(instance_dir(&self.bundle));
    }
}

/// The PAL instance directory of a container (holds a copy of the node's boot config).
pub fn instance_dir(bundle: &Path) -> PathBuf {
    bundle.join("encc-instance")
}

fn dev_null(write: bool) -> Result<OwnedFd, TaskError> {
    OpenOptions::new()
        .read(!write)
        .write(write)
        .open("/dev/null")
        .map(OwnedFd::from)
        .map_err(|source| TaskError::Io {
            what: "cannot open /dev/null".into(),
            source,
        })
}

/// stdout/stderr: containerd's fifo opened read-write and handed to the enclave as it is.
/// Read-write: the open does not wait for a reader, and a reader that goes away does not
/// kill the container with SIGPIPE (the pipe stays readable through this fd), as runc-v2
/// keeps its own read end. Once every process holding it has ended, the reader sees EOF.
fn open_output(path: &str) -> Result<OwnedFd, TaskError> {
    if path.is_empty() {
        return dev_null(true);
    }
    OpenOptions::new()
        .read(true)
        .write(true)
        .open(path)
        .map(OwnedFd::from)
        .map_err(|source| TaskError::Io {
            what: format!("cannot open the stdio fifo {path}"),
            source,
        })
}

fn copy_stdin(path: &str, writer: &Mutex<Option<File>>, id: &str) {
    // Blocks until containerd's side opens the fifo for writing.
    let mut fifo = match File::open(path) {
        Ok(f) => f,
        Err(e) => {
            log::warn!("container {id}: cannot open the stdin fifo {path}: {e}");
            writer.lock().unwrap_or_else(|e| e.into_inner()).take();
            return;
        }
    };
    let mut buf = vec![0u8; 32 * 1024];
    loop {
        let n = match fifo.read(&mut buf) {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        let mut guard = writer.lock().unwrap_or_else(|e| e.into_inner());
        let written = guard.as_mut().map(|w| w.write_all(&buf[..n]));
        if !matches!(written, Some(Ok(()))) {
            break;
        }
    }
    writer.lock().unwrap_or_else(|e| e.into_inner()).take();
}
