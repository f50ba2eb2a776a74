//! The Occlum platform of stage 2: swapping the root with Occlum's MountRootFS system call
//! and the mount option strings for Occlum's runtime `mount(2)` of SEFS, UnionFS and HostFS.
//!
//! **Not run on SGX hardware.** This code follows Occlum 0.29–0.30's sources (the syscall
//! table, `user_rootfs_config`, the mount option parsers); it is compiled, its struct layout
//! is tested, and the syscall is exercised only on plain Linux, where it does not exist
//! (ENOSYS). Nothing here has been run inside an Occlum enclave.
//!
//! Occlum's boot has two stages. Its first stage runs `init` from the initfs with fixed
//! mounts (the initfs, `/proc`, `/dev`); the app stage's mounts from Occlum.json apply only
//! after MountRootFS. So `init` mounts the image store itself with
//! `mount("hostfs", target, "hostfs", 0, hostfs_mount_options(dir))`, writes the image as a
//! SEFS ([`sefs_mount_options`]), and then calls [`mount_rootfs`] with that SEFS as the
//! lower layer.

mod sys;

use std::ffi::CString;
use std::fmt;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// The environment variable Occlum's template sets in every process (`OCCLUM=yes`).
pub const OCCLUM_ENV: &str = "OCCLUM";

/// Length of a SEFS key (`sgx_key_128bit_t`).
pub const SEFS_KEY_LEN: usize = 16;

/// True when running under Occlum (`OCCLUM=yes` in the environment, from Occlum.json's
/// `env.default`). The platform choice of `init`; not a security check.
pub fn is_occlum() -> bool {
    std::env::var_os(OCCLUM_ENV).is_some_and(|v| v == "yes")
}

/// Errors of the Occlum platform.
#[derive(Debug, thiserror::Error)]
pub enum OcclumError {
    /// MountRootFS was asked for outside Occlum, where syscall 363 is something else or
    /// nothing at all.
    #[error("not running under Occlum ({OCCLUM_ENV}=yes is not set); refusing MountRootFS")]
    NotOcclum,
    /// A path cannot be passed to Occlum.
    #[error("{what} {path:?} {reason}")]
    Path {
        /// Which argument.
        what: &'static str,
        /// The path.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// An environment entry is not `NAME=value` without NUL bytes (only the name is shown).
    #[error("environment entry {name:?} is not NAME=value without NUL bytes")]
    Env {
        /// The part before '=' (values may be sensitive).
        name: String,
    },
    /// A SEFS key string is not 16 hex bytes separated by '-'.
    #[error("SEFS key is not 16 hex bytes separated by '-'")]
    KeyFormat,
    /// The MountRootFS system call failed.
    #[error("MountRootFS (syscall 363) failed for lower layer {lower}")]
    MountRootfs {
        /// The read-only layer that was to become the root.
        lower: PathBuf,
        /// The error Occlum reported.
        #[source]
        source: std::io::Error,
    },
}

/// A 128-bit SEFS key. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct SefsKey([u8; SEFS_KEY_LEN]);

impl SefsKey {
    /// Copies raw key bytes (the caller wipes its own copy).
    pub fn from_bytes(bytes: &[u8; SEFS_KEY_LEN]) -> Self {
        Self(*bytes)
    }

    /// A fresh random key, filled in place (no copy of it is left on the stack).
    pub fn generate() -> Result<Self, getrandom::Error> {
        let mut key = Self([0; SEFS_KEY_LEN]);
        getrandom::fill(&mut key.0)?;
        Ok(key)
    }

    /// Parses Occlum's key string form, `c7-32-b3-…` (16 hex bytes separated by '-').
    pub fn parse(text: &str) -> Result<Self, OcclumError> {
        let mut key = Self([0; SEFS_KEY_LEN]);
        let mut parts = text.trim().split('-');
        for byte in key.0.iter_mut() {
            let part = parts.next().ok_or(OcclumError::KeyFormat)?;
            if part.len() != 2 || !part.bytes().all(|b| b.is_ascii_hexdigit()) {
                return Err(OcclumError::KeyFormat);
            }
            *byte = u8::from_str_radix(part, 16).map_err(|_| OcclumError::KeyFormat)?;
        }
        match parts.next() {
            Some(_) => Err(OcclumError::KeyFormat),
            None => Ok(key),
        }
    }

    /// Occlum's key string form, as its `key=` mount option expects it.
    fn to_occlum_string(&self) -> Zeroizing<String> {
        let mut text = Zeroizing::new(String::with_capacity(SEFS_KEY_LEN * 3));
        for (i, byte) in self.0.iter().enumerate() {
            if i > 0 {
                text.push('-');
            }
            text.push(char::from(HEX[usize::from(byte >> 4)]));
            text.push(char::from(HEX[usize::from(byte & 0xf)]));
        }
        text
    }
}

const HEX: &[u8; 16] = b"0123456789abcdef";

impl fmt::Debug for SefsKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("SefsKey(<redacted>)")
    }
}

/// A mount option string for Occlum's `mount(2)`. It may hold a key: zeroized on drop,
/// `Debug` redacts it.
pub struct MountOptions(Zeroizing<String>);

impl MountOptions {
    /// The option string to pass as `mount(2)`'s data argument.
    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for MountOptions {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let shown: Vec<&str> = self
            .0
            .split(',')
            .map(|o| {
                if o.starts_with("key=") {
                    "key=<redacted>"
                } else {
                    o
                }
            })
            .collect();
        write!(f, "MountOptions({:?})", shown.join(","))
    }
}

/// `dir=<host dir>[,key=<key>]`: a SEFS at `dir` (type "sefs"). Without a key Occlum derives
/// one from the enclave's sealing key.
pub fn sefs_mount_options(dir: &Path, key: Option<&SefsKey>) -> Result<MountOptions, OcclumError> {
    let mut options = Zeroizing::new(format!("dir={}", option_path("SEFS dir", dir)?));
    push_key(&mut options, key);
    Ok(MountOptions(options))
}

/// `lowerdir=<ro SEFS>,upperdir=<rw SEFS>[,key=<key>]`: a UnionFS of two SEFS (type
/// "unionfs"), as documented for Occlum's runtime mount.
pub fn unionfs_mount_options(
    lower: &Path,
    upper: &Path,
    key: Option<&SefsKey>,
) -> Result<MountOptions, OcclumError> {
    let mut options = Zeroizing::new(format!(
        "lowerdir={},upperdir={}",
        option_path("UnionFS lowerdir", lower)?,
        option_path("UnionFS upperdir", upper)?
    ));
    push_key(&mut options, key);
    Ok(MountOptions(options))
}

/// `dir=<host dir>`: an (untrusted) HostFS (type "hostfs").
pub fn hostfs_mount_options(dir: &Path) -> Result<MountOptions, OcclumError> {
    let options = format!("dir={}", option_path("HostFS dir", dir)?);
    Ok(MountOptions(Zeroizing::new(options)))
}

fn push_key(options: &mut String, key: Option<&SefsKey>) {
    if let Some(key) = key {
        options.push_str(",key=");
        options.push_str(&key.to_occlum_string());
    }
}

/// Occlum splits options on ',' and takes everything after `dir=` verbatim.
fn option_path<'a>(what: &'static str, path: &'a Path) -> Result<&'a str, OcclumError> {
    let error = |reason| OcclumError::Path {
        what,
        path: path.to_path_buf(),
        reason,
    };
    let text = path.to_str().ok_or_else(|| error("is not UTF-8"))?;
    if text.is_empty() {
        return Err(error("is empty"));
    }
    if text.contains([',', '\0']) {
        return Err(error("contains ',' or a NUL byte"));
    }
    Ok(text)
}

/// What MountRootFS makes the new root.
#[derive(Debug)]
pub struct OcclumRootfs {
    /// Host path of the read-only SEFS holding the image (the UnionFS lower layer).
    pub lower_layer: PathBuf,
    /// Host path of the read-write SEFS (the UnionFS upper layer).
    pub upper_layer: PathBuf,
    /// What the host may start afterwards (replaces `entry_points`). Occlum matches it as a
    /// path prefix, component by component (`validate_program_path` in
    /// `src/libos/src/entry.rs`): give the exact path of one file, never a directory.
    pub entry_point: PathBuf,
    /// Host directory for the app stage's first hostfs mount (None: as in Occlum.json).
    pub hostfs_source: Option<PathBuf>,
    /// Where that hostfs is mounted (None: "/host").
    pub hostfs_target: Option<PathBuf>,
    /// Trusted `NAME=value` entries merged over Occlum.json's `env.default`.
    pub env: Vec<String>,
    /// The SEFS key of both layers (None: derived from the enclave's sealing key).
    pub key: Option<SefsKey>,
}

/// Swaps the root to `rootfs` with MountRootFS. Only under Occlum ([`is_occlum`]); Occlum
/// allows it once per enclave.
pub fn mount_rootfs(rootfs: &OcclumRootfs) -> Result<(), OcclumError> {
    if !is_occlum() {
        return Err(OcclumError::NotOcclum);
    }
    let args = rootfs_args(rootfs)?;
    log::info!(
        "occlum: MountRootFS lower={} upper={} entry_point={}",
        rootfs.lower_layer.display(),
        rootfs.upper_layer.display(),
        rootfs.entry_point.display()
    );
    sys::mount_rootfs(rootfs.key.as_ref().map(|k| &k.0), &args).map_err(|source| {
        OcclumError::MountRootfs {
            lower: rootfs.lower_layer.clone(),
            source,
        }
    })
}

fn rootfs_args(rootfs: &OcclumRootfs) -> Result<sys::RootfsArgs, OcclumError> {
    let env = rootfs
        .env
        .iter()
        .map(|entry| {
            let name = entry.split('=').next().unwrap_or_default();
            match entry.contains('=') && !name.is_empty() {
                true => CString::new(entry.as_str()).ok(),
                false => None,
            }
            .ok_or_else(|| OcclumError::Env {
                name: name.chars().filter(|c| *c != '\0').collect(),
            })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(sys::RootfsArgs {
        upper_layer: c_path("upper layer", &rootfs.upper_layer)?,
        lower_layer: c_path("lower layer", &rootfs.lower_layer)?,
        entry_point: c_path("entry point", absolute("entry point", &rootfs.entry_point)?)?,
        hostfs_source: rootfs
            .hostfs_source
            .as_deref()
            .map(|p| c_path("hostfs source", p))
            .transpose()?,
        hostfs_target: rootfs
            .hostfs_target
            .as_deref()
            .map(|p| c_path("hostfs target", absolute("hostfs target", p)?))
            .transpose()?,
        env,
    })
}

fn absolute<'a>(what: &'static str, path: &'a Path) -> Result<&'a Path, OcclumError> {
    match path.is_absolute() {
        true => Ok(path),
        false => Err(OcclumError::Path {
            what,
            path: path.to_path_buf(),
            reason: "is not absolute",
        }),
    }
}

fn c_path(what: &'static str, path: &Path) -> Result<CString, OcclumError> {
    use std::os::unix::ffi::OsStrExt;
    let error = |reason| OcclumError::Path {
        what,
        path: path.to_path_buf(),
        reason,
    };
    if path.as_os_str().is_empty() {
        return Err(error("is empty"));
    }
    CString::new(path.as_os_str().as_bytes()).map_err(|_| error("contains a NUL byte"))
}

#[cfg(test)]
mod tests;
