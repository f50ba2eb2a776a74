//! The per-image 256-bit data key and its on-disk hex form.

use std::fmt;
use std::fs;
use std::io::Write;
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};

use zeroize::{Zeroize, ZeroizeOnDrop, Zeroizing};

/// Length of a data key in bytes.
pub const KEY_LEN: usize = 32;

/// A 256-bit data key. Zeroized on drop; `Debug` never prints it.
#[derive(Clone, Zeroize, ZeroizeOnDrop)]
pub struct DataKey([u8; KEY_LEN]);

/// Errors reading, parsing or writing a key file.
#[derive(Debug, thiserror::Error)]
pub enum KeyError {
    /// The key file could not be read.
    #[error("failed to read key file {path}")]
    Read {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The key file does not hold 64 hex characters.
    #[error("key file {path} is not 64 hex characters (32 bytes): {reason}")]
    Format {
        /// The key file.
        path: PathBuf,
        /// What is wrong with it.
        reason: &'static str,
    },
    /// The key file could not be created or written.
    #[error("failed to write key file {path}")]
    Write {
        /// The key file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// The operating system's random source failed.
    #[error("failed to get random bytes for a new key")]
    Random(#[source] getrandom::Error),
}

impl DataKey {
    /// A copy of raw key bytes. Taken by reference, so that the caller's copy (best kept in a
    /// `Zeroizing`) is the only other one: no by-value copy of the key is left on the stack.
    pub fn from_bytes(bytes: &[u8; KEY_LEN]) -> Self {
        let mut key = Self([0; KEY_LEN]);
        key.0.copy_from_slice(bytes);
        key
    }

    /// A fresh key from the operating system's random source, drawn into its final place.
    pub fn generate() -> Result<Self, KeyError> {
        let mut key = Self([0; KEY_LEN]);
        getrandom::fill(&mut key.0).map_err(KeyError::Random)?;
        Ok(key)
    }

    /// The raw key bytes.
    pub fn as_bytes(&self) -> &[u8; KEY_LEN] {
        &self.0
    }

    /// Reads a key file: 64 hex characters, optionally followed by a newline.
    pub fn read_file(path: &Path) -> Result<Self, KeyError> {
        let text = Zeroizing::new(fs::read(path).map_err(|source| KeyError::Read {
            path: path.to_owned(),
            source,
        })?);
        let format = |reason| KeyError::Format {
            path: path.to_owned(),
            reason,
        };
        Self::from_hex(text.strip_suffix(b"\n").unwrap_or(&text)).map_err(format)
    }

    /// A key written as 64 hex characters; the error says what is wrong with them.
    pub fn from_hex(hex: &[u8]) -> Result<Self, &'static str> {
        if hex.len() != 2 * KEY_LEN {
            return Err("wrong length");
        }
        let mut key = Self([0; KEY_LEN]);
        hex::decode_to_slice(hex, &mut key.0).map_err(|_| "not hexadecimal")?;
        Ok(key)
    }

    /// Writes the key as 64 hex characters and a newline to a new file of mode 0600.
    /// An existing file is never overwritten.
    pub fn write_file(&self, path: &Path) -> Result<(), KeyError> {
        let write_err = |source| KeyError::Write {
            path: path.to_owned(),
            source,
        };
        let mut file = fs::OpenOptions::new()
            .write(true)
            .create_new(true)
            .mode(0o600)
            .open(path)
            .map_err(write_err)?;
        let mut text = Zeroizing::new(hex::encode(self.0.as_slice()).into_bytes());
        text.push(b'\n');
        if let Err(source) = file.write_all(&text).and_then(|()| file.sync_all()) {
            drop(file);
            let _ = fs::remove_file(path);
            return Err(write_err(source));
        }
        Ok(())
    }
}

impl fmt::Debug for DataKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("DataKey(<redacted>)")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn file_round_trip_and_mode() {
        use std::os::unix::fs::PermissionsExt;
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        let key = DataKey::generate().unwrap();
        key.write_file(&path).unwrap();
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let text = fs::read_to_string(&path).unwrap();
        assert_eq!(text.len(), 65);
        assert!(text.ends_with('\n'));
        assert_eq!(
            DataKey::read_file(&path).unwrap().as_bytes(),
            key.as_bytes()
        );
        // Never overwrites.
        assert!(matches!(key.write_file(&path), Err(KeyError::Write { .. })));
    }

    #[test]
    fn bad_key_files_are_errors() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("k");
        for bad in [&b"abcd\n"[..], &[b'z'; 64][..], &[b'a'; 66][..]] {
            fs::write(&path, bad).unwrap();
            let err = DataKey::read_file(&path).unwrap_err();
            assert!(matches!(err, KeyError::Format { .. }), "{err}");
            assert!(err.to_string().contains(&path.display().to_string()));
        }
    }

    #[test]
    fn debug_is_redacted() {
        let key = DataKey::from_bytes(&[0xab; 32]);
        assert_eq!(format!("{key:?}"), "DataKey(<redacted>)");
    }
}
