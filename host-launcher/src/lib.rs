//! The encc PAL library (`libencc_pal.so`) and the host-side PAL loader.
//!
//! - [`ffi`]: the PAL ABI shared with Occlum-style launchers and rune: C types, symbol
//!   names, function-pointer types and the panic boundary for exported functions.
//!   `include/encc_pal.h` is its C header.
//! - [`native`]: the native PAL behind the exported functions: a simulated enclave of the
//!   native platform with Occlum's PAL semantics (also rune's PAL plugin).
//! - [`loader`]: a safe loader for any library with Occlum's PAL ABI, used by `encc-launch`.
//!
//! `unsafe` lives only in `ffi` and `loader::sys`.

#![deny(unsafe_code)]

#[allow(unsafe_code)]
pub mod ffi;
pub mod loader;
pub mod native;

pub use loader::{Pal, PalError, StdioFds, WaitStatus};

pub use encc_interface::error_chain;
