//! `encc boot-config …`: write and check boot configs.

use std::path::PathBuf;

use anyhow::Result;
use clap::Subcommand;
use encc_init::config::BootConfig;
use encc_interface::config_args::BootConfigArgs;

// Init's flags are many; the enum lives once per process, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum BootConfigCommand {
    /// Prints a valid boot config built from flags (redirect it to a file).
    Init {
        #[command(flatten)]
        args: BootConfigArgs,
    },
    /// Validates a boot config file and prints its sha256 (the native platform's measurement).
    Check {
        /// The boot config.
        file: PathBuf,
    },
}

pub fn run(command: BootConfigCommand) -> Result<()> {
    match command {
        BootConfigCommand::Init { args } => {
            println!("{}", args.to_config()?.to_json());
        }
        BootConfigCommand::Check { file } => {
            let loaded = BootConfig::load(&file)?;
            println!("{}: valid, sha256:{}", file.display(), loaded.sha256);
        }
    }
    Ok(())
}
