//! The namespaces a helper enters before anything else runs in it, and the pod sandbox's
//! holder role: what `pause` does under runc-v2 (hold the pod's UTS, IPC and network
//! namespaces, with the pod's hostname, until it is told to stop), without running anything
//! of the sandbox image.

use std::os::fd::AsFd;

use encc_interface::protocol;
use nix::sched::{setns, unshare, CloneFlags};
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

use super::channel::{helper_channel, Reply, Request};
use super::spec::{Join, Namespaces};

/// Enters or makes the namespaces the spec names. Called while the process has one thread
/// (setns and unshare apply to the calling thread).
pub fn enter(namespaces: &Namespaces) -> Result<(), String> {
    let kinds = [
        ("network", CloneFlags::CLONE_NEWNET, &namespaces.net),
        ("uts", CloneFlags::CLONE_NEWUTS, &namespaces.uts),
        ("ipc", CloneFlags::CLONE_NEWIPC, &namespaces.ipc),
    ];
    for (name, flag, join) in kinds {
        match join {
            None => {}
            Some(Join::New) => {
                unshare(flag).map_err(|e| format!("cannot make a new {name} namespace: {e}"))?
            }
            Some(Join::Path(path)) => {
                let file = std::fs::File::open(path).map_err(|e| {
                    format!("cannot open the {name} namespace {}: {e}", path.display())
                })?;
                setns(file.as_fd(), flag).map_err(|e| {
                    format!("cannot join the {name} namespace {}: {e}", path.display())
                })?;
            }
        }
    }
    if let (Some(Join::New), Some(hostname)) = (&namespaces.uts, &namespaces.hostname) {
        nix::unistd::sethostname(hostname)
            .map_err(|e| format!("cannot set the hostname {hostname:?}: {e}"))?;
    }
    Ok(())
}

/// The holder role: set up the namespaces, answer, then wait for SIGTERM or SIGINT and exit
/// 0 (as `pause` does); SIGKILL ends it with 137.
pub fn main() -> i32 {
    let channel = match helper_channel() {
        Ok(channel) => channel,
        Err(e) => {
            eprintln!("encc sandbox holder: {e}");
            return 1;
        }
    };
    // Registered before answering: a stop request right after start is not lost.
    let mut signals = match Signals::new([SIGTERM, SIGINT]) {
        Ok(signals) => signals,
        Err(e) => {
            eprintln!("encc sandbox holder: cannot install signal handlers: {e}");
            return 1;
        }
    };
    let reply = match protocol::receive::<Request>(channel.as_fd()) {
        Ok((Request::Setup { namespaces }, _)) => match enter(&namespaces) {
            Ok(()) => Reply::Done,
            Err(message) => Reply::Failed { message },
        },
        Ok((other, _)) => Reply::Failed {
            message: format!("unexpected request {other:?} to the sandbox holder"),
        },
        Err(e) => {
            eprintln!("encc sandbox holder: {e}");
            return 1;
        }
    };
    let failed = matches!(reply, Reply::Failed { .. });
    if let Err(e) = protocol::send(channel.as_fd(), &reply, &[]) {
        eprintln!("encc sandbox holder: {e}");
        return 1;
    }
    if failed {
        return 1;
    }
    drop(channel);
    if let Some(signal) = signals.forever().next() {
        log::info!(
            "sandbox holder {} stops on signal {signal}",
            std::process::id()
        );
    }
    0
}
