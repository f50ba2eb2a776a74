//! The native PAL: Occlum's PAL semantics implemented by a simulated enclave of the native
//! platform ([`encc_interface::host::Enclave`]). `init` runs stage 1 to completion; only the
//! entry program recorded by stage 1 may be started; argv and env are untrusted and
//! filtered inside the enclave by the boot config.
//!
//! One enclave per process, like Occlum's PAL: the state is a process-wide singleton.

use std::os::fd::BorrowedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};

use encc_interface::host::{Enclave, EnclaveError, Ready};

/// The enclave binary, looked up beside the library unless this variable names it.
pub const INIT_ENV: &str = "ENCC_INIT";
/// Where `occlum_pal_init` takes the image reference from (untrusted host env).
pub use encc_interface::names::IMAGE_ENV;

struct State {
    enclave: Arc<Enclave>,
    ready: Ready,
}

static STATE: Mutex<Option<State>> = Mutex::new(None);

/// Why the most recent call failed (what `encc_pal_last_error` returns).
static LAST_ERROR: Mutex<Option<String>> = Mutex::new(None);

/// Longest error text kept, in bytes: with its NUL it fits a buffer of
/// [`LAST_ERROR_MAX`] + 1 bytes.
pub const LAST_ERROR_MAX: usize = 4095;

fn state() -> MutexGuard<'static, Option<State>> {
    STATE.lock().unwrap_or_else(|e| e.into_inner())
}

/// Records why a call failed and returns its errno. The text is the launcher's to print
/// (`encc_pal_last_error`), so it is logged here only at debug level, once.
pub fn fail(errno: i32, message: impl Into<String>) -> i32 {
    let message = bounded(message.into());
    log::debug!(
        "PAL call failed ({}): {message}",
        std::io::Error::from_raw_os_error(errno)
    );
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = Some(message);
    errno
}

/// `message` cut to at most [`LAST_ERROR_MAX`] bytes, at a character boundary.
fn bounded(mut message: String) -> String {
    if message.len() > LAST_ERROR_MAX {
        let mut end = LAST_ERROR_MAX;
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        message.truncate(end);
    }
    message
}

/// Forgets the last error (a new call starts).
pub fn clear_last_error() {
    *LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()) = None;
}

/// The text of the most recent call, if it failed with one.
pub fn last_error() -> Option<String> {
    LAST_ERROR.lock().unwrap_or_else(|e| e.into_inner()).clone()
}

/// `e` with its causes, one line.
fn errno_of(e: &EnclaveError) -> i32 {
    fail(e.errno(), crate::error_chain(e))
}

/// What `pal_init` needs, from rune's `enclave.runtime.args` or Occlum's attr + env.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InitArgs {
    /// The boot config file.
    pub boot_config: PathBuf,
    /// The image reference (untrusted).
    pub image: String,
    /// Log level.
    pub log_level: Option<String>,
}

/// Items of `enclave.runtime.args` that rune itself defines and reads (it passes the whole
/// string on): accepted and ignored. `no-epm` turns off rune's enclave pool manager.
pub const RUNE_OWN_ARGS: [&str; 1] = ["no-epm"];

/// Parses rune's `enclave.runtime.args`: space-separated `key=value` items,
/// `boot_config=PATH` and `image=REF` required, `log_level=LEVEL` optional; rune's own
/// items ([`RUNE_OWN_ARGS`]) are ignored.
pub fn parse_rune_args(args: &str) -> Result<InitArgs, String> {
    let (mut boot_config, mut image, mut log_level) = (None, None, None);
    for item in args.split_whitespace() {
        if RUNE_OWN_ARGS.contains(&item) {
            continue;
        }
        let (key, value) = item
            .split_once('=')
            .ok_or_else(|| format!("enclave.runtime.args item {item:?} is not key=value"))?;
        let slot = match key {
            "boot_config" => &mut boot_config,
            "image" => &mut image,
            "log_level" => &mut log_level,
            _ => {
                return Err(format!(
                "enclave.runtime.args: unknown key {key:?} (known: boot_config, image, log_level)"
            ))
            }
        };
        if slot.replace(value.to_owned()).is_some() {
            return Err(format!("enclave.runtime.args: {key} given twice"));
        }
    }
    Ok(InitArgs {
        boot_config: boot_config
            .map(PathBuf::from)
            .ok_or("enclave.runtime.args: boot_config=PATH is required")?,
        image: image.ok_or("enclave.runtime.args: image=REF is required")?,
        log_level,
    })
}

/// The enclave binary: `$ENCC_INIT`, else `init` in `library_dir`.
fn init_binary(library_dir: Option<&Path>) -> Result<PathBuf, i32> {
    if let Some(path) = std::env::var_os(INIT_ENV) {
        return Ok(PathBuf::from(path));
    }
    match library_dir.map(|d| d.join("init")) {
        Some(path) if path.is_file() => Ok(path),
        other => Err(fail(
            libc::ENOENT,
            format!(
                "cannot find the encc init binary (looked for {}); set {INIT_ENV}",
                other.map_or_else(
                    || "init beside the PAL library".into(),
                    |p| p.display().to_string()
                )
            ),
        )),
    }
}

/// `init`: creates the enclave and runs stage 1 to completion.
pub fn init(args: &InitArgs, library_dir: Option<&Path>) -> Result<(), i32> {
    // The PAL is host code: the host's RUST_LOG steers it, else the caller's level.
    let level = args.log_level.as_deref().unwrap_or("warn");
    let _ = env_logger::Builder::new()
        .parse_filters(&std::env::var("RUST_LOG").unwrap_or_else(|_| level.to_owned()))
        .format(|out, record| {
            use std::io::Write as _;
            writeln!(
                out,
                "encc-pal: {} {}: {}",
                record.level().as_str().to_ascii_lowercase(),
                record.target(),
                record.args()
            )
        })
        .try_init();
    let mut state = state();
    if state.is_some() {
        return Err(fail(libc::EEXIST, "the PAL is already initialised"));
    }
    let exe = init_binary(library_dir)?;
    let enclave = Enclave::spawn(&exe).map_err(|e| errno_of(&e))?;
    match enclave.boot(&args.boot_config, &args.image) {
        Ok(ready) => {
            log::info!(
                "enclave ready for {}, rootfs measurement {}",
                args.image,
                ready.root_hash
            );
            *state = Some(State {
                enclave: Arc::new(enclave),
                ready,
            });
            Ok(())
        }
        Err(e) => {
            enclave.reap_process();
            Err(errno_of(&e))
        }
    }
}

/// `create_process`: only the entry program; returns the pid.
pub fn create_process(
    path: &str,
    argv: &[String],
    env: &[String],
    stdio: [BorrowedFd<'_>; 3],
) -> Result<i32, i32> {
    let enclave = {
        let state = state();
        let state = state
            .as_ref()
            .ok_or_else(|| fail(libc::EINVAL, "create_process before init"))?;
        if path != state.ready.entry_program {
            return Err(fail(
                libc::EACCES,
                format!(
                    "{path:?} is not the entry point {:?}: refused",
                    state.ready.entry_program
                ),
            ));
        }
        Arc::clone(&state.enclave)
    };
    enclave
        .create_process(path, argv, env, stdio)
        .map_err(|e| errno_of(&e))
}

/// The program `create_process` may start (after `init`).
pub fn entry_program() -> Result<String, i32> {
    state()
        .as_ref()
        .map(|s| s.ready.entry_program.clone())
        .ok_or(libc::EINVAL)
}

fn enclave() -> Result<Arc<Enclave>, i32> {
    state()
        .as_ref()
        .map(|s| Arc::clone(&s.enclave))
        .ok_or(libc::EINVAL)
}

/// `exec`: waits for `pid`; returns its wait(2) status.
pub fn exec(pid: i32) -> Result<i32, i32> {
    enclave()?.wait(pid).map_err(|e| errno_of(&e))
}

/// `kill`: SIGKILL or SIGTERM to `pid` (-1: all).
pub fn kill(pid: i32, sig: i32) -> Result<(), i32> {
    if sig != libc::SIGKILL && sig != libc::SIGTERM {
        return Err(fail(
            libc::EINVAL,
            format!("kill: only SIGKILL and SIGTERM are supported, not {sig}"),
        ));
    }
    enclave()?.kill(pid, sig).map_err(|e| errno_of(&e))
}

/// `destroy`: tears the enclave down.
pub fn destroy() -> Result<(), i32> {
    let taken = state().take().ok_or(libc::EINVAL)?;
    taken.enclave.destroy().map_err(|e| errno_of(&e))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rune_args() {
        assert_eq!(
            parse_rune_args("boot_config=/b.json image=docker://h/r:t log_level=debug"),
            Ok(InitArgs {
                boot_config: "/b.json".into(),
                image: "docker://h/r:t".into(),
                log_level: Some("debug".into()),
            })
        );
        // rune's own `no-epm` (ENCLAVE_RUNTIME_ARGS="…,no-epm") is accepted and ignored.
        assert_eq!(
            parse_rune_args("no-epm boot_config=/b.json image=docker://h/r:t"),
            Ok(InitArgs {
                boot_config: "/b.json".into(),
                image: "docker://h/r:t".into(),
                log_level: None,
            })
        );
        for (bad, needle) in [
            ("image=x", "boot_config=PATH is required"),
            ("boot_config=/b", "image=REF is required"),
            (
                "boot_config=/b image=x colour=red",
                "unknown key \"colour\"",
            ),
            ("boot_config=/b image=x image=y", "image given twice"),
            ("boot_config", "not key=value"),
            ("boot_config=/b image=x no-epm=1", "unknown key \"no-epm\""),
            ("boot_config=/b image=x epm", "not key=value"),
        ] {
            let err = parse_rune_args(bad).unwrap_err();
            assert!(err.contains(needle), "{bad}: {err}");
        }
    }

    #[test]
    fn error_texts_are_bounded_at_a_character_boundary() {
        assert_eq!(bounded("short".into()), "short");
        let kept = bounded("é".repeat(LAST_ERROR_MAX));
        assert!(kept.len() <= LAST_ERROR_MAX && kept.len() > LAST_ERROR_MAX - 2);
        assert!(kept.chars().all(|c| c == 'é'));
    }

    #[test]
    fn calls_before_init_are_einval() {
        assert_eq!(exec(1), Err(libc::EINVAL));
        assert_eq!(kill(1, libc::SIGTERM), Err(libc::EINVAL));
        assert_eq!(kill(1, libc::SIGUSR1), Err(libc::EINVAL));
        assert_eq!(destroy(), Err(libc::EINVAL));
    }
}
