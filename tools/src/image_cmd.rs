//! `encc image …` commands.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use anyhow::{Context, Result};
use clap::{Args, Subcommand};
use encc_interface::config_args::{KbsArgs as SharedKbsArgs, RegistryArgs, TrustArgs};
use encc_interface::resource::Location;
use encc_rootfs::DataKey;
use encc_stage1::boot::{PolicySource, Stage1, Stage1Config};
use encc_stage1::digest::Digest;
use encc_stage1::kbs::KbsConfig;
use encc_stage1::layer::Progress;
use encc_stage1::manifest::Platform;
use encc_stage1::progress::Bars;
use encc_stage1::pull::{self, PullOptions, UnpackLimits};
use encc_stage1::reference::ImageRef;
use encc_stage1::source::{self, RegistryOptions};
use serde_json::json;

// The pull's flags are many; the enum lives once per process, so its size does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand)]
pub enum ImageCommand {
    /// Pulls an image into a protected rootfs image, verifying every digest.
    Pull {
        /// Image reference: docker://HOST/REPO[:TAG][@DIGEST] (docker:// optional) or oci:PATH[:TAG].
        reference: String,
        /// Protected rootfs image to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        /// File holding the data key for the new image.
        #[arg(long = "key-file", value_name = "KEYFILE")]
        key_file: PathBuf,
        #[command(flatten)]
        source: SourceArgs,
        #[command(flatten)]
        trust: TrustArgs,
        #[command(flatten)]
        kbs: Box<PullKbsArgs>,
        /// Fail a download that receives no byte for this many seconds.
        #[arg(long = "stall-timeout", value_name = "SECONDS", default_value_t = 60)]
        stall_timeout: u64,
        /// Lower or raise a bound on what layers may hold, NAME=VALUE (repeatable):
        /// unpacked-bytes (default 64G, tar bytes and sparse holes of the whole image),
        /// entries (1000000 per layer), path-bytes (4096), header-bytes (1M per entry),
        /// xattrs (128 per entry), xattr-bytes (256K per entry).
        #[arg(long = "limit", value_name = "NAME=VALUE")]
        limits: Vec<String>,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Shows an image's manifest and config without fetching layers (like skopeo inspect).
    Inspect {
        /// Image reference.
        reference: String,
        #[command(flatten)]
        source: SourceArgs,
        /// Print the manifest as the source sent it.
        #[arg(long)]
        raw: bool,
    },
}

/// The Key Broker Service: the flags shared with `encc-launch run` and `encc boot-config
/// init`, plus the pull's own CA certificate for it.
#[derive(Args)]
pub struct PullKbsArgs {
    #[command(flatten)]
    shared: SharedKbsArgs,
    /// Extra CA certificate (PEM) for the KBS's TLS certificate.
    #[arg(long = "kbs-cert", value_name = "FILE", requires = "kbs")]
    kbs_cert: Option<PathBuf>,
}

impl PullKbsArgs {
    fn config(&self) -> Option<KbsConfig> {
        self.shared.config().map(|kbs| KbsConfig {
            attester: kbs.attester,
            ca_cert: self.kbs_cert.clone(),
            ..KbsConfig::new(kbs.url)
        })
    }
}

/// How to reach the image.
#[derive(Args)]
pub struct SourceArgs {
    /// Platform to pick from a multi-platform image: os/arch[/variant].
    #[arg(long, value_parser = parse_platform)]
    platform: Option<Platform>,
    #[command(flatten)]
    registry: RegistryArgs,
    /// Auth file (containers auth.json or Docker config.json format), a file or (for
    /// image pull) kbs:///REPO/TYPE/TAG.
    #[arg(long)]
    authfile: Option<PathBuf>,
    /// Directory of extra CA certificates (*.crt).
    #[arg(long = "cert-dir")]
    cert_dir: Option<PathBuf>,
}

fn parse_platform(s: &str) -> Result<Platform, String> {
    Platform::parse(s).ok_or_else(|| format!("{s:?} is not os/arch[/variant]"))
}

impl SourceArgs {
    fn registry_options(&self) -> RegistryOptions {
        RegistryOptions {
            tls_verify: self.registry.tls_verify,
            insecure_registries: self.registry.insecure_registries.clone(),
            cert_dir: self.cert_dir.clone(),
            authfile: self.authfile.clone(),
            ..RegistryOptions::default()
        }
    }
}

pub fn run(command: ImageCommand) -> Result<()> {
    match command {
        ImageCommand::Pull {
            reference,
            output,
            key_file,
            source,
            trust:
                TrustArgs {
                    policy,
                    insecure_policy,
                    registries_d,
                    decryption_keys,
                },
            kbs,
            stall_timeout,
            limits,
            json,
        } => {
            let image: ImageRef = reference.parse()?;
            let mut unpack_limits = UnpackLimits::default();
            for limit in &limits {
                let (name, value) = limit.split_once('=').unwrap_or((limit, ""));
                unpack_limits.set(name, value)?;
            }
            let key = DataKey::read_file(&key_file)?;
            remove_partials_on_signals()?;
            let config = Stage1Config {
                policy: match (policy, insecure_policy) {
                    (Some(Location::Kbs(uri)), _) => PolicySource::Kbs(uri),
                    (Some(Location::File(path)), _) => PolicySource::File(path),
                    (None, true) => PolicySource::InsecureAcceptAnything,
                    (None, false) => PolicySource::Default,
                },
                registries_d,
                decryption_keys,
                kbs: kbs.config(),
                pull: PullOptions {
                    platform: source.platform.clone(),
                    registry: source.registry_options(),
                    progress: Some(
                        Bars::on_terminal(false)
                            .unwrap_or_else(|| Arc::new(Lines::default()) as Arc<dyn Progress>),
                    ),
                    stall_timeout: Duration::from_secs(stall_timeout),
                    limits: unpack_limits,
                    ..PullOptions::default()
                },
            };
            let summary = Stage1::prepare(&config)
                .and_then(|stage1| stage1.pull(&image, &output, &key))
                .with_context(|| format!("pull of {image} into {} failed", output.display()))?;
            if json {
                let layers: Vec<_> = summary
                    .layers
                    .iter()
                    .map(|l| {
                        json!({
                            "digest": l.digest.to_string(),
                            "diff_id": l.diff_id.to_string(),
                            "size": l.size,
                            "media_type": l.media_type,
                            "entries": l.stats.entries,
                            "whiteouts": l.stats.whiteouts,
                        })
                    })
                    .collect();
                println!(
                    "{}",
                    json!({
                        "root_hash": summary.root_hash.to_string(),
                        "manifest_digest": summary.manifest_digest.to_string(),
                        "config_digest": summary.config_digest.to_string(),
                        "layers": layers,
                        "bytes": summary.bytes,
                    })
                );
            } else {
                println!("manifest_digest {}", summary.manifest_digest);
                println!("config_digest {}", summary.config_digest);
                println!("layers {}", summary.layers.len());
                println!("root_hash {}", summary.root_hash);
            }
            Ok(())
        }
        ImageCommand::Inspect {
            reference,
            source,
            raw,
        } => {
            let image: ImageRef = reference.parse()?;
            let src = source::open(&image, &source.registry_options())?;
            if raw {
                let fetched = src.root_manifest()?;
                println!("{}", String::from_utf8_lossy(&fetched.bytes));
                return Ok(());
            }
            let resolved = pull::resolve(&*src, source.platform.as_ref())?;
            let config: serde_json::Value = serde_json::from_slice(&resolved.config_bytes)?;
            let run = &config["config"];
            let out = json!({
                "Name": image.to_string(),
                "Digest": resolved.manifest_digest.to_string(),
                "IndexDigest": resolved.index_digest.map(|d| d.to_string()),
                "Created": config["created"],
                "Architecture": config["architecture"],
                "Os": config["os"],
                "Labels": run["Labels"],
                "Env": run["Env"],
                "Entrypoint": run["Entrypoint"],
                "Cmd": run["Cmd"],
                "User": run["User"],
                "WorkingDir": run["WorkingDir"],
                "ExposedPorts": run["ExposedPorts"],
                "Layers": resolved.manifest.layers.iter().map(|l| l.digest.to_string()).collect::<Vec<_>>(),
                "LayersData": resolved.manifest.layers,
                "Config": config,
            });
            println!("{}", serde_json::to_string_pretty(&out)?);
            Ok(())
        }
    }
}

/// Stops on SIGINT or SIGTERM (as `timeout` sends) without leaving the partial image
/// behind: removes it and exits with 128 + the signal number.
fn remove_partials_on_signals() -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    std::thread::Builder::new()
        .name("encc-signals".into())
        .spawn(move || {
            if let Some(sig) = signals.forever().next() {
                log::info!("signal {sig}: pull stopped, removing its partial image");
                encc_rootfs::exit_removing_partials(128 + sig);
            }
        })
        .context("cannot start the signal thread")?;
    Ok(())
}

/// One stderr line per layer when stderr is not a terminal.
#[derive(Default)]
struct Lines {
    layers: Mutex<Vec<(usize, Digest, u64)>>,
}

impl Progress for Lines {
    fn layer_started(&self, index: usize, digest: &Digest, size: u64) {
        self.layers
            .lock()
            .unwrap_or_else(|e| e.into_inner())
            .push((index, *digest, size));
    }

    fn layer_bytes(&self, _index: usize, _n: u64) {}

    fn layer_done(&self, index: usize) {
        let layers = self.layers.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((_, digest, size)) = layers.iter().find(|(i, _, _)| *i == index) {
            eprintln!("layer {index} {digest}: {size} bytes verified and applied");
        }
    }
}
