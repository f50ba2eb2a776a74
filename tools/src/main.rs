//! `encc`: admin and debugging CLI.

#![forbid(unsafe_code)]

mod boot_config_cmd;
mod image_cmd;
mod occlum_cmd;
mod rootfs_cmd;
mod store_args;
mod store_cmd;

use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use encc_rootfs::DataKey;

#[derive(Parser)]
#[command(name = "encc", version, about = "encc admin and debugging tool")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Data keys (32 random bytes, stored as 64 hex characters, mode 0600).
    Key {
        #[command(subcommand)]
        command: KeyCommand,
    },
    /// Container images: pull into a protected rootfs, inspect.
    Image {
        #[command(subcommand)]
        command: image_cmd::ImageCommand,
    },
    /// Boot configs for init and encc-launch.
    #[command(name = "boot-config")]
    BootConfig {
        #[command(subcommand)]
        command: boot_config_cmd::BootConfigCommand,
    },
    /// Occlum boot instance templates.
    Occlum {
        #[command(subcommand)]
        command: occlum_cmd::OcclumCommand,
    },
    /// Protected rootfs images.
    Rootfs {
        #[command(subcommand)]
        command: rootfs_cmd::RootfsCommand,
    },
    /// The images a store keeps (with a seal key): list, remove, prune.
    Store {
        #[command(subcommand)]
        command: store_cmd::StoreCommand,
    },
}

#[derive(Subcommand)]
enum KeyCommand {
    /// Writes a new random key to a new file.
    Gen {
        /// The key file to create (never overwritten).
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
}

fn main() -> ExitCode {
    // `encc rootfs run` starts this program again as the simulated enclave's PID 1.
    encc_init::enclave::run_if_requested(encc_init::enclave::Requests::PalAndDebugOpen);
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("warn")).init();
    let cli = Cli::parse();
    let result = match cli.command {
        Command::Key {
            command: KeyCommand::Gen { output },
        } => DataKey::generate()
            .and_then(|key| key.write_file(&output))
            .with_context(|| format!("cannot create key file {}", output.display())),
        Command::Image { command } => image_cmd::run(command),
        Command::BootConfig { command } => boot_config_cmd::run(command),
        Command::Occlum { command } => occlum_cmd::run(command),
        Command::Store { command } => store_cmd::run(command),
        Command::Rootfs { command } => match rootfs_cmd::run(command) {
            Ok(code) => return ExitCode::from(code),
            Err(e) => Err(e),
        },
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("encc: error: {e:#}");
            ExitCode::FAILURE
        }
    }
}
