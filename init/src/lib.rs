//! encc's in-enclave init on the native platform, as a library shared by the `init`
//! binary, `encc rootfs run` and the native PAL library.
//!
//! - [`config`]: the trusted boot config;
//! - [`launch`]: image config + boot config + untrusted launch request → the process;
//! - [`enclave`]: the enclave's PID 1 (requests, reaping, signal forwarding, teardown);
//! - [`stage1`]: boot config → stage 1 (pull or reuse of a sealed image), one flow for both
//!   platforms; `platform`: what differs (store, kept images, stage 2); `stage2`: the root;
//! - [`run`]: running one container to its end with signals forwarded;
//! - [`seal`]: the native platform's sealed bookkeeping (images kept across starts);
//! - [`store`]: the store on host storage (per-image locks, kept images, stale partials,
//!   in-use marks, listing, removal and eviction of kept images);
//! - [`occlum`]: the Occlum platform's first boot stage (run under the tests' Occlum interface
//!   emulator; never on SGX or inside the Occlum LibOS); its exec shim is `encc_exec`.
//!
//! What the host side shares with init (the boot-config schema, the control-channel
//! protocol, the host-side handle of an enclave) is the `encc_interface` crate.
//!
//! The native platform simulates the enclave lifecycle with namespaces; it has no memory
//! encryption and no hardware attestation, and says so when an enclave starts.

#![deny(unsafe_code)]

pub mod config;
pub mod enclave;
pub mod launch;
pub mod occlum;
mod platform;
mod replace;
pub mod run;
pub mod seal;
pub mod stage1;
mod stage2;
pub mod store;
mod sys;
