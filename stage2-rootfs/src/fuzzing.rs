//! Test-only hooks for the fuzz targets (cargo feature `fuzzing`, which no encc binary
//! enables): [`seal_input`] turns fuzz bytes into an image whose superblock, slots and Merkle
//! tree are all valid under a key, so that every mutation of the *metadata* (inode table,
//! directories, extents, xattrs, attachments, superblock counts) reaches the parsers behind
//! the AEAD; [`input_of_image`] is its inverse, to seed the corpus from real images.
//!
//! Input layout: byte 0 is the number of data slots (`& 63`; slot `i` holds the byte `i + 1`
//! repeated), bytes 1..3 the inode count (u16 LE), then nine u32 LE superblock fields
//! (`entry_count`, `file_bytes`, `files`, `directories`, `symlinks`, `specials`,
//! `attachments_offset`, `attachments_len`, `attachments_count`); the rest is the metadata
//! region. The fields a reader derives (slot count, metadata slot and length, heap offset,
//! image length, root hash) are computed, so the fuzzer does not spend itself on them.

use std::fs;
use std::io;
use std::path::Path;

use crate::crypto::{default_image_id, key_id, leaf_hash, ImageCipher};
use crate::format::{
    slot_offset, Header, SuperBody, BLOCK_SIZE, HEADER_LEN, INODE_SIZE, SLOT_SIZE, VERSION,
};
use crate::key::DataKey;
use crate::merkle::{parent, TreeShape};

/// Length of the fixed part of an input.
pub const PREFIX_LEN: usize = 1 + 2 + 9 * 4;

/// Writes the image that `input` describes to `path`, sealed under `key`.
pub fn seal_input(path: &Path, key: &DataKey, input: &[u8]) -> io::Result<()> {
    let mut prefix = [0u8; PREFIX_LEN];
    let n = input.len().min(PREFIX_LEN);
    prefix[..n].copy_from_slice(&input[..n]);
    let meta = &input[n..];
    let data_slots = u64::from(prefix[0] & 63);
    let inode_count = u64::from(u16::from_le_bytes([prefix[1], prefix[2]]));
    let field = |i: usize| {
        let at = 3 + 4 * i;
        u64::from(u32::from_le_bytes([
            prefix[at],
            prefix[at + 1],
            prefix[at + 2],
            prefix[at + 3],
        ]))
    };

    let header = Header {
        version: VERSION,
        block_size: BLOCK_SIZE as u32,
        key_id: key_id(key),
        image_id: default_image_id(key),
    };
    let cipher = ImageCipher::new(key, header);
    let mut blocks: Vec<Vec<u8>> = (0..data_slots)
        .map(|i| vec![i as u8 + 1; BLOCK_SIZE])
        .collect();
    for chunk in meta.chunks(BLOCK_SIZE) {
        let mut block = chunk.to_vec();
        block.resize(BLOCK_SIZE, 0);
        blocks.push(block);
    }
    let slot_count = blocks.len() as u64;
    let mut image = Vec::with_capacity(BLOCK_SIZE + blocks.len() * SLOT_SIZE);
    image.resize(BLOCK_SIZE, 0);
    let mut level = Vec::with_capacity(blocks.len());
    for (slot, mut block) in blocks.into_iter().enumerate() {
        let tag = cipher
            .seal_block(slot as u64, &mut block)
            .map_err(io::Error::other)?;
        let start = image.len();
        image.extend_from_slice(&block);
        image.extend_from_slice(&tag);
        level.push(leaf_hash(&image[start..]));
    }
    let shape = TreeShape::new(slot_count);
    if level.is_empty() {
        // An image without slots still stores one node (as the builder does).
        level.push([0u8; 32]);
    }
    let mut tree = Vec::with_capacity(shape.total_bytes() as usize);
    loop {
        for node in &level {
            tree.extend_from_slice(node);
        }
        if level.len() <= 1 {
            break;
        }
        level = level
            .chunks(2)
            .map(|pair| parent(&pair[0], pair.get(1)))
            .collect();
    }
    let root_hash = level[0];
    image.extend_from_slice(&tree);

    let body = SuperBody {
        root_hash,
        slot_count,
        meta_slot: data_slots,
        meta_len: meta.len() as u64,
        inode_count,
        heap_offset: inode_count * INODE_SIZE as u64,
        image_len: image.len() as u64,
        entry_count: field(0),
        file_bytes: field(1),
        files: field(2),
        directories: field(3),
        symlinks: field(4),
        specials: field(5),
        attachments_offset: field(6),
        attachments_len: field(7),
        attachments_count: field(8),
    };
    image[..HEADER_LEN].copy_from_slice(&header.encode());
    let sealed = cipher
        .seal_superblock(&body.encode())
        .map_err(io::Error::other)?;
    image[HEADER_LEN..BLOCK_SIZE].copy_from_slice(&sealed);
    fs::write(path, image)
}

/// The input of [`seal_input`] that describes the image at `path` (written by the builder
/// under `key`), or why there is none. Data slots are not kept, only their count (at most
/// 63), and counts above `u32::MAX` are cut: the result is a seed, not a copy.
pub fn input_of_image(path: &Path, key: &DataKey) -> Result<Vec<u8>, String> {
    let bytes = fs::read(path).map_err(|e| format!("{}: {e}", path.display()))?;
    let header_len = HEADER_LEN;
    if bytes.len() < BLOCK_SIZE {
        return Err(format!("{}: shorter than a superblock", path.display()));
    }
    let mut header_bytes = [0u8; HEADER_LEN];
    header_bytes.copy_from_slice(&bytes[..HEADER_LEN]);
    let header = Header::decode(&header_bytes)
        .ok_or_else(|| format!("{}: not an encc image", path.display()))?;
    let cipher = ImageCipher::new(key, header);
    let body = cipher
        .open_superblock(&bytes[header_len..BLOCK_SIZE])
        .map_err(|_| format!("{}: superblock does not open with the key", path.display()))?;
    let body = SuperBody::decode(&body)
        .ok_or_else(|| format!("{}: superblock body is malformed", path.display()))?;
    if body.meta_slot > 63 || body.inode_count > u64::from(u16::MAX) {
        return Err(format!("{}: too large for a seed", path.display()));
    }
    let mut meta = Vec::new();
    for slot in body.meta_slot..body.slot_count {
        let start = slot_offset(slot) as usize;
        let stored = bytes
            .get(start..start + SLOT_SIZE)
            .ok_or_else(|| format!("{}: truncated", path.display()))?;
        let (block, tag) = stored.split_at(BLOCK_SIZE);
        let mut block = block.to_vec();
        cipher
            .open_block(slot, &mut block, tag)
            .map_err(|_| format!("{}: slot {slot} does not open", path.display()))?;
        meta.extend_from_slice(&block);
    }
    meta.truncate(body.meta_len as usize);
    let mut input = vec![body.meta_slot as u8];
    input.extend_from_slice(&(body.inode_count as u16).to_le_bytes());
    for v in [
        body.entry_count,
        body.file_bytes,
        body.files,
        body.directories,
        body.symlinks,
        body.specials,
        body.attachments_offset,
        body.attachments_len,
        body.attachments_count,
    ] {
        input.extend_from_slice(&(v.min(u64::from(u32::MAX)) as u32).to_le_bytes());
    }
    input.extend_from_slice(&meta);
    Ok(input)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{BuildOptions, EntryMeta, RootfsBuilder, RootfsPath, RootfsReader, Timestamp};

    fn meta(mode: u32) -> EntryMeta {
        EntryMeta {
            mode,
            uid: 0,
            gid: 0,
            mtime: Timestamp::default(),
            xattrs: Default::default(),
        }
    }

    /// A builder-written image and the image sealed from its input are the same image: both
    /// open, verify and hold the same tree, so the fuzz target starts from valid images.
    #[test]
    fn an_image_sealed_from_its_own_input_opens_and_reads_the_same() {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::from_bytes(&[9u8; 32]);
        let built = dir.path().join("built.img");
        let mut b = RootfsBuilder::create(&built, &key, BuildOptions::default()).unwrap();
        b.add_directory(&RootfsPath::parse(b"etc").unwrap(), meta(0o755))
            .unwrap();
        b.add_file(
            &RootfsPath::parse(b"etc/hostname").unwrap(),
            meta(0o644),
            &mut &b"encc\n"[..],
        )
        .unwrap();
        b.finish().unwrap();

        let input = input_of_image(&built, &key).unwrap();
        let resealed = dir.path().join("resealed.img");
        seal_input(&resealed, &key, &input).unwrap();
        let reader = RootfsReader::open(&resealed, &key).unwrap();
        reader.verify_all().unwrap();
        let root = reader.root().unwrap();
        let etc = reader.lookup(&root, b"etc").unwrap().unwrap();
        let file = reader.lookup(&etc, b"hostname").unwrap().unwrap();
        assert_eq!(file.size, 5);
        // The data slots are refilled, not copied: the file's block now holds 0x01 bytes.
        let mut buf = [0u8; 5];
        assert_eq!(reader.read(&file, 0, &mut buf).unwrap(), 5);
        assert_eq!(buf, [1u8; 5]);

        // Any other key refuses it: the hook seals, it does not bypass the checks.
        assert!(RootfsReader::open(&resealed, &DataKey::from_bytes(&[8u8; 32])).is_err());
    }

    /// Found by the `rootfs_metadata` target: an authenticated extent whose `file_block +
    /// count` overflows made `read` panic (and wrap in a release build). Each forged extent
    /// is now refused by name, and the image stays readable otherwise.
    #[test]
    fn a_forged_extent_is_refused_not_followed() {
        let dir = tempfile::tempdir().unwrap();
        let key = DataKey::from_bytes(&[9u8; 32]);
        let built = dir.path().join("built.img");
        let mut b = RootfsBuilder::create(&built, &key, BuildOptions::default()).unwrap();
        let data = vec![7u8; 2 * crate::BLOCK_SIZE];
        b.add_file(
            &RootfsPath::parse(b"f").unwrap(),
            meta(0o644),
            &mut &data[..],
        )
        .unwrap();
        b.finish().unwrap();
        let input = input_of_image(&built, &key).unwrap();
        let (extent, meta_slot, at) = {
            let reader = RootfsReader::open(&built, &key).unwrap();
            let file = reader
                .lookup(&reader.root().unwrap(), b"f")
                .unwrap()
                .unwrap();
            let extents = reader.extents(&file).unwrap();
            assert_eq!(extents.len(), 1);
            // The data slots come first, the metadata after them: the inode table, then the
            // heap that holds the extent list.
            let heap = PREFIX_LEN + reader.inode_count() as usize * INODE_SIZE;
            (
                extents[0],
                u64::from(input[0] & 63),
                heap + file.record.body_offset as usize,
            )
        };
        let mut encoded = Vec::new();
        extent.encode(&mut encoded);
        assert_eq!(input[at..at + encoded.len()], encoded);

        let forged = [
            (u64::MAX, extent.slot, 1), // file_block + count overflows
            (0, extent.slot, u64::MAX), // so does count
            (0, u64::MAX, 2),           // slot + count overflows
            (0, meta_slot, 1),          // a metadata slot as data
            (5, extent.slot, 1),        // past the file's 2 blocks
            (0, extent.slot, 0),        // an empty run
        ];
        for (file_block, slot, count) in forged {
            let mut bad = input.clone();
            let mut record = Vec::new();
            crate::format::Extent {
                file_block,
                slot,
                count,
            }
            .encode(&mut record);
            bad[at..at + record.len()].copy_from_slice(&record);
            let path = dir.path().join("forged.img");
            seal_input(&path, &key, &bad).unwrap();
            let reader = RootfsReader::open(&path, &key).unwrap();
            let file = reader
                .lookup(&reader.root().unwrap(), b"f")
                .unwrap()
                .unwrap();
            let err = match reader.read(&file, 0, &mut [0u8; 16]) {
                Ok(n) => panic!("({file_block}, {slot}, {count}) was followed: read {n} bytes"),
                Err(err) => err.to_string(),
            };
            assert!(
                err.contains("extent 0 of inode") && err.contains("forged.img"),
                "({file_block}, {slot}, {count}): {err}"
            );
        }
    }
}
