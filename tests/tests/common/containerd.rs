//! A private containerd 1.6 for the shim and CRI tests: its own config.toml, root, state and
//! sockets under a temporary directory, the `runc` and `encc` runtimes registered, the
//! loopback registry reachable over plain HTTP. It never talks to a system containerd.
//! Dropping it stops containerd, kills the shims it started (and what they run), unmounts
//! whatever is left under its directory and removes its cgroups.

use std::fmt::Write as _;
use std::fs;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

/// The namespace of containerd's CRI plugin (kubelet's containers live there).
pub const CRI_NAMESPACE: &str = "k8s.io";

/// How a test wants its containerd.
#[derive(Debug, Clone, Default)]
pub struct ContainerdOptions {
    /// The boot config the `encc` runtime's options name (`ConfigPath`); without it the
    /// shim's default applies.
    pub boot_config: Option<PathBuf>,
    /// More CRI runtime handlers of type `io.containerd.encc.v2`, each with its own boot
    /// config: (handler name, `ConfigPath`).
    pub more_encc: Vec<(String, PathBuf)>,
    /// `127.0.0.1:PORT` of a plain-HTTP registry that containerd (host pulls) may use.
    pub registry: Option<String>,
    /// The CRI plugin's `sandbox_image` (default [`PAUSE_IMAGE`]).
    pub sandbox_image: Option<String>,
    /// The namespace `ctr` commands use (default `default`).
    pub namespace: Option<String>,
}

/// The name the pause fixture is imported under (tests/fixtures/make-pause.sh).
pub const PAUSE_IMAGE: &str = "localhost/encc-test/pause:1";

/// A running private containerd.
pub struct Containerd {
    dir: tempfile::TempDir,
    child: Option<Child>,
    namespace: String,
}

impl Containerd {
    /// Writes the config under a new temporary directory and starts containerd on it.
    pub fn start(opts: &ContainerdOptions) -> anyhow::Result<Containerd> {
        let dir = tempfile::Builder::new()
            .prefix("encc-containerd.")
            .tempdir()
            .context("create containerd's temporary directory")?;
        let base = dir.path();
        for sub in ["root", "state", "opt", "cni", "certs.d"] {
            fs::create_dir_all(base.join(sub))
                .with_context(|| format!("create {}", base.join(sub).display()))?;
        }
        if let Some(reg) = &opts.registry {
            let hosts = base.join("certs.d").join(reg);
            fs::create_dir_all(&hosts).with_context(|| format!("create {}", hosts.display()))?;
            let toml = format!(
                "server = \"http://{reg}\"\n[host.\"http://{reg}\"]\n  capabilities = [\"pull\", \"resolve\"]\n"
            );
            fs::write(hosts.join("hosts.toml"), toml)
                .with_context(|| format!("write {}/hosts.toml", hosts.display()))?;
        }
        let cni = cni_conflist(&base.join("cni-ipam"));
        fs::write(base.join("cni/10-encc-test.conflist"), cni).context("write the CNI config")?;
        let config = base.join("config.toml");
        fs::write(&config, config_toml(base, opts))
            .with_context(|| format!("write {}", config.display()))?;
        let mut me = Containerd {
            dir,
            child: None,
            namespace: opts.namespace.clone().unwrap_or_else(|| "default".into()),
        };
        me.spawn()?;
        Ok(me)
    }

    /// The directory holding config, root, state and sockets.
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    /// containerd's gRPC socket path (what `ctr --address` and CRI clients dial).
    pub fn address(&self) -> PathBuf {
        self.dir().join("containerd.sock")
    }

    /// containerd's root directory (content, snapshots, CRI's root).
    pub fn root(&self) -> PathBuf {
        self.dir().join("root")
    }

    /// containerd's state directory (task bundles, CRI's fifos and netns mounts).
    pub fn state(&self) -> PathBuf {
        self.dir().join("state")
    }

    /// A cgroup parent unique to this containerd, for pod sandboxes (`/encc-test-XXXX`).
    pub fn cgroup_parent(&self) -> String {
        format!("/{}", self.token())
    }

    fn token(&self) -> String {
        let name = self
            .dir()
            .file_name()
            .map(|n| n.to_string_lossy().into_owned());
        format!("encc-test-{}", name.unwrap_or_default().replace('.', "-"))
    }

    /// containerd's log so far (for failure messages), without its start-up lines (one per
    /// plugin), then what every shim process and its helpers are doing now (a hang shows
    /// where it waits).
    pub fn log(&self) -> String {
        let log = fs::read_to_string(self.dir().join("containerd.log")).unwrap_or_default();
        let mut out: String = log
            .lines()
            .filter(|l| !l.contains("msg=\"loading plugin "))
            .flat_map(|l| [l, "\n"])
            .collect();
        for shim in self.shim_pids() {
            out.push_str(&format!("shim {shim} and its helpers now:\n"));
            out.push_str(&super::process::describe_tree(shim as u32));
        }
        out
    }

    /// `ctr --address ADDR --namespace NS ARGS…`, not yet run.
    pub fn ctr<I, S>(&self, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        self.ctr_in(&self.namespace, args)
    }

    /// As [`Containerd::ctr`] in namespace `ns` (e.g. [`CRI_NAMESPACE`]).
    pub fn ctr_in<I, S>(&self, ns: &str, args: I) -> Command
    where
        I: IntoIterator<Item = S>,
        S: AsRef<std::ffi::OsStr>,
    {
        let mut cmd = Command::new("ctr");
        cmd.arg("--address")
            .arg(self.address())
            .arg("--namespace")
            .arg(ns)
            .args(args)
            .env("PATH", search_path());
        cmd
    }

    /// Imports an image archive (docker-archive or oci-archive) into namespace `ns`.
    pub fn import(&self, ns: &str, archive: &Path) -> anyhow::Result<()> {
        let mut cmd = self.ctr_in(ns, ["images", "import"]);
        cmd.arg(archive);
        run(cmd).with_context(|| format!("import {} into namespace {ns}", archive.display()))
    }

    /// Stops containerd (SIGTERM; its shims keep running, as on a node) and starts it again
    /// on the same config, root and state.
    pub fn restart(&mut self) -> anyhow::Result<()> {
        self.stop();
        self.spawn()
    }

    fn spawn(&mut self) -> anyhow::Result<()> {
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.dir().join("containerd.log"))
            .context("open containerd.log")?;
        let child = Command::new("containerd")
            .arg("--config")
            .arg(self.dir().join("config.toml"))
            .env("PATH", search_path())
            .stdin(Stdio::null())
            .stdout(log.try_clone().context("dup containerd.log")?)
            .stderr(log)
            .spawn()
            .context("spawn containerd (is the Debian package `containerd` installed?)")?;
        self.child = Some(child);
        self.wait_ready()
    }

    fn wait_ready(&mut self) -> anyhow::Result<()> {
        let deadline = Instant::now() + Duration::from_secs(30);
        while Instant::now() < deadline {
            if let Some(child) = self.child.as_mut() {
                if let Some(status) = child.try_wait().context("wait for containerd")? {
                    bail!("containerd exited with {status}; log:\n{}", self.log());
                }
            }
            if UnixStream::connect(self.address()).is_ok() {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        bail!(
            "containerd did not listen on {} within 30 s; log:\n{}",
            self.address().display(),
            self.log()
        )
    }

    fn stop(&mut self) {
        let Some(mut child) = self.child.take() else {
            return;
        };
        let pid = child.id() as i32;
        // SAFETY: kill takes plain integers; pid is the containerd this harness started.
        unsafe { libc::kill(pid, libc::SIGTERM) };
        let deadline = Instant::now() + Duration::from_secs(10);
        while Instant::now() < deadline {
            if matches!(child.try_wait(), Ok(Some(_))) {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = child.kill();
        let _ = child.wait();
    }

    /// The pids of the shims this containerd started (their command lines name its socket).
    pub fn shim_pids(&self) -> Vec<i32> {
        let address = self.address();
        let want = address.as_os_str().as_encoded_bytes();
        let mut pids = Vec::new();
        for entry in fs::read_dir("/proc").into_iter().flatten().flatten() {
            let Ok(pid) = entry.file_name().to_string_lossy().parse::<i32>() else {
                continue;
            };
            let Ok(cmdline) = fs::read(entry.path().join("cmdline")) else {
                continue;
            };
            // containerd starts shims with `-address ADDR` (ctr takes `--address`).
            let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).collect();
            if args.windows(2).any(|w| w[0] == b"-address" && w[1] == want) {
                pids.push(pid);
            }
        }
        pids
    }

    fn kill_leftovers(&self) {
        for shim in self.shim_pids() {
            for pid in super::process::process_tree(shim as u32) {
                // SAFETY: kill takes plain integers; these are this containerd's shims and
                // the processes below them.
                unsafe { libc::kill(pid, libc::SIGKILL) };
            }
        }
        // Processes in this containerd's pod cgroups that outlived their shim.
        for pid in cgroup_pids(&self.token()) {
            // SAFETY: as above; these processes are in this harness's own cgroups.
            unsafe { libc::kill(pid, libc::SIGKILL) };
        }
    }
}

impl Drop for Containerd {
    fn drop(&mut self) {
        self.stop();
        self.kill_leftovers();
        std::thread::sleep(Duration::from_millis(100));
        unmount_under(self.dir());
        remove_cgroups(&self.token());
    }
}

/// The config.toml (version 2) of a private containerd under `base`.
fn config_toml(base: &Path, opts: &ContainerdOptions) -> String {
    let b = base.display();
    let cri = "plugins.\"io.containerd.grpc.v1.cri\"";
    let sandbox = opts.sandbox_image.as_deref().unwrap_or(PAUSE_IMAGE);
    let mut t = String::new();
    let _ = write!(
        t,
        r#"version = 2
root = "{b}/root"
state = "{b}/state"
disabled_plugins = ["io.containerd.snapshotter.v1.aufs", "io.containerd.snapshotter.v1.btrfs", "io.containerd.snapshotter.v1.zfs", "io.containerd.snapshotter.v1.devmapper", "io.containerd.tracing.processor.v1.otlp", "io.containerd.internal.v1.tracing"]

[grpc]
  address = "{b}/containerd.sock"
[ttrpc]
  address = "{b}/containerd.sock.ttrpc"
[debug]
  level = "info"
[plugins."io.containerd.internal.v1.opt"]
  path = "{b}/opt"
[{cri}]
  sandbox_image = "{sandbox}"
  restrict_oom_score_adj = true
  netns_mounts_under_state_dir = true
  enable_selinux = false
[{cri}.cni]
  bin_dir = "/usr/lib/cni"
  conf_dir = "{b}/cni"
[{cri}.registry]
  config_path = "{b}/certs.d"
[{cri}.containerd]
  default_runtime_name = "runc"
  snapshotter = "overlayfs"
[{cri}.containerd.runtimes.runc]
  runtime_type = "io.containerd.runc.v2"
"#
    );
    let encc = std::iter::once(("encc", opts.boot_config.as_deref())).chain(
        opts.more_encc
            .iter()
            .map(|(n, p)| (n.as_str(), Some(p.as_path()))),
    );
    for (name, boot) in encc {
        let _ = write!(
            t,
            "[{cri}.containerd.runtimes.{name}]\n  runtime_type = \"io.containerd.encc.v2\"\n  \
             pod_annotations = [\"io.encc.*\"]\n  container_annotations = [\"io.encc.*\"]\n"
        );
        if let Some(boot) = boot {
            let _ = write!(
                t,
                "[{cri}.containerd.runtimes.{name}.options]\n  ConfigPath = \"{}\"\n",
                boot.display()
            );
        }
    }
    t
}

/// The pod network (CNI, Debian's containernetworking-plugins): a veth pair per pod (`ptp`)
/// with an address from a /24 of 10.200.0.0/13 picked at random, so that containerds of
/// tests running at the same time do not collide; IPAM state under `ipam_dir`.
fn cni_conflist(ipam_dir: &Path) -> String {
    let mut n = [0u8; 2];
    let _ = getrandom::fill(&mut n);
    let subnet = format!("10.{}.{}.0/24", 200 + n[0] % 8, n[1]);
    serde_json::json!({
        "cniVersion": "1.0.0",
        "name": "encc-test",
        "plugins": [{
            "type": "ptp",
            "ipMasq": false,
            "ipam": {"type": "host-local", "ranges": [[{"subnet": subnet}]], "dataDir": ipam_dir},
        }],
    })
    .to_string()
}

/// PATH for containerd and ctr: the cargo target directory holding the workspace's binaries
/// (`containerd-shim-encc-v2`; `ENCC_BIN_DIR` overrides it, as for [`super::bin`]), then
/// the system directories (containerd-shim-runc-v2, runc).
pub fn search_path() -> String {
    let bins = match std::env::var_os("ENCC_BIN_DIR") {
        Some(dir) => PathBuf::from(dir),
        None => {
            // target/<profile>/deps/<test> → target/<profile>
            let exe = std::env::current_exe().unwrap_or_default();
            exe.parent()
                .and_then(Path::parent)
                .map(Path::to_owned)
                .unwrap_or_default()
        }
    };
    format!(
        "{}:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        bins.display()
    )
}

/// Runs `cmd`; an error carries its stderr.
pub fn run(mut cmd: Command) -> anyhow::Result<()> {
    let out = cmd.output().with_context(|| format!("run {cmd:?}"))?;
    if !out.status.success() {
        bail!(
            "{cmd:?} failed with {}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        );
    }
    Ok(())
}

/// Unmounts (lazily, deepest first) every mount point under `dir`.
pub fn unmount_under(dir: &Path) {
    for mnt in mounts_under(dir).into_iter().rev() {
        let _ = nix::mount::umount2(&mnt, nix::mount::MntFlags::MNT_DETACH);
    }
}

/// The mount points under `dir`, in mount order.
pub fn mounts_under(dir: &Path) -> Vec<PathBuf> {
    let mounts = fs::read_to_string("/proc/self/mountinfo").unwrap_or_default();
    let prefix = dir.to_string_lossy().into_owned();
    mounts
        .lines()
        .filter_map(|l| l.split(' ').nth(4))
        .map(unescape_mountinfo)
        .filter(|m| m.starts_with(&prefix))
        .map(PathBuf::from)
        .collect()
}

fn unescape_mountinfo(s: &str) -> String {
    s.replace("\\040", " ")
        .replace("\\011", "\t")
        .replace("\\012", "\n")
        .replace("\\134", "\\")
}

/// Cgroup v1 (and v2) directories named `token` directly under a hierarchy's root.
fn cgroup_dirs(token: &str) -> Vec<PathBuf> {
    let root = Path::new("/sys/fs/cgroup");
    let mut dirs = vec![root.join(token)];
    for entry in fs::read_dir(root).into_iter().flatten().flatten() {
        dirs.push(entry.path().join(token));
    }
    dirs.into_iter().filter(|d| d.is_dir()).collect()
}

fn cgroup_pids(token: &str) -> Vec<i32> {
    let mut pids = Vec::new();
    for dir in cgroup_dirs(token) {
        for sub in walk_dirs(&dir) {
            let procs = fs::read_to_string(sub.join("cgroup.procs")).unwrap_or_default();
            pids.extend(procs.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
    }
    pids.sort_unstable();
    pids.dedup();
    pids
}

fn remove_cgroups(token: &str) {
    for dir in cgroup_dirs(token) {
        for sub in walk_dirs(&dir).into_iter().rev() {
            let _ = fs::remove_dir(sub);
        }
    }
}

/// `dir` and the directories below it, parents first.
fn walk_dirs(dir: &Path) -> Vec<PathBuf> {
    let mut out = vec![dir.to_owned()];
    let mut i = 0;
    while i < out.len() {
        let cur = out[i].clone();
        for entry in fs::read_dir(&cur).into_iter().flatten().flatten() {
            if entry.file_type().is_ok_and(|t| t.is_dir()) {
                out.push(entry.path());
            }
        }
        i += 1;
    }
    out
}

/// A value the tests of one test binary share (a node's containerd), made by the first test
/// that asks and dropped when the binary exits (an `atexit` hook: statics are never dropped
/// otherwise), so its Drop still stops containerd and cleans up.
pub struct Shared<T>(Mutex<Option<Arc<T>>>);

type ExitDrop = Box<dyn FnOnce() + Send>;
static AT_EXIT: Mutex<Vec<ExitDrop>> = Mutex::new(Vec::new());

extern "C" fn run_exit_drops() {
    let drops = std::mem::take(&mut *AT_EXIT.lock().unwrap_or_else(|e| e.into_inner()));
    for drop in drops {
        drop();
    }
}

impl<T: Send + Sync + 'static> Shared<T> {
    pub const fn new() -> Self {
        Shared(Mutex::new(None))
    }

    /// The shared value, made by `make` if there is none yet (a failed `make` leaves none).
    pub fn get(&'static self, make: impl FnOnce() -> T) -> Arc<T> {
        let mut slot = self.0.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(value) = slot.as_ref() {
            return Arc::clone(value);
        }
        let value = Arc::new(make());
        *slot = Some(Arc::clone(&value));
        let mut drops = AT_EXIT.lock().unwrap_or_else(|e| e.into_inner());
        if drops.is_empty() {
            // SAFETY: atexit registers a plain extern "C" function that takes no arguments.
            unsafe { libc::atexit(run_exit_drops) };
        }
        drops.push(Box::new(move || {
            self.0.lock().unwrap_or_else(|e| e.into_inner()).take();
        }));
        value
    }
}
