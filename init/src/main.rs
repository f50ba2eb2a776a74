//! `init`: encc's in-enclave init. On the native platform it runs the whole flow in the
//! current process tree: a simulated enclave (PID 1 of new namespaces) pulls and verifies
//! the image (stage 1), mounts it and runs its entrypoint (stage 2).

#![forbid(unsafe_code)]

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::Parser;
use encc_init::host::Enclave;
use encc_init::run::{run_entry, LAUNCH_FAILED};

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
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    if encc_init::occlum::is_selected() {
        // Occlum's first boot stage: no arguments; the host names the image in ENCC_IMAGE.
        return match encc_init::occlum::run() {
            Ok(()) => ExitCode::SUCCESS,
            Err(e) => {
                eprintln!("init: {e:#}");
                ExitCode::FAILURE
            }
        };
    }
    let cli = Cli::parse();
    ExitCode::from(run(&cli).clamp(0, 255) as u8)
}

fn run(cli: &Cli) -> i32 {
    let exe = match std::env::current_exe() {
        Ok(exe) => exe,
        Err(e) => {
            eprintln!("init: cannot find this program's path: {e}");
            return LAUNCH_FAILED;
        }
    };
    let enclave = match Enclave::spawn(&exe) {
        Ok(enclave) => Arc::new(enclave),
        Err(e) => {
            eprintln!("init: {e}");
            return LAUNCH_FAILED;
        }
    };
    let ready = match enclave.boot(&cli.boot_config, &cli.reference) {
        Ok(ready) => ready,
        Err(e) => {
            eprintln!("init: {e}");
            enclave.reap_process();
            return LAUNCH_FAILED;
        }
    };
    eprintln!("init: rootfs measurement {}", ready.root_hash);
    let env: Vec<String> = std::env::vars().map(|(k, v)| format!("{k}={v}")).collect();
    let code = run_entry(&enclave, &ready, &cli.args, &env);
    if let Err(e) = enclave.destroy() {
        eprintln!("init: teardown failed: {e}");
        return if code == 0 { 1 } else { code };
    }
    code
}
