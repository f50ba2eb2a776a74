//! `encc store …`: list, remove and prune the images a store keeps (with `seal_key_file`),
//! safe while containers start from it: every operation takes each image's lock without
//! waiting, and an image in use (a start holds its lock, or its container runs) is
//! skipped or refused, never removed.

use std::path::PathBuf;
use std::time::{SystemTime, UNIX_EPOCH};

use anyhow::{Context as _, Result};
use clap::{Args, Subcommand};
use encc_init::config::BootConfig;
use encc_init::store::{prune_selection, Busy, KeptImage, Removal, SealState, Store};
use encc_rootfs::DataKey;

use crate::store_args::{Age, Target};

/// The store's default place (as `encc boot-config init`'s).
const DEFAULT_STORE: &str = "/var/lib/encc";

/// Which store: a directory, or the one a boot config names (with its seal key).
#[derive(Debug, Args)]
pub struct StoreAt {
    /// The store directory (default /var/lib/encc).
    #[arg(long, value_name = "DIR", conflicts_with = "boot_config")]
    store: Option<PathBuf>,
    /// The store (and the seal_key_file) of this boot config.
    #[arg(long = "boot-config", value_name = "FILE")]
    boot_config: Option<PathBuf>,
}

#[derive(Subcommand)]
pub enum StoreCommand {
    /// Lists the kept images, the most recently used first.
    Ls {
        #[command(flatten)]
        at: StoreAt,
        /// Opens the seals with this key (the boot config's seal_key_file otherwise) to
        /// show each image's root hash.
        #[arg(long = "seal-key-file", value_name = "KEYFILE")]
        seal_key_file: Option<PathBuf>,
        /// JSON: an array of objects.
        #[arg(long)]
        json: bool,
    },
    /// Removes kept images; refuses (exit 1) those in use.
    Rm {
        #[command(flatten)]
        at: StoreAt,
        /// sha256:HEX (12 to 64 digits of the manifest digest) or a reference the image was
        /// started as (every kept image started as it).
        #[arg(required = true, value_name = "REF|DIGEST")]
        images: Vec<Target>,
    },
    /// Removes kept images by last use; skips those in use.
    #[command(group(clap::ArgGroup::new("rule").required(true).multiple(true)))]
    Prune {
        #[command(flatten)]
        at: StoreAt,
        /// Keeps the N most recently used.
        #[arg(long = "keep-last", value_name = "N", group = "rule")]
        keep_last: Option<usize>,
        /// Removes only images last used longer ago than this (30m, 12h, 7d).
        #[arg(long = "older-than", value_name = "DURATION", group = "rule")]
        older_than: Option<Age>,
    },
}

pub fn run(command: StoreCommand) -> Result<()> {
    match command {
        StoreCommand::Ls {
            at,
            seal_key_file,
            json,
        } => {
            let (store, config_key) = open(&at)?;
            let key = seal_key_file
                .or(config_key)
                .map(|path| {
                    DataKey::read_file(&path)
                        .with_context(|| format!("sealing key {}", path.display()))
                })
                .transpose()?;
            let images = store.list(key.as_ref())?;
            if json {
                let rows: Vec<_> = images.iter().map(json_row).collect();
                println!("{}", serde_json::to_string_pretty(&rows)?);
            } else {
                print_table(&images);
            }
            Ok(())
        }
        StoreCommand::Rm { at, images } => {
            let (store, _) = open(&at)?;
            let kept = store.list(None)?;
            let mut failed = 0;
            for target in &images {
                let selected = match target.select(&kept) {
                    Ok(selected) => selected,
                    Err(e) => {
                        eprintln!("encc: error: {e}");
                        failed += 1;
                        continue;
                    }
                };
                for manifest in selected {
                    match store.remove(&manifest) {
                        Ok(Removal::Removed { bytes }) => {
                            println!("removed {manifest} ({})", size(bytes));
                        }
                        Ok(Removal::Busy(busy)) => {
                            eprintln!(
                                "encc: error: kept image {manifest} is in use ({}); not removed",
                                busy_text(busy)
                            );
                            failed += 1;
                        }
                        Err(e) => {
                            eprintln!("encc: error: {:#}", anyhow::Error::from(e));
                            failed += 1;
                        }
                    }
                }
            }
            anyhow::ensure!(failed == 0, "{failed} of the images named were not removed");
            Ok(())
        }
        StoreCommand::Prune {
            at,
            keep_last,
            older_than,
        } => {
            let (store, _) = open(&at)?;
            store.clean()?;
            let kept = store.list(None)?;
            let selected =
                prune_selection(&kept, keep_last, older_than.map(|a| a.0), SystemTime::now());
            let (mut removed, mut freed, mut stayed, mut failed) = (0, 0, 0, 0);
            for manifest in selected {
                match store.remove(&manifest) {
                    Ok(Removal::Removed { bytes }) => {
                        println!("removed {manifest} ({})", size(bytes));
                        removed += 1;
                        freed += bytes;
                    }
                    Ok(Removal::Busy(busy)) => {
                        eprintln!("skipped {manifest}: in use ({})", busy_text(busy));
                        stayed += 1;
                    }
                    Err(e) => {
                        eprintln!("encc: error: {:#}", anyhow::Error::from(e));
                        failed += 1;
                    }
                }
            }
            println!(
                "pruned {removed} kept image(s), {}; {stayed} in use stayed",
                size(freed)
            );
            anyhow::ensure!(failed == 0, "{failed} kept image(s) could not be removed");
            Ok(())
        }
    }
}

/// The store (which must exist) and the boot config's sealing key file, if any.
fn open(at: &StoreAt) -> Result<(Store, Option<PathBuf>)> {
    let (dir, key) = match &at.boot_config {
        Some(file) => {
            let config = BootConfig::load(file)?.config;
            (config.store, config.seal_key_file)
        }
        None => (
            at.store
                .clone()
                .unwrap_or_else(|| PathBuf::from(DEFAULT_STORE)),
            None,
        ),
    };
    Ok((Store::existing(&dir)?, key))
}

fn busy_text(busy: Busy) -> &'static str {
    match busy {
        Busy::Locked => "a start or removal holds its lock",
        Busy::Running => "a container started from it is running",
    }
}

fn state(image: &KeptImage) -> &'static str {
    match image.busy {
        None => "idle",
        Some(Busy::Locked) => "locked",
        Some(Busy::Running) => "in-use",
    }
}

fn seal_text(seal: &SealState) -> &'static str {
    match seal {
        SealState::Missing => "missing",
        SealState::Present => "present",
        SealState::Opens(_) => "opens",
        SealState::DoesNotOpen => "does-not-open",
    }
}

fn timestamp(t: SystemTime) -> String {
    let secs = t
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
        .min(i64::MAX as u64) as i64;
    jiff::Timestamp::from_second(secs)
        .map(|ts| ts.to_string())
        .unwrap_or_else(|_| secs.to_string())
}

fn json_row(image: &KeptImage) -> serde_json::Value {
    let root_hash = match &image.seal {
        SealState::Opens(root) => Some(root.to_string()),
        _ => None,
    };
    serde_json::json!({
        "manifest_digest": image.manifest.to_string(),
        "references": image.references.iter().map(ToString::to_string).collect::<Vec<_>>(),
        "bytes": image.bytes,
        "last_use": image.last_use.map(timestamp),
        "state": state(image),
        "image": image.has_image,
        "seal": seal_text(&image.seal),
        "root_hash": root_hash,
    })
}

fn print_table(images: &[KeptImage]) {
    println!(
        "{:<19}  {:<50}  {:>9}  {:<20}  {:<6}  ROOT HASH",
        "MANIFEST", "REFERENCE", "SIZE", "LAST USE", "STATE"
    );
    for image in images {
        let reference = match image.references.as_slice() {
            [] => "-".to_owned(),
            [one] => one.to_string(),
            [first, rest @ ..] => format!("{first} (+{})", rest.len()),
        };
        let root = match &image.seal {
            SealState::Opens(root) => root.to_string(),
            SealState::Present => "-".to_owned(),
            other => format!("(seal {})", seal_text(other)),
        };
        println!(
            "{:<19}  {:<50}  {:>9}  {:<20}  {:<6}  {root}",
            &image.manifest.to_string()[..19],
            reference,
            size(image.bytes),
            image.last_use.map_or_else(|| "-".to_owned(), timestamp),
            state(image),
        );
    }
}

/// Bytes in binary units, one decimal.
fn size(bytes: u64) -> String {
    const UNITS: [&str; 5] = ["B", "KiB", "MiB", "GiB", "TiB"];
    let mut value = bytes as f64;
    let mut unit = 0;
    while value >= 1024.0 && unit < UNITS.len() - 1 {
        value /= 1024.0;
        unit += 1;
    }
    if unit == 0 {
        format!("{bytes} B")
    } else {
        format!("{value:.1} {}", UNITS[unit])
    }
}
