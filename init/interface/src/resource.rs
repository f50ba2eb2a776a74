//! Where the trusted configuration names key material and policies: a local file or a
//! `kbs:///REPO/TYPE/TAG` resource URI (as Confidential Containers names KBS resources).
//! A string becomes a [`Location`] once, when the config is parsed; nothing later looks
//! at the string again.
//!
//! These small value types live here, not in stage 1, so the boot-config schema can hold
//! them typed (parsed at load, by serde) while this crate links no enclave code; stage 1
//! re-exports them (`encc_stage1::kbs::ResourceUri`, `encc_stage1::resources::Location`).

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

/// The URI scheme of KBS resources.
pub const SCHEME: &str = "kbs://";

/// A KBS resource: repository, type and tag. The KBS itself is configured separately
/// (`--kbs URL`), so the URI's authority must be empty.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ResourceUri {
    /// Resource group, e.g. `default`.
    pub repository: String,
    /// Resource type, e.g. `key`.
    pub r#type: String,
    /// Resource instance.
    pub tag: String,
}

/// Why a string is not a resource URI.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{uri:?} is not a KBS resource URI (kbs:///REPO/TYPE/TAG): {reason}")]
pub struct UriError {
    /// The string.
    pub uri: String,
    /// What is wrong.
    pub reason: &'static str,
}

impl ResourceUri {
    /// The path under `/kbs/v0/resource/`.
    pub fn path(&self) -> String {
        format!("{}/{}/{}", self.repository, self.r#type, self.tag)
    }
}

impl FromStr for ResourceUri {
    type Err = UriError;

    fn from_str(s: &str) -> Result<Self, UriError> {
        let err = |reason| UriError {
            uri: s.to_owned(),
            reason,
        };
        let rest = s
            .strip_prefix(SCHEME)
            .ok_or(err("the scheme is not kbs://"))?;
        let path = rest.strip_prefix('/').ok_or(err(
            "a KBS host in the URI is not supported; name the KBS with --kbs and use kbs:///",
        ))?;
        let parts: Vec<&str> = path.split('/').collect();
        let [repository, r#type, tag] = parts.as_slice() else {
            return Err(err("the path must have exactly three parts"));
        };
        let ok = |part: &str| {
            !part.is_empty()
                && part != "."
                && part != ".."
                && part
                    .bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b"-_.".contains(&b))
        };
        if ![repository, r#type, tag].iter().all(|p| ok(p)) {
            return Err(err(
                "each part must be non-empty ASCII letters, digits, '-', '_' or '.'",
            ));
        }
        Ok(Self {
            repository: (*repository).to_owned(),
            r#type: (*r#type).to_owned(),
            tag: (*tag).to_owned(),
        })
    }
}

impl fmt::Display for ResourceUri {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{SCHEME}/{}", self.path())
    }
}

/// A file or a KBS resource, named in the trusted configuration (decryption keys, policy
/// files, signature keys, auth files).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub enum Location {
    /// A local file (inside the enclave: the measured initfs or the native host).
    File(PathBuf),
    /// A resource of the configured Key Broker Service, fetched after attestation.
    Kbs(ResourceUri),
}

/// Why a string is not a [`Location`].
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum LocationError {
    /// Empty.
    #[error("an empty string names no file or KBS resource")]
    Empty,
    /// It starts with `kbs://` and is not a valid resource URI.
    #[error(transparent)]
    Uri(#[from] UriError),
}

impl FromStr for Location {
    type Err = LocationError;

    /// `kbs://…` is a KBS resource URI (and must be a valid one); anything else a path.
    fn from_str(s: &str) -> Result<Self, LocationError> {
        if s.is_empty() {
            return Err(LocationError::Empty);
        }
        if s.starts_with(SCHEME) {
            return Ok(Self::Kbs(s.parse()?));
        }
        Ok(Self::File(PathBuf::from(s)))
    }
}

impl TryFrom<String> for Location {
    type Error = LocationError;

    fn try_from(s: String) -> Result<Self, LocationError> {
        s.parse()
    }
}

impl From<Location> for String {
    fn from(location: Location) -> String {
        location.to_string()
    }
}

impl fmt::Display for Location {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::File(path) => write!(f, "{}", path.display()),
            Self::Kbs(uri) => uri.fmt(f),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_and_prints() {
        let uri: ResourceUri = "kbs:///default/security-policy/test".parse().unwrap();
        assert_eq!(uri.repository, "default");
        assert_eq!(uri.r#type, "security-policy");
        assert_eq!(uri.tag, "test");
        assert_eq!(uri.to_string(), "kbs:///default/security-policy/test");
        assert_eq!(uri.path(), "default/security-policy/test");
    }

    #[test]
    fn refuses_other_shapes() {
        for bad in [
            "kbs://host/a/b/c",
            "kbs:///a/b",
            "kbs:///a/b/c/d",
            "kbs:///a//c",
            "kbs:///a/../c",
            "kbs:///a/b/c?x=1",
            "https:///a/b/c",
            "kbs:///a/b/c%2f",
        ] {
            let err = bad.parse::<ResourceUri>().unwrap_err();
            assert!(err.to_string().contains(bad), "{err}");
        }
    }

    #[test]
    fn locations_are_files_or_valid_kbs_uris() {
        assert_eq!(
            "/k.pem".parse::<Location>().unwrap(),
            Location::File("/k.pem".into())
        );
        let kbs: Location = "kbs:///default/key/one".parse().unwrap();
        assert!(matches!(&kbs, Location::Kbs(uri) if uri.tag == "one"));
        assert_eq!(kbs.to_string(), "kbs:///default/key/one");
        // A malformed URI is an error, never a file named "kbs:…".
        assert!(matches!(
            "kbs://host/a/b/c".parse::<Location>(),
            Err(LocationError::Uri(_))
        ));
        assert_eq!("".parse::<Location>(), Err(LocationError::Empty));
        let json: Location = serde_json::from_str(r#""kbs:///a/b/c""#).unwrap();
        assert_eq!(serde_json::to_string(&json).unwrap(), r#""kbs:///a/b/c""#);
        assert!(serde_json::from_str::<Location>(r#""kbs:///a/b""#).is_err());
    }
}
