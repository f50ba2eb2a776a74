//! `containerd-shim-encc-v2`: encc as a containerd runtime (`io.containerd.encc.v2`, shim v2
//! over ttrpc, task API v2 as containerd 1.6 speaks it).
//!
//! Process layout (the PAL keeps one enclave per process, so each container gets one):
//!
//! ```text
//! containerd ──ttrpc──▶ shim (one per pod, grouped by io.kubernetes.cri.sandbox-id)
//!                        ├─ holder   (pod sandbox: holds the pod's namespaces, runs nothing)
//!                        └─ runner   (one per application container: loads the PAL)
//!                             └─ enclave (the native PAL's init; stage 1, stage 2, the image)
//! ```
//!
//! The runner and the holder are this binary again in another role ([`channel::ROLE_ENV`]);
//! the shim links no enclave code, only the PAL loader.

#![deny(unsafe_code)]

mod api;
mod channel;
mod holder;
mod procfs;
mod runner;
mod service;
mod spec;
#[allow(unsafe_code)]
mod sys;
mod task;

use std::os::unix::fs::FileTypeExt;
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};

use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Config, DeleteResponse, ExitSignal, Flags, StartOpts};
use nix::sys::signal::{kill, Signal};
use nix::unistd::Pid;

use service::Service;
use spec::Bundle;

/// The runtime name containerd knows this shim by.
const RUNTIME_ID: &str = "io.containerd.encc.v2";

fn main() {
    match std::env::var(channel::ROLE_ENV).as_deref() {
        Ok(channel::RUNNER_ROLE) => std::process::exit(runner::main()),
        Ok(channel::HOLDER_ROLE) => std::process::exit(holder::main()),
        _ => containerd_shim::run::<Shim>(RUNTIME_ID, None),
    }
}

/// The shim daemon.
struct Shim {
    namespace: String,
    exit: Arc<ExitSignal>,
}

impl containerd_shim::Shim for Shim {
    type T = Service;

    fn new(_runtime_id: &str, args: &Flags, _config: &mut Config) -> Self {
        Self {
            namespace: args.namespace.clone(),
            exit: Arc::new(ExitSignal::default()),
        }
    }

    /// `start`: one shim per pod (the sandbox id groups a pod's containers), as runc-v2.
    fn start_shim(&mut self, opts: StartOpts) -> Result<String, containerd_shim::Error> {
        let cwd = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("cannot read the bundle: {e}")))?;
        let grouping = Bundle::load(&cwd)
            .ok()
            .and_then(|b| b.sandbox_id().map(str::to_owned))
            .unwrap_or_else(|| opts.id.clone());
        // A container of a pod whose shim runs: its address, and no process started (as
        // runc-v2 does). containerd-shim's `spawn` would start a shim that finds the socket
        // taken and exits; under load that path was seen to keep `start` from returning
        // until containerd killed it (StartContainer: "start failed: signal: killed").
        let address = containerd_shim::socket_address(&opts.address, &opts.namespace, &grouping);
        let socket = address.trim_start_matches("unix://");
        if std::os::unix::net::UnixStream::connect(socket).is_ok() {
            containerd_shim::synchronous::util::write_address(&address)?;
            return Ok(address);
        }
        let (_, address) = containerd_shim::spawn(opts, &grouping, Vec::new())?;
        containerd_shim::synchronous::util::write_address(&address)?;
        Ok(address)
    }

    /// `delete`: cleans up after a shim that died: stops the container's helper (a runner
    /// destroys its enclave, which unmounts everything and removes its store files) and
    /// waits until none of its processes is left.
    fn delete_shim(&mut self) -> Result<DeleteResponse, containerd_shim::Error> {
        let bundle = std::env::current_dir()
            .map_err(|e| containerd_shim::Error::Other(format!("cannot read the bundle: {e}")))?;
        let pid = std::fs::read_to_string(bundle.join(channel::PID_FILE))
            .ok()
            .and_then(|s| s.trim().parse::<u32>().ok());
        if let Some(pid) = pid.filter(|pid| is_helper(*pid)) {
            stop_tree(pid);
        }
        let _ = std::fs::remove_file(bundle.join(channel::PID_FILE));
        let _ = std::fs::remove_dir_all(task::instance_dir(&bundle));
        remove_dead_socket(&bundle);
        Ok(DeleteResponse {
            pid: pid.unwrap_or(0),
            exit_status: 128 + libc::SIGKILL as u32,
            exited_at: containerd_shim::protos::protobuf::MessageField::some(service::timestamp(
                SystemTime::now(),
            )),
            ..Default::default()
        })
    }

    fn wait(&mut self) {
        self.exit.wait();
    }

    fn create_task_service(&self, publisher: RemotePublisher) -> Service {
        Service::new(self.namespace.clone(), publisher, Arc::clone(&self.exit))
    }
}

/// Removes the socket of the bundle's shim (its `address` file) when nothing listens on it:
/// a shim killed with SIGKILL cannot remove its own, and containerd-shim's `delete` does
/// not. A shim still serving other containers of the pod keeps its socket.
fn remove_dead_socket(bundle: &std::path::Path) {
    let Ok(address) = std::fs::read_to_string(bundle.join("address")) else {
        return;
    };
    let socket = std::path::Path::new(address.trim().trim_start_matches("unix://"));
    let is_socket = std::fs::symlink_metadata(socket).is_ok_and(|m| m.file_type().is_socket());
    if is_socket && std::os::unix::net::UnixStream::connect(socket).is_err() {
        match std::fs::remove_file(socket) {
            Ok(()) => log::info!("removed the dead shim's socket {}", socket.display()),
            Err(e) => log::warn!(
                "cannot remove the dead shim's socket {}: {e}",
                socket.display()
            ),
        }
    }
}

/// Whether `pid` runs this program (not a recycled pid).
fn is_helper(pid: u32) -> bool {
    let exe = std::fs::read_link(format!("/proc/{pid}/exe"));
    match (exe, std::env::current_exe()) {
        (Ok(theirs), Ok(ours)) => theirs == ours,
        _ => false,
    }
}

fn alive(pid: u32) -> bool {
    match std::fs::read_to_string(format!("/proc/{pid}/stat")) {
        Ok(stat) => !stat
            .rsplit_once(')')
            .is_some_and(|(_, rest)| rest.trim_start().starts_with('Z')),
        Err(_) => false,
    }
}

/// SIGTERM to the helper (a runner then destroys its enclave), SIGKILL to whatever of its
/// tree is left after a grace period; returns when none of it runs.
fn stop_tree(pid: u32) {
    let tree = procfs::tree(pid);
    log::info!("stopping encc helper {pid} and its processes {tree:?}");
    let _ = kill(Pid::from_raw(pid as i32), Signal::SIGTERM);
    if !wait_gone(&tree, Duration::from_secs(20)) {
        for p in &tree {
            let _ = kill(Pid::from_raw(*p as i32), Signal::SIGKILL);
        }
        wait_gone(&tree, Duration::from_secs(5));
    }
}

fn wait_gone(pids: &[u32], limit: Duration) -> bool {
    let deadline = Instant::now() + limit;
    while Instant::now() < deadline {
        if !pids.iter().any(|p| alive(*p)) {
            return true;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    false
}
