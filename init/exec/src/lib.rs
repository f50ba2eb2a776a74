//! What the host may change about the container process, on both platforms: the launch rule
//! (argv and environment from the image, the trusted boot config and the untrusted host
//! request) and, on Occlum, the launch plan that `init` leaves for `encc-exec`.
//!
//! On Occlum the host starts processes with `occlum_pal_create_process(path, argv, env)`
//! straight into the LibOS, and the only check there is Occlum's entry-point prefix. So
//! `init` makes the exact path of `encc-exec` ([`EXEC_PATH`]) the only entry point and writes
//! the plan composed from the verified image config and the boot config beside it
//! ([`PLAN_PATH`]); both live in the lower layer (SEFS, encrypted and MAC'd by the LibOS) and
//! come from the measured initfs and the verified image. `encc-exec` applies the same rule
//! as the native platform's `compose` to the host's argv and environment, then `execve`s.

#![forbid(unsafe_code)]

use serde::{Deserialize, Serialize};

/// Where `encc-exec` lives after the root swap: the only Occlum entry point.
pub const EXEC_PATH: &str = "/.encc/exec";
/// Where the launch plan lives after the root swap.
pub const PLAN_PATH: &str = "/.encc/plan.json";
/// The directory of encc's files in the lower layer.
pub const ENCC_DIR: &str = "/.encc";
/// The loader and C library `encc-exec` runs with (linked with this rpath and interpreter).
pub const LIB_DIR: &str = "/.encc/lib";
/// Where the initfs holds `encc-exec` (the rendered copy_bom puts it there); `init` copies
/// it into the lower layer at [`EXEC_PATH`].
pub const INITFS_EXEC_PATH: &str = "/bin/encc-exec";

/// A request the boot config does not allow, or nothing to run.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum ArgvError {
    /// Host arguments that differ from the image's, but `allow_host_args` is false.
    #[error("host arguments {0:?} are refused: the boot config does not set allow_host_args")]
    HostArgs(Vec<String>),
    /// A host argv naming another program than the image's Entrypoint.
    #[error(
        "host argv {argv:?} would replace the image's Entrypoint {entrypoint:?}: the host may \
         replace Cmd (with allow_host_args), never the Entrypoint"
    )]
    Entrypoint {
        /// The host's argv.
        argv: Vec<String>,
        /// The image's Entrypoint.
        entrypoint: Vec<String>,
    },
    /// Neither Entrypoint nor Cmd nor host args.
    #[error("the image has no Entrypoint or Cmd and no arguments were given")]
    NoCommand,
}

/// The argv the container process runs with.
///
/// `host_argv` is the full argv the host passed, `argv[0]` included, as the PAL ABI carries
/// it: rune and containerd pass the OCI process's args (normally the image's own
/// `Entrypoint + Cmd`), `encc-launch` and `init` pass `[entry program, ARGS...]`. The rule:
/// - an `argv[0]` that names the image's program (the image's `argv[0]`, or [`EXEC_PATH`],
///   the only entry point on Occlum, or its base name, which `occlum run` passes) with no further arguments or the image's own: the
///   image's `Entrypoint + Cmd` (not an override, accepted without `allow_host_args`);
/// - any other arguments after it are an override and need `allow_host_args`. The process
///   runs the image's program with them: `Entrypoint + tail`, where `tail` is the arguments
///   without a leading copy of `Entrypoint[1..]` (a full OCI argv `Entrypoint + new Cmd`),
///   else all of them (they replace `Cmd`, as with `docker run IMAGE ARGS`); without an
///   `Entrypoint`, `Cmd[0]` followed by all of them;
/// - an `argv[0]` that names another program is a full argv of the host's own: for an image
///   without an `Entrypoint` it replaces the whole `Cmd` (an override, run as given); an
///   image's `Entrypoint` is never replaced (an OCI `command` that would is refused).
pub fn compose_argv(
    entrypoint: &[String],
    cmd: &[String],
    host_argv: &[String],
    allow_host_args: bool,
) -> Result<Vec<String>, ArgvError> {
    let image: Vec<String> = entrypoint.iter().chain(cmd).cloned().collect();
    let program = image.first();
    let names_image_program = match host_argv.first() {
        None => true,
        Some(name) => Some(name) == program || names_exec(name),
    };
    let args = host_argv.get(1..).unwrap_or_default();
    if names_image_program && (args.is_empty() || Some(args) == image.get(1..)) {
        return match image.is_empty() {
            true => Err(ArgvError::NoCommand),
            false => Ok(image),
        };
    }
    if !names_image_program && !entrypoint.is_empty() {
        return Err(ArgvError::Entrypoint {
            argv: host_argv.to_vec(),
            entrypoint: entrypoint.to_vec(),
        });
    }
    if !allow_host_args {
        return Err(ArgvError::HostArgs(match names_image_program {
            true => args.to_vec(),
            false => host_argv.to_vec(),
        }));
    }
    if !names_image_program {
        return Ok(host_argv.to_vec());
    }
    let argv: Vec<String> = match entrypoint.split_first() {
        Some((_, rest)) => {
            let tail = match args.strip_prefix(rest) {
                Some(tail) if !rest.is_empty() => tail,
                _ => args,
            };
            entrypoint.iter().chain(tail).cloned().collect()
        }
        None => program.into_iter().chain(args).cloned().collect(),
    };
    match argv.is_empty() {
        true => Err(ArgvError::NoCommand),
        false => Ok(argv),
    }
}

/// Whether `name` is encc-exec's path or its base name (`occlum run` passes the program's
/// base name as `argv[0]`).
fn names_exec(name: &str) -> bool {
    name == EXEC_PATH
        || EXEC_PATH
            .rsplit_once('/')
            .is_some_and(|(_, base)| name == base)
}

/// The name part of a `NAME=value` entry.
fn name_of(entry: &str) -> &str {
    entry.split_once('=').map_or(entry, |(n, _)| n)
}

/// The container environment: `base` (the image's `Env`, then the boot config's `env`; a
/// later entry replaces an earlier one of the same name), then the host entries whose names
/// are in `allowlist`, then each of `defaults` whose name is still unset. Host entries that
/// are not allowlisted or not `NAME=value` are dropped and reported through `dropped`.
pub fn compose_env(
    base: &[String],
    allowlist: &[String],
    host_env: &[String],
    defaults: &[String],
    mut dropped: impl FnMut(&str),
) -> Vec<String> {
    let mut env: Vec<String> = Vec::new();
    let set = |env: &mut Vec<String>, entry: &str| {
        env.retain(|e| name_of(e) != name_of(entry));
        env.push(entry.to_owned());
    };
    for entry in base {
        set(&mut env, entry);
    }
    for entry in host_env {
        match entry.split_once('=') {
            Some((name, _)) if allowlist.iter().any(|a| a == name) => set(&mut env, entry),
            Some((name, _)) => dropped(name),
            None => dropped(entry),
        }
    }
    for default in defaults {
        if !env.iter().any(|e| name_of(e) == name_of(default)) {
            match name_of(default) {
                // PATH first, as docker puts it.
                "PATH" => env.insert(0, default.clone()),
                _ => env.push(default.clone()),
            }
        }
    }
    env
}

/// What `init` composed for the container process on Occlum: everything but the host's
/// part, which `encc-exec` adds with [`LaunchPlan::process`].
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LaunchPlan {
    /// The image's `Entrypoint`.
    pub entrypoint: Vec<String>,
    /// The image's `Cmd`.
    pub cmd: Vec<String>,
    /// The image's `Env`, then the boot config's `env`.
    pub env: Vec<String>,
    /// Host variables that may pass (the boot config's `env_allowlist`).
    pub env_allowlist: Vec<String>,
    /// `NAME=value` entries set when still unset (`PATH`, `HOSTNAME`, `HOME`).
    pub env_defaults: Vec<String>,
    /// The working directory.
    pub cwd: String,
    /// Whether host arguments may differ from the image's.
    pub allow_host_args: bool,
}

/// The process to execute.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Process {
    /// argv, `argv[0]` the program.
    pub argv: Vec<String>,
    /// `NAME=value` entries.
    pub env: Vec<String>,
    /// Working directory.
    pub cwd: String,
}

/// A launch plan that cannot be read.
#[derive(Debug, thiserror::Error)]
pub enum PlanError {
    /// Not valid plan JSON.
    #[error("the launch plan is not valid")]
    Parse(#[source] serde_json::Error),
}

impl LaunchPlan {
    /// The process for the host's argv and environment (untrusted).
    pub fn process(
        &self,
        host_argv: &[String],
        host_env: &[String],
        dropped: impl FnMut(&str),
    ) -> Result<Process, ArgvError> {
        let argv = compose_argv(&self.entrypoint, &self.cmd, host_argv, self.allow_host_args)?;
        let env = compose_env(
            &self.env,
            &self.env_allowlist,
            host_env,
            &self.env_defaults,
            dropped,
        );
        Ok(Process {
            argv,
            env,
            cwd: self.cwd.clone(),
        })
    }

    /// The plan as `init` writes it.
    pub fn to_json(&self) -> Vec<u8> {
        // A struct of strings, bools and vectors always serializes.
        serde_json::to_vec_pretty(self).unwrap_or_default()
    }

    /// Reads a plan written by [`LaunchPlan::to_json`].
    pub fn from_json(bytes: &[u8]) -> Result<Self, PlanError> {
        serde_json::from_slice(bytes).map_err(PlanError::Parse)
    }
}

#[cfg(test)]
mod tests;
