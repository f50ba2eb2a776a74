//! Reading what the configuration names by a path or by a `kbs:///REPO/TYPE/TAG` URI:
//! policy files, signature keys, auth files, private keys. URIs go to the configured Key
//! Broker Service (attesting on first use); everything else is a local file.

use std::sync::Arc;

use zeroize::Zeroizing;

/// A file or a KBS resource (defined with the boot-config schema, which holds it typed).
pub use encc_interface::resource::{Location, LocationError};

use crate::kbs::{KbsClient, KbsError};

/// Where named resources are read from.
#[derive(Debug, Clone, Default)]
pub struct Resources {
    kbs: Option<Arc<KbsClient>>,
}

/// Why a named resource cannot be read. Each names it.
#[derive(Debug, thiserror::Error)]
pub enum ResourceError {
    /// A local file cannot be read.
    #[error("cannot read {path}")]
    Read {
        /// The file.
        path: String,
        /// The cause.
        #[source]
        source: std::io::Error,
    },
    /// The name is not a file or a valid `kbs://` URI.
    #[error(transparent)]
    Location(#[from] LocationError),
    /// A KBS resource was named and no KBS is configured.
    #[error("{uri} names a Key Broker Service resource and no KBS is configured (--kbs URL)")]
    NoKbs {
        /// The resource.
        uri: String,
    },
    /// The KBS did not deliver it.
    #[error(transparent)]
    Kbs(#[from] KbsError),
}

impl Resources {
    /// Local files, and KBS resources through `kbs` when given.
    pub fn new(kbs: Option<Arc<KbsClient>>) -> Self {
        Self { kbs }
    }

    /// The contents of the file or KBS resource at `location`.
    pub fn read(&self, location: &Location) -> Result<Zeroizing<Vec<u8>>, ResourceError> {
        match location {
            Location::File(path) => {
                std::fs::read(path)
                    .map(Zeroizing::new)
                    .map_err(|source| ResourceError::Read {
                        path: path.display().to_string(),
                        source,
                    })
            }
            Location::Kbs(uri) => {
                let kbs = self.kbs.as_ref().ok_or_else(|| ResourceError::NoKbs {
                    uri: uri.to_string(),
                })?;
                Ok(kbs.resource(uri)?)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn files_and_uris_without_a_kbs() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("k");
        std::fs::write(&file, b"key").unwrap();
        let resources = Resources::default();
        let at = |s: &str| s.parse::<Location>().unwrap();
        assert_eq!(&*resources.read(&Location::File(file)).unwrap(), b"key");
        let err = resources.read(&at("/nonexistent/k")).unwrap_err();
        assert!(err.to_string().contains("/nonexistent/k"), "{err}");
        let err = resources.read(&at("kbs:///default/key/one")).unwrap_err();
        assert!(
            matches!(err, ResourceError::NoKbs { .. })
                && err.to_string().contains("kbs:///default/key/one"),
            "{err}"
        );
    }
}
