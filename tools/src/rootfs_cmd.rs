//! `encc rootfs …` commands.

use std::ffi::OsStr;
use std::io::{self, Write};
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args, Subcommand};
use encc_rootfs::host_tree;
use encc_rootfs::{BuildOptions, DataKey, FileKind, Inode, RootHash, RootfsPath, RootfsReader};
use serde_json::json;

#[derive(Subcommand)]
pub enum RootfsCommand {
    /// Builds an image from a host directory (for debugging and tests).
    Build {
        /// Source directory.
        src: PathBuf,
        /// Image to write.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Shows superblock facts, the root hash and counts.
    Inspect {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Print a JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Checks every block and tree node; exit 1 naming the first bad one.
    Verify {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Fail unless the image's root hash is this one.
        #[arg(long, value_name = "HEX")]
        expect_root_hash: Option<RootHash>,
    },
    /// Lists a directory (or shows one entry) in `ls -l` style.
    Ls {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Path inside the image (default /).
        path: Option<PathBuf>,
    },
    /// Writes a file's content to standard output.
    Cat {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Path inside the image.
        path: PathBuf,
    },
    /// Prints the image config stored by `encc image pull` (verified and decrypted).
    Config {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Recreates the image's tree in a new or empty directory.
    Extract {
        /// The image.
        image: PathBuf,
        #[command(flatten)]
        key: KeyArg,
        /// Destination directory.
        #[arg(short = 'o', long = "output")]
        output: PathBuf,
    },
    /// Mounts the image read-only with FUSE, in the foreground; SIGINT or SIGTERM unmounts.
    Mount {
        /// The image.
        image: PathBuf,
        /// Where to mount it.
        mountpoint: PathBuf,
        #[command(flatten)]
        key: KeyArg,
    },
    /// Runs stage 2 alone on a pulled image, in a simulated enclave (native platform):
    /// mounts it, pivots into it and runs its entrypoint; exits with the container's code.
    Run(RunArgs),
}

/// `encc rootfs run`.
#[derive(Args)]
pub struct RunArgs {
    /// The image (made by `encc image pull`).
    image: PathBuf,
    #[command(flatten)]
    key: KeyArg,
    /// Container hostname.
    #[arg(long, default_value = "encc")]
    hostname: String,
    /// Environment for the container (NAME=value); repeatable.
    #[arg(long = "env", value_name = "NAME=VALUE")]
    env: Vec<String>,
    /// Size of the in-memory writable layer, in MiB.
    #[arg(long = "tmpfs-size-mib", default_value_t = encc_init::config::DEFAULT_TMPFS_SIZE >> 20)]
    tmpfs_size_mib: u64,
    /// Arguments replacing the image's Cmd.
    #[arg(last = true)]
    args: Vec<String>,
}

#[derive(Args)]
pub struct KeyArg {
    /// File holding the image's data key (64 hex characters).
    #[arg(long = "key-file", value_name = "KEYFILE")]
    key_file: PathBuf,
}

impl KeyArg {
    fn load(&self) -> Result<DataKey> {
        Ok(DataKey::read_file(&self.key_file)?)
    }
}

/// Runs a `rootfs` command; returns the exit code.
pub fn run(command: RootfsCommand) -> Result<u8> {
    let result = match command {
        RootfsCommand::Build {
            src,
            output,
            key,
            json,
        } => {
            let summary =
                host_tree::build_from_dir(&src, &output, &key.load()?, BuildOptions::default())
                    .with_context(|| {
                        format!(
                            "cannot build image {} from {}",
                            output.display(),
                            src.display()
                        )
                    })?;
            if json {
                println!(
                    "{}",
                    json!({
                        "root_hash": summary.root_hash.to_string(),
                        "entries": summary.entries,
                        "inodes": summary.inodes,
                        "bytes": summary.bytes,
                        "file_bytes": summary.file_bytes,
                    })
                );
            } else {
                println!("entries {}", summary.entries);
                println!("bytes {}", summary.bytes);
                println!("root_hash {}", summary.root_hash);
            }
            Ok(())
        }
        RootfsCommand::Inspect { image, key, json } => inspect(&open(&image, &key)?, json),
        RootfsCommand::Verify {
            image,
            key,
            expect_root_hash,
        } => {
            let reader = open(&image, &key)?;
            let report = reader.verify_all()?;
            if let Some(expected) = expect_root_hash {
                if expected != report.root_hash {
                    bail!(
                        "image {} has root hash {}, expected {expected}",
                        image.display(),
                        report.root_hash
                    );
                }
            }
            println!("root_hash {}", report.root_hash);
            Ok(())
        }
        RootfsCommand::Ls { image, key, path } => {
            let reader = open(&image, &key)?;
            let path = image_path(path.as_deref().unwrap_or(Path::new("/")))?;
            let inode = reader.resolve(&path)?;
            let mut out = io::stdout().lock();
            if inode.kind == FileKind::Directory {
                for entry in reader.read_dir(&inode)? {
                    let child = reader.inode(entry.ino)?;
                    ls_line(&mut out, &reader, &child, &entry.name)?;
                }
            } else {
                let name = path.to_string();
                ls_line(&mut out, &reader, &inode, name.as_bytes())?;
            }
            Ok(())
        }
        RootfsCommand::Cat { image, key, path } => {
            let reader = open(&image, &key)?;
            let inode = reader.resolve(&image_path(&path)?)?;
            let mut buf = vec![0u8; 1 << 20];
            let mut out = io::stdout().lock();
            let mut offset = 0;
            loop {
                let n = reader.read(&inode, offset, &mut buf)?;
                if n == 0 {
                    break;
                }
                out.write_all(&buf[..n])?;
                offset += n as u64;
            }
            Ok(out.flush()?)
        }
        RootfsCommand::Config { image, key } => {
            let reader = open(&image, &key)?;
            let config = reader
                .attachment(encc_stage1::pull::attachment::CONFIG)?
                .with_context(|| {
                    format!(
                        "image {} holds no image config (not made by `encc image pull`)",
                        image.display()
                    )
                })?;
            let value: serde_json::Value = serde_json::from_slice(&config)
                .with_context(|| format!("image config in {} is not JSON", image.display()))?;
            println!("{}", serde_json::to_string_pretty(&value)?);
            Ok(())
        }
        RootfsCommand::Extract { image, key, output } => {
            let reader = open(&image, &key)?;
            let summary = host_tree::extract(&reader, &output).with_context(|| {
                format!(
                    "cannot extract image {} to {}",
                    image.display(),
                    output.display()
                )
            })?;
            println!("entries {}", summary.entries);
            println!("bytes {}", summary.bytes);
            println!("root_hash {}", reader.root_hash());
            Ok(())
        }
        RootfsCommand::Mount {
            image,
            mountpoint,
            key,
        } => mount(Arc::new(open(&image, &key)?), &mountpoint),
        RootfsCommand::Run(args) => return run_container(&args),
    };
    result.map(|()| 0)
}

/// Stage 2 alone: a simulated enclave serving the image, the entrypoint run to its end.
fn run_container(args: &RunArgs) -> Result<u8> {
    let key = args.key.load()?;
    let image = std::fs::canonicalize(&args.image)
        .with_context(|| format!("cannot find image {}", args.image.display()))?;
    let store = image
        .parent()
        .map(Path::to_owned)
        .unwrap_or_else(|| PathBuf::from("/"));
    let config = encc_init::config::BootConfig {
        allow_host_args: true,
        env: args.env.clone(),
        tmpfs_size: args.tmpfs_size_mib << 20,
        hostname: args.hostname.clone(),
        ..encc_init::config::BootConfig::debugging(store)
    };
    config.validate("encc rootfs run")?;
    let open = |enclave: &encc_interface::host::Enclave| {
        let ready = enclave.open(&image, key.as_bytes(), &config)?;
        log::info!("rootfs measurement {}", ready.root_hash);
        Ok(ready)
    };
    let code = match encc_init::run::run_in_own_enclave(open, &args.args, &[]) {
        Ok(code) => code,
        Err(e @ encc_init::run::RunError::Teardown { .. }) => return Err(e.into()),
        Err(e) => {
            return Err(anyhow::Error::from(e).context(format!("cannot start {}", image.display())))
        }
    };
    Ok(code.clamp(0, 255) as u8)
}

fn open(image: &Path, key: &KeyArg) -> Result<RootfsReader> {
    Ok(RootfsReader::open(image, &key.load()?)?)
}

fn image_path(path: &Path) -> Result<RootfsPath> {
    Ok(RootfsPath::parse_os(path.as_os_str())?)
}

fn inspect(reader: &RootfsReader, json: bool) -> Result<()> {
    let info = reader.info();
    let fields: Vec<(&str, serde_json::Value)> = vec![
        ("format_version", info.version.into()),
        ("block_size", info.block_size.into()),
        ("image_id", info.image_id.clone().into()),
        ("image_bytes", info.image_bytes.into()),
        ("slots", info.slots.into()),
        ("data_slots", info.data_slots.into()),
        ("metadata_bytes", info.metadata_bytes.into()),
        ("tree_levels", info.tree_levels.into()),
        ("inodes", info.inodes.into()),
        ("entries", info.entries.into()),
        ("files", info.files.into()),
        ("directories", info.directories.into()),
        ("symlinks", info.symlinks.into()),
        ("specials", info.specials.into()),
        ("file_bytes", info.file_bytes.into()),
        ("root_hash", info.root_hash.to_string().into()),
    ];
    if json {
        let map: serde_json::Map<String, serde_json::Value> = fields
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect();
        println!("{}", serde_json::Value::Object(map));
    } else {
        for (k, v) in fields {
            match v {
                serde_json::Value::String(s) => println!("{k} {s}"),
                other => println!("{k} {other}"),
            }
        }
    }
    Ok(())
}

fn ls_line(out: &mut impl Write, reader: &RootfsReader, inode: &Inode, name: &[u8]) -> Result<()> {
    let kind = match inode.kind {
        FileKind::Directory => 'd',
        FileKind::Regular => '-',
        FileKind::Symlink => 'l',
        FileKind::CharDevice => 'c',
        FileKind::BlockDevice => 'b',
        FileKind::Fifo => 'p',
    };
    let size = match inode.kind {
        FileKind::CharDevice | FileKind::BlockDevice => {
            format!("{},{}", libc::major(inode.rdev), libc::minor(inode.rdev))
        }
        _ => inode.size.to_string(),
    };
    write!(
        out,
        "{kind}{} {:>3} {:>5} {:>5} {:>12} {} ",
        perm_string(inode.mode),
        inode.nlink,
        inode.uid,
        inode.gid,
        size,
        inode.mtime.sec
    )?;
    out.write_all(name)?;
    if inode.kind == FileKind::Symlink {
        out.write_all(b" -> ")?;
        out.write_all(OsStr::from_bytes(&reader.read_link(inode)?).as_bytes())?;
    }
    out.write_all(b"\n")?;
    Ok(())
}

fn perm_string(mode: u32) -> String {
    let mut s = String::with_capacity(9);
    for (shift, special, lower, upper) in [
        (6, 0o4000, 's', 'S'),
        (3, 0o2000, 's', 'S'),
        (0, 0o1000, 't', 'T'),
    ] {
        let bits = (mode >> shift) & 7;
        s.push(if bits & 4 != 0 { 'r' } else { '-' });
        s.push(if bits & 2 != 0 { 'w' } else { '-' });
        s.push(match (bits & 1 != 0, mode & special != 0) {
            (true, true) => lower,
            (false, true) => upper,
            (true, false) => 'x',
            (false, false) => '-',
        });
    }
    s
}

/// Mounts and waits for SIGINT/SIGTERM or an external unmount.
fn mount(reader: Arc<RootfsReader>, mountpoint: &Path) -> Result<()> {
    use signal_hook::consts::{SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM])
        .context("cannot install signal handlers")?;
    let root_hash = reader.root_hash();
    let image = reader.path().to_owned();
    let handle = encc_rootfs::fuse::mount(reader, mountpoint)?;
    eprintln!(
        "encc: mounted {} at {} (root_hash {root_hash}); SIGINT or SIGTERM unmounts",
        image.display(),
        mountpoint.display()
    );
    loop {
        if let Some(sig) = signals.pending().next() {
            log::info!("signal {sig}: unmounting {}", mountpoint.display());
            break;
        }
        if handle.is_finished() {
            log::info!("{} was unmounted externally", mountpoint.display());
            break;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    handle.unmount()?;
    eprintln!("encc: unmounted {}", mountpoint.display());
    Ok(())
}
