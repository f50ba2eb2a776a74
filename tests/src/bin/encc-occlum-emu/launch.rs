//! Starting processes the way Occlum's PAL does: `init` first (`pal_run_init_process`:
//! path /bin/init, argv ["init"], the host's environ through `merge_env`; a non-zero exit
//! fails `occlum_pal_init`), then the program the host names (`occlum_pal_create_process`
//! after `validate_program_path`), exit status encoded as `occlum run` does.

use std::ffi::CString;
use std::os::fd::{AsFd as _, AsRawFd as _};
use std::os::unix::process::{CommandExt as _, ExitStatusExt as _};
use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus};

use anyhow::{bail, Context as _, Result};
use nix::sys::socket::{socketpair, AddressFamily, SockFlag, SockType};

use crate::filter;
use crate::rules::{merge_env, validate_program_path};
use crate::supervisor::{log, Emu};
use crate::sys;
use crate::table::Table;

/// Occlum's init path and argv (src/pal/src/pal_api.c, `pal_run_init_process`).
const INIT_PATH: &str = "/bin/init";
/// The host names this instead of a path to start exactly the entry point init set.
pub const ENTRY_POINT_ALIAS: &str = "@entry-point";

/// The hidden `exec-init` stage: chroot into the initfs, install init's filter, hand the
/// listener to the supervisor, exec /bin/init. Runs under strace when asked, so the trace
/// holds init from its first instruction.
pub fn exec_init(root: &Path, sock: i32) -> Result<()> {
    let sock = sys::take_inherited_fd(sock).context("the supervisor socket")?;
    let table = Table::occlum_0_30()?;
    let prog = filter::init_filter(&table);
    let path = CString::new(INIT_PATH)?;
    let argv = [CString::new("init")?];
    let env: Vec<CString> = std::env::vars_os()
        .map(|(k, v)| {
            let mut entry = k.into_encoded_bytes();
            entry.push(b'=');
            entry.extend(v.into_encoded_bytes());
            CString::new(entry)
        })
        .collect::<Result<_, _>>()?;
    nix::unistd::chroot(root).with_context(|| format!("cannot chroot to {}", root.display()))?;
    nix::unistd::chdir("/")?;
    let listener = sys::install_filter(&prog, true)?.context("no listener")?;
    sys::send_fd(sock.as_fd(), listener.as_fd())?;
    drop(listener);
    drop(sock);
    nix::unistd::execve(&path, &argv, &env).context("cannot execute /bin/init")?;
    Ok(())
}

/// Runs init (optionally under `strace -f -n -o TRACE`) with `env` and serves its calls.
/// Ok(()) when it exits 0.
pub fn run_init(emu: &Emu, initfs: &Path, env: &[String], trace: Option<&Path>) -> Result<()> {
    let (ours, theirs) = socketpair(
        AddressFamily::Unix,
        SockType::Stream,
        None,
        SockFlag::SOCK_CLOEXEC,
    )?;
    nix::fcntl::fcntl(
        &theirs,
        nix::fcntl::FcntlArg::F_SETFD(nix::fcntl::FdFlag::empty()),
    )?;
    let me = std::env::current_exe().context("the emulator's own path")?;
    let mut cmd = match trace {
        Some(file) => {
            let mut c = Command::new("strace");
            c.args(["-f", "-n", "-qq", "-s", "256", "-o"])
                .arg(file)
                .arg(&me);
            c
        }
        None => Command::new(&me),
    };
    cmd.arg("exec-init")
        .arg("--root")
        .arg(initfs)
        .arg("--sock")
        .arg(theirs.as_raw_fd().to_string())
        .env_clear()
        .envs(env.iter().map(|e| e.split_once('=').unwrap_or((e, ""))));
    let mut child = cmd.spawn().context("cannot start init's exec stage")?;
    drop(theirs);
    let Some(listener) = sys::recv_fd(ours.as_fd())? else {
        let status = child.wait()?;
        bail!("init's exec stage ended ({status}) before installing its filter");
    };
    let status = std::thread::scope(|s| {
        let server = s.spawn(|| emu.serve(&listener));
        let status = child.wait();
        let _ = server.join();
        status
    })?;
    match status.code() {
        Some(0) => Ok(()),
        _ => bail!(
            "init exited with status {}: occlum_pal_init fails (\"The init process exit with code\")",
            shell_code(status)
        ),
    }
}

/// What the host asks `occlum_pal_create_process` for.
#[derive(Debug)]
pub struct Request {
    pub program: String,
    pub args: Vec<String>,
    pub host_env: Vec<String>,
}

/// Starts the host's program in the swapped root (or the initfs when init never swapped
/// it); returns `occlum run`'s exit code (127 when the start is refused or fails).
pub fn run_app(emu: &Emu, initfs: &Path, request: &Request) -> Result<i32> {
    let (root, entry_points, trusted) = {
        let state = emu.lock();
        match &state.swapped {
            Some(s) => (
                s.root.clone(),
                s.entry_points.clone(),
                state.trusted_env.clone(),
            ),
            // The init stage's entry points (gen_internal_conf: "/bin").
            None => (
                initfs.to_owned(),
                vec![PathBuf::from("/bin")],
                state.trusted_env.clone(),
            ),
        }
    };
    let program = match request.program.as_str() {
        ENTRY_POINT_ALIAS => entry_points
            .first()
            .context("no entry point to start")?
            .clone(),
        path => PathBuf::from(path),
    };
    if let Err(errno) = validate_program_path(&program, &entry_points) {
        log(format!(
            "occlum_pal_create_process {}: {errno} (entry points {entry_points:?})",
            program.display()
        ));
        return Ok(127);
    }
    let env = merge_env(&trusted, &emu.json.env.untrusted, &request.host_env);
    // `occlum run` passes the program's base name as argv[0].
    let name = program
        .file_name()
        .map(|n| n.to_owned())
        .unwrap_or_default();
    let mut cmd = Command::new(&program);
    cmd.arg0(name)
        .args(&request.args)
        .env_clear()
        .envs(env.iter().map(|e| e.split_once('=').unwrap_or((e, ""))));
    sys::confine_child(&mut cmd, root, filter::app_filter());
    let status = match cmd.spawn() {
        Ok(mut child) => child.wait()?,
        Err(e) => {
            log(format!(
                "occlum_pal_create_process {}: {e}",
                program.display()
            ));
            return Ok(127);
        }
    };
    Ok(shell_code(status))
}

/// `occlum run`'s encoding: exit code & 0x7F, or 128 + signal.
fn shell_code(status: ExitStatus) -> i32 {
    match (status.code(), status.signal()) {
        (Some(code), _) => code & 0x7F,
        (None, Some(signal)) => 128 + signal,
        (None, None) => 127,
    }
}
