use super::*;

const KEY_TEXT: &str = "c7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-61";

fn rootfs() -> OcclumRootfs {
    OcclumRootfs {
        lower_layer: "/host/store/rootfs/lower".into(),
        upper_layer: "/host/store/rootfs/upper".into(),
        entry_point: "/bin".into(),
        hostfs_source: Some("/var/lib/encc".into()),
        hostfs_target: None,
        env: vec!["PATH=/usr/bin:/bin".into(), "EMPTY=".into()],
        key: Some(SefsKey::parse(KEY_TEXT).unwrap()),
    }
}

#[test]
fn key_round_trips_through_occlums_string_form() {
    let key = SefsKey::parse(KEY_TEXT).unwrap();
    assert_eq!(key.0[0], 0xc7);
    assert_eq!(key.0[15], 0x61);
    assert_eq!(key.to_occlum_string().as_str(), KEY_TEXT);
    assert_eq!(SefsKey::parse(&KEY_TEXT.to_uppercase()).unwrap().0, key.0);
}

#[test]
fn malformed_keys_are_rejected() {
    for bad in [
        "",
        "c7-32",
        "c7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58",
        "c7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-61-00",
        "c7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-6",
        "g7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-61",
        "+7-32-b3-ed-44-df-ec-7b-25-2d-9a-32-38-8d-58-61",
    ] {
        assert!(
            matches!(SefsKey::parse(bad), Err(OcclumError::KeyFormat)),
            "{bad:?}"
        );
    }
}

#[test]
fn keys_never_show_in_debug_output() {
    let key = SefsKey::parse(KEY_TEXT).unwrap();
    assert_eq!(format!("{key:?}"), "SefsKey(<redacted>)");
    let options = sefs_mount_options(Path::new("/host/store/l"), Some(&key)).unwrap();
    let debug = format!("{options:?}");
    assert!(!debug.contains("c7-32"), "{debug}");
    assert!(debug.contains("key=<redacted>"), "{debug}");
    assert!(!format!("{:?}", rootfs()).contains("c7-32"));
}

#[test]
fn sefs_options_are_occlums_format() {
    let key = SefsKey::parse(KEY_TEXT).unwrap();
    let with_key = sefs_mount_options(Path::new("/host/store/layer"), Some(&key)).unwrap();
    assert_eq!(
        with_key.as_str(),
        format!("dir=/host/store/layer,key={KEY_TEXT}")
    );
    let sealed = sefs_mount_options(Path::new("./run/sefs"), None).unwrap();
    assert_eq!(sealed.as_str(), "dir=./run/sefs");
}

#[test]
fn unionfs_and_hostfs_options_are_occlums_format() {
    let key = SefsKey::parse(KEY_TEXT).unwrap();
    let union = unionfs_mount_options(Path::new("/s/lower"), Path::new("/s/upper"), Some(&key));
    assert_eq!(
        union.unwrap().as_str(),
        format!("lowerdir=/s/lower,upperdir=/s/upper,key={KEY_TEXT}")
    );
    let host = hostfs_mount_options(Path::new("/var/lib/encc")).unwrap();
    assert_eq!(host.as_str(), "dir=/var/lib/encc");
}

#[test]
fn option_paths_that_would_split_are_rejected() {
    let err = hostfs_mount_options(Path::new("/a,key=00")).unwrap_err();
    assert!(err.to_string().contains("HostFS dir"), "{err}");
    assert!(sefs_mount_options(Path::new(""), None).is_err());
}

#[test]
fn rootfs_arguments_are_checked_before_the_call() {
    let args = rootfs_args(&rootfs()).unwrap();
    assert_eq!(args.entry_point.as_bytes(), b"/bin");
    assert_eq!(args.env.len(), 2);
    assert!(args.hostfs_target.is_none());

    let relative = OcclumRootfs {
        entry_point: "bin".into(),
        ..rootfs()
    };
    let err = rootfs_args(&relative).unwrap_err();
    assert!(
        err.to_string()
            .contains("entry point \"bin\" is not absolute"),
        "{err}"
    );

    let relative_target = OcclumRootfs {
        hostfs_target: Some("host".into()),
        ..rootfs()
    };
    assert!(rootfs_args(&relative_target).is_err());

    let empty_lower = OcclumRootfs {
        lower_layer: PathBuf::new(),
        ..rootfs()
    };
    assert!(rootfs_args(&empty_lower)
        .unwrap_err()
        .to_string()
        .contains("lower layer"));
}

#[test]
fn bad_env_entries_name_the_variable_not_the_value() {
    for (entry, name) in [
        ("NOEQUALS", "NOEQUALS"),
        ("=value", ""),
        ("SECRET=a\0b", "SECRET"),
    ] {
        let bad = OcclumRootfs {
            env: vec![entry.into()],
            ..rootfs()
        };
        match rootfs_args(&bad) {
            Err(OcclumError::Env { name: got }) => assert_eq!(got, name, "{entry:?}"),
            other => panic!("{entry:?}: {other:?}"),
        }
    }
}

#[test]
fn mount_rootfs_refuses_outside_occlum() {
    if is_occlum() {
        return; // the test process itself runs under Occlum
    }
    assert!(matches!(
        mount_rootfs(&rootfs()),
        Err(OcclumError::NotOcclum)
    ));
}
