//! Files of the store replaced whole (seals, image metadata): the bytes are written to a
//! partial file beside the target (`.NAME.RANDOM.partial`, mode 0600, the form the store's
//! cleaning removes) and renamed over it, so a reader sees the old file or the new one,
//! never a torn one; a failed write removes its partial file.

use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;

/// Why a file could not be replaced.
#[derive(Debug)]
pub(crate) enum ReplaceError {
    /// No randomness for the partial file's name.
    Random(getrandom::Error),
    /// Writing the partial file or renaming it failed.
    Io(std::io::Error),
}

/// Replaces `path` with `bytes` through a partial file beside it.
pub(crate) fn replace_file(path: &Path, bytes: &[u8]) -> Result<(), ReplaceError> {
    let mut random = [0u8; 6];
    getrandom::fill(&mut random).map_err(ReplaceError::Random)?;
    let name = path.file_name().unwrap_or_default().to_string_lossy();
    let tmp = path.with_file_name(format!(".{name}.{}.partial", hex::encode(random)));
    let written = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&tmp)
        .and_then(|mut file| file.write_all(bytes));
    let renamed = written.and_then(|()| std::fs::rename(&tmp, path));
    if renamed.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    renamed.map_err(ReplaceError::Io)
}
