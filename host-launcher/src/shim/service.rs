//! The task service containerd calls (task API v2 over ttrpc): the registry of the shim's
//! containers, their lifecycle, and the events published to containerd as runc-v2 publishes
//! them (`/tasks/create`, `/tasks/start`, `/tasks/exit`, `/tasks/delete`).

use std::collections::HashMap;
use std::fs::File;
use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime};

use containerd_shim::monitor::{ExitEvent, Subject, Topic};
use containerd_shim::protos::events::task::{TaskCreate, TaskDelete, TaskExit, TaskIO, TaskStart};
use containerd_shim::protos::protobuf::well_known_types::timestamp::Timestamp;
use containerd_shim::protos::protobuf::{MessageDyn, MessageField};
use containerd_shim::protos::ttrpc;
use containerd_shim::publisher::RemotePublisher;
use containerd_shim::{Context, ExitSignal};
use encc_interface::config::BootConfig;
use encc_interface::names::BOOT_CONFIG_FILE;

use super::channel::{self, Helper, Reply, Request, HOLDER_ROLE, RUNNER_ROLE};
use super::spec::{self, Bundle, Kind};
use super::task::{instance_dir, Status, StdioPaths, Task, TaskError};

/// How long Delete waits for a created container's enclave to be torn down.
const TEARDOWN: Duration = Duration::from_secs(30);

#[derive(Default)]
struct Registry {
    tasks: HashMap<String, Arc<Task>>,
    /// Exits of helpers not (yet) registered: a runner can end before Create registers it.
    early_exits: HashMap<u32, i32>,
}

/// Shared by the ttrpc handlers and the exit monitor.
pub struct Inner {
    namespace: String,
    publisher: RemotePublisher,
    exit: Arc<ExitSignal>,
    registry: Mutex<Registry>,
    /// The shim's log fifo: helpers' (and so the enclaves') stderr goes there.
    log: Option<File>,
}

/// The task service.
#[derive(Clone)]
pub struct Service(pub Arc<Inner>);

pub fn timestamp(at: SystemTime) -> Timestamp {
    let since = at
        .duration_since(SystemTime::UNIX_EPOCH)
        .unwrap_or_default();
    let mut ts = Timestamp::new();
    ts.seconds = i64::try_from(since.as_secs()).unwrap_or(i64::MAX);
    ts.nanos = i32::try_from(since.subsec_nanos()).unwrap_or(0);
    ts
}

impl Service {
    pub fn new(namespace: String, publisher: RemotePublisher, exit: Arc<ExitSignal>) -> Self {
        let log = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open("log")
            .ok();
        let inner = Arc::new(Inner {
            namespace,
            publisher,
            exit,
            registry: Mutex::new(Registry::default()),
            log,
        });
        let service = Self(inner);
        service.watch_exits();
        service
    }

    fn registry(&self) -> MutexGuard<'_, Registry> {
        self.0.registry.lock().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, id: &str) -> Result<Arc<Task>, TaskError> {
        self.registry()
            .tasks
            .get(id)
            .cloned()
            .ok_or_else(|| TaskError::NotFound(format!("container {id} not found")))
    }

    pub fn is_empty(&self) -> bool {
        self.registry().tasks.is_empty()
    }

    pub fn exit_signal(&self) -> &ExitSignal {
        &self.0.exit
    }

    pub fn publish(&self, topic: &str, event: Box<dyn MessageDyn>) {
        if let Err(e) =
            self.0
                .publisher
                .publish(Context::default(), topic, &self.0.namespace, event)
        {
            log::error!("cannot publish {topic}: {e}");
        }
    }

    /// Every helper exit the shim's reaper sees goes to its task.
    fn watch_exits(&self) {
        let subscription = match containerd_shim::monitor::monitor_subscribe(Topic::Pid) {
            Ok(s) => s,
            Err(e) => {
                log::error!("cannot subscribe to process exits: {e}");
                return;
            }
        };
        let service = self.clone();
        std::thread::spawn(move || {
            while let Ok(ExitEvent { subject, exit_code }) = subscription.rx.recv() {
                if let Subject::Pid(pid) = subject {
                    service.exited(pid as u32, exit_code);
                }
            }
        });
    }

    fn exited(&self, pid: u32, code: i32) {
        let task = {
            let mut registry = self.registry();
            let found = registry.tasks.values().find(|t| t.pid() == pid).cloned();
            if found.is_none() {
                registry.early_exits.insert(pid, code);
            }
            found
        };
        let Some(task) = task else { return };
        self.stop(&task, code);
    }

    fn stop(&self, task: &Task, code: i32) {
        let Some(before) = task.stopped(code) else {
            return;
        };
        log::info!(
            "container {} (pid {}) exited with {code}",
            task.id,
            task.pid()
        );
        if before != Status::Creating {
            let (code, at) = task
                .wait(Some(Duration::ZERO))
                .unwrap_or((255, SystemTime::now()));
            self.publish(
                "/tasks/exit",
                Box::new(TaskExit {
                    container_id: task.id.clone(),
                    id: task.id.clone(),
                    pid: task.pid(),
                    exit_status: code,
                    exited_at: MessageField::some(timestamp(at)),
                    ..Default::default()
                }),
            );
        }
    }

    fn register(&self, task: Arc<Task>) {
        let early = {
            let mut registry = self.registry();
            registry.tasks.insert(task.id.clone(), Arc::clone(&task));
            registry.early_exits.remove(&task.pid())
        };
        if let Some(code) = early {
            self.stop(&task, code);
        }
    }

    fn unregister(&self, id: &str) {
        self.registry().tasks.remove(id);
    }

    fn log_fd(&self) -> Option<OwnedFd> {
        self.0
            .log
            .as_ref()
            .and_then(|f| f.try_clone().ok())
            .map(OwnedFd::from)
    }

    /// Create: the helper, its namespaces, and for an application container the enclave
    /// boot (stage 1 runs here, so that a policy rejection or a failed pull is the error of
    /// Create, which `ctr` prints and CRI records as the container's status message).
    pub fn create_task(
        &self,
        id: &str,
        bundle: &Path,
        stdio: StdioPaths,
        options: Option<&containerd_shim::protos::protobuf::well_known_types::any::Any>,
    ) -> Result<u32, TaskError> {
        if self.registry().tasks.contains_key(id) {
            return Err(TaskError::Precondition(format!(
                "container {id} already exists"
            )));
        }
        let spec = Bundle::load(bundle).map_err(|e| TaskError::Failed(chain(&e)))?;
        let boot = match spec.kind {
            Kind::App => Some(self.prepare_boot(id, bundle, &spec, options)?),
            Kind::Sandbox => None,
        };
        let role = if boot.is_some() {
            RUNNER_ROLE
        } else {
            HOLDER_ROLE
        };
        let helper = Helper::spawn(role, self.log_fd())?;
        if let Err(e) = channel::write_pid_file(bundle, helper.pid()) {
            log::warn!("cannot write the helper pid into {}: {e}", bundle.display());
        }
        let namespaces = spec.namespaces.clone();
        let task = Arc::new(Task::new(
            id.to_owned(),
            bundle.to_owned(),
            stdio,
            spec,
            helper,
        ));
        self.register(Arc::clone(&task));
        let result = self.set_up(&task, namespaces, boot);
        if let Err(e) = result {
            // The helper exits after a failed answer; wait for it, so nothing is left.
            if task.wait(Some(TEARDOWN)).is_none() {
                let _ = nix::sys::signal::kill(
                    nix::unistd::Pid::from_raw(task.pid() as i32),
                    nix::sys::signal::Signal::SIGKILL,
                );
                task.wait(Some(TEARDOWN));
            }
            task.remove_files();
            self.unregister(id);
            return Err(e);
        }
        if !task.advance(Status::Created) {
            task.remove_files();
            self.unregister(id);
            return Err(TaskError::Failed(format!(
                "the encc helper of container {id} ended during create"
            )));
        }
        self.publish(
            "/tasks/create",
            Box::new(TaskCreate {
                container_id: id.to_owned(),
                bundle: bundle.display().to_string(),
                io: MessageField::some(TaskIO {
                    stdin: task.stdio.stdin.clone(),
                    stdout: task.stdio.stdout.clone(),
                    stderr: task.stdio.stderr.clone(),
                    terminal: false,
                    ..Default::default()
                }),
                pid: task.pid(),
                ..Default::default()
            }),
        );
        Ok(task.pid())
    }

    /// The boot request of an application container: its image and the node's boot config,
    /// copied into the container's PAL instance directory.
    fn prepare_boot(
        &self,
        id: &str,
        bundle: &Path,
        spec: &Bundle,
        options: Option<&containerd_shim::protos::protobuf::well_known_types::any::Any>,
    ) -> Result<Request, TaskError> {
        let image = spec.image(id).map_err(|e| TaskError::Failed(chain(&e)))?;
        let config = spec::boot_config(options).map_err(|e| TaskError::Failed(chain(&e)))?;
        BootConfig::load(&config).map_err(|e| TaskError::Failed(chain(&e)))?;
        let instance = instance_dir(bundle);
        let io = |what: String| move |source| TaskError::Io { what, source };
        std::fs::create_dir_all(&instance)
            .map_err(io(format!("cannot create {}", instance.display())))?;
        std::fs::copy(&config, instance.join(BOOT_CONFIG_FILE)).map_err(io(format!(
            "cannot copy the boot config {} into {}",
            config.display(),
            instance.display()
        )))?;
        Ok(Request::Boot {
            instance,
            image,
            pal: pal_library(),
        })
    }

    fn set_up(
        &self,
        task: &Task,
        namespaces: spec::Namespaces,
        boot: Option<Request>,
    ) -> Result<(), TaskError> {
        let expect_done = |reply| match reply {
            Reply::Done => Ok(()),
            Reply::Failed { message } => Err(TaskError::Failed(message)),
            other => Err(TaskError::Failed(format!("unexpected answer {other:?}"))),
        };
        expect_done(task.helper.call(&Request::Setup { namespaces }, &[])?)?;
        let Some(boot) = boot else { return Ok(()) };
        match task.helper.call(&boot, &[])? {
            Reply::Ready { entry_program, .. } => {
                log::info!(
                    "container {}: enclave ready, entry {entry_program}",
                    task.id
                );
                Ok(())
            }
            Reply::Failed { message } => Err(TaskError::Failed(message)),
            other => Err(TaskError::Failed(format!("unexpected answer {other:?}"))),
        }
    }

    /// Start: the entry program (application container) or nothing more (sandbox).
    pub fn start_task(&self, id: &str) -> Result<u32, TaskError> {
        let task = self.get(id)?;
        if task.status() != Status::Created {
            return Err(TaskError::Precondition(format!(
                "container {id} is not in the created state"
            )));
        }
        if task.kind == Kind::App {
            match task.start_runner() {
                Ok(pid) => log::info!("container {id}: entry program runs as pid {pid}"),
                Err(e) => {
                    // The runner destroys the enclave and exits: the task is stopped (and
                    // its exit published) before the error reaches containerd, so a client
                    // that deletes it right away finds it stopped.
                    task.wait(Some(TEARDOWN));
                    return Err(e);
                }
            }
        }
        task.advance(Status::Running);
        self.publish(
            "/tasks/start",
            Box::new(TaskStart {
                container_id: id.to_owned(),
                pid: task.pid(),
                ..Default::default()
            }),
        );
        Ok(task.pid())
    }

    /// Kill with the signal's own semantics: SIGTERM and SIGKILL reach the container in
    /// its enclave (the PAL ABI forwards only these); a sandbox holder gets any signal.
    pub fn kill_task(&self, id: &str, signal: u32, all: bool) -> Result<(), TaskError> {
        let task = self.get(id)?;
        if let Status::Stopped { .. } = task.status() {
            return Err(TaskError::NotFound(format!(
                "container {id}: process already finished"
            )));
        }
        let signal = i32::try_from(signal)
            .map_err(|_| TaskError::Invalid(format!("{signal} is not a signal")))?;
        if task.kind == Kind::Sandbox {
            let sig = nix::sys::signal::Signal::try_from(signal)
                .map_err(|_| TaskError::Invalid(format!("{signal} is not a signal")))?;
            return nix::sys::signal::kill(nix::unistd::Pid::from_raw(task.pid() as i32), sig)
                .map_err(|e| TaskError::NotFound(format!("container {id}: {e}")));
        }
        match task.helper.call(&Request::Kill { signal, all }, &[]) {
            Ok(Reply::Done) => Ok(()),
            Ok(Reply::Failed { message }) => Err(TaskError::Invalid(message)),
            Ok(other) => Err(TaskError::Failed(format!("unexpected answer {other:?}"))),
            // The runner ended meanwhile: the signal has nothing left to reach.
            Err(_) if task.wait(Some(Duration::from_secs(5))).is_some() => Ok(()),
            Err(e) => Err(e.into()),
        }
    }

    /// Delete: a stopped container (or a created one, whose enclave is torn down first).
    pub fn delete_task(&self, id: &str) -> Result<(u32, u32, SystemTime), TaskError> {
        let task = self.get(id)?;
        match task.status() {
            Status::Running => {
                return Err(TaskError::Precondition(format!(
                    "container {id} is running: kill it first"
                )))
            }
            Status::Created | Status::Creating => {
                self.kill_task(id, libc::SIGKILL as u32, true).ok();
            }
            Status::Stopped { .. } => {}
        }
        let Some((code, at)) = task.wait(Some(TEARDOWN)) else {
            return Err(TaskError::Failed(format!(
                "container {id}: its encc helper {} did not end",
                task.pid()
            )));
        };
        task.remove_files();
        self.unregister(id);
        self.publish(
            "/tasks/delete",
            Box::new(TaskDelete {
                container_id: id.to_owned(),
                id: id.to_owned(),
                pid: task.pid(),
                exit_status: code,
                exited_at: MessageField::some(timestamp(at)),
                ..Default::default()
            }),
        );
        Ok((task.pid(), code, at))
    }
}

/// `libencc_pal.so` beside this program (as `encc-launch` finds it).
fn pal_library() -> PathBuf {
    std::env::current_exe()
        .ok()
        .and_then(|exe| exe.parent().map(|d| d.join("libencc_pal.so")))
        .unwrap_or_else(|| PathBuf::from("libencc_pal.so"))
}

/// An error and its causes, one line (the user sees this in `ctr` and the pod status).
pub use encc_pal::error_chain as chain;

/// The ttrpc status for a task error.
pub fn rpc_error(e: &TaskError) -> ttrpc::Error {
    let code = match e {
        TaskError::NotFound(_) => ttrpc::Code::NOT_FOUND,
        TaskError::Precondition(_) => ttrpc::Code::FAILED_PRECONDITION,
        TaskError::Invalid(_) => ttrpc::Code::INVALID_ARGUMENT,
        TaskError::Failed(_) | TaskError::Helper(_) | TaskError::Io { .. } => ttrpc::Code::UNKNOWN,
    };
    ttrpc::Error::RpcStatus(ttrpc::get_status(code, chain(e)))
}
