//! `init`: encc's in-enclave init. On the native platform it runs the whole flow in the
//! current process tree: a simulated enclave (PID 1 of new namespaces) pulls and verifies
//! the image (stage 1), mounts it and runs its entrypoint (stage 2).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use encc_init::run::{run_in_own_enclave, RunError, LAUNCH_FAILED};
use encc_interface::host::Enclave;

/// encc in-enclave init (native platform).
#[derive(Parser)]
#[command(name = "init", version)]
struct Cli {
    /// The trusted boot config (JSON); see `encc boot-config init`.
    #[arg(long = "boot-config", value_name = "FILE")]
    boot_config: PathBuf,
    /// Image reference: docker://HOST/REPO[:TAG][@DIGEST] or oci:PATH[:TAG].
    reference: String,
    /// Arguments replacing the image's Cmd (only when the boot config allows host args).
    #[arg(trailing_var_arg = true, allow_hyphen_values = true)]
    args: Vec<String>,
}

fn main() -> ExitCode {
    encc_init::enclave::run_if_requested(encc_init::enclave::Requests::Pal);
    if encc_init::occlum::is_selected() {
        // Occlum's first boot stage: no arguments; the host names the image in ENCC_IMAGE.
        // The host's environment (Occlum.json's env.untrusted) must not steer init.
        encc_init::config::scrub_own_environment();
        encc_init::config::init_enclave_logging();
        return match encc_init::occlum::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("init: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    // The host side of the native platform: its own environment is the host's.
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    ExitCode::from(run(&cli).clamp(0, 255) as u8)
}

fn run(cli: &Cli) -> i32 {
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let boot = |enclave: &Enclave| {
        let ready = enclave.boot(&cli.boot_config, &cli.reference)?;
        eprintln!("init: rootfs measurement {}", ready.root_hash);
        Ok(ready)
    };
    match run_in_own_enclave(boot, &cli.args, &env) {
        Ok(code) => code,
        Err(RunError::Teardown { code, source }) => {
            eprintln!("init: teardown failed: {source}");
            if code == 0 {
                1
            } else {
                code
            }
        }
        Err(e) => {
            eprintln!("init: {e}");
            LAUNCH_FAILED
        }
    }
}
