//! The native platform's sealed bookkeeping: with a sealing key (a host key file standing in
//! for SGX sealing), a pulled image is kept in the store under its manifest digest, with its
//! data key and root hash sealed beside it (see [`crate::store`]), so the next start reuses
//! it instead of pulling again. The seal is AES-256-GCM-SIV with the manifest digest as
//! associated data: the host can delete a seal but not move it to another image or alter it
//! unnoticed.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};

use aes_gcm_siv::aead::{Aead, KeyInit, Payload};
use aes_gcm_siv::{Aes256GcmSiv, Nonce};
use encc_rootfs::{DataKey, RootHash, KEY_LEN};
use zeroize::Zeroizing;

use crate::replace::ReplaceError;

const NONCE_LEN: usize = 12;
const AAD_PREFIX: &[u8] = b"encc seal v1 ";
/// Nonce, data key, root hash, tag.
const SEAL_LEN: usize = NONCE_LEN + KEY_LEN + 32 + 16;

/// Why a seal cannot be made or opened.
#[derive(Debug, thiserror::Error)]
pub enum SealError {
    /// Reading or writing the seal file failed.
    #[error("cannot {what} seal {}", path.display())]
    Io {
        /// The operation.
        what: &'static str,
        /// The seal file.
        path: PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The seal does not open with this sealing key for this manifest.
    #[error("seal {} does not open (other sealing key, other image, or tampered)", path.display())]
    Unauthentic {
        /// The seal file.
        path: PathBuf,
    },
    /// No randomness for the nonce.
    #[error("no randomness for a seal nonce")]
    Random(#[source] getrandom::Error),
}

fn aad(manifest: &str) -> Vec<u8> {
    [AAD_PREFIX, manifest.as_bytes()].concat()
}

/// Writes the seal of `key` and `root` for `manifest`: a partial file beside `path`
/// (`.NAME.RANDOM.partial`, as the store's cleaning knows it), then renamed over `path`.
pub fn write_seal(
    sealing: &DataKey,
    path: &Path,
    manifest: &str,
    key: &DataKey,
    root: &RootHash,
) -> Result<(), SealError> {
    let mut nonce = [0u8; NONCE_LEN];
    getrandom::fill(&mut nonce).map_err(SealError::Random)?;
    let mut plain = Zeroizing::new(Vec::with_capacity(KEY_LEN + 32));
    plain.extend_from_slice(key.as_bytes());
    plain.extend_from_slice(&root.0);
    let cipher = Aes256GcmSiv::new(sealing.as_bytes().into());
    let sealed = cipher
        .encrypt(
            Nonce::from_slice(&nonce),
            Payload {
                msg: &plain,
                aad: &aad(manifest),
            },
        )
        .map_err(|_| SealError::Unauthentic {
            path: path.to_owned(),
        })?;
    let io = |what| {
        move |source| SealError::Io {
            what,
            path: path.to_owned(),
            source,
        }
    };
    crate::replace::replace_file(path, &[nonce.as_slice(), &sealed].concat()).map_err(|e| match e {
        ReplaceError::Random(e) => SealError::Random(e),
        ReplaceError::Io(source) => io("write")(source),
    })
}

/// Opens the seal at `path` for `manifest`: the image's data key and root hash.
pub fn open_seal(
    sealing: &DataKey,
    path: &Path,
    manifest: &str,
) -> Result<(DataKey, RootHash), SealError> {
    let io = |source| SealError::Io {
        what: "read",
        path: path.to_owned(),
        source,
    };
    let unauthentic = || SealError::Unauthentic {
        path: path.to_owned(),
    };
    // A symlink or fifo the host put there is refused, never followed or waited on.
    let file = std::fs::OpenOptions::new()
        .read(true)
        .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
        .open(path)
        .map_err(|e| match e.raw_os_error() {
            Some(libc::ELOOP) => unauthentic(),
            _ => io(e),
        })?;
    if !file.metadata().map_err(io)?.is_file() {
        return Err(unauthentic());
    }
    let mut bytes = Vec::new();
    file.take(SEAL_LEN as u64 + 1)
        .read_to_end(&mut bytes)
        .map_err(io)?;
    if bytes.len() != SEAL_LEN {
        return Err(unauthentic());
    }
    let (nonce, sealed) = bytes.split_at(NONCE_LEN);
    let cipher = Aes256GcmSiv::new(sealing.as_bytes().into());
    let plain = Zeroizing::new(
        cipher
            .decrypt(
                Nonce::from_slice(nonce),
                Payload {
                    msg: sealed,
                    aad: &aad(manifest),
                },
            )
            .map_err(|_| unauthentic())?,
    );
    let (key, root) = plain.split_at(KEY_LEN);
    let key = DataKey::from_bytes(key.try_into().map_err(|_| unauthentic())?);
    let root = RootHash(root.try_into().map_err(|_| unauthentic())?);
    Ok((key, root))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seals_open_only_for_their_manifest_key_and_bytes() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = DataKey::generate().unwrap();
        let key = DataKey::generate().unwrap();
        let root = RootHash([7u8; 32]);
        let path = dir.path().join("x.seal");
        write_seal(&sealing, &path, "sha256:aa", &key, &root).unwrap();
        let (opened, opened_root) = open_seal(&sealing, &path, "sha256:aa").unwrap();
        assert_eq!(opened.as_bytes(), key.as_bytes());
        assert_eq!(opened_root, root);

        let other = DataKey::generate().unwrap();
        assert!(matches!(
            open_seal(&other, &path, "sha256:aa"),
            Err(SealError::Unauthentic { .. })
        ));
        assert!(matches!(
            open_seal(&sealing, &path, "sha256:bb"),
            Err(SealError::Unauthentic { .. })
        ));
        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        assert!(matches!(
            open_seal(&sealing, &path, "sha256:aa"),
            Err(SealError::Unauthentic { .. })
        ));
    }

    #[test]
    fn a_symlinked_or_fifo_seal_is_refused_without_following_or_blocking() {
        let dir = tempfile::tempdir().unwrap();
        let sealing = DataKey::generate().unwrap();
        let real = dir.path().join("real.seal");
        write_seal(&sealing, &real, "sha256:aa", &sealing, &RootHash([1; 32])).unwrap();
        let link = dir.path().join("link.seal");
        std::os::unix::fs::symlink(&real, &link).unwrap();
        assert!(matches!(
            open_seal(&sealing, &link, "sha256:aa"),
            Err(SealError::Unauthentic { .. })
        ));
        let fifo = dir.path().join("fifo.seal");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(
            open_seal(&sealing, &fifo, "sha256:aa"),
            Err(SealError::Unauthentic { .. })
        ));
    }
}
