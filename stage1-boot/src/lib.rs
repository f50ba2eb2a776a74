//! encc stage 1: pulls an OCI image, verifies it against the signature policy, decrypts
//! encrypted layers and unpacks them into a protected rootfs through
//! [`encc_rootfs::RootfsBuilder`].
//!
//! - [`reference`]: image references (`docker://…`, `oci:…`);
//! - [`source`]: registries (distribution v2 API) and OCI layouts;
//! - [`boot`]: all of stage 1 behind one call (policy, keys, source, pull);
//! - [`pull`]: resolve, verify and unpack an image into a protected rootfs, layer by layer
//!   ([`layer`] fetches and decompresses, `unpack` applies tar entries and whiteouts);
//! - [`policy`]: `policy.json`, checked with `gpg`, `cosign` and `lookaside` signatures;
//! - [`ocicrypt`]: layer keys and decryption; [`jwe`]: JWE decryption and the private keys
//!   that open it (for `ocicrypt` and for the KBS's responses);
//! - [`kbs`] and [`attester`]: keys and policy from a Key Broker Service after attestation;
//!   `resources` reads anything named by a path or a `kbs:///` URI;
//! - `progress` (feature `terminal-progress`): pull progress bars on a terminal.
//!
//! Modules that nothing outside this crate uses are private.
//!
//! `unsafe` is denied everywhere except `attester::sys` (Occlum's SGX ioctls).

#![deny(unsafe_code)]

pub mod attester;
pub mod boot;
mod cosign;
pub mod digest;
mod fetch;
#[doc(hidden)]
pub mod fuzzing;
mod gpg;
pub mod jwe;
pub mod kbs;
pub mod layer;
mod lookaside;
pub mod manifest;
pub mod ocicrypt;
pub mod policy;
mod prefetch;
#[cfg(feature = "terminal-progress")]
pub mod progress;
pub mod pull;
pub mod reference;
mod resources;
pub mod source;
mod spool;
mod unpack;
mod verify;
