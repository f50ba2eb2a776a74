//! From the image config, the trusted boot config and the untrusted launch request to the
//! process that runs, by the rule in [`encc_exec`] that both platforms share: argv =
//! Entrypoint + Cmd (a host argv equal to the image's is not an override; any other needs
//! `allow_host_args`); env = image Env, then trusted env, then allowlisted host env, with
//! default `PATH`, `HOSTNAME` and `HOME`; working dir from the image. On Occlum `init`
//! writes the [`LaunchPlan`] into the lower layer and `encc-exec` applies it there.

use encc_exec::LaunchPlan;
use encc_rootfs::container::ProcessSpec;
use encc_stage1::manifest::RunConfig;

use crate::config::BootConfig;

pub use encc_exec::ArgvError as LaunchError;

/// `PATH` when the image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the host asks for (untrusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchRequest {
    /// The full argv the host passed, `argv[0]` included (empty or `argv[0]` alone: the
    /// image's own).
    pub argv: Vec<String>,
    /// Host environment, `NAME=value`.
    pub env: Vec<String>,
}

/// The program the image starts: `Entrypoint[0]`, else `Cmd[0]` (what the native platform's
/// entry point check compares `create_process`'s path with).
pub fn entry_program(image: &RunConfig) -> Option<&str> {
    image
        .entrypoint
        .iter()
        .chain(image.cmd.iter())
        .flatten()
        .next()
        .map(String::as_str)
}

/// Everything about the container process but the host's request. `home` is the image
/// user's home directory.
pub fn launch_plan(image: &RunConfig, boot: &BootConfig, home: &str) -> LaunchPlan {
    let env = image
        .env
        .iter()
        .flatten()
        .chain(&boot.env)
        .cloned()
        .collect();
    let cwd = image
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".into());
    LaunchPlan {
        entrypoint: image.entrypoint.clone().unwrap_or_default(),
        cmd: image.cmd.clone().unwrap_or_default(),
        env,
        env_allowlist: boot.env_allowlist.clone(),
        env_defaults: vec![
            format!("PATH={DEFAULT_PATH}"),
            format!("HOSTNAME={}", boot.hostname),
            format!("HOME={home}"),
        ],
        cwd,
        allow_host_args: boot.allow_host_args,
    }
}

/// Composes the container process on the native platform.
pub fn compose(
    image: &RunConfig,
    boot: &BootConfig,
    request: &LaunchRequest,
    home: &str,
) -> Result<ProcessSpec, LaunchError> {
    let mut dropped = Vec::new();
    let process = launch_plan(image, boot, home).process(&request.argv, &request.env, |name| {
        dropped.push(name.to_owned())
    })?;
    if !dropped.is_empty() {
        log::debug!(
            "{} host environment variables dropped (not in env_allowlist): {}",
            dropped.len(),
            dropped.join(", ")
        );
    }
    Ok(ProcessSpec {
        argv: process.argv,
        env: process.env,
        cwd: process.cwd,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn boot(json: &str) -> BootConfig {
        BootConfig::parse(json.as_bytes(), "t").unwrap()
    }

    fn image() -> RunConfig {
        RunConfig {
            entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
            cmd: Some(vec!["echo hi".into()]),
            env: Some(vec![
                "PATH=/bin".into(),
                "A=image".into(),
                "B=image".into(),
                "C=image".into(),
            ]),
            working_dir: Some("/home/user".into()),
            ..RunConfig::default()
        }
    }

    #[test]
    fn env_precedence_image_then_trusted_then_allowlisted_host() {
        let b = boot(
            r#"{"store": "/s", "insecure_policy": true, "env": ["B=trusted", "C=trusted"], "env_allowlist": ["C", "D"]}"#,
        );
        let req = LaunchRequest {
            argv: vec![],
            env: vec![
                "A=host".into(),
                "C=host".into(),
                "D=host".into(),
                "E=host".into(),
            ],
        };
        let spec = compose(&image(), &b, &req, "/home/user").unwrap();
        assert_eq!(
            spec.env,
            [
                "PATH=/bin",
                "A=image",
                "B=trusted",
                "C=host",
                "D=host",
                "HOSTNAME=encc",
                "HOME=/home/user"
            ]
        );
        assert_eq!(spec.argv, ["/bin/sh", "-c", "echo hi"]);
        assert_eq!(spec.cwd, "/home/user");
    }

    #[test]
    fn host_args_replace_cmd_only_when_allowed() {
        let req = LaunchRequest {
            argv: vec!["/bin/sh".into(), "echo other".into()],
            env: vec![],
        };
        let strict = boot(r#"{"store": "/s", "insecure_policy": true}"#);
        assert_eq!(
            compose(&image(), &strict, &req, "/"),
            Err(LaunchError::HostArgs(vec!["echo other".into()]))
        );
        let open = boot(r#"{"store": "/s", "insecure_policy": true, "allow_host_args": true}"#);
        assert_eq!(
            compose(&image(), &open, &req, "/").unwrap().argv,
            ["/bin/sh", "-c", "echo other"]
        );
    }

    #[test]
    fn the_images_own_argv_is_accepted_without_allow_host_args() {
        let strict = boot(r#"{"store": "/s", "insecure_policy": true}"#);
        // rune and containerd pass the OCI process args: the image's Entrypoint + Cmd.
        let own = LaunchRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), "echo hi".into()],
            env: vec![],
        };
        assert_eq!(
            compose(&image(), &strict, &own, "/").unwrap().argv,
            ["/bin/sh", "-c", "echo hi"]
        );
        let other = LaunchRequest {
            argv: vec!["/bin/sh".into(), "-c".into(), "cat /secret".into()],
            env: vec![],
        };
        assert_eq!(
            compose(&image(), &strict, &other, "/"),
            Err(LaunchError::HostArgs(vec![
                "-c".into(),
                "cat /secret".into()
            ]))
        );
    }

    #[test]
    fn defaults_when_the_image_sets_little() {
        let b = boot(r#"{"store": "/s", "insecure_policy": true}"#);
        let bare = RunConfig {
            cmd: Some(vec!["true".into()]),
            ..RunConfig::default()
        };
        let spec = compose(&bare, &b, &LaunchRequest::default(), "/root").unwrap();
        assert_eq!(spec.env[0], format!("PATH={DEFAULT_PATH}"));
        assert_eq!(spec.cwd, "/");
        assert_eq!(entry_program(&bare), Some("true"));
        assert_eq!(
            compose(&RunConfig::default(), &b, &LaunchRequest::default(), "/"),
            Err(LaunchError::NoCommand)
        );
    }
}
