//! One set of flags: `encc image pull`, `encc-launch run` and `encc boot-config init` take
//! the flags they share under the same names, with the same help (generated from one
//! definition in `encc_interface::config_args`) and the same meaning.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

mod common;

use std::collections::BTreeMap;
use std::process::Command;

use common::enclave::*;
use common::*;

/// Flags every one of the three commands must take.
const SHARED: [&str; 8] = [
    "--policy",
    "--insecure-policy",
    "--registries.d",
    "--decryption-key",
    "--kbs",
    "--attester",
    "--tls-verify",
    "--insecure-registry",
];

/// `--help` of `program args…`, as a map from each long flag to its help block (the flag
/// line and its description, whitespace collapsed: clap lays a command's help out on one
/// line or two by the width of its flags).
fn flag_blocks(program: &str, args: &[&str]) -> BTreeMap<String, String> {
    let out = Command::new(bin(program))
        .args(args)
        .arg("--help")
        .output()
        .unwrap();
    assert!(out.status.success(), "{program} {args:?} --help failed");
    let help = String::from_utf8(out.stdout).unwrap();
    let mut blocks = BTreeMap::new();
    let mut current: Option<(String, String)> = None;
    for line in help.lines() {
        let trimmed = line.trim_start();
        let flag_line = trimmed.starts_with("--")
            || (trimmed.starts_with('-') && trimmed.get(2..4) == Some(", "));
        if flag_line || (!line.starts_with(' ') && !line.is_empty()) {
            if let Some((name, block)) = current.take() {
                blocks.insert(name, collapse(&block));
            }
        }
        if flag_line {
            let long = trimmed
                .split_whitespace()
                .find(|w| w.starts_with("--"))
                .unwrap()
                .trim_end_matches(',')
                .split(['=', '[', '<'])
                .next()
                .unwrap()
                .to_owned();
            current = Some((long, String::new()));
        }
        if let Some((_, block)) = current.as_mut() {
            block.push_str(line.trim());
            block.push('\n');
        }
    }
    if let Some((name, block)) = current {
        blocks.insert(name, collapse(&block));
    }
    blocks
}

fn collapse(text: &str) -> String {
    text.split_whitespace().collect::<Vec<_>>().join(" ")
}

#[test]
fn shared_flags_have_one_name_and_one_help() {
    let commands = [
        ("encc", vec!["image", "pull"]),
        ("encc-launch", vec!["run"]),
        ("encc", vec!["boot-config", "init"]),
    ];
    let helps: Vec<(String, BTreeMap<String, String>)> = commands
        .iter()
        .map(|(program, args)| {
            (
                format!("{program} {}", args.join(" ")),
                flag_blocks(program, args),
            )
        })
        .collect();
    for flag in SHARED {
        for (command, blocks) in &helps {
            assert!(blocks.contains_key(flag), "{command} lacks {flag}");
        }
    }
    // Every flag two of the commands take reads the same in both.
    for (i, (a, blocks_a)) in helps.iter().enumerate() {
        for (b, blocks_b) in &helps[i + 1..] {
            for (flag, block) in blocks_a {
                if flag == "--help" || flag == "--version" {
                    continue;
                }
                if let Some(other) = blocks_b.get(flag) {
                    assert_eq!(block, other, "{flag} differs between {a} and {b}");
                }
            }
        }
    }
}

#[test]
fn boot_config_init_writes_what_the_shared_flags_mean() {
    let json = encc_ok(args![
        "boot-config",
        "init",
        "--store",
        "/var/lib/encc",
        "--insecure-policy",
        "--tls-verify=false",
        "--insecure-registry",
        "127.0.0.1:5000",
        "--kbs",
        "https://kbs.example",
        "--attester",
        "sample",
        "--log-level",
        "debug",
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v["tls_verify"], false, "{json}");
    assert_eq!(v["insecure_registries"][0], "127.0.0.1:5000", "{json}");
    assert_eq!(v["kbs"]["attester"], "sample", "{json}");
    assert_eq!(v["log_level"], "debug", "{json}");
    // The defaults: verified TLS (the field left out) and a quiet enclave.
    let json = encc_ok(args![
        "boot-config",
        "init",
        "--store",
        "/s",
        "--insecure-policy"
    ]);
    let v: serde_json::Value = serde_json::from_str(&json).unwrap();
    assert_eq!(v.get("tls_verify"), None, "{json}");
    assert_eq!(v["log_level"], "warn", "{json}");
}

#[test]
fn tls_verify_false_reaches_a_registry_with_an_unknown_ca_on_all_three() {
    let Some(e) = env() else { return };
    let tls = std::env::var("ENCC_TEST_TLS_REGISTRY")
        .expect("ENCC_TEST_TLS_REGISTRY (tests/run sets it)");
    let image = format!("docker://{tls}/test/busybox:latest");
    let launch = |flags: &[&str]| {
        let out = Command::new(bin("encc-launch"))
            .arg("run")
            .arg("--store")
            .arg(e.store())
            .arg("--insecure-policy")
            .args(flags)
            .arg(&image)
            .output()
            .unwrap();
        e.assert_clean();
        out
    };
    // Verified by default: the test CA is unknown to the enclave.
    let out = launch(&[]);
    let (_, stderr) = text(&out);
    assert_eq!(out.status.code(), Some(127), "{stderr}");
    assert!(
        stderr.to_lowercase().contains("certificate") || stderr.contains("UnknownIssuer"),
        "{stderr}"
    );
    for flags in [&["--tls-verify=false"][..], &["--insecure-registry", &tls]] {
        let out = launch(flags);
        let (stdout, stderr) = text(&out);
        assert_eq!(out.status.code(), Some(0), "{flags:?}: {stderr}");
        assert_eq!(stdout, "hello from busybox\n", "{flags:?}");
    }

    // The pull takes both flags with the same meaning.
    let key = e.dir.path().join("data.key");
    encc_ok(args!["key", "gen", "-o", key]);
    for (n, flags) in [
        vec!["--tls-verify=false"],
        vec!["--insecure-registry", &tls],
    ]
    .into_iter()
    .enumerate()
    {
        let output = e.dir.path().join(format!("pulled-{n}.img"));
        let mut argv = vec!["image", "pull", &image, "--insecure-policy", "--key-file"];
        let key = key.to_str().unwrap();
        let output_s = output.to_str().unwrap();
        argv.extend([key, "-o", output_s]);
        argv.extend(flags.iter().copied());
        let out = Command::new(bin("encc")).args(&argv).output().unwrap();
        assert!(out.status.success(), "{argv:?}: {}", text(&out).1);
    }
}
