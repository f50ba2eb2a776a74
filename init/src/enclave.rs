//! The native enclave's PID 1: runs stage 1 and prepares stage 2 on the host's `init`
//! request, starts the container process on `create_process`, reaps every zombie, forwards
//! the host's `kill`s, and tears everything down on `destroy` (or when the host goes away).

use std::collections::BTreeMap;
use std::os::fd::{AsFd, OwnedFd};

use encc_rootfs::container::{ContainerProcess, SpawnError};
use nix::errno::Errno;
use nix::poll::{poll, PollFd, PollFlags, PollTimeout};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::signalfd::{SfdFlags, SignalFd};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::Pid;

use crate::launch::{compose, entry_program, LaunchRequest};
use crate::stage2::{open_pulled, Running};
use encc_interface::protocol::{self, ChannelError, Reply, Request};

pub use encc_interface::names::CONTROL_FD_ENV;

/// The line the native platform prints when an enclave starts.
pub const SIMULATION_NOTICE: &str = "encc: native platform: simulated enclave (namespaces only; no SGX, no memory encryption, sample attestation)";

/// Which requests an enclave accepts besides the PAL calls.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Requests {
    /// Only the PAL calls: `init` runs stage 1 under the boot config's policy (`init`).
    Pal,
    /// Also `open` of an already pulled image with a key the host gives, skipping stage 1
    /// and the policy (`encc rootfs run`, a debugging tool).
    PalAndDebugOpen,
}

/// When the current process was started as an enclave (by
/// [`encc_interface::host::Enclave`]), runs PID 1 and exits; when it was started as a
/// container's PID 1 by an enclave, runs that and exits; otherwise returns. Call first thing
/// in `main`.
pub fn run_if_requested(accepted: Requests) {
    encc_rootfs::container::run_pid1_if_requested();
    let Some(fd) = std::env::var_os(CONTROL_FD_ENV) else {
        return;
    };
    std::env::remove_var(CONTROL_FD_ENV);
    // The host's environment does not steer the enclave (TLS roots, proxies, logging).
    crate::config::scrub_own_environment();
    // The enclave's log goes to the stderr it shares with the host side; its level is the
    // boot config's, quiet until that is read.
    crate::config::init_enclave_logging();
    let code = match fd.to_str().and_then(|s| s.parse::<i32>().ok()) {
        Some(fd) if fd > 2 => {
            let control = crate::sys::owned_fd(fd);
            match Pid1::start(control, accepted) {
                Ok(mut pid1) => pid1.serve(),
                Err(e) => {
                    log::error!("enclave start failed: {e}");
                    1
                }
            }
        }
        _ => {
            eprintln!("encc: {CONTROL_FD_ENV} is not a file descriptor number");
            1
        }
    };
    std::process::exit(code);
}

struct Pid1 {
    control: OwnedFd,
    accepted: Requests,
    signals: SignalFd,
    running: Option<Running>,
    /// Running containers by the pid of their PID 1.
    containers: BTreeMap<i32, ContainerProcess>,
}

/// Why the enclave could not start.
#[derive(Debug, thiserror::Error)]
enum StartError {
    #[error("cannot set up the enclave's signal handling")]
    Signals(#[source] Errno),
    #[error("cannot make the enclave's mounts private")]
    Private(#[source] Errno),
}

impl Pid1 {
    fn start(control: OwnedFd, accepted: Requests) -> Result<Self, StartError> {
        eprintln!("{SIMULATION_NOTICE}");
        // Blocked before any thread exists, so every thread inherits the mask and SIGCHLD
        // only arrives through the signalfd.
        let mut mask = SigSet::empty();
        mask.add(Signal::SIGCHLD);
        mask.thread_block().map_err(StartError::Signals)?;
        let signals = SignalFd::with_flags(&mask, SfdFlags::SFD_CLOEXEC | SfdFlags::SFD_NONBLOCK)
            .map_err(StartError::Signals)?;
        nix::mount::mount(
            None::<&str>,
            "/",
            None::<&str>,
            nix::mount::MsFlags::MS_REC | nix::mount::MsFlags::MS_PRIVATE,
            None::<&str>,
        )
        .map_err(StartError::Private)?;
        Ok(Self {
            control,
            accepted,
            signals,
            running: None,
            containers: BTreeMap::new(),
        })
    }

    fn reply(&self, reply: &Reply) {
        if let Err(e) = protocol::send(self.control.as_fd(), reply, &[]) {
            log::warn!("cannot answer the host: {e}");
        }
    }

    /// Serves host requests until destroy or the host goes away; returns the exit code.
    fn serve(&mut self) -> i32 {
        loop {
            let (control_ready, signal_ready) = {
                let mut fds = [
                    PollFd::new(self.control.as_fd(), PollFlags::POLLIN),
                    PollFd::new(self.signals.as_fd(), PollFlags::POLLIN),
                ];
                match poll(&mut fds, PollTimeout::NONE) {
                    Ok(_) | Err(Errno::EINTR) => {}
                    Err(e) => {
                        log::error!("poll failed: {e}");
                        return self.shut_down(1);
                    }
                }
                let ready = |f: &PollFd<'_>| f.revents().is_some_and(|r| !r.is_empty());
                (ready(&fds[0]), ready(&fds[1]))
            };
            if signal_ready {
                while let Ok(Some(_)) = self.signals.read_signal() {}
                self.reap();
            }
            if control_ready {
                match protocol::receive::<Request>(self.control.as_fd()) {
                    Ok((request, fds)) => {
                        if let Some(code) = self.handle(request, fds) {
                            return code;
                        }
                    }
                    Err(ChannelError::Closed) => {
                        log::info!("the host closed the control channel: tearing down");
                        return self.shut_down(0);
                    }
                    Err(e) => {
                        log::error!("{e}");
                        return self.shut_down(1);
                    }
                }
            }
        }
    }

    /// Handles one request; `Some(code)` ends the enclave.
    fn handle(&mut self, request: Request, fds: Vec<OwnedFd>) -> Option<i32> {
        match request {
            Request::Boot { .. } | Request::Open { .. } if self.running.is_some() => {
                self.reply(&Reply::Failed {
                    errno: libc::EEXIST,
                    message: "the enclave is already initialised".into(),
                });
                None
            }
            Request::Boot { boot_config, image } => {
                let result = crate::platform::native::boot(&boot_config, &image)
                    .map_err(|e| format!("{e:#}"));
                self.become_ready(result)
            }
            Request::Open { .. } if self.accepted == Requests::Pal => {
                self.reply(&Reply::Failed {
                    errno: libc::EPERM,
                    message:
                        "this enclave accepts only the PAL calls (open is for debugging tools)"
                            .into(),
                });
                None
            }
            Request::Open {
                image_path,
                key_hex,
                config,
            } => {
                let result =
                    open_pulled(image_path, &key_hex.0, *config).map_err(|e| format!("{e:#}"));
                self.become_ready(result)
            }
            Request::CreateProcess { path, argv, env } => {
                let reply = self.create_process(&path, argv, env, fds);
                self.reply(&reply);
                None
            }
            Request::Kill { pid, signal } => {
                let reply = self.kill(pid, signal);
                self.reply(&reply);
                None
            }
            Request::Destroy => {
                let code = self.shut_down(0);
                self.reply(&Reply::Done);
                Some(code)
            }
        }
    }

    fn become_ready(&mut self, result: Result<Running, String>) -> Option<i32> {
        match result {
            Ok(running) => {
                let reply = Reply::Ready {
                    root_hash: running.root_hash,
                    entry_program: entry_program(&running.image).unwrap_or_default().to_owned(),
                };
                self.running = Some(running);
                self.reply(&reply);
                None
            }
            Err(message) => {
                // The host prints it (the PAL's last error): logged here only on request.
                log::debug!("start failed: {message}");
                self.reply(&Reply::Failed {
                    errno: libc::EIO,
                    message,
                });
                Some(1)
            }
        }
    }

    fn create_process(
        &mut self,
        path: &str,
        argv: Vec<String>,
        env: Vec<String>,
        fds: Vec<OwnedFd>,
    ) -> Reply {
        let failed = |errno, message: String| Reply::Failed { errno, message };
        let Some(running) = &self.running else {
            return failed(libc::EINVAL, "the enclave is not initialised".into());
        };
        let entry = entry_program(&running.image).unwrap_or_default();
        if path != entry {
            return failed(
                libc::EACCES,
                format!("{path:?} is not the image's entry point {entry:?}"),
            );
        }
        let Ok::<[OwnedFd; 3], _>(stdio) = fds.try_into() else {
            return failed(
                libc::EINVAL,
                "create_process needs exactly three stdio fds".into(),
            );
        };
        let request = LaunchRequest { argv, env };
        let spec = match compose(
            &running.image,
            &running.config,
            &request,
            &running.root.credentials().home,
        ) {
            Ok(spec) => spec,
            Err(e) => return failed(libc::EPERM, e.to_string()),
        };
        match running.root.spawn(&spec, stdio) {
            Ok(process) => {
                let pid = process.pid() as i32;
                log::info!(
                    "started {:?} in a container whose PID 1 is {pid}",
                    spec.argv
                );
                self.containers.insert(pid, process);
                Reply::Started { pid }
            }
            Err(e) => {
                let errno = match &e {
                    SpawnError::NotFound { .. } => libc::ENOENT,
                    SpawnError::PermissionDenied { .. } => libc::EACCES,
                    _ => libc::EIO,
                };
                failed(errno, e.to_string())
            }
        }
    }

    fn kill(&self, pid: i32, signal: i32) -> Reply {
        let Ok(signal) = Signal::try_from(signal) else {
            return Reply::Failed {
                errno: libc::EINVAL,
                message: format!("{signal} is not a signal"),
            };
        };
        let targets: Vec<i32> = if pid == -1 {
            self.containers.keys().copied().collect()
        } else if self.containers.contains_key(&pid) {
            vec![pid]
        } else {
            return Reply::Failed {
                errno: libc::ESRCH,
                message: format!("no container process {pid}"),
            };
        };
        for target in targets {
            if let Err(e) = kill(Pid::from_raw(target), signal) {
                log::warn!("cannot send {signal} to {target}: {e}");
            }
        }
        Reply::Done
    }

    /// Reaps every child that has ended; container processes are reported to the host.
    fn reap(&mut self) {
        loop {
            let (pid, status) = match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                Ok(WaitStatus::Exited(pid, code)) => (pid, (code & 0xff) << 8),
                Ok(WaitStatus::Signaled(pid, sig, core)) => {
                    (pid, sig as i32 | if core { 0x80 } else { 0 })
                }
                Ok(WaitStatus::StillAlive) | Err(_) => return,
                Ok(_) => continue,
            };
            let pid = pid.as_raw();
            if let Some(process) = self.containers.remove(&pid) {
                let status = process.exit_status(status);
                log::info!("container process {pid} ended with wait status {status:#x}");
                self.reply(&Reply::Exited { pid, status });
            }
        }
    }

    /// Kills every process of the enclave, reaps them, unmounts, removes the pulled image.
    fn shut_down(&mut self, code: i32) -> i32 {
        // kill(-1) from PID 1 reaches every other process of the pid namespace.
        let _ = kill(Pid::from_raw(-1), Signal::SIGKILL);
        while let Ok(_) | Err(Errno::EINTR) = waitpid(None, None) {}
        self.containers.clear();
        let mut code = code;
        if let Some(running) = self.running.take() {
            if let Err(e) = running.root.teardown() {
                log::error!("teardown: {e}");
                code = 1;
            }
            if let Some(image) = running.pulled {
                if let Err(e) = std::fs::remove_file(&image) {
                    log::warn!("cannot remove {}: {e}", image.display());
                }
            }
        }
        code
    }
}
