//! `include/encc_pal.h` against `src/ffi.rs`: a C program built from the header with
//! `cc -Wall -Wextra -Werror -pedantic` prints every size, alignment and offset, and each must
//! equal the Rust layout; the same program checks every function prototype at compile time.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;
use std::mem::{align_of, offset_of, size_of};
use std::path::Path;
use std::process::Command;

use encc_pal::ffi::*;

fn c_layout() -> BTreeMap<String, usize> {
    let dir = tempfile::tempdir().unwrap();
    let manifest = Path::new(env!("CARGO_MANIFEST_DIR"));
    let exe = dir.path().join("header_layout");
    let cc = Command::new("cc")
        .args(["-std=c11", "-Wall", "-Wextra", "-Werror", "-pedantic", "-I"])
        .arg(manifest.join("include"))
        .arg(manifest.join("tests/c/header_layout.c"))
        .arg("-o")
        .arg(&exe)
        .output()
        .expect("run cc");
    assert!(
        cc.status.success(),
        "cc rejected encc_pal.h:\n{}",
        String::from_utf8_lossy(&cc.stderr)
    );
    let out = Command::new(&exe).output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(|line| {
            let (key, value) = line.rsplit_once(' ').unwrap();
            (key.to_string(), value.parse().unwrap())
        })
        .collect()
}

macro_rules! layout {
    ($map:ident, $c:literal, $t:ty { $($field:ident),* }) => {
        $map.insert(format!("size {}", $c), size_of::<$t>());
        $map.insert(format!("align {}", $c), align_of::<$t>());
        $( $map.insert(format!("offset {}.{}", $c, stringify!($field)), offset_of!($t, $field)); )*
    };
}

fn rust_layout() -> BTreeMap<String, usize> {
    let mut m = BTreeMap::new();
    layout!(
        m,
        "occlum_pal_attr_t",
        occlum_pal_attr_t {
            instance_dir,
            log_level
        }
    );
    layout!(
        m,
        "occlum_stdio_fds_t",
        occlum_stdio_fds_t {
            stdin_fd,
            stdout_fd,
            stderr_fd
        }
    );
    layout!(
        m,
        "struct occlum_pal_create_process_args",
        occlum_pal_create_process_args {
            path,
            argv,
            env,
            stdio,
            pid
        }
    );
    layout!(
        m,
        "struct occlum_pal_exec_args",
        occlum_pal_exec_args { pid, exit_value }
    );
    layout!(m, "pal_attr_t", pal_attr_t { args, log_level });
    layout!(m, "pal_attr_v3_t", pal_attr_v3_t { attr_v1, fd, addr });
    layout!(
        m,
        "pal_stdio_fds",
        pal_stdio_fds {
            stdin_fd,
            stdout_fd,
            stderr_fd
        }
    );
    layout!(
        m,
        "pal_create_process_args",
        pal_create_process_args {
            path,
            argv,
            env,
            stdio,
            pid
        }
    );
    layout!(m, "pal_exec_args", pal_exec_args { pid, exit_value });
    m.insert(
        "const OCCLUM_PAL_VERSION".into(),
        OCCLUM_PAL_VERSION as usize,
    );
    m.insert(
        "const ENCC_RUNE_PAL_VERSION".into(),
        RUNE_PAL_VERSION as usize,
    );
    m.insert(
        "const ENCC_PAL_LAST_ERROR_MAX".into(),
        ENCC_PAL_LAST_ERROR_MAX,
    );
    m
}

#[test]
fn header_compiles_and_matches_the_rust_abi() {
    assert_eq!(c_layout(), rust_layout());
}

#[test]
fn header_declares_every_exported_symbol() {
    let header = include_str!("../include/encc_pal.h");
    for symbol in OCCLUM_PAL_SYMBOLS
        .iter()
        .chain(RUNE_PAL_SYMBOLS.iter())
        .chain(ENCC_PAL_EXTENSIONS.iter())
    {
        assert!(
            header.contains(&format!("int {symbol}(")),
            "encc_pal.h does not declare {symbol}"
        );
    }
}
