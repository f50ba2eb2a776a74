//! Starting a process inside a prepared root.

use std::ffi::CString;
use std::os::fd::OwnedFd;
use std::path::PathBuf;
use std::process::{Command, Stdio};

use nix::unistd::Gid;

use super::root::PreparedRoot;
use super::sys::{enter_on_exec, EnterPlan};
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

impl PreparedRoot {
    /// Starts `spec` inside this root in a new mount namespace (a copy of the root's mount
    /// tree attached there and pivoted into, the old root detached), with the image user's credentials, `no_new_privs`, and only the given
    /// stdio fds open. Returns its pid; the caller reaps it.
    pub fn spawn(&self, spec: &ProcessSpec, stdio: [OwnedFd; 3]) -> Result<u32, SpawnError> {
        let program = spec.argv.first().ok_or(SpawnError::NoCommand)?;
        for s in spec.argv.iter().chain(&spec.env).chain([&spec.cwd]) {
            cstring(s)?;
        }
        self.create_dir_all(&spec.cwd)?;
        let creds = self.credentials();
        let root = detached::clone_tree(self.tree()?).map_err(|source| ContainerError::Io {
            what: "copy the mount tree of",
            path: PathBuf::from("/"),
            source,
        })?;
        let plan = EnterPlan {
            root,
            cwd: cstring(&spec.cwd)?,
            uid: creds.uid,
            gid: creds.gid,
            groups: creds.groups.iter().map(|g| Gid::from_raw(*g)).collect(),
        };
        let mut command = Command::new(program);
        command.args(&spec.argv[1..]).env_clear();
        for entry in &spec.env {
            let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
            command.env(name, value);
        }
        let [stdin, stdout, stderr] = stdio;
        command
            .stdin(Stdio::from(stdin))
            .stdout(Stdio::from(stdout))
            .stderr(Stdio::from(stderr));
        enter_on_exec(&mut command, plan);
        match command.spawn() {
            Ok(child) => Ok(child.id()),
            Err(e) => Err(match e.raw_os_error() {
                Some(libc::ENOENT) | Some(libc::ENOTDIR) => SpawnError::NotFound {
                    program: program.clone(),
                },
                Some(libc::EACCES) => SpawnError::PermissionDenied {
                    program: program.clone(),
                },
                _ => SpawnError::Start {
                    program: program.clone(),
                    source: e,
                },
            }),
        }
    }
}
