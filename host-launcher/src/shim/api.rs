//! The ttrpc handlers of task API v2: each one unpacks its request, calls the
//! [`Service`](super::service::Service) and packs the answer.

use containerd_shim::api::{
    CloseIORequest, ConnectRequest, ConnectResponse, CreateTaskRequest, CreateTaskResponse,
    DeleteRequest, Empty, ExecProcessRequest, KillRequest, PidsRequest, PidsResponse,
    ResizePtyRequest, ShutdownRequest, StartRequest, StartResponse, StateRequest, StateResponse,
    StatsRequest, StatsResponse, Status as TaskStatus, WaitRequest, WaitResponse,
};
use containerd_shim::protos::cgroups::metrics::{
    CPUStat, CPUUsage, MemoryEntry, MemoryStat, Metrics, PidsStat,
};
use containerd_shim::protos::protobuf::well_known_types::any::Any;
use containerd_shim::protos::protobuf::{Message, MessageField};
use containerd_shim::protos::shim::shim::{
    CheckpointTaskRequest, PauseRequest, ResumeRequest, UpdateTaskRequest,
};
use containerd_shim::protos::ttrpc;
use containerd_shim::protos::types::task::ProcessInfo;
use containerd_shim::{DeleteResponse, Task, TtrpcContext, TtrpcResult};

use super::procfs;
use super::service::{rpc_error, timestamp, Service};
use super::task::{Status, StdioPaths, TaskError};

/// Exec is refused: an encc container's only process is the image's entry program.
pub const EXEC_REFUSED: &str = "exec into an encc confidential container is not allowed";

fn no_exec(exec_id: &str) -> TtrpcResult<()> {
    match exec_id.is_empty() {
        true => Ok(()),
        false => Err(rpc_error(&TaskError::NotFound(format!(
            "process {exec_id} not found: {EXEC_REFUSED}"
        )))),
    }
}

fn unimplemented(what: &str) -> ttrpc::Error {
    ttrpc::Error::RpcStatus(ttrpc::get_status(
        ttrpc::Code::UNIMPLEMENTED,
        format!("{what} is not implemented by the encc runtime"),
    ))
}

impl Task for Service {
    fn create(&self, _: &TtrpcContext, req: CreateTaskRequest) -> TtrpcResult<CreateTaskResponse> {
        if req.terminal {
            return Err(rpc_error(&TaskError::Invalid(
                "a terminal (tty) is not supported by the encc runtime; run without -t".into(),
            )));
        }
        if !req.checkpoint.is_empty() {
            return Err(unimplemented("restoring a checkpoint"));
        }
        let stdio = StdioPaths {
            stdin: req.stdin.clone(),
            stdout: req.stdout.clone(),
            stderr: req.stderr.clone(),
        };
        let bundle = std::path::PathBuf::from(&req.bundle);
        let pid = self
            .create_task(&req.id, &bundle, stdio, req.options.as_ref())
            .map_err(|e| {
                log::error!("create {}: {}", req.id, super::service::chain(&e));
                rpc_error(&e)
            })?;
        Ok(CreateTaskResponse {
            pid,
            ..Default::default()
        })
    }

    fn start(&self, _: &TtrpcContext, req: StartRequest) -> TtrpcResult<StartResponse> {
        no_exec(&req.exec_id)?;
        let pid = self.start_task(&req.id).map_err(|e| {
            log::error!("start {}: {}", req.id, super::service::chain(&e));
            rpc_error(&e)
        })?;
        Ok(StartResponse {
            pid,
            ..Default::default()
        })
    }

    fn state(&self, _: &TtrpcContext, req: StateRequest) -> TtrpcResult<StateResponse> {
        no_exec(&req.exec_id)?;
        let task = self.get(&req.id).map_err(|e| rpc_error(&e))?;
        let mut resp = StateResponse {
            id: task.id.clone(),
            bundle: task.bundle.display().to_string(),
            pid: task.pid(),
            stdin: task.stdio.stdin.clone(),
            stdout: task.stdio.stdout.clone(),
            stderr: task.stdio.stderr.clone(),
            ..Default::default()
        };
        let status = match task.status() {
            Status::Creating | Status::Created => TaskStatus::CREATED,
            Status::Running => TaskStatus::RUNNING,
            Status::Stopped { code, at } => {
                resp.exit_status = code;
                resp.exited_at = MessageField::some(timestamp(at));
                TaskStatus::STOPPED
            }
        };
        resp.status = status.into();
        Ok(resp)
    }

    fn wait(&self, _: &TtrpcContext, req: WaitRequest) -> TtrpcResult<WaitResponse> {
        no_exec(&req.exec_id)?;
        let task = self.get(&req.id).map_err(|e| rpc_error(&e))?;
        let (code, at) = task
            .wait(None)
            .unwrap_or((255, std::time::SystemTime::now()));
        Ok(WaitResponse {
            exit_status: code,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    fn kill(&self, _: &TtrpcContext, req: KillRequest) -> TtrpcResult<Empty> {
        no_exec(&req.exec_id)?;
        self.kill_task(&req.id, req.signal, req.all)
            .map_err(|e| rpc_error(&e))?;
        Ok(Empty::new())
    }

    fn delete(&self, _: &TtrpcContext, req: DeleteRequest) -> TtrpcResult<DeleteResponse> {
        no_exec(&req.exec_id)?;
        let (pid, code, at) = self.delete_task(&req.id).map_err(|e| rpc_error(&e))?;
        Ok(DeleteResponse {
            pid,
            exit_status: code,
            exited_at: MessageField::some(timestamp(at)),
            ..Default::default()
        })
    }

    fn pids(&self, _: &TtrpcContext, req: PidsRequest) -> TtrpcResult<PidsResponse> {
        let task = self.get(&req.id).map_err(|e| rpc_error(&e))?;
        let processes = match task.status() {
            Status::Stopped { .. } => Vec::new(),
            _ => procfs::tree(task.pid())
                .into_iter()
                .map(|pid| ProcessInfo {
                    pid,
                    ..Default::default()
                })
                .collect(),
        };
        Ok(PidsResponse {
            processes,
            ..Default::default()
        })
    }

    fn stats(&self, _: &TtrpcContext, req: StatsRequest) -> TtrpcResult<StatsResponse> {
        let task = self.get(&req.id).map_err(|e| rpc_error(&e))?;
        // What the host knows without the container's cgroup: its processes, their CPU
        // time and resident memory (an enclave's memory is the host's to count, not to read).
        let (pids, cpu_ns, rss) = match task.status() {
            Status::Stopped { .. } => (0, 0, 0),
            _ => procfs::totals(task.pid()),
        };
        let metrics = Metrics {
            pids: MessageField::some(PidsStat {
                current: pids,
                ..Default::default()
            }),
            cpu: MessageField::some(CPUStat {
                usage: MessageField::some(CPUUsage {
                    total: cpu_ns,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            memory: MessageField::some(MemoryStat {
                rss,
                usage: MessageField::some(MemoryEntry {
                    usage: rss,
                    ..Default::default()
                }),
                ..Default::default()
            }),
            ..Default::default()
        };
        let value = metrics
            .write_to_bytes()
            .map_err(|e| rpc_error(&TaskError::Failed(e.to_string())))?;
        let mut any = Any::new();
        any.type_url = "io.containerd.cgroups.v1.Metrics".into();
        any.value = value;
        Ok(StatsResponse {
            stats: MessageField::some(any),
            ..Default::default()
        })
    }

    fn connect(&self, _: &TtrpcContext, req: ConnectRequest) -> TtrpcResult<ConnectResponse> {
        let task_pid = self.get(&req.id).map(|t| t.pid()).unwrap_or(0);
        Ok(ConnectResponse {
            shim_pid: std::process::id(),
            task_pid,
            version: env!("CARGO_PKG_VERSION").into(),
            ..Default::default()
        })
    }

    fn shutdown(&self, _: &TtrpcContext, _: ShutdownRequest) -> TtrpcResult<Empty> {
        if self.is_empty() {
            log::info!("no containers left: the shim exits");
            self.exit_signal().signal();
        }
        Ok(Empty::new())
    }

    fn close_io(&self, _: &TtrpcContext, req: CloseIORequest) -> TtrpcResult<Empty> {
        no_exec(&req.exec_id)?;
        let task = self.get(&req.id).map_err(|e| rpc_error(&e))?;
        if req.stdin {
            task.close_stdin();
        }
        Ok(Empty::new())
    }

    fn resize_pty(&self, _: &TtrpcContext, req: ResizePtyRequest) -> TtrpcResult<Empty> {
        no_exec(&req.exec_id)?;
        // No terminal is ever attached (Create refuses one), so there is nothing to resize,
        // as with runc-v2 for a process without a console.
        self.get(&req.id).map_err(|e| rpc_error(&e))?;
        Ok(Empty::new())
    }

    fn exec(&self, _: &TtrpcContext, req: ExecProcessRequest) -> TtrpcResult<Empty> {
        log::warn!("exec {} into container {} refused", req.exec_id, req.id);
        Err(ttrpc::Error::RpcStatus(ttrpc::get_status(
            ttrpc::Code::PERMISSION_DENIED,
            EXEC_REFUSED,
        )))
    }

    fn pause(&self, _: &TtrpcContext, _: PauseRequest) -> TtrpcResult<Empty> {
        Err(unimplemented("pause"))
    }

    fn resume(&self, _: &TtrpcContext, _: ResumeRequest) -> TtrpcResult<Empty> {
        Err(unimplemented("resume"))
    }

    fn checkpoint(&self, _: &TtrpcContext, _: CheckpointTaskRequest) -> TtrpcResult<Empty> {
        Err(unimplemented("checkpoint"))
    }

    fn update(&self, _: &TtrpcContext, _: UpdateTaskRequest) -> TtrpcResult<Empty> {
        Err(unimplemented("update"))
    }
}
