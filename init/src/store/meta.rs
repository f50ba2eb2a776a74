//! `NAME.meta` of a kept image: the references it was started as (most recent first) and
//! when a start last used it, for `encc store ls`/`rm`/`prune` and the eviction beyond
//! `store_max_bytes`. It is written in clear: the references are the host's own input
//! (it named them in its launch requests) and the time is when the host started the
//! image, so the host learns nothing from it. It is a label, never used for a decision
//! inside the enclave: a kept image is found by the manifest digest stage 1 resolved, and
//! its seal binds that digest.

use std::io::Read as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use encc_stage1::reference::ImageRef;

use crate::replace::ReplaceError;

/// The references kept per image (the most recent ones).
const MAX_REFERENCES: usize = 8;
/// A metadata file larger than this is not one encc wrote.
const MAX_LEN: u64 = 64 << 10;

/// What `NAME.meta` holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) struct Meta {
    /// References the image was started as, the most recent first.
    pub(super) references: Vec<ImageRef>,
    /// When a start last used (pulled or reused) the image.
    pub(super) last_use: SystemTime,
}

#[derive(serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct MetaJson {
    references: Vec<String>,
    /// Seconds since the Unix epoch.
    last_use: u64,
}

/// Why a metadata file cannot be read or written.
#[derive(Debug, thiserror::Error)]
pub enum MetaError {
    /// Reading or writing it failed.
    #[error("cannot {what} image metadata {}", path.display())]
    Io {
        /// The operation.
        what: &'static str,
        /// The file.
        path: std::path::PathBuf,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// It is not a regular file of the expected shape.
    #[error("{} is not image metadata encc wrote", path.display())]
    Invalid {
        /// The file.
        path: std::path::PathBuf,
    },
    /// No randomness for the partial file's name.
    #[error("no randomness for a metadata file name")]
    Random(#[source] getrandom::Error),
}

impl Meta {
    /// Reads `path` without following a symlink or blocking on a fifo; `Ok(None)` when
    /// there is no such file. References that do not parse are dropped.
    pub(super) fn read(path: &Path) -> Result<Option<Self>, MetaError> {
        let io = |source| MetaError::Io {
            what: "read",
            path: path.to_owned(),
            source,
        };
        let invalid = || MetaError::Invalid {
            path: path.to_owned(),
        };
        let file = match std::fs::OpenOptions::new()
            .read(true)
            .custom_flags(libc::O_NOFOLLOW | libc::O_NONBLOCK)
            .open(path)
        {
            Ok(file) => file,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) if e.raw_os_error() == Some(libc::ELOOP) => return Err(invalid()),
            Err(e) => return Err(io(e)),
        };
        if !file.metadata().map_err(io)?.is_file() {
            return Err(invalid());
        }
        let mut bytes = Vec::new();
        file.take(MAX_LEN + 1).read_to_end(&mut bytes).map_err(io)?;
        if bytes.len() as u64 > MAX_LEN {
            return Err(invalid());
        }
        let json: MetaJson = serde_json::from_slice(&bytes).map_err(|_| invalid())?;
        Ok(Some(Self {
            references: json
                .references
                .iter()
                .filter_map(|r| r.parse().ok())
                .take(MAX_REFERENCES)
                .collect(),
            last_use: UNIX_EPOCH + Duration::from_secs(json.last_use),
        }))
    }

    /// This metadata after a start of the image as `reference` now.
    pub(super) fn used_as(previous: Option<Self>, reference: &ImageRef) -> Self {
        let mut references = vec![reference.clone()];
        for other in previous.into_iter().flat_map(|m| m.references) {
            if !references.contains(&other) && references.len() < MAX_REFERENCES {
                references.push(other);
            }
        }
        Self {
            references,
            last_use: SystemTime::now(),
        }
    }

    /// Writes `path` through a partial file beside it (`.NAME.meta.RANDOM.partial`, as the
    /// store's cleaning knows it), renamed over it.
    pub(super) fn write(&self, path: &Path) -> Result<(), MetaError> {
        let json = MetaJson {
            references: self.references.iter().map(ToString::to_string).collect(),
            last_use: self
                .last_use
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
        };
        // A struct of strings and a number always serializes.
        let bytes = serde_json::to_vec(&json).unwrap_or_default();
        crate::replace::replace_file(path, &bytes).map_err(|e| match e {
            ReplaceError::Random(e) => MetaError::Random(e),
            ReplaceError::Io(source) => MetaError::Io {
                what: "write",
                path: path.to_owned(),
                source,
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn metadata_round_trips_and_keeps_the_latest_references_first() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("x.meta");
        assert_eq!(Meta::read(&path).unwrap(), None);
        let a: ImageRef = "docker://reg.example/a:1".parse().unwrap();
        let b: ImageRef = "reg.example/b:2".parse().unwrap();
        let first = Meta::used_as(None, &a);
        first.write(&path).unwrap();
        let second = Meta::used_as(Meta::read(&path).unwrap(), &b);
        second.write(&path).unwrap();
        let third = Meta::used_as(Meta::read(&path).unwrap(), &a);
        third.write(&path).unwrap();
        let read = Meta::read(&path).unwrap().unwrap();
        assert_eq!(read.references, vec![a, b]);
        assert!(read.last_use <= SystemTime::now());
        assert!(read.last_use + Duration::from_secs(60) > SystemTime::now());
        // Only the file itself stays.
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 1);
    }

    #[test]
    fn symlinks_fifos_and_junk_are_not_metadata() {
        let dir = tempfile::tempdir().unwrap();
        let outside = dir.path().join("outside");
        std::fs::write(&outside, br#"{"references": [], "last_use": 1}"#).unwrap();
        let link = dir.path().join("l.meta");
        std::os::unix::fs::symlink(&outside, &link).unwrap();
        assert!(matches!(Meta::read(&link), Err(MetaError::Invalid { .. })));
        let fifo = dir.path().join("f.meta");
        nix::unistd::mkfifo(&fifo, nix::sys::stat::Mode::S_IRWXU).unwrap();
        assert!(matches!(Meta::read(&fifo), Err(MetaError::Invalid { .. })));
        let junk = dir.path().join("j.meta");
        std::fs::write(&junk, b"\x1b[31mnot json").unwrap();
        assert!(matches!(Meta::read(&junk), Err(MetaError::Invalid { .. })));
        // References that are not references (terminal escapes, say) are dropped.
        let odd = dir.path().join("o.meta");
        std::fs::write(
            &odd,
            br#"{"references": ["\u001b[2J", "reg.example/ok:1"], "last_use": 5}"#,
        )
        .unwrap();
        let read = Meta::read(&odd).unwrap().unwrap();
        assert_eq!(read.references.len(), 1);
        assert_eq!(read.last_use, UNIX_EPOCH + Duration::from_secs(5));
    }
}
