//! encc stage 1: pulls an OCI image, verifies it against the signature policy, decrypts
//! encrypted layers and unpacks them into a protected rootfs through
//! [`encc_rootfs::RootfsBuilder`].
//!
//! The pull pipeline is being built; this crate holds no functionality yet.

#![forbid(unsafe_code)]
