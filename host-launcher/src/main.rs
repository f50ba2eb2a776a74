//! `encc-launch`, the minimal host launcher (like `occlum run`): load a PAL library, init
//! (stage 1 in the enclave), create_process + exec (stage 2), forward signals, destroy,
//! and exit with the container's code (128+N when it died of signal N, 127 when the launch
//! itself failed).

#![forbid(unsafe_code)]

use std::path::{Path, PathBuf};
use std::process::ExitCode;
use std::sync::Arc;

use anyhow::{Context as _, Result};
use clap::{Parser, Subcommand};
use encc_interface::config::BootConfig;
use encc_interface::config_args::BootConfigArgs;
use encc_interface::names::{BOOT_CONFIG_FILE, IMAGE_ENV};
use encc_pal::{Pal, PalError};
use signal_hook::consts::signal::{SIGINT, SIGTERM};
use signal_hook::iterator::Signals;

/// Exit code when the launch itself fails.
const LAUNCH_FAILED: u8 = 127;

#[derive(Parser)]
#[command(
    name = "encc-launch",
    version,
    about = "encc host launcher (Occlum PAL ABI)"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Runs an image in an enclave through a PAL library and waits for it.
    Run(Box<RunArgs>),
}

#[derive(clap::Args)]
struct RunArgs {
    /// PAL library: default libencc_pal.so beside this program (the native platform);
    /// /path/to/libocclum-pal.so for Occlum on SGX.
    #[arg(long, value_name = "PATH")]
    pal: Option<PathBuf>,
    /// Instance directory holding boot.json (Occlum: the instance built from the rendered
    /// Occlum.json). Default: a temporary one with the boot config given or composed.
    #[arg(long, value_name = "DIR")]
    instance: Option<PathBuf>,
    /// Boot config to use (instead of composing one from the flags below).
    #[arg(long = "boot-config", value_name = "FILE", conflicts_with = "instance")]
    boot_config: Option<PathBuf>,
    /// Program to start; default: the entry program stage 1 recorded (asked from the PAL
    /// when it supports it, as libencc_pal.so does; required with Occlum's own PAL).
    #[arg(long, value_name = "PATH")]
    entrypoint: Option<String>,
    #[command(flatten)]
    config: BootConfigArgs,
    /// Image reference: docker://HOST/REPO[:TAG][@DIGEST] or oci:PATH[:TAG].
    reference: String,
    /// Arguments replacing the image's Cmd (when the boot config allows host args).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    let Command::Run(args) = Cli::parse().command;
    // The host side's log (this program and the PAL): RUST_LOG when set, else --log-level.
    // The enclave's level is the boot config's `log_level` (composed from --log-level); the
    // host's RUST_LOG has no say in the enclave.
    env_logger::Builder::from_env(
        env_logger::Env::default().default_filter_or(args.config.log_level.as_str()),
    )
    .format(|out, record| {
        use std::io::Write as _;
        let level = record.level().as_str().to_ascii_lowercase();
        writeln!(
            out,
            "encc-launch: {level} {}: {}",
            record.target(),
            record.args()
        )
    })
    .init();
    match run(&args) {
        Ok(code) => ExitCode::from(code),
        Err(e) => {
            eprintln!("encc-launch: {}", one_line(&format!("{e:#}")));
            ExitCode::from(LAUNCH_FAILED)
        }
    }
}

/// `text` on one line, without control characters (the enclave's error text can quote
/// what a registry sent).
fn one_line(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '\n' | '\r' | '\t' => out.push(' '),
            c if c.is_control() => out.push_str(&c.escape_default().to_string()),
            c => out.push(c),
        }
    }
    out
}

/// The launcher's error for a failed PAL call: the PAL's own reason when it gives one
/// (`encc_pal_last_error`), else the errno and where the reason is (Occlum's PAL).
fn explain(pal: &Pal, e: PalError, reference: &str) -> anyhow::Error {
    match pal.last_error() {
        Some(text) if text.contains(reference) => anyhow::anyhow!(text),
        Some(text) => anyhow::anyhow!("cannot start {reference}: {text}"),
        None if !pal.explains_errors() => {
            let text = encc_pal::error_chain(&e);
            anyhow::anyhow!(
                "cannot start {reference}: {text}; the PAL gives no reason (it has no \
                 encc_pal_last_error): the enclave's log above has it (more with --log-level info)"
            )
        }
        None => anyhow::Error::from(e).context(format!("cannot start {reference}")),
    }
}

/// The instance directory to pass to init, and the temporary directory holding it.
fn instance(args: &RunArgs) -> Result<(PathBuf, Option<tempfile::TempDir>)> {
    if let Some(dir) = &args.instance {
        return Ok((dir.clone(), None));
    }
    let temp = tempfile::Builder::new()
        .prefix("encc-instance-")
        .tempdir()
        .context("cannot create an instance directory")?;
    let boot = temp.path().join(BOOT_CONFIG_FILE);
    match &args.boot_config {
        Some(file) => {
            BootConfig::load(file)?;
            std::fs::copy(file, &boot)
                .with_context(|| format!("cannot copy {} into the instance", file.display()))?;
        }
        None => std::fs::write(&boot, args.config.to_config()?.to_json())
            .with_context(|| format!("cannot write {}", boot.display()))?,
    }
    Ok((temp.path().to_owned(), Some(temp)))
}

fn default_pal() -> Result<PathBuf> {
    let exe = std::env::current_exe().context("cannot find this program's path")?;
    Ok(exe
        .parent()
        .unwrap_or(Path::new("/"))
        .join("libencc_pal.so"))
}

fn run(args: &RunArgs) -> Result<u8> {
    let pal_path = match &args.pal {
        Some(p) => p.clone(),
        None => default_pal()?,
    };
    let (instance, _temp) = instance(args)?;
    let pal = Arc::new(Pal::load(&pal_path)?);
    pal.version()?;
    // The image reference reaches the enclave as untrusted host env, as with Occlum.
    std::env::set_var(IMAGE_ENV, &args.reference);
    pal.init(
        &instance,
        Some(&args.config.log_level.as_str().to_ascii_lowercase()),
    )
    .map_err(|e| explain(&pal, e, &args.reference))?;
    let result = run_initialised(&pal, args);
    let destroyed = pal.destroy();
    let code = result?;
    destroyed.context("enclave destroy failed")?;
    Ok(code)
}

fn run_initialised(pal: &Arc<Pal>, args: &RunArgs) -> Result<u8> {
    let path = match (&args.entrypoint, pal.entry_program()) {
        (Some(path), _) => path.clone(),
        (None, Some(program)) => program?,
        (None, None) => anyhow::bail!(
            "{} cannot tell the entry program: give --entrypoint PATH",
            pal.path().display()
        ),
    };
    let mut argv = vec![path.clone()];
    argv.extend(args.args.iter().cloned());
    let env: Vec<String> = std::env::vars()
        .filter(|(k, _)| k != IMAGE_ENV)
        .map(|(k, v)| format!("{k}={v}"))
        .collect();
    let mut signals = Signals::new([SIGINT, SIGTERM]).context("cannot install signal handlers")?;
    let pid = match pal.create_process(&path, &argv, &env, None) {
        Ok(pid) => pid,
        Err(e) => {
            let code = match e.raw_os_error() {
                Some(libc::EACCES) => 126,
                _ => LAUNCH_FAILED,
            };
            eprintln!(
                "encc-launch: {}",
                one_line(&format!("{:#}", explain(pal, e, &args.reference)))
            );
            return Ok(code);
        }
    };
    let handle = signals.handle();
    let forwarder = {
        let pal = Arc::clone(pal);
        std::thread::spawn(move || {
            for sig in signals.forever() {
                // The PAL ABI forwards only SIGKILL and SIGTERM, so SIGINT is sent as
                // SIGTERM (as `occlum run` does).
                let _ = pal.kill(pid, if sig == SIGINT { SIGTERM } else { sig });
            }
        })
    };
    let status = pal.exec(pid);
    handle.close();
    let _ = forwarder.join();
    Ok(status?.shell_code().clamp(0, 255) as u8)
}
