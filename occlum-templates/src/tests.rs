use super::copy_bom::{Bom, File};
use super::*;
use serde_json::Value;

fn input() -> RenderInput {
    let mut input = RenderInput::new(
        "encc-boot",
        "/build/occlum/init",
        "/etc/encc/boot.json",
        "/var/lib/encc/store",
        "/store",
    );
    input.env_allowlist = vec!["ENCC_IMAGE".into(), "RUST_LOG".into()];
    input.trusted_env = vec!["ENCC_BOOT_CONFIG=/etc/encc/boot.json".into()];
    input.ca_bundle = Some("/etc/ssl/certs/ca-certificates.crt".into());
    input
}

/// Occlum's parse_memory_size for the "<n>MB" strings the renderer writes.
fn bytes(value: &Value) -> u64 {
    let text = value.as_str().unwrap();
    text.strip_suffix("MB").unwrap().parse::<u64>().unwrap() * MIB
}

fn rendered_json(input: &RenderInput) -> Value {
    let rendered = render(input).unwrap();
    // What `occlum build` reads is the text; parse it back.
    serde_json::from_str(&rendered.occlum_json_text()).unwrap()
}

#[test]
fn rendered_file_has_every_field_occlum_requires() {
    let json = rendered_json(&input());
    for pointer in [
        "/resource_limits/user_space_size",
        "/resource_limits/kernel_space_heap_size",
        "/resource_limits/kernel_space_stack_size",
        "/resource_limits/max_num_of_threads",
        "/process/default_stack_size",
        "/process/default_heap_size",
        "/process/default_mmap_size",
        "/entry_points",
        "/env/default",
        "/env/untrusted",
        "/metadata/product_id",
        "/metadata/version_number",
        "/metadata/debuggable",
        "/metadata/enable_kss",
        "/metadata/family_id/high",
        "/metadata/ext_prod_id/low",
        "/feature",
        "/mount",
    ] {
        assert!(json.pointer(pointer).is_some(), "missing {pointer}");
    }
    assert_eq!(json["resource_limits"]["max_num_of_threads"], 64);
}

#[test]
fn sizes_are_consistent() {
    for user_space in [512 * MIB, DEFAULT_USER_SPACE_SIZE, 16 * 1024 * MIB] {
        let mut input = input();
        input.user_space_size = user_space;
        let json = rendered_json(&input);
        let user = bytes(&json["resource_limits"]["user_space_size"]);
        assert_eq!(user, user_space);
        let kernel_heap = bytes(&json["resource_limits"]["kernel_space_heap_size"]);
        let stack = bytes(&json["process"]["default_stack_size"]);
        let heap = bytes(&json["process"]["default_heap_size"]);
        let mmap = bytes(&json["process"]["default_mmap_size"]);
        assert!(kernel_heap >= 64 * MIB && kernel_heap < user, "{json:#}");
        // init and the container's first process both fit their stack and heap.
        assert!(2 * (stack + heap) < user, "{json:#}");
        assert!(mmap <= user / 2, "{json:#}");
    }
}

#[test]
fn enclave_paths_are_absolute_and_the_store_is_mounted() {
    let json = rendered_json(&input());
    assert_eq!(json["entry_points"], serde_json::json!(["/.encc/exec"]));
    let mounts = json["mount"].as_array().unwrap();
    for mount in mounts {
        assert!(
            mount["target"].as_str().unwrap().starts_with('/'),
            "{mount}"
        );
    }
    let store: Vec<_> = mounts.iter().filter(|m| m["target"] == "/store").collect();
    assert_eq!(store.len(), 1);
    assert_eq!(store[0]["type"], "hostfs");
    assert_eq!(store[0]["source"], "/var/lib/encc/store");
    assert!(mounts
        .iter()
        .any(|m| m["target"] == "/" && m["type"] == "unionfs"));
    assert!(!mounts.iter().any(|m| m["target"] == "/var/lib/encc"));
}

#[test]
fn env_untrusted_is_the_allowlist_and_defaults_are_trusted() {
    let json = rendered_json(&input());
    assert_eq!(
        json["env"]["untrusted"],
        serde_json::json!(["ENCC_IMAGE", "RUST_LOG"])
    );
    assert_eq!(
        json["env"]["default"],
        serde_json::json!(["OCCLUM=yes", "ENCC_BOOT_CONFIG=/etc/encc/boot.json"])
    );
}

#[test]
fn not_debuggable_unless_asked() {
    let json = rendered_json(&input());
    assert_eq!(json["metadata"]["debuggable"], false);
    let mut debug = input();
    debug.debuggable = true;
    debug.product_id = 7;
    debug.version_number = 2;
    let json = rendered_json(&debug);
    assert_eq!(json["metadata"]["debuggable"], true);
    assert_eq!(json["metadata"]["product_id"], 7);
    assert_eq!(json["metadata"]["version_number"], 2);
}

#[test]
fn the_only_entry_point_is_encc_exec_which_the_initfs_does_not_hold() {
    let rendered = render(&input()).unwrap();
    assert_eq!(
        rendered.occlum_json["entry_points"],
        serde_json::json!([ENTRY_POINT])
    );
    // Before the root swap (or when init fails) nothing in the initfs can be started:
    // the entry point is a file path outside every initfs target.
    let bom: Bom = serde_yaml_ng::from_str(&rendered.copy_bom).unwrap();
    for target in &bom.targets {
        for copy in &target.copy {
            for file in &copy.files {
                let path = std::path::Path::new(&target.target).join(&file.rename);
                assert!(!path.starts_with(ENTRY_POINT), "{}", path.display());
            }
        }
    }
}

#[test]
fn bad_inputs_name_the_field() {
    type Change = Box<dyn Fn(&mut RenderInput)>;
    let cases: Vec<(&str, Change)> = vec![
        (
            "user_space_size",
            Box::new(|i| i.user_space_size = 1000 * MIB + 1),
        ),
        (
            "user_space_size",
            Box::new(|i| i.user_space_size = 128 * MIB),
        ),
        ("max_threads", Box::new(|i| i.max_threads = 2)),
        ("exec_binary", Box::new(|i| i.exec_binary = "".into())),
        (
            "env_allowlist",
            Box::new(|i| i.env_allowlist.push("BAD-NAME".into())),
        ),
        (
            "env_allowlist",
            Box::new(|i| i.env_allowlist.push("RUST_LOG".into())),
        ),
        (
            "env_allowlist",
            Box::new(|i| i.env_allowlist.push("OCCLUM".into())),
        ),
        (
            "trusted_env",
            Box::new(|i| i.trusted_env.push("OCCLUM=no".into())),
        ),
        (
            "trusted_env",
            Box::new(|i| i.trusted_env.push("NOVALUE".into())),
        ),
        (
            "store_mount_point",
            Box::new(|i| i.store_mount_point = "/proc".into()),
        ),
        (
            "store_mount_point",
            Box::new(|i| i.store_mount_point = "store".into()),
        ),
        (
            "store_host_dir",
            Box::new(|i| i.store_host_dir = "relative".into()),
        ),
        (
            "instance_name",
            Box::new(|i| i.instance_name = "a b".into()),
        ),
        ("boot_config", Box::new(|i| i.boot_config = "".into())),
    ];
    for (field, change) in cases {
        let mut bad = input();
        change(&mut bad);
        match render(&bad) {
            Err(RenderError::Invalid { field: got, .. }) => assert_eq!(got, field, "{bad:?}"),
            other => panic!("{field}: expected an error, got {other:?}"),
        }
    }
}

#[test]
fn the_bom_puts_init_config_and_certs_into_the_initfs() {
    let rendered = render(&input()).unwrap();
    assert!(rendered
        .copy_bom
        .starts_with("# initfs of the encc boot instance encc-boot\n"));
    let bom: Bom = serde_yaml_ng::from_str(&rendered.copy_bom).unwrap();
    let placed: Vec<(&str, &File)> = bom
        .targets
        .iter()
        .flat_map(|t| {
            t.copy
                .iter()
                .flat_map(move |c| c.files.iter().map(move |f| (t.target.as_str(), f)))
        })
        .collect();
    let expect = |dir: &str, name: &str, rename: &str, autodep: bool| {
        assert!(
            placed.iter().any(|(d, f)| *d == dir
                && f.name == name
                && f.rename == rename
                && f.autodep == autodep),
            "{dir}/{rename} from {name} missing in\n{}",
            rendered.copy_bom
        );
    };
    expect("/bin", "/build/occlum/init", "init", true);
    // encc-exec beside init by default; its libraries are init's.
    expect("/bin", "/build/occlum/encc-exec", "encc-exec", false);
    expect("/etc/encc", "/etc/encc/boot.json", "boot.json", false);
    expect(
        "/etc/ssl/certs",
        "/etc/ssl/certs/ca-certificates.crt",
        "ca-certificates.crt",
        false,
    );
    assert_eq!(placed.len(), 4);

    let mut no_certs = input();
    no_certs.ca_bundle = None;
    let bom: Bom = serde_yaml_ng::from_str(&render(&no_certs).unwrap().copy_bom).unwrap();
    assert_eq!(bom.targets.len(), 3);
}
