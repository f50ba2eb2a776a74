//! Stage 2 on the native platform: the container root ([`PreparedRoot`]: protected image
//! through FUSE, overlayfs with a tmpfs upper layer, `/proc`, `/dev`, `/sys`, `/tmp`) and
//! processes started in it ([`ProcessSpec`]): the container's own PID 1 in new PID and mount
//! namespaces (its `/proc`, the OCI default masked and read-only paths, pivot_root), the
//! image user's credentials, Docker's default capabilities and seccomp profile,
//! `no_new_privs`, exec.
//!
//! The root is built from detached mounts that no path names, so the host cannot reach it
//! through the store or any other directory it shares with the enclave.
//!
//! Every binary that runs an enclave calls [`run_pid1_if_requested`] first thing in `main`.

mod caps;
mod channel;
mod in_root;
mod masked;
mod pid1;
mod root;
mod seccomp;
mod spawn;
mod sys;
mod user;

use std::path::PathBuf;

pub use pid1::run_if_requested as run_pid1_if_requested;
pub use root::{PreparedRoot, RootSetup};
pub use seccomp::SeccompError;
pub use spawn::{ContainerProcess, ProcessSpec, SpawnError};
pub use user::{resolve_user, Credentials, UserError};

/// Errors while preparing or tearing down a container root.
#[derive(Debug, thiserror::Error)]
pub enum ContainerError {
    /// A file operation failed.
    #[error("cannot {what} {}", path.display())]
    Io {
        /// The operation.
        what: &'static str,
        /// The path (inside the root when absolute).
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// A mount failed.
    #[error("cannot mount {fstype} on {}", target.display())]
    Mount {
        /// File system type.
        fstype: String,
        /// Target.
        target: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The FUSE server could not be mounted or unmounted.
    #[error(transparent)]
    Fuse(crate::fuse::FuseError),
    /// The image's `User` cannot be resolved.
    #[error("cannot resolve the image user")]
    User(#[from] UserError),
}
