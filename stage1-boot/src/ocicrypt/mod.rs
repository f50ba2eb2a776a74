//! ocicrypt (OCI image encryption): unwrapping layer keys from JWE annotations with private
//! keys, or from Confidential Containers' key provider annotation with a KEK from a KBS.

pub mod blockcipher;
pub mod jwe;
pub mod keyprovider;
pub mod keys;
