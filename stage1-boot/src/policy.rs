//! `containers-policy.json` (containers/image's signature policy): parsing, choosing the
//! requirements that apply to an image (most specific scope first), and matching a signed
//! identity against the image reference. Verifying signatures themselves (GPG simple
//! signing, cosign) builds on this.
//!
//! Kept hand-written: no crate implements containers-policy.json(5) (the reference is Go's
//! containers/image), and `sigstore`'s verification constraints are async and cover only cosign.

use std::collections::BTreeMap;

use serde::Deserialize;

use crate::digest::Digest;
use crate::reference::{DockerRef, ImageRef};
use crate::resources::Location;

/// A parsed policy.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    /// Requirements when no transport scope matches.
    pub default: Vec<Requirement>,
    /// Per transport (`docker`, `oci`, …), per scope.
    #[serde(default)]
    pub transports: BTreeMap<String, BTreeMap<String, Vec<Requirement>>>,
}

/// One requirement; an image must satisfy all requirements of its scope.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum Requirement {
    /// Accept without any check.
    #[serde(rename = "insecureAcceptAnything")]
    InsecureAcceptAnything {},
    /// Refuse.
    #[serde(rename = "reject")]
    Reject {},
    /// A simple-signing signature by one of the GPG keys.
    #[serde(rename = "signedBy", rename_all = "camelCase")]
    SignedBy {
        /// Must be `GPGKeys`.
        key_type: String,
        /// A keyring file (or `kbs:///` resource).
        #[serde(default)]
        key_path: Option<Location>,
        /// Several keyring files.
        #[serde(default)]
        key_paths: Option<Vec<Location>>,
        /// A base64 keyring.
        #[serde(default)]
        key_data: Option<String>,
        /// Which identity the signature must claim.
        #[serde(default)]
        signed_identity: SignedIdentity,
    },
    /// A cosign (sigstore) signature by the public key.
    #[serde(rename = "sigstoreSigned", rename_all = "camelCase")]
    SigstoreSigned {
        /// A PEM public key file (or `kbs:///` resource).
        #[serde(default)]
        key_path: Option<Location>,
        /// A base64 PEM public key.
        #[serde(default)]
        key_data: Option<String>,
        /// Which identity the signature must claim.
        #[serde(default)]
        signed_identity: SignedIdentity,
    },
}

/// How a signature's claimed identity must relate to the image reference.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(tag = "type", deny_unknown_fields)]
pub enum SignedIdentity {
    /// The same reference, tag included.
    #[serde(rename = "matchExact")]
    MatchExact {},
    /// The same repository when the image is pinned by digest, else the same reference.
    #[serde(rename = "matchRepoDigestOrExact")]
    MatchRepoDigestOrExact {},
    /// The same repository.
    #[serde(rename = "matchRepository")]
    MatchRepository {},
    /// Exactly this reference, whatever the image reference is.
    #[serde(rename = "exactReference", rename_all = "camelCase")]
    ExactReference {
        /// The reference the signature must claim.
        docker_reference: String,
    },
    /// This repository, whatever the image reference is.
    #[serde(rename = "exactRepository", rename_all = "camelCase")]
    ExactRepository {
        /// The repository the signature must claim.
        docker_repository: String,
    },
    /// Replace `prefix` by `signed_prefix` in the image reference, then as
    /// `matchRepoDigestOrExact`.
    #[serde(rename = "remapIdentity", rename_all = "camelCase")]
    RemapIdentity {
        /// Prefix of the image reference.
        prefix: String,
        /// What the signature claims instead.
        signed_prefix: String,
    },
}

impl Default for SignedIdentity {
    /// `matchRepoDigestOrExact`, as containers/image.
    fn default() -> Self {
        Self::MatchRepoDigestOrExact {}
    }
}

/// Errors reading a policy.
#[derive(Debug, thiserror::Error)]
pub enum PolicyError {
    /// Not valid policy JSON.
    #[error("policy {source_name} is invalid")]
    Parse {
        /// Where the policy came from (path or URI).
        source_name: String,
        /// The parse error.
        #[source]
        source: serde_json::Error,
    },
    /// A requirement that cannot be used as written.
    #[error("policy {source_name}: {reason}")]
    Invalid {
        /// Where the policy came from.
        source_name: String,
        /// What is wrong.
        reason: String,
    },
}

/// The requirements chosen for an image, and the scope that chose them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Applicable<'a> {
    /// `transport:scope`, or `default`.
    pub scope: String,
    /// The requirements.
    pub requirements: &'a [Requirement],
}

impl Policy {
    /// Parses and checks a policy (`source_name` is used in errors).
    pub fn parse(bytes: &[u8], source_name: &str) -> Result<Self, PolicyError> {
        let policy: Policy =
            serde_json::from_slice(bytes).map_err(|source| PolicyError::Parse {
                source_name: source_name.to_owned(),
                source,
            })?;
        let invalid = |reason: String| PolicyError::Invalid {
            source_name: source_name.to_owned(),
            reason,
        };
        let all = policy
            .transports
            .values()
            .flat_map(|scopes| scopes.values())
            .chain(std::iter::once(&policy.default));
        for reqs in all {
            if reqs.is_empty() {
                return Err(invalid(
                    "an empty requirement list (use reject or insecureAcceptAnything)".into(),
                ));
            }
            for req in reqs {
                match req {
                    Requirement::SignedBy {
                        key_type,
                        key_path,
                        key_paths,
                        key_data,
                        ..
                    } => {
                        if key_type != "GPGKeys" {
                            return Err(invalid(format!(
                                "signedBy keyType {key_type:?} is not supported (GPGKeys)"
                            )));
                        }
                        let given = [key_path.is_some(), key_paths.is_some(), key_data.is_some()];
                        if given.iter().filter(|g| **g).count() != 1 {
                            return Err(invalid(
                                "signedBy needs exactly one of keyPath, keyPaths, keyData".into(),
                            ));
                        }
                    }
                    Requirement::SigstoreSigned {
                        key_path, key_data, ..
                    } => {
                        if key_path.is_some() == key_data.is_some() {
                            return Err(invalid(
                                "sigstoreSigned needs exactly one of keyPath, keyData".into(),
                            ));
                        }
                    }
                    Requirement::InsecureAcceptAnything {} | Requirement::Reject {} => {}
                }
            }
        }
        Ok(policy)
    }

    /// The requirements for `image`: the most specific matching scope of its transport,
    /// else the transport's `""` scope, else `default`.
    pub fn requirements_for(&self, image: &ImageRef) -> Applicable<'_> {
        let (transport, candidates) = match image {
            ImageRef::Docker(d) => ("docker", docker_scopes(d)),
            ImageRef::Layout(l) => {
                let path = l.path.to_string_lossy().into_owned();
                let mut scopes = Vec::new();
                if let Some(tag) = &l.tag {
                    scopes.push(format!("{path}:{tag}"));
                }
                let mut p = path.trim_end_matches('/').to_owned();
                while !p.is_empty() {
                    scopes.push(p.clone());
                    p = match p.rfind('/') {
                        Some(0) => "/".into(),
                        Some(i) => p[..i].to_owned(),
                        None => String::new(),
                    };
                    if p == "/" {
                        scopes.push(p.clone());
                        break;
                    }
                }
                ("oci", scopes)
            }
        };
        if let Some(scopes) = self.transports.get(transport) {
            for scope in candidates.iter().chain(std::iter::once(&String::new())) {
                if let Some(reqs) = scopes.get(scope) {
                    return Applicable {
                        scope: format!("{transport}:{scope}"),
                        requirements: reqs,
                    };
                }
            }
        }
        Applicable {
            scope: "default".into(),
            requirements: &self.default,
        }
    }
}

/// Docker scopes, most specific first: `host/repo:tag` (or `@digest`), `host/repo`, its
/// parent namespaces, `host`, then `*.domain` wildcards from the longest.
fn docker_scopes(d: &DockerRef) -> Vec<String> {
    let repo = format!("{}/{}", d.registry, d.repository);
    let mut out = Vec::new();
    if let Some(digest) = &d.digest {
        out.push(format!("{repo}@{digest}"));
    }
    if let Some(tag) = &d.tag {
        out.push(format!("{repo}:{tag}"));
    }
    let mut p = repo.as_str();
    loop {
        out.push(p.to_owned());
        match p.rfind('/') {
            Some(i) => p = &p[..i],
            None => break,
        }
    }
    let host = d.registry.split(':').next().unwrap_or(&d.registry);
    let labels: Vec<&str> = host.split('.').collect();
    for i in 1..labels.len() {
        out.push(format!("*.{}", labels[i..].join(".")));
    }
    out
}

impl SignedIdentity {
    /// Whether a signature claiming `signed` (a docker reference string) is acceptable for
    /// the image `image`.
    pub fn matches(&self, image: &DockerRef, signed: &str) -> bool {
        let Some(signed) = parse_docker(signed) else {
            return false;
        };
        let same_repo =
            |a: &DockerRef, b: &DockerRef| a.registry == b.registry && a.repository == b.repository;
        let exact = |a: &DockerRef, b: &DockerRef| {
            same_repo(a, b) && a.tag == b.tag && a.digest == b.digest
        };
        let repo_digest_or_exact = |img: &DockerRef| {
            if img.digest.is_some() {
                same_repo(img, &signed)
            } else {
                exact(img, &signed)
            }
        };
        match self {
            Self::MatchExact {} => image.tag.is_some() && exact(image, &signed),
            Self::MatchRepoDigestOrExact {} => repo_digest_or_exact(image),
            Self::MatchRepository {} => same_repo(image, &signed),
            Self::ExactReference { docker_reference } => {
                parse_docker(docker_reference).is_some_and(|r| exact(&r, &signed))
            }
            Self::ExactRepository { docker_repository } => {
                parse_docker(docker_repository).is_some_and(|r| same_repo(&r, &signed))
            }
            Self::RemapIdentity {
                prefix,
                signed_prefix,
            } => {
                let full = image.to_string();
                let full = full.strip_prefix("docker://").unwrap_or(&full);
                match remap(full, prefix, signed_prefix).and_then(|s| parse_docker(&s)) {
                    Some(remapped) => {
                        if remapped.digest.is_some() {
                            same_repo(&remapped, &signed)
                        } else {
                            exact(&remapped, &signed)
                        }
                    }
                    None => repo_digest_or_exact(image),
                }
            }
        }
    }
}

/// The claims both signature formats carry (simple signing's "atomic container signature"
/// and cosign's "cosign container image signature"): the payload type, the signed manifest
/// digest and the identity.
#[derive(Deserialize)]
struct Payload {
    critical: Critical,
}

#[derive(Deserialize)]
struct Critical {
    identity: Identity,
    image: PayloadImage,
    #[serde(rename = "type")]
    kind: String,
}

#[derive(Deserialize)]
struct Identity {
    #[serde(rename = "docker-reference")]
    docker_reference: String,
}

#[derive(Deserialize)]
struct PayloadImage {
    #[serde(rename = "docker-manifest-digest")]
    docker_manifest_digest: Digest,
}

/// Checks a verified signature payload: of type `kind`, signing `digest`, claiming an
/// identity `identity` accepts for `image`. The error is the reason, for a rejection message.
pub fn check_claims(
    payload: &[u8],
    kind: &str,
    image: &DockerRef,
    digest: &Digest,
    identity: &SignedIdentity,
) -> Result<(), String> {
    let parsed: Payload = serde_json::from_slice(payload)
        .map_err(|_| format!("payload is not a {kind:?} payload"))?;
    let c = parsed.critical;
    if c.kind != kind {
        Err(format!("payload type {:?}", c.kind))
    } else if c.image.docker_manifest_digest != *digest {
        Err(format!("signs {} instead", c.image.docker_manifest_digest))
    } else if !identity.matches(image, &c.identity.docker_reference) {
        Err(format!(
            "identity {:?} does not match",
            c.identity.docker_reference
        ))
    } else {
        Ok(())
    }
}

/// `prefix` must end at a component boundary (`/`, `:`, `@` or the end).
fn remap(full: &str, prefix: &str, signed_prefix: &str) -> Option<String> {
    let rest = full.strip_prefix(prefix)?;
    let boundary = rest.is_empty() || rest.starts_with(['/', ':', '@']) || prefix.ends_with('/');
    boundary.then(|| format!("{signed_prefix}{rest}"))
}

fn parse_docker(s: &str) -> Option<DockerRef> {
    match s.parse::<ImageRef>().ok()? {
        ImageRef::Docker(d) => Some(d),
        ImageRef::Layout(_) => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(s: &str) -> DockerRef {
        parse_docker(s).unwrap()
    }

    const POLICY: &str = r#"{
        "default": [{"type": "reject"}],
        "transports": {
            "docker": {
                "reg.example:5000/team/app:v1": [{"type": "insecureAcceptAnything"}],
                "reg.example:5000/team": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/k.gpg"}],
                "reg.example:5000": [{"type": "sigstoreSigned", "keyData": "AAAA",
                                      "signedIdentity": {"type": "matchRepository"}}],
                "*.example.com": [{"type": "reject"}],
                "": [{"type": "insecureAcceptAnything"}]
            },
            "oci": {"/layouts/trusted": [{"type": "insecureAcceptAnything"}]}
        }
    }"#;

    #[test]
    fn most_specific_scope_wins() {
        let p = Policy::parse(POLICY.as_bytes(), "test").unwrap();
        let scope = |s: &str| p.requirements_for(&s.parse().unwrap()).scope;
        assert_eq!(
            scope("reg.example:5000/team/app:v1"),
            "docker:reg.example:5000/team/app:v1"
        );
        assert_eq!(
            scope("reg.example:5000/team/app:v2"),
            "docker:reg.example:5000/team"
        );
        assert_eq!(scope("reg.example:5000/other"), "docker:reg.example:5000");
        assert_eq!(scope("a.b.example.com/x"), "docker:*.example.com");
        assert_eq!(scope("quay.io/x"), "docker:");
        assert_eq!(
            scope("oci:/layouts/trusted/img:tag"),
            "oci:/layouts/trusted"
        );
        assert_eq!(scope("oci:/elsewhere"), "default");
        assert_eq!(
            p.requirements_for(&"oci:/elsewhere".parse().unwrap())
                .requirements,
            &[Requirement::Reject {}]
        );
    }

    #[test]
    fn invalid_policies_are_refused() {
        for bad in [
            r#"{"default": []}"#,
            r#"{"default": [{"type": "bogus"}]}"#,
            r#"{"default": [{"type": "reject", "extra": 1}]}"#,
            r#"{"default": [{"type": "signedBy", "keyType": "X509", "keyPath": "/k"}]}"#,
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys"}]}"#,
            r#"{"default": [{"type": "signedBy", "keyType": "GPGKeys", "keyPath": "/a", "keyData": "b"}]}"#,
            r#"{"default": [{"type": "sigstoreSigned"}]}"#,
            r#"{"default": [{"type": "sigstoreSigned", "keyData": "a", "signedIdentity": {"type": "matchExact", "x": 1}}]}"#,
            r#"{"transports": {}}"#,
            "not json",
        ] {
            let err = Policy::parse(bad.as_bytes(), "bad.json").unwrap_err();
            assert!(err.to_string().contains("bad.json"), "{err}");
        }
    }

    #[test]
    fn signed_identities() {
        let d = crate::digest::Digest::of(b"m");
        let tagged = docker("reg.io/ns/app:1.0");
        let pinned = docker(&format!("reg.io/ns/app@{d}"));
        let m = |id: &SignedIdentity, img: &DockerRef, signed: &str| id.matches(img, signed);
        let exact = SignedIdentity::MatchExact {};
        assert!(m(&exact, &tagged, "reg.io/ns/app:1.0"));
        assert!(!m(&exact, &tagged, "reg.io/ns/app:2.0"));
        assert!(!m(&exact, &pinned, "reg.io/ns/app:1.0"));
        let default = SignedIdentity::default();
        assert!(m(&default, &pinned, "reg.io/ns/app:anything"));
        assert!(!m(&default, &pinned, "reg.io/ns/other:1"));
        assert!(m(&default, &tagged, "reg.io/ns/app:1.0"));
        assert!(!m(&default, &tagged, "reg.io/ns/app:latest"));
        let repo = SignedIdentity::MatchRepository {};
        assert!(m(&repo, &tagged, "reg.io/ns/app:other"));
        assert!(!m(&repo, &tagged, "evil.io/ns/app:1.0"));
        let er = SignedIdentity::ExactReference {
            docker_reference: "mirror.io/app:1.0".into(),
        };
        assert!(m(&er, &tagged, "mirror.io/app:1.0"));
        assert!(!m(&er, &tagged, "reg.io/ns/app:1.0"));
        let erepo = SignedIdentity::ExactRepository {
            docker_repository: "mirror.io/app".into(),
        };
        assert!(m(&erepo, &tagged, "mirror.io/app:9"));
        let remap = SignedIdentity::RemapIdentity {
            prefix: "reg.io/ns".into(),
            signed_prefix: "upstream.io/lib".into(),
        };
        assert!(m(&remap, &tagged, "upstream.io/lib/app:1.0"));
        assert!(!m(&remap, &tagged, "reg.io/ns/app:1.0"));
        let not_boundary = SignedIdentity::RemapIdentity {
            prefix: "reg.io/n".into(),
            signed_prefix: "x.io/y".into(),
        };
        assert!(
            m(&not_boundary, &tagged, "reg.io/ns/app:1.0"),
            "no remap off a boundary"
        );
        assert!(!m(&default, &tagged, "::not a reference::"));
    }
}
