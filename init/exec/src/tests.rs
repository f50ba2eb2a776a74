use super::*;

fn s(items: &[&str]) -> Vec<String> {
    items.iter().map(|s| s.to_string()).collect()
}

/// The busybox fixture: Entrypoint ["/bin/sh", "-c"], Cmd ["echo hello"].
fn busybox(host: &[&str], allow: bool) -> Result<Vec<String>, ArgvError> {
    compose_argv(&s(&["/bin/sh", "-c"]), &s(&["echo hello"]), &s(host), allow)
}

#[test]
fn the_image_argv_from_the_host_is_not_an_override() {
    let image = s(&["/bin/sh", "-c", "echo hello"]);
    // rune and containerd: the OCI process args, equal to Entrypoint + Cmd.
    assert_eq!(
        busybox(&["/bin/sh", "-c", "echo hello"], false),
        Ok(image.clone())
    );
    // argv[0] is only a name (on Occlum it is encc-exec's path).
    assert_eq!(
        busybox(&[EXEC_PATH, "-c", "echo hello"], false),
        Ok(image.clone())
    );
    // encc-launch and init without arguments.
    assert_eq!(busybox(&["/bin/sh"], false), Ok(image.clone()));
    assert_eq!(busybox(&[], false), Ok(image));
}

#[test]
fn other_arguments_need_allow_host_args() {
    for host in [
        &["/bin/sh", "-c", "cat /secret"][..],
        &["/bin/sh", "echo hello"],
        &["/bin/sh", "-c", "echo hello", "extra"],
        &["/bin/sh", "-c"],
    ] {
        let args = s(&host[1..]);
        assert_eq!(
            busybox(host, false),
            Err(ArgvError::HostArgs(args)),
            "{host:?}"
        );
    }
}

#[test]
fn allowed_overrides_replace_cmd_or_carry_the_full_oci_argv() {
    // docker run IMAGE ARGS: the arguments replace Cmd.
    assert_eq!(
        busybox(&["/bin/sh", "echo other"], true),
        Ok(s(&["/bin/sh", "-c", "echo other"]))
    );
    // A full OCI argv (Entrypoint + new Cmd) is not doubled.
    assert_eq!(
        busybox(&["/bin/sh", "-c", "echo other"], true),
        Ok(s(&["/bin/sh", "-c", "echo other"]))
    );
    // An argv[0] naming another program would replace the Entrypoint (an OCI `command`):
    // never allowed.
    for allow in [false, true] {
        assert_eq!(
            busybox(&["/bin/cat", "/etc/passwd"], allow),
            Err(ArgvError::Entrypoint {
                argv: s(&["/bin/cat", "/etc/passwd"]),
                entrypoint: s(&["/bin/sh", "-c"]),
            })
        );
    }
    assert_eq!(
        compose_argv(&[], &[], &s(&[EXEC_PATH]), true),
        Err(ArgvError::NoCommand)
    );
}

/// An image with no Entrypoint, Cmd ["sh"] (busybox's own config).
fn bare(host: &[&str], allow: bool) -> Result<Vec<String>, ArgvError> {
    compose_argv(&[], &s(&["sh"]), &s(host), allow)
}

#[test]
fn without_an_entrypoint_a_full_oci_argv_runs_as_given() {
    // containerd's args for `command: [sh, -c, x]`: the program keeps its arguments (they
    // were once read as a new Cmd, so `-c x` ran as the program `-c`).
    assert_eq!(
        bare(&["sh", "-c", "echo x"], true),
        Ok(s(&["sh", "-c", "echo x"]))
    );
    // `args: [ls, -l]`: the OCI argv is the new Cmd, program included.
    assert_eq!(bare(&["ls", "-l"], true), Ok(s(&["ls", "-l"])));
    assert_eq!(bare(&["ls"], true), Ok(s(&["ls"])));
    // The image's own argv, from containerd or from encc-launch without ARGS.
    assert_eq!(bare(&["sh"], false), Ok(s(&["sh"])));
    assert_eq!(bare(&[EXEC_PATH], false), Ok(s(&["sh"])));
    assert_eq!(bare(&["exec"], false), Ok(s(&["sh"])));
    // encc-launch's `[entry program, ARGS...]`, and Occlum's `[encc-exec, ARGS...]`: the
    // ARGS follow the image's program.
    assert_eq!(
        bare(&[EXEC_PATH, "-c", "echo y"], true),
        Ok(s(&["sh", "-c", "echo y"]))
    );
    // Every one of them is an override.
    assert_eq!(
        bare(&["sh", "-c", "echo x"], false),
        Err(ArgvError::HostArgs(s(&["-c", "echo x"])))
    );
    assert_eq!(bare(&["ls"], false), Err(ArgvError::HostArgs(s(&["ls"]))));
}

#[test]
fn env_precedence_allowlist_and_defaults() {
    let mut dropped = Vec::new();
    let env = compose_env(
        &s(&["A=image", "B=image", "B=trusted", "C=trusted"]),
        &s(&["C", "D"]),
        &s(&["A=host", "C=host", "D=host", "E=host", "junk"]),
        &s(&["PATH=/default", "HOME=/root", "D=default"]),
        |name| dropped.push(name.to_owned()),
    );
    assert_eq!(
        env,
        s(&[
            "PATH=/default",
            "A=image",
            "B=trusted",
            "C=host",
            "D=host",
            "HOME=/root"
        ])
    );
    assert_eq!(dropped, s(&["A", "E", "junk"]));
}

#[test]
fn a_plan_round_trips_and_composes_like_native() {
    let plan = LaunchPlan {
        entrypoint: s(&["/bin/sh", "-c"]),
        cmd: s(&["echo hello"]),
        env: s(&["PATH=/bin", "T=trusted"]),
        env_allowlist: s(&["LANG"]),
        env_defaults: s(&["HOSTNAME=encc", "HOME=/root"]),
        cwd: "/home/user".into(),
        allow_host_args: false,
    };
    let read = LaunchPlan::from_json(&plan.to_json()).unwrap();
    assert_eq!(read, plan);
    let process = read
        .process(
            &s(&[EXEC_PATH]),
            &s(&["LANG=C", "OCCLUM=yes", "SECRET=host"]),
            |_| {},
        )
        .unwrap();
    assert_eq!(process.argv, s(&["/bin/sh", "-c", "echo hello"]));
    assert_eq!(
        process.env,
        s(&[
            "PATH=/bin",
            "T=trusted",
            "LANG=C",
            "HOSTNAME=encc",
            "HOME=/root"
        ])
    );
    assert_eq!(process.cwd, "/home/user");
    assert!(LaunchPlan::from_json(br#"{"entrypoint": []}"#).is_err());
}
