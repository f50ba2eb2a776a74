//! Running one container to its end, the way `occlum run` does: create_process with this
//! process's stdio, forward SIGINT, SIGTERM, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2 and SIGWINCH,
//! wait, and turn the status into an exit code.

use std::os::fd::AsFd;
use std::sync::Arc;

use signal_hook::consts::signal::{SIGHUP, SIGINT, SIGQUIT, SIGTERM, SIGUSR1, SIGUSR2, SIGWINCH};
use signal_hook::iterator::Signals;

use encc_interface::host::{Enclave, EnclaveError, Ready};

/// Signals forwarded to the container process.
pub const FORWARDED: [i32; 7] = [SIGTERM, SIGINT, SIGHUP, SIGQUIT, SIGUSR1, SIGUSR2, SIGWINCH];

/// Exit code of a launch that failed before the container ran.
pub const LAUNCH_FAILED: i32 = 127;

/// The shell's exit code for a wait(2) status: the code, or 128+N for signal N.
pub fn exit_code(status: i32) -> i32 {
    if libc::WIFSIGNALED(status) {
        128 + libc::WTERMSIG(status)
    } else {
        libc::WEXITSTATUS(status)
    }
}

/// Starts the entry program with `args` (empty: the image's Cmd) and `env`, waits for it
/// with signals forwarded, and returns its exit code. Errors are printed as `docker run`
/// would: 127 when the program is missing, 126 when it cannot be executed.
pub fn run_entry(enclave: &Arc<Enclave>, ready: &Ready, args: &[String], env: &[String]) -> i32 {
    // Installed before the process exists, so no signal is lost in between.
    let mut signals = match Signals::new(FORWARDED) {
        Ok(s) => s,
        Err(e) => {
            eprintln!("encc: cannot install signal handlers: {e}");
            return LAUNCH_FAILED;
        }
    };
    let mut argv = vec![ready.entry_program.clone()];
    argv.extend(args.iter().cloned());
    let (stdin, stdout, stderr) = (std::io::stdin(), std::io::stdout(), std::io::stderr());
    let pid = match enclave.create_process(
        &ready.entry_program,
        &argv,
        env,
        [stdin.as_fd(), stdout.as_fd(), stderr.as_fd()],
    ) {
        Ok(pid) => pid,
        Err(e) => {
            eprintln!("encc: {e}");
            return match &e {
                EnclaveError::Refused { errno, .. } if *errno == libc::EACCES => 126,
                _ => LAUNCH_FAILED,
            };
        }
    };
    let handle = signals.handle();
    let forwarder = {
        let enclave = Arc::clone(enclave);
        std::thread::spawn(move || {
            for signal in signals.forever() {
                if let Err(e) = enclave.kill(pid, signal) {
                    log::debug!("forwarding signal {signal} to {pid}: {e}");
                }
            }
        })
    };
    let code = match enclave.wait(pid) {
        Ok(status) => exit_code(status),
        Err(e) => {
            eprintln!("encc: lost the container process: {e}");
            LAUNCH_FAILED
        }
    };
    handle.close();
    let _ = forwarder.join();
    code
}

/// Why [`run_in_own_enclave`] could not give the container's exit code cleanly.
#[derive(Debug, thiserror::Error)]
pub enum RunError {
    /// This program's path is unknown (it is the enclave binary).
    #[error("cannot find this program's path")]
    Exe(#[source] std::io::Error),
    /// The enclave could not be started or readied (nothing is left running).
    #[error(transparent)]
    Start(#[from] EnclaveError),
    /// The container ran with exit code `code`, but tearing down failed.
    #[error("teardown failed (the container exited with {code})")]
    Teardown {
        /// The container's exit code.
        code: i32,
        /// The cause.
        #[source]
        source: EnclaveError,
    },
}

/// The whole native run from this program: start an enclave (this binary as PID 1), ready
/// it with `start` (the PAL's init, or a debugging open), run the entry program with `args`
/// and `env` to its end, and tear everything down. Returns the container's exit code.
pub fn run_in_own_enclave(
    start: impl FnOnce(&Enclave) -> Result<Ready, EnclaveError>,
    args: &[String],
    env: &[String],
) -> Result<i32, RunError> {
    let exe = std::env::current_exe().map_err(RunError::Exe)?;
    let enclave = Arc::new(Enclave::spawn(&exe)?);
    let ready = match start(&enclave) {
        Ok(ready) => ready,
        Err(e) => {
            // A failed start ends the enclave; wait for it so nothing is left behind.
            enclave.reap_process();
            return Err(e.into());
        }
    };
    let code = run_entry(&enclave, &ready, args, env);
    enclave
        .destroy()
        .map_err(|source| RunError::Teardown { code, source })?;
    Ok(code)
}
