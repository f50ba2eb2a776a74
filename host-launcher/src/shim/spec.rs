//! What the shim takes from a container's bundle and from containerd's request: the subset of
//! the OCI runtime spec (`config.json`) encc uses, the image reference from the annotations,
//! and the boot config path from the runtime options. Parsed once, into typed values.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::CodedInputStream;
use serde::Deserialize;

/// The boot config when containerd's runtime options name none.
pub const DEFAULT_BOOT_CONFIG: &str = "/etc/encc/boot.json";
/// CRI: the image the kubelet asked for.
pub const CRI_IMAGE_ANNOTATION: &str = "io.kubernetes.cri.image-name";
/// encc's own annotation (for `ctr` users, or a pod naming a reference the host cannot pull).
pub const ENCC_IMAGE_ANNOTATION: &str = "io.encc.image";
/// CRI: `sandbox` or `container`.
pub const CRI_CONTAINER_TYPE: &str = "io.kubernetes.cri.container-type";
/// CRI: the pod sandbox a container belongs to (one shim per pod, as with runc-v2).
pub const CRI_SANDBOX_ID: &str = "io.kubernetes.cri.sandbox-id";
/// The `type_url` CRI and `ctr --runtime-config-path` use for non-runc runtime options.
const RUNTIME_OPTIONS_TYPE: &str = "runtimeoptions.v1.Options";

/// Errors reading a bundle or the request's options.
#[derive(Debug, thiserror::Error)]
pub enum SpecError {
    #[error("cannot read the OCI spec {path}")]
    Read {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("the OCI spec {path} does not parse")]
    Parse {
        path: PathBuf,
        #[source]
        source: serde_json::Error,
    },
    #[error("container {id} names no image: set the {ENCC_IMAGE_ANNOTATION} annotation (or run it through CRI, which sets {CRI_IMAGE_ANNOTATION})")]
    NoImage { id: String },
    #[error("the runtime options are of type {type_url}; the encc runtime takes {RUNTIME_OPTIONS_TYPE} (ConfigPath = the boot config)")]
    OptionsType { type_url: String },
    #[error("the runtime options ({RUNTIME_OPTIONS_TYPE}) do not decode")]
    OptionsDecode(#[source] containerd_shim::protos::protobuf::Error),
    #[error("a {kind} namespace is not supported by the encc runtime")]
    Namespace { kind: String },
    #[error("a terminal (tty) is not supported by the encc runtime; run without -t")]
    Terminal,
}

#[derive(Debug, Default, Deserialize)]
struct SpecJson {
    #[serde(default)]
    process: Option<ProcessJson>,
    #[serde(default)]
    hostname: Option<String>,
    #[serde(default)]
    annotations: HashMap<String, String>,
    #[serde(default)]
    linux: Option<LinuxJson>,
}

#[derive(Debug, Default, Deserialize)]
struct ProcessJson {
    #[serde(default)]
    terminal: bool,
    #[serde(default)]
    args: Vec<String>,
    #[serde(default)]
    env: Vec<String>,
}

#[derive(Debug, Default, Deserialize)]
struct LinuxJson {
    #[serde(default)]
    namespaces: Vec<NamespaceJson>,
}

#[derive(Debug, Deserialize)]
struct NamespaceJson {
    #[serde(rename = "type")]
    kind: String,
    #[serde(default)]
    path: Option<PathBuf>,
}

/// A namespace the host process of a container enters or creates.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, Deserialize)]
pub enum Join {
    /// A new one.
    New,
    /// The one at this path (`/proc/PID/ns/net`, `/var/run/netns/NAME`).
    Path(PathBuf),
}

/// The namespaces and hostname a container's host process sets up before the enclave starts
/// (the enclave then makes its own mount, pid, ipc and uts namespaces inside these).
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Serialize, Deserialize)]
pub struct Namespaces {
    /// Network: `None` is the host's (`ctr run --net-host`, a hostNetwork pod).
    pub net: Option<Join>,
    /// UTS: `None` is the host's.
    pub uts: Option<Join>,
    /// IPC (the pod sandbox holds one).
    pub ipc: Option<Join>,
    /// The hostname to set in a new UTS namespace.
    pub hostname: Option<String>,
}

/// Whether a container is a pod's sandbox (pause) or an application container.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    Sandbox,
    App,
}

/// The bundle's spec, as encc uses it.
#[derive(Debug, Clone)]
pub struct Bundle {
    pub kind: Kind,
    /// The full OCI argv (the image's Entrypoint + Cmd unless the user overrode it).
    pub args: Vec<String>,
    /// `NAME=value`; filtered by the boot config's `env_allowlist` inside the enclave.
    pub env: Vec<String>,
    pub namespaces: Namespaces,
    annotations: HashMap<String, String>,
}

impl Bundle {
    /// Reads `config.json` in `bundle`.
    pub fn load(bundle: &Path) -> Result<Self, SpecError> {
        let path = bundle.join("config.json");
        let bytes = std::fs::read(&path).map_err(|source| SpecError::Read {
            path: path.clone(),
            source,
        })?;
        let spec: SpecJson =
            serde_json::from_slice(&bytes).map_err(|source| SpecError::Parse { path, source })?;
        let process = spec.process.unwrap_or_default();
        if process.terminal {
            return Err(SpecError::Terminal);
        }
        let mut namespaces = Namespaces {
            hostname: spec.hostname.filter(|h| !h.is_empty()),
            ..Namespaces::default()
        };
        for ns in spec.linux.unwrap_or_default().namespaces {
            let join = match ns.path {
                Some(path) if !path.as_os_str().is_empty() => Join::Path(path),
                _ => Join::New,
            };
            match ns.kind.as_str() {
                "network" => namespaces.net = Some(join),
                "uts" => namespaces.uts = Some(join),
                "ipc" => namespaces.ipc = Some(join),
                // The enclave always has its own mount and pid namespaces; a cgroup namespace
                // changes nothing it can see.
                "mount" | "pid" | "cgroup" => {}
                other => {
                    return Err(SpecError::Namespace {
                        kind: other.to_owned(),
                    })
                }
            }
        }
        let kind = match spec.annotations.get(CRI_CONTAINER_TYPE).map(String::as_str) {
            Some("sandbox") => Kind::Sandbox,
            _ => Kind::App,
        };
        Ok(Self {
            kind,
            args: process.args,
            env: process.env,
            namespaces,
            annotations: spec.annotations,
        })
    }

    /// The pod this container belongs to (CRI), if any.
    pub fn sandbox_id(&self) -> Option<&str> {
        self.annotations.get(CRI_SANDBOX_ID).map(String::as_str)
    }

    /// The image reference for the enclave: `io.encc.image` as given, else CRI's image
    /// name as a registry reference. Untrusted: the enclave checks it against its policy.
    pub fn image(&self, id: &str) -> Result<String, SpecError> {
        if let Some(image) = self.annotations.get(ENCC_IMAGE_ANNOTATION) {
            return Ok(image.clone());
        }
        match self.annotations.get(CRI_IMAGE_ANNOTATION) {
            Some(name) if name.contains("://") || name.starts_with("oci:") => Ok(name.clone()),
            Some(name) => Ok(format!("docker://{name}")),
            None => Err(SpecError::NoImage { id: id.to_owned() }),
        }
    }
}

/// The boot config named by containerd's runtime options (`ConfigPath`), else
/// [`DEFAULT_BOOT_CONFIG`]. Chosen by the node's containerd config, never by the pod.
pub fn boot_config(options: Option<&Any>) -> Result<PathBuf, SpecError> {
    let Some(any) = options.filter(|a| !a.type_url.is_empty() || !a.value.is_empty()) else {
        return Ok(PathBuf::from(DEFAULT_BOOT_CONFIG));
    };
    let type_name = any.type_url.rsplit('/').next().unwrap_or_default();
    if type_name != RUNTIME_OPTIONS_TYPE {
        return Err(SpecError::OptionsType {
            type_url: any.type_url.clone(),
        });
    }
    match config_path(&any.value).map_err(SpecError::OptionsDecode)? {
        Some(path) if !path.is_empty() => Ok(PathBuf::from(path)),
        _ => Ok(PathBuf::from(DEFAULT_BOOT_CONFIG)),
    }
}

/// Field 2 (`config_path`) of `runtimeoptions.v1.Options { string type_url = 1; string
/// config_path = 2; }`.
fn config_path(bytes: &[u8]) -> Result<Option<String>, containerd_shim::protos::protobuf::Error> {
    let mut input = CodedInputStream::from_bytes(bytes);
    let mut path = None;
    while let Some(tag) = input.read_raw_tag_or_eof()? {
        if tag == (2 << 3) | 2 {
            path = Some(input.read_string()?);
        } else {
            input.skip_field(
                containerd_shim::protos::protobuf::rt::WireType::new(tag & 7).ok_or(
                    containerd_shim::protos::protobuf::Error::from(std::io::Error::new(
                        std::io::ErrorKind::InvalidData,
                        format!("wire type {} in tag {tag}", tag & 7),
                    )),
                )?,
            )?;
        }
    }
    Ok(path)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn any(type_url: &str, value: Vec<u8>) -> Any {
        let mut a = Any::new();
        a.type_url = type_url.into();
        a.value = value;
        a
    }

    #[test]
    fn boot_config_from_runtime_options() {
        assert_eq!(boot_config(None).unwrap(), Path::new(DEFAULT_BOOT_CONFIG));
        // type_url = "x" (field 1), config_path = "/etc/b.json" (field 2).
        let mut value = vec![0x0a, 1, b'x', 0x12, 11];
        value.extend_from_slice(b"/etc/b.json");
        let options = any("runtimeoptions.v1.Options", value);
        assert_eq!(
            boot_config(Some(&options)).unwrap(),
            Path::new("/etc/b.json")
        );
        let runc = any("containerd.runc.v1.Options", vec![]);
        let err = boot_config(Some(&runc)).unwrap_err().to_string();
        assert!(err.contains("containerd.runc.v1.Options"), "{err}");
    }

    #[test]
    fn bundle_fields() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process": {"args": ["/bin/sh", "-c", "echo hi"], "env": ["A=1"]},
                "hostname": "pod-a",
                "annotations": {"io.kubernetes.cri.image-name": "127.0.0.1:5000/test/busybox:latest",
                                "io.kubernetes.cri.sandbox-id": "s1"},
                "linux": {"namespaces": [{"type": "pid"}, {"type": "network", "path": "/proc/7/ns/net"}, {"type": "uts"}]}}"#,
        )
        .unwrap();
        let b = Bundle::load(dir.path()).unwrap();
        assert_eq!(b.kind, Kind::App);
        assert_eq!(b.args, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(
            b.image("c").unwrap(),
            "docker://127.0.0.1:5000/test/busybox:latest"
        );
        assert_eq!(b.sandbox_id(), Some("s1"));
        assert_eq!(b.namespaces.net, Some(Join::Path("/proc/7/ns/net".into())));
        assert_eq!(b.namespaces.uts, Some(Join::New));
        assert_eq!(b.namespaces.hostname.as_deref(), Some("pod-a"));

        std::fs::write(
            dir.path().join("config.json"),
            r#"{"process": {"terminal": true}}"#,
        )
        .unwrap();
        assert!(matches!(Bundle::load(dir.path()), Err(SpecError::Terminal)));
        std::fs::write(
            dir.path().join("config.json"),
            r#"{"linux": {"namespaces": [{"type": "user"}]}}"#,
        )
        .unwrap();
        let err = Bundle::load(dir.path()).unwrap_err().to_string();
        assert!(err.contains("user namespace"), "{err}");
        std::fs::write(dir.path().join("config.json"), r#"{}"#).unwrap();
        let err = Bundle::load(dir.path()).unwrap().image("c1").unwrap_err();
        assert!(err.to_string().contains("io.encc.image"), "{err}");
    }
}
