//! Reading what the configuration names by a path or by a `kbs:///REPO/TYPE/TAG` URI:
//! policy files, signature keys, auth files, private keys. URIs go to the configured Key
//! Broker Service (attesting on first use); everything else is a local file.

use std::sync::Arc;

use zeroize::Zeroizing;

use crate::kbs::{KbsClient, KbsError, ResourceUri, UriError};

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
    /// The `kbs://` URI is invalid.
    #[error(transparent)]
    Uri(#[from] UriError),
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

    /// Whether `name` is a KBS resource URI rather than a path.
    pub fn is_kbs(name: &str) -> bool {
        ResourceUri::is_kbs(name)
    }

    /// The contents of the file or KBS resource `name`.
    pub fn read(&self, name: &str) -> Result<Zeroizing<Vec<u8>>, ResourceError> {
        if !ResourceUri::is_kbs(name) {
            return std::fs::read(name)
                .map(Zeroizing::new)
                .map_err(|source| ResourceError::Read {
                    path: name.to_owned(),
                    source,
                });
        }
        let uri: ResourceUri = name.parse()?;
        let kbs = self.kbs.as_ref().ok_or_else(|| ResourceError::NoKbs {
            uri: uri.to_string(),
        })?;
        Ok(kbs.resource(&uri)?)
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
        assert_eq!(&*resources.read(&file.to_string_lossy()).unwrap(), b"key");
        let err = resources.read("/nonexistent/k").unwrap_err();
        assert!(err.to_string().contains("/nonexistent/k"), "{err}");
        let err = resources.read("kbs:///default/key/one").unwrap_err();
        assert!(
            matches!(err, ResourceError::NoKbs { .. })
                && err.to_string().contains("kbs:///default/key/one"),
            "{err}"
        );
        assert!(matches!(
            resources.read("kbs://host/a/b/c"),
            Err(ResourceError::Uri(_))
        ));
    }
}
