//! Starting a process inside a prepared root: the enclave starts the container's PID 1
//! (see [`super::pid1`]) in a new PID namespace and hands it the plan; PID 1 reports back
//! whether the entrypoint started and, at the end, its wait status.

use std::ffi::CString;
use std::io::{Read as _, Write as _};
use std::net::Shutdown;
use std::os::fd::{AsRawFd, OwnedFd};
use std::os::unix::net::UnixStream;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, Stdio};

use super::channel::{Plan, Report};
use super::pid1::ARGV0;
use super::root::PreparedRoot;
use super::sys;
use super::ContainerError;
use crate::detached;

/// The process to run: everything already decided by the caller (the image config
/// filtered by the boot config).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProcessSpec {
    /// argv; `argv[0]` is looked up in the container's `PATH` when it has no `/`.
    pub argv: Vec<String>,
    /// Environment, `NAME=value`.
    pub env: Vec<String>,
    /// Working directory (absolute inside the root; created when missing).
    pub cwd: String,
}

/// Why a process could not be started, in the words `docker run` uses.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    /// Empty argv.
    #[error("no command: the image has no Entrypoint or Cmd and none was given")]
    NoCommand,
    /// A NUL byte in argv, env or cwd.
    #[error("argument, environment entry or working directory {0:?} contains a NUL byte")]
    Nul(String),
    /// The program is not in `PATH` (or the path does not exist).
    #[error("exec: \"{program}\": {}", not_found_reason(program))]
    NotFound {
        /// argv[0].
        program: String,
    },
    /// The program exists but cannot be executed.
    #[error("exec: \"{program}\": permission denied")]
    PermissionDenied {
        /// argv[0].
        program: String,
    },
    /// Preparing the working directory failed.
    #[error(transparent)]
    Root(#[from] ContainerError),
    /// Setting up the container (namespaces, mounts, confinement) failed.
    #[error("cannot start \"{program}\": {message}")]
    Setup {
        /// argv[0].
        program: String,
        /// What failed, as the container's PID 1 reported it.
        message: String,
    },
    /// Any other failure between fork and exec.
    #[error("cannot start \"{program}\"")]
    Start {
        /// argv[0].
        program: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
}

fn not_found_reason(program: &str) -> String {
    if program.contains('/') {
        format!("stat {program}: no such file or directory")
    } else {
        "executable file not found in $PATH".to_owned()
    }
}

impl SpawnError {
    /// The exit status a shell would give: 127 not found, 126 not executable, else 1.
    pub fn exit_code(&self) -> i32 {
        match self {
            Self::NotFound { .. } => 127,
            Self::PermissionDenied { .. } => 126,
            _ => 1,
        }
    }
}

fn cstring(s: &str) -> Result<CString, SpawnError> {
    CString::new(s).map_err(|_| SpawnError::Nul(s.to_owned()))
}

/// A started container: its PID 1 (the pid to signal and reap) and the channel on which
/// PID 1 reports the entrypoint's wait status.
#[derive(Debug)]
pub struct ContainerProcess {
    pid: u32,
    channel: UnixStream,
}

impl ContainerProcess {
    /// The pid of the container's PID 1, in the caller's PID namespace.
    pub fn pid(&self) -> u32 {
        self.pid
    }

    /// The entrypoint's wait(2) status, once [`Self::pid`] has been reaped with
    /// `pid1_status`: what PID 1 reported, or PID 1's own status when it ended before it
    /// could report (a SIGKILL from the host).
    pub fn exit_status(self, pid1_status: i32) -> i32 {
        let mut bytes = Vec::new();
        // PID 1 has exited: what it wrote is there; never wait for more.
        let _ = self.channel.set_nonblocking(true);
        let _ = (&self.channel).read_to_end(&mut bytes);
        match Report::decode(&bytes) {
            Some(Report::Exited(status)) => status,
            _ => pid1_status,
        }
    }
}

impl PreparedRoot {
    /// Starts `spec` inside this root: the container's PID 1 in new PID and mount
    /// namespaces, pivoted into the root, confined (image user, Docker's default
    /// capabilities and seccomp profile, `no_new_privs`, masked paths), starts the
    /// entrypoint with only the given stdio fds open. The caller reaps the returned pid.
    pub fn spawn(
        &self,
        spec: &ProcessSpec,
        stdio: [OwnedFd; 3],
    ) -> Result<ContainerProcess, SpawnError> {
        let program = spec.argv.first().ok_or(SpawnError::NoCommand)?;
        for s in spec.argv.iter().chain(&spec.env).chain([&spec.cwd]) {
            cstring(s)?;
        }
        self.create_dir_all(&spec.cwd)?;
        let creds = self.credentials();
        let plan = Plan {
            cwd: spec.cwd.clone(),
            uid: creds.uid,
            gid: creds.gid,
            groups: creds.groups.clone(),
            argv: spec.argv.clone(),
            env: spec.env.clone(),
        };
        let start_error = |source| SpawnError::Start {
            program: program.clone(),
            source,
        };
        // A copy of the root's detached mount tree, for this container alone.
        let tree = detached::clone_tree(self.tree()?).map_err(|source| ContainerError::Io {
            what: "copy the mount tree of",
            path: "/".into(),
            source,
        })?;
        let (channel, theirs) = UnixStream::pair().map_err(start_error)?;
        let mut command = Command::new("/proc/self/exe");
        let [stdin, stdout, stderr] = stdio;
        command
            .arg0(ARGV0)
            .arg(theirs.as_raw_fd().to_string())
            .arg(tree.as_raw_fd().to_string())
            .env_clear()
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        sys::keep_on_exec(&mut command, [theirs.as_raw_fd(), tree.as_raw_fd()]);
        let child = sys::in_new_pid_namespace(|| command.spawn()).map_err(start_error)?;
        drop((theirs, tree));
        let process = ContainerProcess {
            pid: child.id(),
            channel,
        };
        (&process.channel)
            .write_all(&plan.encode())
            .and_then(|()| process.channel.shutdown(Shutdown::Write))
            .map_err(start_error)?;
        match first_report(&process.channel) {
            Some(Report::Started) => Ok(process),
            report => Err(spawn_error(program, report)),
        }
    }
}

/// PID 1's first report: started, or why not (then PID 1 exits).
fn first_report(channel: &UnixStream) -> Option<Report> {
    let mut first = [0u8; Report::FIXED_LEN];
    let mut reader = channel;
    reader.read_exact(&mut first).ok()?;
    let mut bytes = first.to_vec();
    if first[0] == b'F' {
        let _ = reader.read_to_end(&mut bytes);
    }
    Report::decode(&bytes)
}

/// The error for a report other than [`Report::Started`].
fn spawn_error(program: &str, report: Option<Report>) -> SpawnError {
    let program = program.to_owned();
    match report {
        Some(Report::ExecFailed(libc::ENOENT | libc::ENOTDIR)) => SpawnError::NotFound { program },
        Some(Report::ExecFailed(libc::EACCES)) => SpawnError::PermissionDenied { program },
        Some(Report::ExecFailed(errno)) => SpawnError::Start {
            program,
            source: std::io::Error::from_raw_os_error(errno),
        },
        Some(Report::SetupFailed(_, message)) => SpawnError::Setup { program, message },
        Some(Report::Started | Report::Exited(_)) | None => SpawnError::Setup {
            program,
            message: "the container's PID 1 ended before it started the entrypoint".into(),
        },
    }
}
