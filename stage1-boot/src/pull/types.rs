//! Options of a pull and what it produced.

use std::sync::Arc;
use std::time::Duration;

use encc_rootfs::RootHash;

use crate::digest::Digest;
use crate::jwe::PrivateKey;
use crate::kbs::KbsClient;
use crate::layer::Progress;
use crate::manifest::{ImageConfig, Manifest, Platform};
use crate::source::RegistryOptions;
use crate::unpack::{LayerStats, UnpackLimits};

/// Options of a pull.
#[derive(Clone)]
pub struct PullOptions {
    /// Platform to pick from an index; default the running one.
    pub platform: Option<Platform>,
    /// How to reach registries.
    pub registry: RegistryOptions,
    /// Download progress observer.
    pub progress: Option<Arc<dyn Progress>>,
    /// Private keys for ocicrypt-encrypted layers (like skopeo's `--decryption-key`).
    pub decryption_keys: Arc<Vec<PrivateKey>>,
    /// The Key Broker Service that holds the KEKs of layers encrypted with Confidential
    /// Containers' key provider (`…enc.keys.provider.attestation-agent`).
    pub kbs: Option<Arc<KbsClient>>,
    /// A download that receives no byte for this long fails (default 60 s). Registry reads
    /// time out after the shorter of this and [`RegistryOptions::timeout`].
    pub stall_timeout: Duration,
    /// Bounds on the work unverified layer bytes can cause.
    pub limits: UnpackLimits,
}

/// Default of [`PullOptions::stall_timeout`].
pub const DEFAULT_STALL_TIMEOUT: Duration = Duration::from_secs(60);

impl Default for PullOptions {
    fn default() -> Self {
        Self {
            platform: None,
            registry: RegistryOptions::default(),
            progress: None,
            decryption_keys: Arc::default(),
            kbs: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
            limits: UnpackLimits::default(),
        }
    }
}

/// A manifest resolved for one platform, with its verified config.
#[derive(Debug, Clone)]
pub struct ResolvedImage {
    /// Digest of the platform manifest.
    pub manifest_digest: Digest,
    /// Its bytes.
    pub manifest_bytes: Vec<u8>,
    /// Parsed manifest.
    pub manifest: Manifest,
    /// Digest of the index the manifest was picked from, if any.
    pub index_digest: Option<Digest>,
    /// Config bytes (digest verified).
    pub config_bytes: Vec<u8>,
    /// Parsed config.
    pub config: ImageConfig,
}

/// What a pull produced.
#[derive(Debug, Clone)]
pub struct PullSummary {
    /// The rootfs measurement.
    pub root_hash: RootHash,
    /// The manifest pulled.
    pub manifest_digest: Digest,
    /// Its config.
    pub config_digest: Digest,
    /// The layers, base first.
    pub layers: Vec<LayerSummary>,
    /// Image size in bytes.
    pub bytes: u64,
}

/// One applied layer.
#[derive(Debug, Clone)]
pub struct LayerSummary {
    /// Blob digest.
    pub digest: Digest,
    /// Uncompressed digest.
    pub diff_id: Digest,
    /// Blob size.
    pub size: u64,
    /// Media type.
    pub media_type: String,
    /// Entries and whiteouts.
    pub stats: LayerStats,
}
