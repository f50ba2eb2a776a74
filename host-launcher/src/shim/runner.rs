//! The runner role: one process per application container that loads the PAL (which keeps
//! one enclave per process), boots the enclave (stage 1: pull, verify, decrypt, build), then
//! starts the image's entry program with the container's stdio and waits for it. When it
//! ends, the runner destroys the enclave (unmounting everything and removing the pulled
//! image from the store) and exits with the container's exit code (128+N for signal N): the
//! shim's task exit is the runner's exit.

use std::os::fd::{AsFd, AsRawFd, OwnedFd};
use std::sync::{Arc, OnceLock};

use encc_interface::names::IMAGE_ENV;
use encc_interface::protocol::{self, ChannelError};
use encc_pal::{Pal, PalError, StdioFds};

use super::channel::{helper_channel, Reply, Request};
use super::holder;

/// Exit code when the launch itself fails (as `encc-launch`).
const LAUNCH_FAILED: u8 = 127;
/// Exit code when the entry program may not be started (EACCES), as a shell's 126.
const NOT_PERMITTED: u8 = 126;

/// The loaded PAL, for the SIGTERM handler.
static PAL: OnceLock<Arc<Pal>> = OnceLock::new();

/// What the runner is doing.
enum Phase {
    Booted { entry: String },
    Running { pid: i32 },
}

/// The runner role's `main`.
pub fn main() -> i32 {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let channel = match helper_channel() {
        Ok(channel) => channel,
        Err(e) => {
            log::error!("encc runner: {e}");
            return i32::from(LAUNCH_FAILED);
        }
    };
    let code = match boot(&channel) {
        Ok(Some((pal, entry))) => serve(&channel, &pal, entry),
        Ok(None) => LAUNCH_FAILED,
        Err(e) => {
            log::error!("encc runner {}: {e}", std::process::id());
            LAUNCH_FAILED
        }
    };
    i32::from(code)
}

fn answer(channel: &OwnedFd, reply: &Reply) -> Result<(), ChannelError> {
    protocol::send(channel.as_fd(), reply, &[])
}

/// The user-facing reason of a failed PAL call: the enclave's own explanation when the PAL
/// gives it (encc's PAL does), else the call and its errno.
fn reason(pal: &Pal, e: &PalError) -> String {
    match pal.last_error() {
        Some(message) => message,
        None => format!("{e}: {}", error_source(e)),
    }
}

fn error_source(e: &PalError) -> String {
    std::error::Error::source(e).map_or_else(String::new, |s| s.to_string())
}

/// Setup and Boot: the enclave is ready (`Some`) or the failure was answered (`None`).
fn boot(channel: &OwnedFd) -> Result<Option<(Arc<Pal>, String)>, ChannelError> {
    let (request, _) = protocol::receive::<Request>(channel.as_fd())?;
    let Request::Setup { namespaces } = request else {
        answer(channel, &unexpected(&request))?;
        return Ok(None);
    };
    if let Err(message) = holder::enter(&namespaces) {
        answer(channel, &Reply::Failed { message })?;
        return Ok(None);
    }
    answer(channel, &Reply::Done)?;
    stop_on_sigterm();
    let (request, _) = protocol::receive::<Request>(channel.as_fd())?;
    let Request::Boot {
        instance,
        image,
        pal,
    } = request
    else {
        answer(channel, &unexpected(&request))?;
        return Ok(None);
    };
    let pal = match Pal::load(&pal).and_then(|p| p.version().map(|_| p)) {
        Ok(pal) => Arc::clone(PAL.get_or_init(|| Arc::new(pal))),
        Err(e) => {
            let message = format!("{e}: {}", error_source(&e));
            answer(channel, &Reply::Failed { message })?;
            return Ok(None);
        }
    };
    // The image reference reaches the enclave as untrusted host env, as with Occlum.
    std::env::set_var(IMAGE_ENV, &image);
    if let Err(e) = pal.init(&instance, Some("info")) {
        let message = format!("encc could not start {image}: {}", reason(&pal, &e));
        answer(channel, &Reply::Failed { message })?;
        return Ok(None);
    }
    let entry = match pal.entry_program() {
        Some(Ok(entry)) => entry,
        Some(Err(e)) => {
            let _ = pal.destroy();
            let message = format!("{}: {e}", pal.path().display());
            answer(channel, &Reply::Failed { message })?;
            return Ok(None);
        }
        None => {
            let _ = pal.destroy();
            let message = format!(
                "{} cannot tell the entry program (encc_pal_entry_program)",
                pal.path().display()
            );
            answer(channel, &Reply::Failed { message })?;
            return Ok(None);
        }
    };
    log::info!("enclave for {image} ready, entry program {entry}");
    answer(
        channel,
        &Reply::Ready {
            root_hash: String::new(),
            entry_program: entry.clone(),
        },
    )?;
    Ok(Some((pal, entry)))
}

fn unexpected(request: &Request) -> Reply {
    Reply::Failed {
        message: format!("unexpected request {request:?} to the encc runner"),
    }
}

/// Start and Kill until the container ends (the exec thread exits the process then) or the
/// shim goes away (then the enclave is destroyed).
fn serve(channel: &OwnedFd, pal: &Arc<Pal>, entry: String) -> u8 {
    let mut phase = Phase::Booted { entry };
    loop {
        let (request, fds) = match protocol::receive::<Request>(channel.as_fd()) {
            Ok(received) => received,
            Err(e) => {
                if !matches!(e, ChannelError::Closed) {
                    log::error!("encc runner {}: {e}", std::process::id());
                }
                log::info!("the shim went away: destroying the enclave");
                let _ = pal.destroy();
                return LAUNCH_FAILED;
            }
        };
        let (reply, exit) = match (&phase, request) {
            (Phase::Booted { entry }, Request::Start { argv, env }) => {
                match start(pal, entry, &argv, &env, fds) {
                    Ok(pid) => {
                        phase = Phase::Running { pid };
                        (Reply::Started { pid }, None)
                    }
                    Err((message, code)) => (Reply::Failed { message }, Some(code)),
                }
            }
            (Phase::Booted { .. }, Request::Kill { signal, .. }) => {
                // Nothing runs yet: the signal ends the task as it ends a process that has
                // not called exec (default actions), unless it is ignored by default.
                if ignored_by_default(signal) {
                    (Reply::Done, None)
                } else {
                    (Reply::Done, Some(128u8.saturating_add(signal as u8)))
                }
            }
            (Phase::Running { pid }, Request::Kill { signal, all }) => {
                match pal.kill(if all { -1 } else { *pid }, signal) {
                    Ok(()) => (Reply::Done, None),
                    Err(e) => (
                        Reply::Failed {
                            message: format!(
                                "signal {signal} cannot be delivered into the enclave: {}",
                                reason(pal, &e)
                            ),
                        },
                        None,
                    ),
                }
            }
            (_, request) => (unexpected(&request), None),
        };
        if let Err(e) = answer(channel, &reply) {
            log::error!("encc runner {}: {e}", std::process::id());
        }
        if let Some(code) = exit {
            let _ = pal.destroy();
            return code;
        }
        if let Phase::Running { pid } = phase {
            if matches!(reply, Reply::Started { .. }) {
                wait_in_thread(pal, pid);
            }
        }
    }
}

/// create_process of the entry program with the OCI argv (the enclave decides whether it is
/// the image's own or an override) and env (filtered by `env_allowlist` in the enclave).
fn start(
    pal: &Pal,
    entry: &str,
    argv: &[String],
    env: &[String],
    fds: Vec<OwnedFd>,
) -> Result<i32, (String, u8)> {
    let [stdin, stdout, stderr] = <[OwnedFd; 3]>::try_from(fds).map_err(|fds| {
        (
            format!("start needs three stdio fds, got {}", fds.len()),
            LAUNCH_FAILED,
        )
    })?;
    let stdio = StdioFds {
        stdin: stdin.as_raw_fd(),
        stdout: stdout.as_raw_fd(),
        stderr: stderr.as_raw_fd(),
    };
    // The PAL starts only the entry program; the OCI args go as they are, argv[0] included
    // (it tells the image's own program from another one the spec names), and the enclave
    // compares them with the image's.
    let full = match argv.is_empty() {
        true => vec![entry.to_owned()],
        false => argv.to_vec(),
    };
    let result = pal.create_process(entry, &full, env, Some(stdio));
    drop((stdin, stdout, stderr));
    result.map_err(|e| {
        let code = match e.raw_os_error() {
            Some(libc::EACCES) => NOT_PERMITTED,
            _ => LAUNCH_FAILED,
        };
        (
            format!("encc could not start {entry}: {}", reason(pal, &e)),
            code,
        )
    })
}

/// Waits for the container process, destroys the enclave and exits with its code.
fn wait_in_thread(pal: &Arc<Pal>, pid: i32) {
    let pal = Arc::clone(pal);
    std::thread::spawn(move || {
        let code = match pal.exec(pid) {
            Ok(status) => status.shell_code().clamp(0, 255) as u8,
            Err(e) => {
                log::error!("waiting for container process {pid}: {}", reason(&pal, &e));
                LAUNCH_FAILED
            }
        };
        log::info!("container process {pid} ended with {code}; destroying the enclave");
        if let Err(e) = pal.destroy() {
            log::error!("enclave destroy: {}", reason(&pal, &e));
        }
        std::process::exit(i32::from(code));
    });
}

/// SIGTERM to the runner itself (the shim's `delete` after the shim died): destroy the
/// enclave, so that nothing of it is left mounted or in the store, then exit 143.
fn stop_on_sigterm() {
    let mut signals = match signal_hook::iterator::Signals::new([libc::SIGTERM]) {
        Ok(signals) => signals,
        Err(e) => {
            log::warn!("encc runner: cannot handle SIGTERM: {e}");
            return;
        }
    };
    std::thread::spawn(move || {
        if signals.forever().next().is_some() {
            log::info!(
                "encc runner {}: SIGTERM, destroying the enclave",
                std::process::id()
            );
            if let Some(pal) = PAL.get() {
                let _ = pal.destroy();
            }
            std::process::exit(128 + libc::SIGTERM);
        }
    });
}

/// Signals whose default action is to do nothing.
fn ignored_by_default(signal: i32) -> bool {
    matches!(
        signal,
        libc::SIGCHLD | libc::SIGCONT | libc::SIGURG | libc::SIGWINCH
    )
}
