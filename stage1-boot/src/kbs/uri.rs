//! `kbs:///REPO/TYPE/TAG` resource URIs, as Confidential Containers names KBS resources.

use std::fmt;
use std::str::FromStr;

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
    /// Whether `s` names a KBS resource (starts with `kbs://`).
    pub fn is_kbs(s: &str) -> bool {
        s.starts_with(SCHEME)
    }

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
}
