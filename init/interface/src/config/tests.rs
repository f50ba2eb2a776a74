//! Unit tests of the boot config: parsing into types, refusals naming the field.

use std::path::PathBuf;

use super::*;

#[test]
fn minimal_config_gets_defaults() {
    let c = BootConfig::parse(br#"{"store": "/var/lib/encc", "policy": "/p.json"}"#, "t").unwrap();
    assert_eq!(c.hostname, "encc");
    assert_eq!(c.tmpfs_size, DEFAULT_TMPFS_SIZE);
    assert!(!c.allow_host_args);
    assert!(!c.allow_host_hostname);
    assert!(c.env_allowlist.is_empty());
    let again = BootConfig::parse(c.to_json().as_bytes(), "t").unwrap();
    assert_eq!(again, c);
}

#[test]
fn allow_host_hostname_round_trips_and_host_names_are_checked() {
    let c = BootConfig::parse(
        br#"{"store": "/s", "insecure_policy": true, "allow_host_hostname": true}"#,
        "t",
    )
    .unwrap();
    assert!(c.allow_host_hostname);
    assert_eq!(BootConfig::parse(c.to_json().as_bytes(), "t").unwrap(), c);
    for good in ["pod-7f3a", "a.b-c", &"x".repeat(64)] {
        assert!(is_host_name(good), "{good:?}");
    }
    for bad in [
        "",
        "a b",
        "x\n10.0.0.1 registry",
        "a\tb",
        "a/b",
        &"x".repeat(65),
    ] {
        assert!(!is_host_name(bad), "{bad:?}");
    }
}

#[test]
fn unknown_fields_and_bad_values_are_refused_with_the_field_named() {
    let cases: [(&str, &str); 15] = [
        (
            r#"{"store": "/s", "policy": "/p", "allow_host_arg": true}"#,
            "unknown field",
        ),
        (r#"{"store": "/s"}"#, "policy: no signature policy"),
        (
            r#"{"store": "/s", "policy": "/p", "insecure_policy": true}"#,
            "insecure_policy",
        ),
        (r#"{"store": "s", "insecure_policy": true}"#, "store"),
        (
            r#"{"store": "/s", "insecure_policy": true, "env": ["NOEQUALS"]}"#,
            "env",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "env_allowlist": ["A-B"]}"#,
            "env_allowlist",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "hostname": "a b"}"#,
            "hostname",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "kbs": {"url": "ftp://x"}}"#,
            "kbs.url",
        ),
        (
            r#"{"store": "/s", "policy": "kbs:///default/policy"}"#,
            "policy: \"kbs:///default/policy\" is not a KBS resource URI",
        ),
        (
            r#"{"store": "/s", "policy": "kbs://kbs.example/a/b/c"}"#,
            "policy: \"kbs://kbs.example/a/b/c\" is not a KBS resource URI",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "decryption_keys": ["/k", "kbs:///a/b"]}"#,
            "decryption_keys: \"kbs:///a/b\"",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "kbs": {"url": "http://k", "attester": "tdx"}}"#,
            "kbs.attester: unknown attester \"tdx\"",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "log_level": "loud"}"#,
            "log_level: \"loud\" is not a log level",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "store_max_bytes": 1000}"#,
            "store_max_bytes: has no effect without seal_key_file",
        ),
        (
            r#"{"store": "/s", "insecure_policy": true, "seal_key_file": "/k", "store_max_bytes": 0}"#,
            "store_max_bytes: 0 bytes",
        ),
    ];
    for (json, needle) in cases {
        let err = BootConfig::parse(json.as_bytes(), "boot.json").unwrap_err();
        let text = format!(
            "{err}: {}",
            std::error::Error::source(&err)
                .map(|s| s.to_string())
                .unwrap_or_default()
        );
        assert!(
            text.contains(needle) && text.contains("boot.json"),
            "{json}: {text}"
        );
    }
}

#[test]
fn store_max_bytes_is_kept_with_a_seal_key() {
    let c = BootConfig::parse(
        br#"{"store": "/s", "insecure_policy": true, "seal_key_file": "/k", "store_max_bytes": 1073741824}"#,
        "t",
    )
    .unwrap();
    assert_eq!(c.store_max_bytes, Some(1 << 30));
    assert!(c.to_json().contains(r#""store_max_bytes": 1073741824"#));
    assert_eq!(BootConfig::parse(c.to_json().as_bytes(), "t").unwrap(), c);
    let none = BootConfig::parse(br#"{"store": "/s", "insecure_policy": true}"#, "t").unwrap();
    assert!(!none.to_json().contains("store_max_bytes"));
}

#[test]
fn env_names() {
    assert!(valid_env_name("PATH"));
    assert!(valid_env_name("_x1"));
    assert!(!valid_env_name("1X"));
    assert!(!valid_env_name(""));
    assert!(!valid_env_name("A=B"));
}

#[test]
fn values_are_typed_when_the_config_is_parsed() {
    let c = BootConfig::parse(
        br#"{"store": "/s", "policy": "kbs:///default/security-policy/test",
             "kbs": {"url": "https://kbs.example", "attester": "sgx"},
             "decryption_keys": ["/keys/a.pem", "kbs:///default/key/one"],
             "log_level": "DEBUG"}"#,
        "t",
    )
    .unwrap();
    let PolicyRef::Kbs(uri) = &c.policy else {
        panic!("{:?}", c.policy)
    };
    assert_eq!(uri.path(), "default/security-policy/test");
    let kbs = c.kbs.as_ref().unwrap();
    assert_eq!(kbs.attester, AttesterKind::Sgx);
    assert_eq!(
        c.decryption_keys[0],
        Location::File(PathBuf::from("/keys/a.pem"))
    );
    assert!(matches!(&c.decryption_keys[1], Location::Kbs(u) if u.tag == "one"));
    assert_eq!(c.log_level, LevelFilter::Debug);
    // Written back, it reads the same (the JSON keeps its shape: strings, lower case).
    let json = c.to_json();
    assert!(json.contains(r#""log_level": "debug""#), "{json}");
    assert!(!json.contains("insecure_policy"), "{json}");
    assert_eq!(BootConfig::parse(json.as_bytes(), "t").unwrap(), c);

    let file = BootConfig::parse(br#"{"store": "/s", "policy": "/etc/p.json"}"#, "t").unwrap();
    assert_eq!(file.policy, PolicyRef::File(PathBuf::from("/etc/p.json")));
    let insecure = BootConfig::parse(br#"{"store": "/s", "insecure_policy": true}"#, "t").unwrap();
    assert_eq!(insecure.policy, PolicyRef::Insecure);
    assert!(insecure.to_json().contains(r#""insecure_policy": true"#));
}

#[test]
fn a_config_crosses_the_control_channel_typed() {
    let c = BootConfig::parse(
        br#"{"store": "/s", "policy": "/p.json", "log_level": "warn"}"#,
        "t",
    )
    .unwrap();
    let wire = serde_json::to_vec(&c).unwrap();
    let back: BootConfig = serde_json::from_slice(&wire).unwrap();
    assert_eq!(back, c);
    // What arrives is checked like a file.
    let bad = br#"{"store": "relative", "insecure_policy": true}"#;
    let err = serde_json::from_slice::<BootConfig>(bad).unwrap_err();
    assert!(err.to_string().contains("store"), "{err}");
}
