//! Turning the finished tree into the metadata region: inode table, then heap.

use std::collections::VecDeque;
use std::collections::{BTreeMap, HashMap};

use crate::format::{DirentRecord, Extent, InodeRecord, SuperBody, DIRENT_SIZE, INODE_SIZE};

use super::tree::{Body, NodeId, Tree, ROOT};

/// The serialized metadata region and the counts for the superblock.
pub(super) struct Metadata {
    pub bytes: Vec<u8>,
    pub counts: SuperBody,
}

/// Numbers the reachable inodes breadth-first in name order (root = 1) and serializes them.
/// The order depends only on the tree, so equal trees give equal bytes.
pub(super) fn serialize(tree: &Tree, attachments: &BTreeMap<String, Vec<u8>>) -> Metadata {
    let (order, ino_of, nlinks, entries) = number(tree);
    let mut heap = Vec::new();
    let mut records = Vec::with_capacity(order.len());
    let mut counts = SuperBody {
        entry_count: entries,
        ..SuperBody::default()
    };
    for &id in &order {
        let node = &tree.nodes[id];
        let mut rec = InodeRecord {
            mode: node.body.kind().mode_bits() | (node.meta.mode & 0o7777),
            uid: node.meta.uid,
            gid: node.meta.gid,
            nlink: nlinks.get(&id).copied().unwrap_or(1),
            mtime_sec: node.meta.mtime.sec,
            mtime_nsec: node.meta.mtime.nsec,
            ..InodeRecord::default()
        };
        rec.body_offset = heap.len() as u64;
        match &node.body {
            Body::Dir(children) => {
                counts.directories += 1;
                rec.size = children.len() as u64;
                let names_start = heap.len() + children.len() * DIRENT_SIZE;
                let mut name_offset = names_start as u64;
                for (name, child) in children {
                    DirentRecord {
                        ino: ino_of.get(child).copied().unwrap_or(0),
                        name_offset,
                        name_len: name.len() as u16,
                    }
                    .encode(&mut heap);
                    name_offset += name.len() as u64;
                }
                for name in children.keys() {
                    heap.extend_from_slice(name);
                }
            }
            Body::File {
                size,
                extents,
                blocks,
            } => {
                counts.files += 1;
                counts.file_bytes += size;
                rec.size = *size;
                rec.blocks = *blocks;
                extents.iter().for_each(|e: &Extent| e.encode(&mut heap));
            }
            Body::Symlink(target) => {
                counts.symlinks += 1;
                rec.size = target.len() as u64;
                heap.extend_from_slice(target);
            }
            Body::Special { rdev, .. } => {
                counts.specials += 1;
                rec.rdev = *rdev;
            }
        }
        rec.body_len = heap.len() as u64 - rec.body_offset;
        rec.xattr_offset = heap.len() as u64;
        for (name, value) in &node.meta.xattrs {
            heap.extend_from_slice(&(name.len() as u32).to_le_bytes());
            heap.extend_from_slice(&(value.len() as u32).to_le_bytes());
            heap.extend_from_slice(name);
            heap.extend_from_slice(value);
        }
        rec.xattr_count = node.meta.xattrs.len() as u32;
        rec.xattr_len = heap.len() as u64 - rec.xattr_offset;
        records.push(rec);
    }
    // Parents of directories.
    for &id in &order {
        if let Some(children) = tree.children(id) {
            let parent_ino = ino_of.get(&id).copied().unwrap_or(0);
            for child in children.values() {
                if tree.children(*child).is_some() {
                    if let Some(&ino) = ino_of.get(child) {
                        records[(ino - 1) as usize].parent = parent_ino;
                    }
                }
            }
        }
    }
    records[0].parent = 1;

    counts.attachments_offset = heap.len() as u64;
    for (name, value) in attachments {
        heap.extend_from_slice(&(name.len() as u32).to_le_bytes());
        heap.extend_from_slice(&(value.len() as u32).to_le_bytes());
        heap.extend_from_slice(name.as_bytes());
        heap.extend_from_slice(value);
    }
    counts.attachments_len = heap.len() as u64 - counts.attachments_offset;
    counts.attachments_count = attachments.len() as u64;

    let table_len = records.len() * INODE_SIZE;
    let mut bytes = Vec::with_capacity(table_len + heap.len());
    records.iter().for_each(|r| r.encode(&mut bytes));
    bytes.extend_from_slice(&heap);
    counts.inode_count = records.len() as u64;
    counts.heap_offset = table_len as u64;
    counts.meta_len = bytes.len() as u64;
    Metadata { bytes, counts }
}

/// Breadth-first numbering: inode order, node → inode, link counts, directory entries.
fn number(tree: &Tree) -> (Vec<NodeId>, HashMap<NodeId, u64>, HashMap<NodeId, u32>, u64) {
    let mut order = vec![ROOT];
    let mut ino_of = HashMap::from([(ROOT, 1u64)]);
    let mut nlinks: HashMap<NodeId, u32> = HashMap::from([(ROOT, 2)]);
    let mut entries = 0u64;
    let mut queue = VecDeque::from([ROOT]);
    while let Some(dir) = queue.pop_front() {
        let Some(children) = tree.children(dir) else {
            continue;
        };
        for child in children.values() {
            entries += 1;
            let is_dir = tree.children(*child).is_some();
            if is_dir {
                *nlinks.entry(dir).or_insert(2) += 1;
                nlinks.entry(*child).or_insert(2);
            } else {
                *nlinks.entry(*child).or_insert(0) += 1;
            }
            if !ino_of.contains_key(child) {
                ino_of.insert(*child, order.len() as u64 + 1);
                order.push(*child);
                if is_dir {
                    queue.push_back(*child);
                }
            }
        }
    }
    (order, ino_of, nlinks, entries)
}
