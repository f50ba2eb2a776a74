//! Image references in skopeo's syntax: `docker://HOST[:PORT]/REPO[:TAG][@sha256:…]` (the
//! `docker://` prefix optional, Docker Hub defaults applied) and `oci:PATH[:TAG]`.

use std::fmt;
use std::path::PathBuf;
use std::str::FromStr;

use crate::digest::{Digest, DigestError};

/// Docker Hub's name in references.
pub const DOCKER_HUB: &str = "docker.io";
/// Docker Hub's API endpoint.
const DOCKER_HUB_API: &str = "registry-1.docker.io";

/// Where an image comes from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ImageRef {
    /// A registry speaking the distribution v2 API.
    Docker(DockerRef),
    /// An OCI image layout directory.
    Layout(LayoutRef),
}

/// An image in a registry.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct DockerRef {
    /// Registry host, with `:port` when given (`docker.io` for Docker Hub).
    pub registry: String,
    /// Repository path, e.g. `library/busybox`.
    pub repository: String,
    /// Tag; `latest` when neither tag nor digest is given.
    pub tag: Option<String>,
    /// Pinned manifest digest.
    pub digest: Option<Digest>,
}

/// An image in an OCI layout directory.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct LayoutRef {
    /// The layout directory.
    pub path: PathBuf,
    /// The `org.opencontainers.image.ref.name` to pick; none means the only manifest.
    pub tag: Option<String>,
}

/// Why a reference does not parse. Each names the reference.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ReferenceError {
    /// An unknown transport prefix.
    #[error("image reference {0:?} has an unsupported transport (use docker:// or oci:)")]
    Transport(String),
    /// The repository part is not valid.
    #[error("image reference {reference:?} is invalid: {reason}")]
    Invalid {
        /// The reference.
        reference: String,
        /// What is wrong.
        reason: &'static str,
    },
    /// The pinned digest is not valid.
    #[error("image reference {reference:?} has an invalid digest")]
    Digest {
        /// The reference.
        reference: String,
        /// Why.
        #[source]
        source: DigestError,
    },
}

impl FromStr for ImageRef {
    type Err = ReferenceError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(rest) = s.strip_prefix("oci:") {
            let (path, tag) = match rest.split_once(':') {
                Some((p, t)) => (p, Some(t.to_owned())),
                None => (rest, None),
            };
            if path.is_empty() {
                return Err(invalid(s, "the OCI layout path is empty"));
            }
            if let Some(t) = &tag {
                if t.is_empty() {
                    return Err(invalid(s, "the OCI layout tag is empty"));
                }
            }
            return Ok(Self::Layout(LayoutRef {
                path: PathBuf::from(path),
                tag,
            }));
        }
        let rest = match s.strip_prefix("docker://") {
            Some(rest) => rest,
            None if s.contains("://") || s.starts_with("docker:") => {
                return Err(ReferenceError::Transport(s.to_owned()))
            }
            None => s,
        };
        parse_docker(s, rest).map(Self::Docker)
    }
}

fn invalid(reference: &str, reason: &'static str) -> ReferenceError {
    ReferenceError::Invalid {
        reference: reference.to_owned(),
        reason,
    }
}

fn parse_docker(full: &str, s: &str) -> Result<DockerRef, ReferenceError> {
    let (name_tag, digest) = match s.split_once('@') {
        Some((n, d)) => {
            let digest = d.parse().map_err(|source| ReferenceError::Digest {
                reference: full.to_owned(),
                source,
            })?;
            (n, Some(digest))
        }
        None => (s, None),
    };
    let (name, tag) = match name_tag.rfind(':') {
        Some(i) if !name_tag[i..].contains('/') => (&name_tag[..i], Some(&name_tag[i + 1..])),
        _ => (name_tag, None),
    };
    if let Some(t) = tag {
        let ok = !t.is_empty()
            && t.len() <= 128
            && !t.starts_with(['.', '-'])
            && t.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b));
        if !ok {
            return Err(invalid(full, "bad tag"));
        }
    }
    let (registry, repository) = match name.split_once('/') {
        Some((first, rest))
            if first.contains('.') || first.contains(':') || first == "localhost" =>
        {
            (first.to_owned(), rest.to_owned())
        }
        _ => (DOCKER_HUB.to_owned(), name.to_owned()),
    };
    let registry = if registry == "index.docker.io" {
        DOCKER_HUB.to_owned()
    } else {
        registry
    };
    let repository = if registry == DOCKER_HUB && !repository.contains('/') {
        format!("library/{repository}")
    } else {
        repository
    };
    if !valid_repository(&repository) {
        return Err(invalid(
            full,
            "repository must be lowercase letters, digits and separators",
        ));
    }
    if !valid_registry(&registry) {
        return Err(invalid(full, "registry must be HOST or HOST:PORT"));
    }
    let tag = match (tag, &digest) {
        (Some(t), _) => Some(t.to_owned()),
        (None, Some(_)) => None,
        (None, None) => Some("latest".to_owned()),
    };
    Ok(DockerRef {
        registry,
        repository,
        tag,
        digest,
    })
}

/// `host[:port]` with a DNS name, IPv4 address or bracketed IPv6 address.
fn valid_registry(registry: &str) -> bool {
    let (host, port) = if let Some(rest) = registry.strip_prefix('[') {
        match rest.split_once(']') {
            Some((v6, after)) => (v6, after.strip_prefix(':')),
            None => return false,
        }
    } else {
        match registry.split_once(':') {
            Some((h, p)) => (h, Some(p)),
            None => (registry, None),
        }
    };
    let host_ok = !host.is_empty()
        && (registry.starts_with('[') && host.parse::<std::net::Ipv6Addr>().is_ok()
            || host
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b == b'.' || b == b'-'));
    let port_ok =
        port.is_none_or(|p| !p.is_empty() && p.len() <= 5 && p.bytes().all(|b| b.is_ascii_digit()));
    host_ok && port_ok
}

/// Repository grammar of the distribution spec: components of `[a-z0-9]+` joined by `.`,
/// `_`, `__` or `-`s, separated by `/`.
fn valid_repository(repo: &str) -> bool {
    !repo.is_empty()
        && repo.len() <= 255
        && repo.split('/').all(|c| {
            let b = c.as_bytes();
            !b.is_empty()
                && b[0].is_ascii_alphanumeric()
                && b[b.len() - 1].is_ascii_alphanumeric()
                && b.iter()
                    .all(|&x| x.is_ascii_lowercase() || x.is_ascii_digit() || b"._-".contains(&x))
                && !c.contains("..")
                && !c.contains("___")
        })
}

impl DockerRef {
    /// Host (and port) to send API requests to.
    pub fn api_host(&self) -> &str {
        if self.registry == DOCKER_HUB {
            DOCKER_HUB_API
        } else {
            &self.registry
        }
    }

    /// Whether the registry is on a loopback address (plain HTTP is allowed there).
    pub fn is_loopback(&self) -> bool {
        let host = match self.registry.rsplit_once(':') {
            Some((h, port)) if port.bytes().all(|b| b.is_ascii_digit()) => h,
            _ => &self.registry,
        };
        let host = host.trim_start_matches('[').trim_end_matches(']');
        host == "localhost"
            || host
                .parse::<std::net::IpAddr>()
                .is_ok_and(|ip| ip.is_loopback())
    }

    /// The tag or digest to ask the registry for.
    pub fn manifest_reference(&self) -> String {
        match (&self.digest, &self.tag) {
            (Some(d), _) => d.to_string(),
            (None, Some(t)) => t.clone(),
            (None, None) => "latest".to_owned(),
        }
    }
}

impl fmt::Display for DockerRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "docker://{}/{}", self.registry, self.repository)?;
        if let Some(t) = &self.tag {
            write!(f, ":{t}")?;
        }
        if let Some(d) = &self.digest {
            write!(f, "@{d}")?;
        }
        Ok(())
    }
}

impl fmt::Display for ImageRef {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::Docker(d) => d.fmt(f),
            Self::Layout(l) => {
                write!(f, "oci:{}", l.path.display())?;
                if let Some(t) = &l.tag {
                    write!(f, ":{t}")?;
                }
                Ok(())
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(s: &str) -> DockerRef {
        match s.parse::<ImageRef>().unwrap() {
            ImageRef::Docker(d) => d,
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn docker_hub_defaults() {
        let r = docker("busybox");
        assert_eq!(r.to_string(), "docker://docker.io/library/busybox:latest");
        assert_eq!(r.api_host(), "registry-1.docker.io");
        assert_eq!(docker("docker://user/app:1.0").repository, "user/app");
        assert_eq!(docker("index.docker.io/library/x").registry, "docker.io");
    }

    #[test]
    fn hosts_ports_tags_digests() {
        let d = Digest::of(b"x");
        let r = docker(&format!("docker://127.0.0.1:5000/a/b:v1@{d}"));
        assert_eq!(r.registry, "127.0.0.1:5000");
        assert_eq!(r.repository, "a/b");
        assert_eq!(r.tag.as_deref(), Some("v1"));
        assert_eq!(r.digest, Some(d));
        assert_eq!(r.manifest_reference(), d.to_string());
        assert!(r.is_loopback());
        let r = docker(&format!("localhost/x@{d}"));
        assert_eq!((r.registry.as_str(), r.tag), ("localhost", None));
        assert!(!docker("quay.io/x/y").is_loopback());
        assert!(docker("[::1]:5000/x").is_loopback());
    }

    #[test]
    fn layouts() {
        let r: ImageRef = "oci:/tmp/layout:v2".parse().unwrap();
        assert_eq!(
            r,
            ImageRef::Layout(LayoutRef {
                path: "/tmp/layout".into(),
                tag: Some("v2".into())
            })
        );
        assert_eq!(r.to_string(), "oci:/tmp/layout:v2");
        assert!("oci:".parse::<ImageRef>().is_err());
    }

    #[test]
    fn rejects_bad_references() {
        for bad in [
            "http://x/y",
            "docker-archive:/x",
            "Upper/Case",
            "x/y:bad tag",
            "x/y@sha256:12",
            "x//y",
            "x/y:",
        ] {
            assert!(bad.parse::<ImageRef>().is_err(), "{bad}");
        }
    }
}
