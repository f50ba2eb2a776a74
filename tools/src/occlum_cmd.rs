//! `encc occlum render`: the Occlum.json and initfs bom of an encc boot instance, from a
//! boot config.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use clap::Subcommand;
use encc_init::config::BootConfig;
// The variable the host names the image in (Occlum's `env.untrusted` must pass it).
use encc_interface::names::IMAGE_ENV;
use encc_occlum_templates::{
    render, RenderInput, DEFAULT_MAX_THREADS, DEFAULT_USER_SPACE_SIZE, MIB,
};

/// CA bundle copied into the initfs when the host has one.
const HOST_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Subcommand)]
pub enum OcclumCommand {
    /// Writes Occlum.json (and the initfs copy_bom file) for a boot config. The boot
    /// config's `store` is the path inside the enclave; the host directory is mounted there.
    Render {
        /// The boot config (copied into the initfs, so it is part of the measurement).
        #[arg(long = "boot-config", value_name = "FILE")]
        boot_config: PathBuf,
        /// Occlum.json to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// copy_bom file to write (default: encc-initfs.yaml beside the output).
        #[arg(long)]
        bom: Option<PathBuf>,
        /// encc's init built for Occlum (host path, copied to the initfs).
        #[arg(long, default_value = "target/release/init")]
        init: PathBuf,
        /// Host directory of the store (default: the boot config's store path).
        #[arg(long = "store-host-dir")]
        store_host_dir: Option<PathBuf>,
        /// Program prefix the host may start after stage 1 (Occlum's entry_points).
        #[arg(long = "entry-point")]
        entry_point: Option<String>,
        /// Enclave user space, in MiB.
        #[arg(long = "user-space-mib", default_value_t = DEFAULT_USER_SPACE_SIZE / MIB)]
        user_space_mib: u64,
        /// Most LibOS threads.
        #[arg(long = "max-threads", default_value_t = DEFAULT_MAX_THREADS)]
        max_threads: u32,
        /// Build a debuggable enclave (never in production).
        #[arg(long)]
        debuggable: bool,
    },
}

pub fn run(command: OcclumCommand) -> Result<()> {
    let OcclumCommand::Render {
        boot_config,
        output,
        bom,
        init,
        store_host_dir,
        entry_point,
        user_space_mib,
        max_threads,
        debuggable,
    } = command;
    let config = BootConfig::load(&boot_config)?.config;
    // The bom is used from the instance directory: give it absolute host paths.
    let boot_config = std::fs::canonicalize(&boot_config)
        .with_context(|| format!("cannot resolve {}", boot_config.display()))?;
    let mut allowlist = config.env_allowlist.clone();
    if !allowlist.iter().any(|n| n == IMAGE_ENV) {
        allowlist.push(IMAGE_ENV.to_owned());
    }
    let input = RenderInput {
        ca_bundle: Path::new(HOST_CA_BUNDLE)
            .is_file()
            .then(|| PathBuf::from(HOST_CA_BUNDLE)),
        entry_point,
        env_allowlist: allowlist,
        trusted_env: config.env.clone(),
        user_space_size: user_space_mib * MIB,
        max_threads,
        debuggable,
        ..RenderInput::new(
            "encc",
            init,
            boot_config.clone(),
            store_host_dir.unwrap_or_else(|| config.store.clone()),
            config.store.clone(),
        )
    };
    let rendered = render(&input)?;
    let bom = bom.unwrap_or_else(|| {
        output
            .parent()
            .unwrap_or(Path::new("."))
            .join("encc-initfs.yaml")
    });
    std::fs::write(&output, rendered.occlum_json_text())
        .with_context(|| format!("cannot write {}", output.display()))?;
    std::fs::write(&bom, &rendered.copy_bom)
        .with_context(|| format!("cannot write {}", bom.display()))?;
    eprintln!("wrote {} and {}", output.display(), bom.display());
    Ok(())
}
