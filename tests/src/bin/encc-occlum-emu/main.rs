//! encc-occlum-emu: a TEST DOUBLE of the Occlum 0.30 LibOS interface that encc's `init`
//! uses, for encc's integration tests (tests/occlum_emu.rs). There is no SGX and no Occlum
//! SDK here. This is NOT Occlum and nothing run under it has run on SGX or inside the
//! Occlum LibOS: it runs `init` as an ordinary Linux process, as root, and answers the
//! Occlum-specific parts of its interface the way Occlum 0.30.1's source says Occlum does
//! (each rule cites the file and function it copies).
//!
//! `encc-occlum-emu run --instance DIR [--work DIR] [--strace FILE] PROGRAM [ARGS...]` boots
//! the instance `DIR` (its `Occlum.json` and the copy_bom file `encc occlum render` wrote)
//! like `occlum run PROGRAM ARGS...`:
//! 1. a private mount namespace; the initfs laid out from the bom in a tmpfs, with /proc
//!    and a minimal /dev (the init stage's mounts);
//! 2. `init` chrooted into it with argv ["init"] and the host environment filtered as
//!    Occlum's `merge_env` does (`env.default`, then the `env.untrusted` names), under a
//!    seccomp filter (filter.rs) whose user notifications (`mount`, `umount2`, MountRootFS)
//!    the supervisor answers (supervisor.rs, rootfs.rs); with `--strace`, under
//!    `strace -f -n`, whose log `check-syscalls` checks against Occlum's syscall table;
//! 3. when init exits 0, PROGRAM (or `@entry-point`: exactly the entry point init passed
//!    to MountRootFS) is started in the swapped root if Occlum's `validate_program_path`
//!    admits it, with argv[0] its base name and the environment merged again; the exit
//!    code is `occlum run`'s (1 when init fails, 127 when the start is refused).
//!
//! What it cannot show: enclave memory and its limits, SEFS's encryption and integrity
//! (an SEFS here is a plain host directory), the LibOS's own file systems, DCAP quotes
//! (use the `sample` attester), and Occlum's process model beyond the syscall table (the
//! app stage runs Linux binaries; only the credential calls Occlum lacks answer ENOSYS).
//! Two more differences: init's own root stays the initfs after MountRootFS (in Occlum
//! the swap applies to init too; encc's init exits right after it), and numbers outside
//! Occlum's table answer ENOSYS instead of Occlum's EINVAL (see filter.rs).

#![deny(unsafe_code)]

mod filter;
mod instance;
mod launch;
mod memory;
mod rootfs;
mod rules;
mod supervisor;
mod sys;
mod table;
mod trace;

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Mutex;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use nix::mount::{mount, MsFlags};
use nix::sched::{unshare, CloneFlags};

use instance::{lay_out_initfs, OcclumJson};
use supervisor::{log, Emu, State};

#[derive(Parser)]
#[command(
    name = "encc-occlum-emu",
    about = "Occlum 0.30 interface emulator (a test double)"
)]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Subcommand)]
enum Cmd {
    /// Boots an instance like `occlum run`: init first, then PROGRAM.
    Run {
        /// The instance directory (Occlum.json and the copy_bom file).
        #[arg(long)]
        instance: PathBuf,
        /// The copy_bom file (default: encc-initfs.yaml in the instance).
        #[arg(long)]
        bom: Option<PathBuf>,
        /// Scratch directory (default: a new one under /tmp); a tmpfs is mounted on it.
        #[arg(long)]
        work: Option<PathBuf>,
        /// Record init's system calls with `strace -f -n -o FILE`.
        #[arg(long)]
        strace: Option<PathBuf>,
        /// The program to start after init (`@entry-point`: the entry point init set).
        program: String,
        /// Its arguments.
        #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
        args: Vec<String>,
    },
    /// Checks an strace log of `run --strace` against Occlum 0.30.1's syscall table.
    CheckSyscalls { log: PathBuf },
    /// Internal: the stage that becomes init.
    #[command(hide = true)]
    ExecInit {
        #[arg(long)]
        root: PathBuf,
        #[arg(long)]
        sock: i32,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    let result = match cli.command {
        Cmd::Run {
            instance,
            bom,
            work,
            strace,
            program,
            args,
        } => run(&instance, bom, work, strace.as_deref(), program, args),
        Cmd::CheckSyscalls { log } => check_syscalls(&log).map(|()| 0),
        Cmd::ExecInit { root, sock } => launch::exec_init(&root, sock).map(|()| 127),
    };
    match result {
        Ok(code) => ExitCode::from(code.clamp(0, 255) as u8),
        Err(e) => {
            log(format!("{e:#}"));
            ExitCode::FAILURE
        }
    }
}

fn check_syscalls(log: &Path) -> Result<()> {
    let text =
        std::fs::read_to_string(log).with_context(|| format!("cannot read {}", log.display()))?;
    trace::check(&table::Table::occlum_0_30()?, &text)
}

fn run(
    instance: &Path,
    bom: Option<PathBuf>,
    work: Option<PathBuf>,
    strace: Option<&Path>,
    program: String,
    args: Vec<String>,
) -> Result<i32> {
    let instance = std::fs::canonicalize(instance)
        .with_context(|| format!("cannot find the instance {}", instance.display()))?;
    let json = OcclumJson::load(&instance)?;
    let bom = bom.unwrap_or_else(|| instance.join("encc-initfs.yaml"));
    let host_env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let host_files = ["/etc/resolv.conf", "/etc/hostname", "/etc/hosts"]
        .map(|p| (p, std::fs::read(p).ok()))
        .to_vec();
    let work = match work {
        Some(dir) => dir,
        None => std::env::temp_dir().join(format!("encc-occlum-emu.{}", std::process::id())),
    };
    std::fs::create_dir_all(&work).with_context(|| format!("cannot create {}", work.display()))?;

    unshare(CloneFlags::CLONE_NEWNS).context("cannot make a mount namespace (root needed)")?;
    mount(
        None::<&str>,
        "/",
        None::<&str>,
        MsFlags::MS_REC | MsFlags::MS_PRIVATE,
        None::<&str>,
    )?;
    mount(
        Some("emu"),
        &work,
        Some("tmpfs"),
        MsFlags::empty(),
        Some("mode=0700"),
    )?;
    let initfs = work.join("initfs");
    std::fs::create_dir(&initfs)?;
    lay_out_initfs(&bom, &initfs)?;
    mount(
        Some("proc"),
        &initfs.join("proc"),
        Some("proc"),
        MsFlags::empty(),
        None::<&str>,
    )?;
    rootfs::make_dev(&initfs.join("dev")).context("cannot make the initfs /dev")?;

    let emu = Emu {
        instance,
        work,
        host_files,
        state: Mutex::new(State {
            trusted_env: json.env.default.clone(),
            ..State::default()
        }),
        json,
    };
    let init_env = rules::merge_env(&emu.json.env.default, &emu.json.env.untrusted, &host_env);
    if let Err(e) = launch::run_init(&emu, &initfs, &init_env, strace) {
        log(format!("{e:#}"));
        return Ok(1);
    }
    let request = launch::Request {
        program,
        args,
        host_env,
    };
    launch::run_app(&emu, &initfs, &request)
}
