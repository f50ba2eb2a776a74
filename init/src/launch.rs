//! From the image config, the trusted boot config and the untrusted launch request to the
//! process that runs: argv = Entrypoint + Cmd (host args replace Cmd only when the boot
//! config allows it); env = image Env, then trusted env, then allowlisted host env, with a
//! default `PATH` and `HOME`; working dir from the image.

use encc_rootfs::container::ProcessSpec;
use encc_stage1::manifest::RunConfig;

use crate::config::BootConfig;

/// `PATH` when the image sets none (docker's default).
pub const DEFAULT_PATH: &str = "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin";

/// What the host asks for (untrusted).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LaunchRequest {
    /// Arguments replacing the image's `Cmd` (empty: keep `Cmd`).
    pub args: Vec<String>,
    /// Host environment, `NAME=value`.
    pub env: Vec<String>,
}

/// A request the boot config does not allow.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum LaunchError {
    /// Host arguments given but `allow_host_args` is false.
    #[error("host arguments {0:?} are refused: the boot config does not set allow_host_args")]
    HostArgs(Vec<String>),
    /// Neither Entrypoint nor Cmd nor host args.
    #[error("the image has no Entrypoint or Cmd and no arguments were given")]
    NoCommand,
}

/// The program the image starts: Entrypoint[0], else Cmd[0] (what Occlum's entry point
/// check compares `create_process`'s path with).
pub fn entry_program(image: &RunConfig) -> Option<&str> {
    image
        .entrypoint
        .iter()
        .chain(image.cmd.iter())
        .flatten()
        .next()
        .map(String::as_str)
}

/// Composes the container process. `home` is the image user's home directory.
pub fn compose(
    image: &RunConfig,
    boot: &BootConfig,
    request: &LaunchRequest,
    home: &str,
) -> Result<ProcessSpec, LaunchError> {
    if !request.args.is_empty() && !boot.allow_host_args {
        return Err(LaunchError::HostArgs(request.args.clone()));
    }
    let mut argv: Vec<String> = image.entrypoint.clone().unwrap_or_default();
    if request.args.is_empty() {
        argv.extend(image.cmd.clone().unwrap_or_default());
    } else {
        argv.extend(request.args.iter().cloned());
    }
    if argv.is_empty() {
        return Err(LaunchError::NoCommand);
    }

    let mut env: Vec<String> = Vec::new();
    let mut set = |entry: &str| {
        let name = entry.split_once('=').map_or(entry, |(n, _)| n);
        env.retain(|e| e.split_once('=').map_or(e.as_str(), |(n, _)| n) != name);
        env.push(entry.to_owned());
    };
    for entry in image.env.iter().flatten() {
        set(entry);
    }
    for entry in &boot.env {
        set(entry);
    }
    for entry in &request.env {
        match entry.split_once('=') {
            Some((name, _)) if boot.env_allowlist.iter().any(|a| a == name) => set(entry),
            Some((name, _)) => {
                log::info!("host environment variable {name} dropped (not in env_allowlist)")
            }
            None => log::info!("host environment entry {entry:?} dropped (not NAME=value)"),
        }
    }
    let has = |env: &[String], name: &str| env.iter().any(|e| e.starts_with(&format!("{name}=")));
    if !has(&env, "PATH") {
        env.insert(0, format!("PATH={DEFAULT_PATH}"));
    }
    if !has(&env, "HOSTNAME") {
        env.push(format!("HOSTNAME={}", boot.hostname));
    }
    if !has(&env, "HOME") {
        env.push(format!("HOME={home}"));
    }

    let cwd = image
        .working_dir
        .clone()
        .filter(|d| !d.is_empty())
        .unwrap_or_else(|| "/".into());
    Ok(ProcessSpec { argv, env, cwd })
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
            args: vec![],
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
            args: vec!["echo other".into()],
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
