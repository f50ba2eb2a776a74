//! What encc's host side and its in-enclave `init` share, and nothing of the enclave:
//! this crate links no stage-1, rootfs or FUSE code, so a host launcher that depends on it
//! carries none of the enclave's code.
//!
//! - [`names`]: the names both sides must agree on (environment variables, file paths);
//! - [`config`]: the trusted boot config's schema ([`config_args`]: the flags that compose
//!   one, shared by `encc boot-config init` and `encc-launch run`);
//! - [`resource`]: where the config names key material and policies (a file or a KBS
//!   resource), as types;
//! - [`protocol`]: the control channel between the host side and a native enclave's PID 1;
//! - [`host`]: the host side of a native enclave, driving it with the PAL calls.

#![deny(unsafe_code)]

pub mod config;
pub mod config_args;
pub mod host;
pub mod names;
pub mod protocol;
pub mod resource;
mod sys;

/// An error and its causes on one line, `: `-separated (what a user sees: `encc-launch`'s
/// last line, `encc_pal_last_error`, `ctr`'s error, a pod's status, a policy rejection).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}
