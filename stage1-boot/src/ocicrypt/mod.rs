//! ocicrypt (OCI image encryption): unwrapping layer keys from JWE annotations with private
//! keys ([`crate::jwe`]), or from Confidential Containers' key provider annotation with a KEK
//! from a KBS, and decrypting the layers.

pub(crate) mod blockcipher;
pub mod keyprovider;
