//! Simple-signing signatures in a lookaside store, configured by containers'
//! `registries.d/*.yaml`: for an image `HOST/REPO` with manifest digest `sha256:HEX`, the
//! signatures are `<base>/<REPO>@sha256=<HEX>/signature-<N>`, N = 1, 2, … until one is
//! missing. `<base>` is a `file://` or `http(s)://` URL from the most specific `docker:` entry
//! (`HOST/REPO`, its parent namespaces, `HOST`) or `default-docker`; `lookaside` is the
//! current key, `sigstore` the legacy one.

use std::collections::BTreeMap;
use std::io::Read;
use std::path::{Path, PathBuf};

use serde::Deserialize;

use crate::digest::Digest;
use crate::reference::DockerRef;

/// Signatures read per image at most.
const MAX_SIGNATURES: usize = 16;
/// Largest signature accepted.
const MAX_SIGNATURE_BYTES: u64 = 256 * 1024;

/// The merged `registries.d` configuration.
#[derive(Debug, Clone, Default)]
pub struct RegistriesD {
    default: Option<Entry>,
    docker: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct Entry {
    lookaside: Option<String>,
    sigstore: Option<String>,
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "kebab-case")]
struct File {
    #[serde(default)]
    default_docker: Option<Entry>,
    #[serde(default)]
    docker: BTreeMap<String, Entry>,
}

/// Errors reading `registries.d` or signatures. Each names the file or URL.
#[derive(Debug, thiserror::Error)]
pub enum LookasideError {
    /// A file or directory could not be read.
    #[error("cannot read {path}")]
    Read {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// A YAML file is invalid or repeats an entry another file has.
    #[error("registries.d file {path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
    /// A signature could not be fetched.
    #[error("cannot fetch signature {url}: {reason}")]
    Fetch {
        /// The signature URL.
        url: String,
        /// What failed.
        reason: String,
    },
}

impl RegistriesD {
    /// Reads every `*.yaml` file of `dir` (in name order); a scope configured twice is an
    /// error, as in containers/image.
    pub fn load(dir: &Path) -> Result<Self, LookasideError> {
        let read_err = |path: &Path| {
            let path = path.to_owned();
            move |source| LookasideError::Read { path, source }
        };
        let mut names: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(read_err(dir))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .filter(|p| p.extension().is_some_and(|x| x == "yaml"))
            .collect();
        names.sort();
        let mut merged = Self::default();
        for path in names {
            let text = std::fs::read_to_string(&path).map_err(read_err(&path))?;
            merged
                .merge(&text)
                .map_err(|reason| LookasideError::Invalid { path, reason })?;
        }
        Ok(merged)
    }

    /// Adds one file's entries; an entry another file already set is an error.
    pub(crate) fn merge(&mut self, text: &str) -> Result<(), String> {
        let file: File = serde_yaml_ng::from_str(text).map_err(|e| e.to_string())?;
        if let Some(d) = file.default_docker {
            if self.default.is_some() {
                return Err("default-docker is set in another file too".into());
            }
            self.default = Some(d);
        }
        for (scope, entry) in file.docker {
            if self.docker.insert(scope.clone(), entry).is_some() {
                return Err(format!("docker scope {scope:?} is set in another file too"));
            }
        }
        Ok(())
    }

    fn entry_for(&self, image: &DockerRef) -> Option<&Entry> {
        let full = format!("{}/{}", image.registry, image.repository);
        let mut scope = full.as_str();
        loop {
            if let Some(e) = self.docker.get(scope) {
                return Some(e);
            }
            match scope.rfind('/') {
                Some(i) => scope = &scope[..i],
                None => break,
            }
        }
        self.default.as_ref()
    }

    /// The lookaside base URL for an image, if one is configured.
    pub fn lookaside_for(&self, image: &DockerRef) -> Option<&str> {
        let e = self.entry_for(image)?;
        e.lookaside.as_deref().or(e.sigstore.as_deref())
    }
}

/// The signatures of `image` at `digest` in the lookaside store at `base`, in order.
pub fn signatures(
    base: &str,
    image: &DockerRef,
    digest: &Digest,
) -> Result<Vec<Vec<u8>>, LookasideError> {
    let mut out = Vec::new();
    for n in 1..=MAX_SIGNATURES {
        let url = format!(
            "{}/{}@sha256={}/signature-{n}",
            base.trim_end_matches('/'),
            image.repository,
            digest.hex()
        );
        match fetch(&url)? {
            Some(sig) => out.push(sig),
            None => break,
        }
    }
    Ok(out)
}

fn fetch(url: &str) -> Result<Option<Vec<u8>>, LookasideError> {
    let fail = |reason: String| LookasideError::Fetch {
        url: url.to_owned(),
        reason,
    };
    if let Some(path) = url.strip_prefix("file://") {
        return match std::fs::File::open(path) {
            Ok(f) => {
                let mut bytes = Vec::new();
                f.take(MAX_SIGNATURE_BYTES + 1)
                    .read_to_end(&mut bytes)
                    .map_err(|e| fail(e.to_string()))?;
                if bytes.len() as u64 > MAX_SIGNATURE_BYTES {
                    return Err(fail("larger than 256 KiB".into()));
                }
                Ok(Some(bytes))
            }
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
            Err(e) => Err(fail(e.to_string())),
        };
    }
    if !(url.starts_with("https://") || url.starts_with("http://")) {
        return Err(fail(
            "lookaside URLs must be file://, http:// or https://".into(),
        ));
    }
    let agent: ureq::Agent = ureq::Agent::config_builder()
        .http_status_as_error(false)
        .timeout_global(Some(std::time::Duration::from_secs(30)))
        .build()
        .into();
    let resp = agent.get(url).call().map_err(|e| fail(e.to_string()))?;
    match resp.status().as_u16() {
        200 => resp
            .into_body()
            .with_config()
            .limit(MAX_SIGNATURE_BYTES)
            .read_to_vec()
            .map(Some)
            .map_err(|e| fail(e.to_string())),
        404 => Ok(None),
        s => Err(fail(format!("HTTP {s}"))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn docker(s: &str) -> DockerRef {
        match s.parse().unwrap() {
            crate::reference::ImageRef::Docker(d) => d,
            crate::reference::ImageRef::Layout(_) => panic!(),
        }
    }

    #[test]
    fn most_specific_entry_and_layout() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "default-docker:\n  sigstore: file:///legacy\ndocker:\n  reg.io:\n    lookaside: https://sigs.example/base/\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "docker:\n  reg.io/team/app:\n    lookaside: file:///team\n    use-sigstore-attachments: true\n",
        )
        .unwrap();
        std::fs::write(dir.path().join("ignored.txt"), "not yaml: [").unwrap();
        let r = RegistriesD::load(dir.path()).unwrap();
        assert_eq!(
            r.lookaside_for(&docker("reg.io/team/app:1")),
            Some("file:///team")
        );
        assert_eq!(
            r.lookaside_for(&docker("reg.io/other")),
            Some("https://sigs.example/base/")
        );
        assert_eq!(
            r.lookaside_for(&docker("quay.io/x")),
            Some("file:///legacy")
        );

        let store = tempfile::tempdir().unwrap();
        let d = Digest::of(b"manifest");
        let sigdir = store.path().join(format!("team/app@sha256={}", d.hex()));
        std::fs::create_dir_all(&sigdir).unwrap();
        std::fs::write(sigdir.join("signature-1"), b"one").unwrap();
        std::fs::write(sigdir.join("signature-2"), b"two").unwrap();
        std::fs::write(sigdir.join("signature-4"), b"gap: not read").unwrap();
        let base = format!("file://{}", store.path().display());
        let sigs = signatures(&base, &docker("reg.io/team/app:1"), &d).unwrap();
        assert_eq!(sigs, vec![b"one".to_vec(), b"two".to_vec()]);
    }

    #[test]
    fn duplicate_scopes_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("a.yaml"),
            "docker:\n  reg.io:\n    lookaside: file:///a\n",
        )
        .unwrap();
        std::fs::write(
            dir.path().join("b.yaml"),
            "docker:\n  reg.io:\n    lookaside: file:///b\n",
        )
        .unwrap();
        let err = RegistriesD::load(dir.path()).unwrap_err();
        assert!(err.to_string().contains("b.yaml"), "{err}");
        std::fs::write(dir.path().join("b.yaml"), "docker: [unclosed").unwrap();
        assert!(RegistriesD::load(dir.path()).is_err());
    }
}
