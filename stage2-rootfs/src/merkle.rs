//! The Merkle tree over all slots, stored level by level after the slots.
//!
//! Node rule (rs_merkle's): a parent is SHA-256(left || right); the last node of a level with
//! an odd count is promoted unchanged. Leaves are [`crate::crypto::leaf_hash`] of each slot.
//! The builder streams: leaf hashes are spooled to an unlinked temporary file, and each level
//! is computed from the one below it, so memory does not grow with the image. Those files are
//! on host storage, which the host can change at any moment: the root that becomes the
//! measurement is therefore computed in memory from the leaves as they are pushed (a stack of
//! O(log n) subtree roots), and the stored tree must end in that same root or the build fails.
//!
//! Kept hand-written: `rs_merkle` (whose node rule and hasher this uses)
//! and `merkle_light`/`ct-merkle` build the whole tree in memory, not level by level from a
//! spooled leaf file.

use std::fs::File;
use std::io::{self, BufWriter, Read, Seek, SeekFrom, Write};
use std::os::unix::fs::FileExt;
use std::path::Path;

use rs_merkle::Hasher;

use crate::crypto::TreeHasher;
use crate::format::NODE_SIZE;

/// Nodes handled per I/O call when building levels.
const CHUNK_NODES: usize = 4096;

/// The shape of a tree with a given number of leaves.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TreeShape {
    lens: Vec<u64>,
    starts: Vec<u64>,
}

impl TreeShape {
    /// The shape for `leaf_count` leaves (at least one).
    pub fn new(leaf_count: u64) -> Self {
        let mut lens = vec![leaf_count.max(1)];
        while let Some(&last) = lens.last() {
            if last <= 1 {
                break;
            }
            lens.push(last.div_ceil(2));
        }
        let mut starts = Vec::with_capacity(lens.len());
        let mut acc = 0;
        for len in &lens {
            starts.push(acc);
            acc += len;
        }
        Self { lens, starts }
    }

    /// Number of levels, leaves included; the last level holds only the root.
    pub fn levels(&self) -> usize {
        self.lens.len()
    }

    /// Number of nodes on `level`.
    pub fn len(&self, level: usize) -> u64 {
        self.lens.get(level).copied().unwrap_or(0)
    }

    /// Index of the first node of `level` among all stored nodes.
    pub fn start(&self, level: usize) -> u64 {
        self.starts.get(level).copied().unwrap_or(0)
    }

    /// Total stored nodes.
    pub fn total_nodes(&self) -> u64 {
        self.lens.iter().sum()
    }

    /// Total stored bytes.
    pub fn total_bytes(&self) -> u64 {
        self.total_nodes() * NODE_SIZE as u64
    }
}

/// The parent of two nodes, or the promoted node when it has no right sibling.
pub fn parent(left: &[u8; 32], right: Option<&[u8; 32]>) -> [u8; 32] {
    TreeHasher::concat_and_hash(left, right)
}

/// Collects leaf hashes while slots are written, then writes the whole tree.
pub struct TreeWriter {
    spool: BufWriter<File>,
    leaves: u64,
    root: RootAccumulator,
}

/// The Merkle root of the leaves pushed so far, from memory only: the roots of the perfect
/// subtrees, largest first (a binary counter). Folding them from the right gives the same
/// root as rs_merkle's level-by-level rule with odd nodes promoted.
#[derive(Default)]
struct RootAccumulator {
    stack: Vec<(u32, [u8; 32])>,
}

impl RootAccumulator {
    fn push(&mut self, leaf: &[u8; 32]) {
        let mut node = (0, *leaf);
        while let Some(&(height, left)) = self.stack.last() {
            if height != node.0 {
                break;
            }
            self.stack.pop();
            node = (height + 1, parent(&left, Some(&node.1)));
        }
        self.stack.push(node);
    }

    fn root(&self) -> Option<[u8; 32]> {
        let mut subtrees = self.stack.iter().rev();
        let mut root = subtrees.next()?.1;
        for (_, left) in subtrees {
            root = parent(left, Some(&root));
        }
        Some(root)
    }
}

impl TreeWriter {
    /// A writer whose spool lives (unlinked) in `dir`, the directory of the image.
    pub fn new(dir: &Path) -> io::Result<Self> {
        Ok(Self {
            spool: BufWriter::with_capacity(1 << 16, tempfile::tempfile_in(dir)?),
            leaves: 0,
            root: RootAccumulator::default(),
        })
    }

    /// Adds the next leaf.
    pub fn push(&mut self, leaf: &[u8; 32]) -> io::Result<()> {
        self.leaves += 1;
        self.root.push(leaf);
        self.spool.write_all(leaf)
    }

    /// Number of leaves pushed so far.
    pub fn leaf_count(&self) -> u64 {
        self.leaves
    }

    /// Writes all levels to `out` starting at byte `offset`; returns the root computed in
    /// memory. Fails if the levels read back from the files end in another root (the host
    /// changed the spool or `out` meanwhile), or if no leaf was pushed.
    pub fn write_to(self, out: &File, offset: u64) -> io::Result<[u8; 32]> {
        let Some(expected) = self.root.root() else {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "a Merkle tree needs at least one leaf",
            ));
        };
        let shape = TreeShape::new(self.leaves);
        let mut spool = self
            .spool
            .into_inner()
            .map_err(io::IntoInnerError::into_error)?;
        spool.seek(SeekFrom::Start(0))?;
        let mut buf = vec![0u8; CHUNK_NODES * NODE_SIZE];
        let mut pos = offset;
        loop {
            let n = read_full(&mut spool, &mut buf)?;
            if n == 0 {
                break;
            }
            out.write_all_at(&buf[..n], pos)?;
            pos += n as u64;
        }
        for level in 1..shape.levels() {
            let below = offset + shape.start(level - 1) * NODE_SIZE as u64;
            let here = offset + shape.start(level) * NODE_SIZE as u64;
            build_level(out, below, shape.len(level - 1), here, &mut buf)?;
        }
        let mut stored = [0u8; 32];
        out.read_exact_at(
            &mut stored,
            offset + shape.start(shape.levels() - 1) * NODE_SIZE as u64,
        )?;
        if stored != expected {
            return Err(io::Error::new(
                io::ErrorKind::InvalidData,
                "the Merkle tree written to host storage does not end in the root of the sealed \
                 slots (its files were changed during the build)",
            ));
        }
        Ok(expected)
    }
}

/// Computes one level from the `count` nodes stored at `below`, writing it at `here`.
fn build_level(out: &File, below: u64, count: u64, here: u64, buf: &mut [u8]) -> io::Result<()> {
    let mut done = 0u64;
    let mut parents = Vec::with_capacity(CHUNK_NODES / 2 * NODE_SIZE);
    while done < count {
        // An even number of nodes per chunk keeps pairs together.
        let take = (count - done).min(CHUNK_NODES as u64) as usize;
        let bytes = &mut buf[..take * NODE_SIZE];
        out.read_exact_at(bytes, below + done * NODE_SIZE as u64)?;
        parents.clear();
        for pair in bytes.chunks(2 * NODE_SIZE) {
            let left = node_at(pair, 0);
            let right = (pair.len() == 2 * NODE_SIZE).then(|| node_at(pair, 1));
            parents.extend_from_slice(&parent(&left, right.as_ref()));
        }
        out.write_all_at(&parents, here + done / 2 * NODE_SIZE as u64)?;
        done += take as u64;
    }
    Ok(())
}

/// Node `i` of a byte slice of nodes; the caller keeps `i` in range.
pub fn node_at(bytes: &[u8], i: usize) -> [u8; 32] {
    let mut node = [0u8; 32];
    if let Some(src) = bytes.get(i * NODE_SIZE..(i + 1) * NODE_SIZE) {
        node.copy_from_slice(src);
    }
    node
}

/// Reads until `buf` is full or the reader is at its end; returns the bytes read.
pub fn read_full<R: Read + ?Sized>(r: &mut R, buf: &mut [u8]) -> io::Result<usize> {
    let mut n = 0;
    while n < buf.len() {
        match r.read(&mut buf[n..]) {
            Ok(0) => break,
            Ok(k) => n += k,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rs_merkle::MerkleTree;

    fn leaves(n: u64) -> Vec<[u8; 32]> {
        (0..n).map(|i| TreeHasher::hash(&i.to_le_bytes())).collect()
    }

    #[test]
    fn shape() {
        assert_eq!(TreeShape::new(1).levels(), 1);
        let s = TreeShape::new(5);
        assert_eq!((s.len(0), s.len(1), s.len(2), s.len(3)), (5, 3, 2, 1));
        assert_eq!(s.start(3), 10);
        assert_eq!(s.total_nodes(), 11);
    }

    #[test]
    fn streamed_root_matches_rs_merkle() {
        let dir = tempfile::tempdir().unwrap();
        for n in (1..=40).chain([4095, 4096, 4097, 8193]) {
            let leaves = leaves(n);
            let mut w = TreeWriter::new(dir.path()).unwrap();
            for leaf in &leaves {
                w.push(leaf).unwrap();
            }
            let out = tempfile::tempfile().unwrap();
            let root = w.write_to(&out, 100).unwrap();
            let expected = MerkleTree::<TreeHasher>::from_leaves(&leaves)
                .root()
                .unwrap();
            assert_eq!(root, expected, "{n} leaves");
            let len = out.metadata().unwrap().len();
            assert_eq!(len, 100 + TreeShape::new(n).total_bytes());
        }
    }

    #[test]
    fn in_memory_root_matches_rs_merkle() {
        for n in 1..=300 {
            let leaves = leaves(n);
            let mut acc = RootAccumulator::default();
            leaves.iter().for_each(|leaf| acc.push(leaf));
            let expected = MerkleTree::<TreeHasher>::from_leaves(&leaves).root();
            assert_eq!(acc.root(), expected, "{n} leaves");
        }
        assert_eq!(RootAccumulator::default().root(), None);
    }

    /// The host rewrites the leaf spool (an unlinked file in the image's directory, reachable
    /// through /proc/PID/fd) before the tree is built: the root must still be the one over
    /// the leaves the builder pushed, or the build must fail; never a root over its leaves.
    #[test]
    fn a_host_changing_the_spool_cannot_choose_the_root() {
        let dir = tempfile::tempdir().unwrap();
        let leaves = leaves(4000); // more than the spool's 64 KiB buffer: some reach the file
        let mut w = TreeWriter::new(dir.path()).unwrap();
        for leaf in &leaves {
            w.push(leaf).unwrap();
        }
        let spool = std::fs::read_dir("/proc/self/fd")
            .unwrap()
            .map(|e| e.unwrap().path())
            .find(|fd| {
                std::fs::read_link(fd).is_ok_and(|target| {
                    target.starts_with(dir.path())
                        && target.to_string_lossy().ends_with(" (deleted)")
                })
            })
            .expect("the spool's descriptor");
        let host = std::fs::OpenOptions::new().write(true).open(spool).unwrap();
        host.write_all_at(&[0x55; 32 * 100], 0).unwrap();
        let out = tempfile::tempfile().unwrap();
        let expected = MerkleTree::<TreeHasher>::from_leaves(&leaves)
            .root()
            .unwrap();
        match w.write_to(&out, 0) {
            Ok(root) => assert_eq!(root, expected),
            Err(e) => assert!(e.to_string().contains("changed during the build"), "{e}"),
        }
    }
}
