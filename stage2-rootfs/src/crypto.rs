//! Block encryption (AES-256-GCM-SIV) with every block bound to its slot index and its image.

use aes_gcm_siv::aead::{AeadInPlace, KeyInit};
use aes_gcm_siv::{Aes256GcmSiv, Nonce, Tag};
use rs_merkle::Hasher;
use zeroize::Zeroizing;

use crate::format::{Header, BLOCK_SIZE, HEADER_LEN, SUPER_BODY_LEN, TAG_LEN};
use crate::key::DataKey;

/// Domain prefixes for values derived from the data key.
const KEY_ID_DOMAIN: &[u8] = b"encc-rootfs v1 key id";
const IMAGE_ID_DOMAIN: &[u8] = b"encc-rootfs v1 image id";
const SUPERBLOCK_AAD: &[u8] = b"encc-rootfs v1 superblock";

/// The AES key schedules (plain AES and the one inside AES-256-GCM-SIV) and the data key are
/// wiped on drop: this stops compiling if the `aes` crate loses its `zeroize` feature
/// (workspace Cargo.toml).
const _: fn() = || {
    fn wiped_on_drop<T: zeroize::ZeroizeOnDrop>() {}
    wiped_on_drop::<aes::Aes256>();
    wiped_on_drop::<DataKey>();
};

/// SHA-256, the hash of the Merkle tree (rs_merkle's algorithm).
pub type TreeHasher = rs_merkle::algorithms::Sha256;

/// The AEAD failed: wrong key, or the bytes were changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AuthFailed;

/// The AEAD refused to encrypt (only possible for oversized buffers).
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("AES-256-GCM-SIV encryption failed")]
pub struct SealFailed;

/// Encrypts and decrypts the blocks of one image.
pub struct ImageCipher {
    aead: Aes256GcmSiv,
    header: Header,
    header_bytes: [u8; HEADER_LEN],
}

impl ImageCipher {
    /// A cipher for the image described by `header`, under `key`.
    pub fn new(key: &DataKey, header: Header) -> Self {
        let aead = Aes256GcmSiv::new(key.as_bytes().into());
        Self {
            aead,
            header,
            header_bytes: header.encode(),
        }
    }

    /// The image's header.
    pub fn header(&self) -> &Header {
        &self.header
    }

    /// Encrypts a block in place for `slot`, returning its tag. (AES-GCM-SIV only fails for
    /// buffers over 2^36 bytes; the error is still passed on rather than assumed away.)
    pub fn seal_block(&self, slot: u64, block: &mut [u8]) -> Result<[u8; TAG_LEN], SealFailed> {
        if block.len() != BLOCK_SIZE {
            return Err(SealFailed);
        }
        let aad = self.block_aad(slot);
        self.aead
            .encrypt_in_place_detached(&self.block_nonce(slot), &aad, block)
            .map(Into::into)
            .map_err(|_| SealFailed)
    }

    /// Decrypts a block in place after checking its tag. Fails (as an authentication
    /// failure) unless `block` is [`BLOCK_SIZE`] and `tag` [`TAG_LEN`] bytes long.
    pub fn open_block(&self, slot: u64, block: &mut [u8], tag: &[u8]) -> Result<(), AuthFailed> {
        if block.len() != BLOCK_SIZE || tag.len() != TAG_LEN {
            return Err(AuthFailed);
        }
        let aad = self.block_aad(slot);
        self.aead
            .decrypt_in_place_detached(&self.block_nonce(slot), &aad, block, Tag::from_slice(tag))
            .map_err(|_| AuthFailed)
    }

    /// Encrypts the superblock body; returns ciphertext followed by tag.
    pub fn seal_superblock(&self, body: &[u8]) -> Result<Vec<u8>, SealFailed> {
        let mut buf = body.to_vec();
        let tag = self
            .aead
            .encrypt_in_place_detached(&superblock_nonce(), &self.superblock_aad(), &mut buf)
            .map_err(|_| SealFailed)?;
        buf.extend_from_slice(&tag);
        Ok(buf)
    }

    /// Decrypts the superblock region after the header (body and tag).
    pub fn open_superblock(&self, sealed: &[u8]) -> Result<Zeroizing<Vec<u8>>, AuthFailed> {
        if sealed.len() != SUPER_BODY_LEN + TAG_LEN {
            return Err(AuthFailed);
        }
        let (body, tag) = sealed.split_at(SUPER_BODY_LEN);
        let mut buf = Zeroizing::new(body.to_vec());
        self.aead
            .decrypt_in_place_detached(
                &superblock_nonce(),
                &self.superblock_aad(),
                buf.as_mut_slice(),
                Tag::from_slice(tag),
            )
            .map_err(|_| AuthFailed)?;
        Ok(buf)
    }

    fn block_nonce(&self, slot: u64) -> Nonce {
        let mut nonce = [0u8; 12];
        nonce[..8].copy_from_slice(&slot.to_le_bytes());
        nonce[8..].copy_from_slice(&self.header.image_id[..4]);
        nonce.into()
    }

    fn block_aad(&self, slot: u64) -> [u8; HEADER_LEN + 8] {
        let mut aad = [0u8; HEADER_LEN + 8];
        aad[..HEADER_LEN].copy_from_slice(&self.header_bytes);
        aad[HEADER_LEN..].copy_from_slice(&slot.to_le_bytes());
        aad
    }

    fn superblock_aad(&self) -> Vec<u8> {
        [&self.header_bytes[..], SUPERBLOCK_AAD].concat()
    }
}

/// Slot indexes stay below 2^63, so this nonce never equals a block's.
fn superblock_nonce() -> Nonce {
    [0xffu8; 12].into()
}

/// The key id stored in the plaintext header: a hash of the key, so opening an image with
/// another key is reported as "wrong key" rather than as corruption.
pub fn key_id(key: &DataKey) -> [u8; 8] {
    let digest = TreeHasher::hash(&Zeroizing::new([KEY_ID_DOMAIN, key.as_bytes()].concat()));
    let mut id = [0u8; 8];
    id.copy_from_slice(&digest[..8]);
    id
}

/// The image id used when the caller gives none: derived from the key, so that builds are
/// deterministic. Images that share a key and id are still told apart by their Merkle roots.
pub fn default_image_id(key: &DataKey) -> [u8; 16] {
    let digest = TreeHasher::hash(&Zeroizing::new([IMAGE_ID_DOMAIN, key.as_bytes()].concat()));
    let mut id = [0u8; 16];
    id.copy_from_slice(&digest[..16]);
    id
}

/// Hash of a stored slot (ciphertext and tag): a leaf of the Merkle tree.
pub fn leaf_hash(slot_bytes: &[u8]) -> [u8; 32] {
    TreeHasher::hash(slot_bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::format::VERSION;

    fn cipher(key: u8, image: u8) -> ImageCipher {
        let key = DataKey::from_bytes(&[key; 32]);
        ImageCipher::new(
            &key,
            Header {
                version: VERSION,
                block_size: BLOCK_SIZE as u32,
                key_id: key_id(&key),
                image_id: [image; 16],
            },
        )
    }

    #[test]
    fn block_round_trip() {
        let c = cipher(1, 2);
        let mut block = [7u8; BLOCK_SIZE];
        let tag = c.seal_block(5, &mut block).unwrap();
        assert_ne!(block, [7u8; BLOCK_SIZE]);
        c.open_block(5, &mut block, &tag).unwrap();
        assert_eq!(block, [7u8; BLOCK_SIZE]);
    }

    #[test]
    fn block_is_bound_to_slot_image_and_key() {
        let c = cipher(1, 2);
        let mut sealed = [7u8; BLOCK_SIZE];
        let tag = c.seal_block(5, &mut sealed).unwrap();
        for (other, slot) in [(cipher(1, 2), 6), (cipher(1, 3), 5), (cipher(9, 2), 5)] {
            let mut block = sealed;
            assert_eq!(other.open_block(slot, &mut block, &tag), Err(AuthFailed));
        }
    }

    #[test]
    fn same_plaintext_differs_per_slot() {
        let c = cipher(1, 2);
        let (mut a, mut b) = ([0u8; BLOCK_SIZE], [0u8; BLOCK_SIZE]);
        c.seal_block(1, &mut a).unwrap();
        c.seal_block(2, &mut b).unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn superblock_round_trip_and_tamper() {
        let c = cipher(1, 2);
        let body = vec![3u8; SUPER_BODY_LEN];
        let mut sealed = c.seal_superblock(&body).unwrap();
        assert_eq!(c.open_superblock(&sealed).unwrap().as_slice(), &body[..]);
        sealed[10] ^= 1;
        assert_eq!(c.open_superblock(&sealed).unwrap_err(), AuthFailed);
    }
}
