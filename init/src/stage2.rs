//! Stage 2 preparation on the native platform: from an opened protected image and the boot
//! config to a container root ready for `create_process` (hostname, optional network
//! namespace, FUSE + overlayfs root, the image user resolved).

use std::path::PathBuf;
use std::sync::Arc;

use encc_rootfs::container::{PreparedRoot, RootSetup};
use encc_rootfs::{DataKey, RootfsReader, KEY_LEN};
use encc_stage1::manifest::{ImageConfig, RunConfig};
use encc_stage1::pull::attachment;

use crate::config::{is_host_name, BootConfig, DEFAULT_TMP_SIZE};
use encc_interface::protocol::RootHash;

/// What is running inside the enclave once it is ready.
pub(crate) struct Running {
    pub(crate) root: PreparedRoot,
    pub(crate) root_hash: RootHash,
    pub(crate) image: RunConfig,
    pub(crate) config: BootConfig,
    /// The image file to remove at teardown (pulled by stage 1), if any.
    pub(crate) pulled: Option<PathBuf>,
    /// The kept image's mark of being in use, held until teardown.
    pub(crate) in_use: Option<crate::store::InUse>,
}

/// Reads the run config a pull stored in the image.
pub(crate) fn image_run_config(reader: &RootfsReader) -> Result<RunConfig, anyhow::Error> {
    let bytes = reader.attachment(attachment::CONFIG)?.ok_or_else(|| {
        anyhow::anyhow!(
            "{} holds no image config (was it made by a pull?)",
            reader.path().display()
        )
    })?;
    let config: ImageConfig = serde_json::from_slice(&bytes)?;
    Ok(config.config.unwrap_or_default())
}

/// Prepares the container root for an opened image.
pub(crate) fn prepare(
    reader: RootfsReader,
    mut config: BootConfig,
    pulled: Option<PathBuf>,
) -> Result<Running, anyhow::Error> {
    let image = image_run_config(&reader)?;
    let root_hash = RootHash(reader.root_hash().0);
    if config.allow_host_hostname {
        config.hostname = host_hostname()?;
    }
    nix::unistd::sethostname(&config.hostname)?;
    if config.net_namespace {
        // After the pull: the container gets a network namespace with only `lo`.
        nix::sched::unshare(nix::sched::CloneFlags::CLONE_NEWNET)?;
        crate::sys::loopback_up()?;
    }
    let setup = RootSetup {
        tmpfs_size: config.tmpfs_size,
        tmp_size: DEFAULT_TMP_SIZE.min(config.tmpfs_size),
        hostname: config.hostname.clone(),
        hosts: config.hosts.clone(),
        dns: config.dns.clone(),
        user: image.user.clone().unwrap_or_default(),
    };
    let root = PreparedRoot::prepare(Arc::new(reader), &setup)?;
    Ok(Running {
        root,
        root_hash,
        image,
        config,
        pulled,
        in_use: None,
    })
}

/// The hostname of the UTS namespace the enclave started in (its own is a copy): a pod's,
/// set by the host, so it is checked like the boot config's before it reaches `/etc/hosts`.
fn host_hostname() -> Result<String, anyhow::Error> {
    let name = nix::unistd::gethostname()?;
    let name = name.to_string_lossy();
    anyhow::ensure!(
        is_host_name(&name),
        "the host's hostname {name:?} is not a host name (1 to 64 letters, digits, '-' and \
         '.'), refused under allow_host_hostname"
    );
    Ok(name.into_owned())
}

pub(crate) fn open_pulled(
    image_path: PathBuf,
    key_hex: &str,
    config: BootConfig,
) -> Result<Running, anyhow::Error> {
    let key = DataKey::from_hex(key_hex.as_bytes()).map_err(|reason| {
        anyhow::anyhow!("the data key is not {} hex digits: {reason}", KEY_LEN * 2)
    })?;
    // The debugging tool checked it, but the enclave does not take the host's word for it.
    config.validate("the open request")?;
    let reader = RootfsReader::open(&image_path, &key)?;
    log::info!(
        "rootfs measurement {} ({})",
        reader.root_hash(),
        image_path.display()
    );
    prepare(reader, config, None)
}
