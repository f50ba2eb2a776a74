//! `encc-exec`: the only program the host may start on Occlum ([`encc_exec::EXEC_PATH`]).
//! Reads the launch plan `init` left beside it, applies the launch rule to the host's argv
//! and environment (host arguments that differ from the image's only with
//! `allow_host_args`; host variables only when allowlisted), changes to the working
//! directory and replaces itself with the container program (`execve`, which Occlum 0.30
//! implements in `src/libos/src/process/do_exec.rs`; no fork). Exit 127 when the launch is
//! refused or the program is missing, 126 when it cannot be executed.

#![forbid(unsafe_code)]

use std::ffi::OsString;
use std::os::unix::process::CommandExt as _;
use std::process::{Command, ExitCode};

use encc_exec::{LaunchPlan, Process, PLAN_PATH};

fn main() -> ExitCode {
    match launch() {
        Ok(never) => match never {},
        Err((code, message)) => {
            eprintln!("encc-exec: {message}");
            ExitCode::from(code)
        }
    }
}

enum Never {}

fn launch() -> Result<Never, (u8, String)> {
    let refused = |m: String| (127, m);
    let bytes = std::fs::read(PLAN_PATH)
        .map_err(|e| refused(format!("cannot read the launch plan {PLAN_PATH}: {e}")))?;
    let plan = LaunchPlan::from_json(&bytes)
        .map_err(|e| refused(format!("{PLAN_PATH}: {}", chain(&e))))?;
    let argv = utf8(std::env::args_os(), "argument")?;
    // A host variable that is not UTF-8 is dropped like one outside the allowlist.
    let env: Vec<String> = std::env::vars_os()
        .filter_map(|(k, v)| {
            let mut entry = k;
            entry.push("=");
            entry.push(v);
            entry.into_string().ok()
        })
        .collect();
    // Host variables outside the allowlist (and Occlum's own env.default) are dropped
    // silently: this stderr is the container's.
    let process = plan
        .process(&argv, &env, |_| {})
        .map_err(|e| refused(e.to_string()))?;
    exec(&process)
}

/// An error and its causes on one line.
fn chain(error: &dyn std::error::Error) -> String {
    let mut text = error.to_string();
    let mut source = error.source();
    while let Some(cause) = source {
        text.push_str(&format!(": {cause}"));
        source = cause.source();
    }
    text
}

fn utf8(items: impl Iterator<Item = OsString>, what: &str) -> Result<Vec<String>, (u8, String)> {
    items
        .map(|s| {
            s.into_string()
                .map_err(|s| (127, format!("host {what} {s:?} is not UTF-8: refused")))
        })
        .collect()
}

fn exec(process: &Process) -> Result<Never, (u8, String)> {
    let Some((program, args)) = process.argv.split_first() else {
        return Err((127, "nothing to run".into()));
    };
    std::fs::create_dir_all(&process.cwd)
        .and_then(|()| std::env::set_current_dir(&process.cwd))
        .map_err(|e| {
            (
                127,
                format!(
                    "cannot change to the working directory {:?}: {e}",
                    process.cwd
                ),
            )
        })?;
    let mut command = Command::new(program);
    command.args(args).env_clear();
    for entry in &process.env {
        if let Some((name, value)) = entry.split_once('=') {
            command.env(name, value);
        }
    }
    let error = command.exec();
    let code = match error.kind() {
        std::io::ErrorKind::NotFound => 127,
        _ => 126,
    };
    Err((code, format!("exec: {program:?}: {error}")))
}
