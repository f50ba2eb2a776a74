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
    // Without an Entrypoint the arguments replace Cmd entirely, as docker does.
    assert_eq!(
        compose_argv(
            &[],
            &s(&["/bin/true"]),
            &s(&["/bin/true", "ls", "-l"]),
            true
        ),
        Ok(s(&["ls", "-l"]))
    );
    assert_eq!(
        compose_argv(&[], &[], &s(&["/x"]), true),
        Err(ArgvError::NoCommand)
    );
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
