//! A CRI v1 client for the containerd tests: tests/cri/cri.py (Debian's python3-grpcio, the
//! CRI messages of tests/cri/api.proto) run as a child that takes one JSON request per line,
//! and typed calls for what kubelet does to run a pod: RunPodSandbox, PullImage,
//! CreateContainer, StartContainer, ContainerStatus, StopContainer, RemoveContainer,
//! StopPodSandbox, RemovePodSandbox, the lists, and the CRI log file.

use std::collections::BTreeMap;
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdin, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use anyhow::{anyhow, bail, Context};
use serde_json::{json, Value};

/// Debian's interpreter, which has python3-grpcio (a `python3` earlier on PATH may not).
pub const PYTHON: &str = "/usr/bin/python3";

/// A gRPC error status from containerd's CRI plugin.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RpcError {
    /// The status code's name (`NOT_FOUND`, `UNKNOWN`, …).
    pub code: String,
    /// The status message.
    pub details: String,
}

impl std::fmt::Display for RpcError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.code, self.details)
    }
}

/// A connection to containerd's CRI plugin.
pub struct Cri {
    child: Child,
    stdin: ChildStdin,
    stdout: BufReader<ChildStdout>,
}

/// The pod a test runs: a host-network pod unless `network` is set (then containerd's CNI
/// config decides).
#[derive(Debug, Clone)]
pub struct Pod {
    pub name: String,
    pub uid: String,
    pub namespace: String,
    pub hostname: String,
    pub log_directory: PathBuf,
    pub cgroup_parent: String,
    pub pod_network: bool,
    pub annotations: BTreeMap<String, String>,
}

impl Pod {
    /// A host-network pod named `name` (its uid derived from the name), logging under
    /// `log_directory`, in cgroup parent `cgroup_parent`.
    pub fn new(name: &str, log_directory: &Path, cgroup_parent: &str) -> Pod {
        Pod {
            name: name.to_owned(),
            uid: format!("uid-{name}"),
            namespace: "encc-test".to_owned(),
            hostname: String::new(),
            log_directory: log_directory.to_owned(),
            cgroup_parent: cgroup_parent.to_owned(),
            pod_network: false,
            annotations: BTreeMap::new(),
        }
    }

    /// The PodSandboxConfig, as kubelet builds it.
    pub fn config(&self) -> Value {
        let network = if self.pod_network { "POD" } else { "NODE" };
        json!({
            "metadata": {"name": self.name, "uid": self.uid, "namespace": self.namespace, "attempt": 0},
            "hostname": self.hostname,
            "log_directory": self.log_directory,
            "labels": {"io.kubernetes.pod.name": self.name},
            "annotations": self.annotations,
            "linux": {
                "cgroup_parent": self.cgroup_parent,
                "security_context": {"namespace_options": {"network": network, "pid": "CONTAINER", "ipc": "POD"}},
            },
        })
    }
}

/// A container of a pod, as kubelet describes it.
#[derive(Debug, Clone, Default)]
pub struct Container {
    pub name: String,
    pub image: String,
    /// Overrides of the image's Entrypoint and Cmd (empty: the image's).
    pub command: Vec<String>,
    pub args: Vec<String>,
    pub envs: Vec<(String, String)>,
    pub annotations: BTreeMap<String, String>,
}

impl Container {
    pub fn new(name: &str, image: &str) -> Container {
        Container {
            name: name.to_owned(),
            image: image.to_owned(),
            ..Container::default()
        }
    }

    fn config(&self) -> Value {
        let envs: Vec<Value> = self
            .envs
            .iter()
            .map(|(k, v)| json!({"key": k, "value": v}))
            .collect();
        json!({
            "metadata": {"name": self.name, "attempt": 0},
            "image": {"image": self.image},
            "command": self.command,
            "args": self.args,
            "envs": envs,
            "labels": {"io.kubernetes.container.name": self.name},
            "annotations": self.annotations,
            "log_path": format!("{}/0.log", self.name),
            "linux": {"security_context": {"namespace_options": {"network": "POD", "pid": "CONTAINER", "ipc": "POD"}}},
        })
    }
}

/// What ContainerStatus says about a container.
#[derive(Debug, Clone)]
pub struct ContainerStatus {
    pub id: String,
    /// `CONTAINER_CREATED`, `CONTAINER_RUNNING`, `CONTAINER_EXITED` or `CONTAINER_UNKNOWN`.
    pub state: String,
    pub exit_code: i32,
    pub reason: String,
    pub message: String,
    pub log_path: PathBuf,
    /// The whole answer, for failure messages.
    pub raw: Value,
}

impl Cri {
    /// Starts the client on containerd's socket and waits until the CRI plugin answers
    /// Version (it initialises after containerd listens).
    pub fn connect(address: &Path) -> anyhow::Result<Cri> {
        let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("cri/cri.py");
        let mut child = Command::new(PYTHON)
            .arg(&script)
            .arg(address)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .spawn()
            .with_context(|| format!("spawn {PYTHON} {} (python3-grpcio)", script.display()))?;
        let stdin = child.stdin.take().context("cri.py stdin")?;
        let stdout = BufReader::new(child.stdout.take().context("cri.py stdout")?);
        let mut cri = Cri {
            child,
            stdin,
            stdout,
        };
        let deadline = Instant::now() + Duration::from_secs(30);
        loop {
            match cri.runtime("Version", json!({"version": "v1"})) {
                Ok(Ok(v)) if v["runtime_api_version"] == "v1" => return Ok(cri),
                Ok(Ok(v)) => bail!("containerd's CRI answers Version with {v}"),
                Ok(Err(e)) if Instant::now() < deadline => {
                    log_retry(&e);
                    std::thread::sleep(Duration::from_millis(50));
                }
                Ok(Err(e)) => bail!(
                    "containerd's CRI plugin at {} is not ready: {e}",
                    address.display()
                ),
                Err(e) => return Err(e),
            }
        }
    }

    /// One call; the outer error is the client's (it died, bad JSON), the inner one the
    /// gRPC status.
    pub fn call(
        &mut self,
        service: &str,
        method: &str,
        request: Value,
    ) -> anyhow::Result<Result<Value, RpcError>> {
        let line =
            json!({"service": service, "method": method, "request": request, "timeout": 120});
        writeln!(self.stdin, "{line}").with_context(|| format!("send {method} to cri.py"))?;
        self.stdin.flush().context("flush cri.py stdin")?;
        let mut answer = String::new();
        self.stdout
            .read_line(&mut answer)
            .with_context(|| format!("read the answer to {method}"))?;
        if answer.is_empty() {
            bail!("cri.py exited before answering {method}");
        }
        let answer: Value = serde_json::from_str(&answer)
            .with_context(|| format!("parse cri.py's answer {answer:?}"))?;
        if let Some(ok) = answer.get("ok") {
            return Ok(Ok(ok.clone()));
        }
        let err = &answer["error"];
        Ok(Err(RpcError {
            code: err["code"].as_str().unwrap_or("?").to_owned(),
            details: err["details"].as_str().unwrap_or("").to_owned(),
        }))
    }

    /// A RuntimeService call.
    pub fn runtime(
        &mut self,
        method: &str,
        request: Value,
    ) -> anyhow::Result<Result<Value, RpcError>> {
        self.call("RuntimeService", method, request)
    }

    /// A RuntimeService call that must succeed.
    pub fn runtime_ok(&mut self, method: &str, request: Value) -> anyhow::Result<Value> {
        self.runtime(method, request)?
            .map_err(|e| anyhow!("CRI {method} failed: {e}"))
    }

    /// PullImage (the host's pull, as kubelet asks before CreateContainer); the image ref.
    pub fn pull(&mut self, image: &str, pod: &Pod) -> anyhow::Result<String> {
        let req = json!({"image": {"image": image}, "sandbox_config": pod.config()});
        let v = self
            .call("ImageService", "PullImage", req)?
            .map_err(|e| anyhow!("CRI PullImage {image} failed: {e}"))?;
        Ok(v["image_ref"].as_str().unwrap_or_default().to_owned())
    }

    /// RunPodSandbox with `handler`; the sandbox id.
    pub fn run_pod(&mut self, pod: &Pod, handler: &str) -> anyhow::Result<String> {
        std::fs::create_dir_all(&pod.log_directory)
            .with_context(|| format!("create {}", pod.log_directory.display()))?;
        let v = self.runtime_ok(
            "RunPodSandbox",
            json!({"config": pod.config(), "runtime_handler": handler}),
        )?;
        Ok(v["pod_sandbox_id"].as_str().unwrap_or_default().to_owned())
    }

    /// The pod's IP (PodSandboxStatus; empty for host-network pods).
    pub fn pod_ip(&mut self, pod_id: &str) -> anyhow::Result<String> {
        let v = self.runtime_ok("PodSandboxStatus", json!({"pod_sandbox_id": pod_id}))?;
        Ok(v["status"]["network"]["ip"]
            .as_str()
            .unwrap_or_default()
            .to_owned())
    }

    /// CreateContainer in pod `pod_id`; the container id, or the gRPC error.
    pub fn create(
        &mut self,
        pod_id: &str,
        pod: &Pod,
        c: &Container,
    ) -> anyhow::Result<Result<String, RpcError>> {
        let req =
            json!({"pod_sandbox_id": pod_id, "config": c.config(), "sandbox_config": pod.config()});
        Ok(self
            .runtime("CreateContainer", req)?
            .map(|v| v["container_id"].as_str().unwrap_or_default().to_owned()))
    }

    /// StartContainer; the gRPC error when it fails.
    pub fn start(&mut self, id: &str) -> anyhow::Result<Result<(), RpcError>> {
        Ok(self
            .runtime("StartContainer", json!({"container_id": id}))?
            .map(|_| ()))
    }

    /// ContainerStatus.
    pub fn status(&mut self, id: &str) -> anyhow::Result<ContainerStatus> {
        let v = self.runtime_ok("ContainerStatus", json!({"container_id": id}))?;
        let s = &v["status"];
        let text = |k: &str| s[k].as_str().unwrap_or_default().to_owned();
        Ok(ContainerStatus {
            id: text("id"),
            state: text("state"),
            exit_code: s["exit_code"].as_i64().unwrap_or(-1) as i32,
            reason: text("reason"),
            message: text("message"),
            log_path: PathBuf::from(text("log_path")),
            raw: v.clone(),
        })
    }

    /// Polls ContainerStatus until the container is `CONTAINER_EXITED`.
    pub fn wait_exited(&mut self, id: &str, timeout: Duration) -> anyhow::Result<ContainerStatus> {
        self.wait_state(id, "CONTAINER_EXITED", timeout)
    }

    /// Polls ContainerStatus until the container is in `state`.
    pub fn wait_state(
        &mut self,
        id: &str,
        state: &str,
        timeout: Duration,
    ) -> anyhow::Result<ContainerStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            let s = self.status(id)?;
            if s.state == state {
                return Ok(s);
            }
            if Instant::now() > deadline {
                bail!("container {id} is not {state} after {timeout:?}: {}", s.raw);
            }
            std::thread::sleep(Duration::from_millis(50));
        }
    }

    /// StopContainer with a grace period in seconds.
    pub fn stop_container(&mut self, id: &str, timeout: i64) -> anyhow::Result<()> {
        self.runtime_ok(
            "StopContainer",
            json!({"container_id": id, "timeout": timeout}),
        )
        .map(|_| ())
    }

    pub fn remove_container(&mut self, id: &str) -> anyhow::Result<()> {
        self.runtime_ok("RemoveContainer", json!({"container_id": id}))
            .map(|_| ())
    }

    pub fn stop_pod(&mut self, id: &str) -> anyhow::Result<()> {
        self.runtime_ok("StopPodSandbox", json!({"pod_sandbox_id": id}))
            .map(|_| ())
    }

    pub fn remove_pod(&mut self, id: &str) -> anyhow::Result<()> {
        self.runtime_ok("RemovePodSandbox", json!({"pod_sandbox_id": id}))
            .map(|_| ())
    }

    /// ListContainers of pod `pod_id` (all pods when empty): (id, state) pairs.
    pub fn list_containers(&mut self, pod_id: &str) -> anyhow::Result<Vec<(String, String)>> {
        let v = self.runtime_ok(
            "ListContainers",
            json!({"filter": {"pod_sandbox_id": pod_id}}),
        )?;
        Ok(pairs(&v["containers"], "id", "state"))
    }

    /// ListPodSandbox: (id, state) pairs.
    pub fn list_pods(&mut self) -> anyhow::Result<Vec<(String, String)>> {
        let v = self.runtime_ok("ListPodSandbox", json!({}))?;
        Ok(pairs(&v["items"], "id", "state"))
    }
}

impl Drop for Cri {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn pairs(list: &Value, a: &str, b: &str) -> Vec<(String, String)> {
    list.as_array()
        .into_iter()
        .flatten()
        .map(|x| {
            let s = |k: &str| x[k].as_str().unwrap_or_default().to_owned();
            (s(a), s(b))
        })
        .collect()
}

fn log_retry(e: &RpcError) {
    if e.code != "UNAVAILABLE" && e.code != "UNKNOWN" {
        eprintln!("CRI not ready yet: {e}");
    }
}

/// One line of a CRI log file (`TIMESTAMP STREAM TAG CONTENT`, TAG `F` full, `P` partial).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LogLine {
    pub stream: String,
    pub content: String,
}

/// The CRI log at `path`, partial lines joined to their full line.
pub fn read_log(path: &Path) -> anyhow::Result<Vec<LogLine>> {
    let text = std::fs::read_to_string(path)
        .with_context(|| format!("read CRI log {}", path.display()))?;
    let mut out: Vec<LogLine> = Vec::new();
    let mut partial: Option<LogLine> = None;
    for line in text.lines() {
        let mut parts = line.splitn(4, ' ');
        let (Some(_time), Some(stream), Some(tag)) = (parts.next(), parts.next(), parts.next())
        else {
            bail!("CRI log {}: malformed line {line:?}", path.display());
        };
        let content = parts.next().unwrap_or("");
        let mut cur = partial.take().unwrap_or(LogLine {
            stream: stream.to_owned(),
            content: String::new(),
        });
        cur.content.push_str(content);
        match tag {
            "F" => out.push(cur),
            "P" => partial = Some(cur),
            other => bail!(
                "CRI log {}: unknown tag {other:?} in {line:?}",
                path.display()
            ),
        }
    }
    out.extend(partial);
    Ok(out)
}

/// The stdout lines of a CRI log.
pub fn stdout_lines(path: &Path) -> anyhow::Result<Vec<String>> {
    Ok(read_log(path)?
        .into_iter()
        .filter(|l| l.stream == "stdout")
        .map(|l| l.content)
        .collect())
}
