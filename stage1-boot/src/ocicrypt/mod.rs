//! ocicrypt (OCI image encryption): unwrapping layer keys from JWE annotations with private keys.

pub mod blockcipher;
pub mod jwe;
pub mod keys;
