//! The container's PID 1, as `docker run --init` has one: a fresh exec of the enclave's own
//! binary (no key material in its memory) as the first process of the container's PID
//! namespace. It sets the container up in a mount namespace of its own (its `/proc`, the
//! masked and read-only paths, pivot_root), confines itself as the container will be
//! (image user, Docker's default capabilities, `no_new_privs`, not dumpable, Docker's
//! seccomp profile), starts the entrypoint as its child, forwards signals to it, reaps
//! every orphan, and reports the entrypoint's exact wait status to the enclave before it
//! exits (which ends every process left in the namespace).

use std::ffi::OsStr;
use std::io::{Read as _, Write as _};
use std::os::fd::{OwnedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::process::Command;

use nix::mount::{mount, umount2, MntFlags, MsFlags};
use nix::sched::{unshare, CloneFlags};
use nix::sys::signal::{kill, SigSet, Signal};
use nix::sys::wait::{waitpid, WaitPidFlag, WaitStatus};
use nix::unistd::{chdir, fchdir, pivot_root, setgroups, setresgid, setresuid, Gid, Pid, Uid};

use super::channel::{Plan, Report};
use super::seccomp::Profile;
use super::{caps, in_root, masked, sys};
use crate::detached::{self, MountAttrFlags};

/// `argv[0]` of the container's PID 1 (what `ps` shows in the container).
pub(super) const ARGV0: &str = "encc-reaper";

/// Signals PID 1 passes on to the entrypoint (SIGKILL and SIGSTOP cannot be caught: a
/// SIGKILL from the enclave ends PID 1 and with it the whole container).
const FORWARDED: [Signal; 12] = [
    Signal::SIGHUP,
    Signal::SIGINT,
    Signal::SIGQUIT,
    Signal::SIGUSR1,
    Signal::SIGUSR2,
    Signal::SIGTERM,
    Signal::SIGWINCH,
    Signal::SIGALRM,
    Signal::SIGCONT,
    Signal::SIGURG,
    Signal::SIGIO,
    Signal::SIGPWR,
];

/// When this process was started as a container's PID 1 (by `PreparedRoot::spawn`), runs
/// it and exits; otherwise returns. Every binary that runs a native enclave calls this
/// first thing in `main`.
pub fn run_if_requested() {
    let mut args = std::env::args_os();
    if args.next().as_deref() != Some(OsStr::new(ARGV0)) {
        return;
    }
    let fds: Vec<RawFd> = args
        .filter_map(|a| a.to_str().and_then(|s| s.parse().ok()))
        .collect();
    // Only as the first process of a new PID namespace, with two distinct fds.
    let code = match fds[..] {
        [channel, root] if channel != root && nix::unistd::getpid().as_raw() == 1 => {
            match (sys::inherited_fd(channel), sys::inherited_fd(root)) {
                (Ok(channel), Ok(root)) => run(UnixStream::from(channel), root),
                _ => 1,
            }
        }
        _ => 1,
    };
    std::process::exit(code);
}

fn run(channel: UnixStream, tree: OwnedFd) -> i32 {
    // Before anything else: nothing in the container may read this process, and no signal
    // sent to it may be lost before the entrypoint exists.
    let _ = sys::set_undumpable();
    let mut signals = SigSet::empty();
    signals.add(Signal::SIGCHLD);
    for signal in FORWARDED {
        signals.add(signal);
    }
    let send = |report: Report| {
        let _ = (&channel).write_all(&report.encode());
    };
    if let Err(e) = signals.thread_block() {
        send(Report::SetupFailed(
            e as i32,
            format!("cannot block signals: {e}"),
        ));
        return 1;
    }
    let mut bytes = Vec::new();
    // The enclave shuts its side for writing after the plan.
    let plan = match (&channel).read_to_end(&mut bytes) {
        Ok(_) => Plan::decode(&bytes),
        Err(_) => None,
    };
    let Some(plan) = plan else {
        send(Report::SetupFailed(
            libc::EINVAL,
            "no valid plan from the enclave".into(),
        ));
        return 1;
    };
    let entrypoint = match set_up(&plan, tree).and_then(|()| start(&plan)) {
        Ok(pid) => pid,
        Err(report) => {
            send(report);
            return 1;
        }
    };
    send(Report::Started);
    let status = reap(entrypoint, &signals);
    send(Report::Exited(status));
    0
}

/// A setup failure: the errno and the error with its causes.
fn failed(what: &str, e: &(dyn std::error::Error + 'static)) -> Report {
    let mut text = format!("cannot {what}: {e}");
    let mut errno = libc::EIO;
    let mut cause = Some(e);
    while let Some(c) = cause {
        if let Some(io) = c.downcast_ref::<std::io::Error>() {
            errno = io.raw_os_error().unwrap_or(errno);
        }
        if let Some(e) = c.downcast_ref::<nix::errno::Errno>() {
            errno = *e as i32;
        }
        cause = c.source();
        if let Some(c) = cause {
            text.push_str(&format!(": {c}"));
        }
    }
    Report::SetupFailed(errno, text)
}

/// Own mount namespace with this container's copy of the root tree attached over `/`, the
/// container's `/proc`, masked and read-only paths, pivot_root, working directory, then this
/// process confined as the container will be.
fn set_up(plan: &Plan, tree: OwnedFd) -> Result<(), Report> {
    let profile = Profile::docker_default().map_err(|e| failed("build the seccomp profile", &e))?;
    unshare(CloneFlags::CLONE_NEWNS).map_err(|e| failed("create a mount namespace", &e))?;
    let none = None::<&str>;
    mount(none, "/", none, MsFlags::MS_REC | MsFlags::MS_PRIVATE, none)
        .map_err(|e| failed("make the mounts private", &e))?;
    // The tree is entered through its fd, never through a path.
    detached::enter_over_root(&tree).map_err(|e| failed("attach the container root", &e))?;
    let proc = in_root::dir(&tree, "proc").map_err(|e| failed("create /proc", &e))?;
    let attrs = MountAttrFlags::MOUNT_ATTR_NOSUID
        | MountAttrFlags::MOUNT_ATTR_NODEV
        | MountAttrFlags::MOUNT_ATTR_NOEXEC;
    // A proc file system made here shows this process's PID namespace.
    detached::new_mount("proc", &[], attrs)
        .and_then(|fs| detached::attach(&fs, &proc))
        .map_err(|e| failed("mount proc on /proc", &e))?;
    masked::apply(&tree).map_err(|e| failed("mask paths", &e))?;
    // pivot_root(".", ".") stacks the old root on top of the new one; detaching "." then
    // removes it, leaving only the container's tree in this namespace.
    fchdir(&tree).map_err(|e| failed("enter the container root", &e))?;
    pivot_root(".", ".").map_err(|e| failed("pivot_root into the container root", &e))?;
    umount2(".", MntFlags::MNT_DETACH).map_err(|e| failed("detach the old root", &e))?;
    chdir("/").map_err(|e| failed("enter /", &e))?;
    chdir(plan.cwd.as_str()).map_err(|e| failed(&format!("enter {}", plan.cwd), &e))?;
    confine(plan, &profile)
}

/// The image user's credentials, Docker's default capabilities, `no_new_privs`, not
/// dumpable, and the seccomp profile last; the entrypoint inherits all of it.
fn confine(plan: &Plan, profile: &Profile) -> Result<(), Report> {
    caps::limit_bounding_set().map_err(|e| failed("drop capabilities", &e))?;
    let groups: Vec<Gid> = plan.groups.iter().map(|g| Gid::from_raw(*g)).collect();
    setgroups(&groups).map_err(|e| failed("set the supplementary groups", &e))?;
    let (uid, gid) = (Uid::from_raw(plan.uid), Gid::from_raw(plan.gid));
    setresgid(gid, gid, gid).map_err(|e| failed("set the group id", &e))?;
    setresuid(uid, uid, uid).map_err(|e| failed("set the user id", &e))?;
    caps::set_process_caps(plan.uid).map_err(|e| failed("set capabilities", &e))?;
    // setuid may have made it dumpable again.
    sys::set_undumpable().map_err(|e| failed("make PID 1 undumpable", &e))?;
    profile
        .install()
        .map_err(|e| failed("install the seccomp profile", &e))
}

/// Starts the entrypoint; its pid.
fn start(plan: &Plan) -> Result<Pid, Report> {
    let (program, args) = plan
        .argv
        .split_first()
        .ok_or(Report::ExecFailed(libc::ENOENT))?;
    let mut command = Command::new(program);
    command.args(args).env_clear();
    for entry in &plan.env {
        let (name, value) = entry.split_once('=').unwrap_or((entry.as_str(), ""));
        command.env(name, value);
    }
    sys::clean_exec(&mut command);
    let child = command
        .spawn()
        .map_err(|e| Report::ExecFailed(e.raw_os_error().unwrap_or(libc::EIO)))?;
    Ok(Pid::from_raw(child.id() as i32))
}

/// Forwards signals to the entrypoint and reaps every child until the entrypoint ends;
/// its wait(2) status.
fn reap(entrypoint: Pid, signals: &SigSet) -> i32 {
    loop {
        match signals.wait() {
            Ok(Signal::SIGCHLD) => loop {
                match waitpid(None, Some(WaitPidFlag::WNOHANG)) {
                    Ok(WaitStatus::Exited(pid, code)) if pid == entrypoint => {
                        return (code & 0xff) << 8
                    }
                    Ok(WaitStatus::Signaled(pid, sig, core)) if pid == entrypoint => {
                        return sig as i32 | if core { 0x80 } else { 0 }
                    }
                    Ok(WaitStatus::StillAlive) => break,
                    Ok(_) | Err(nix::errno::Errno::EINTR) => continue,
                    // No child left: the entrypoint was reaped already (cannot happen).
                    Err(_) => return 1 << 8,
                }
            },
            Ok(signal) => {
                let _ = kill(entrypoint, signal);
            }
            Err(_) => {}
        }
    }
}
