//! The in-memory tree the builder edits: names and metadata only, file data lives in slots.

use std::collections::BTreeMap;

use crate::format::{Extent, FileKind};
use crate::path::RootfsPath;

use super::{BuildError, EntryMeta};

/// Index of a node in the arena.
pub(super) type NodeId = usize;

/// The root directory's node.
pub(super) const ROOT: NodeId = 0;

/// One inode of the tree being built.
#[derive(Debug, Clone)]
pub(super) struct Node {
    pub meta: EntryMeta,
    pub body: Body,
}

/// What an inode holds besides its metadata.
#[derive(Debug, Clone)]
pub(super) enum Body {
    Dir(BTreeMap<Vec<u8>, NodeId>),
    File {
        size: u64,
        extents: Vec<Extent>,
        blocks: u64,
    },
    Symlink(Vec<u8>),
    Special {
        kind: FileKind,
        rdev: u64,
    },
}

impl Body {
    pub fn kind(&self) -> FileKind {
        match self {
            Self::Dir(_) => FileKind::Directory,
            Self::File { .. } => FileKind::Regular,
            Self::Symlink(_) => FileKind::Symlink,
            Self::Special { kind, .. } => *kind,
        }
    }
}

/// Arena of nodes; the root is node 0. Unlinked nodes stay in the arena but are unreachable,
/// so they never reach the image's metadata.
#[derive(Debug, Clone)]
pub(super) struct Tree {
    pub nodes: Vec<Node>,
}

impl Tree {
    pub fn new() -> Self {
        Self {
            nodes: vec![Node {
                meta: EntryMeta::default_dir(),
                body: Body::Dir(BTreeMap::new()),
            }],
        }
    }

    /// The directory that will hold `path`, created (with default metadata) where missing,
    /// and the last name of `path`. Fails for the root and for paths through non-directories.
    pub fn parent_for<'p>(
        &mut self,
        path: &'p RootfsPath,
    ) -> Result<(NodeId, &'p [u8]), BuildError> {
        let Some((last, parents)) = path.names().split_last() else {
            return Err(BuildError::IsRoot);
        };
        let mut dir = ROOT;
        for (depth, name) in parents.iter().enumerate() {
            let existing = self.children(dir).and_then(|c| c.get(name).copied());
            dir = match existing {
                Some(id) if matches!(self.nodes[id].body, Body::Dir(_)) => id,
                Some(_) => {
                    return Err(BuildError::NotADirectory {
                        path: path.clone(),
                        parent: prefix(path, depth + 1),
                    })
                }
                None => {
                    let id = self.alloc(Node {
                        meta: EntryMeta::default_dir(),
                        body: Body::Dir(BTreeMap::new()),
                    });
                    self.link(dir, name, id);
                    id
                }
            };
        }
        Ok((dir, last.as_slice()))
    }

    /// The node at `path`, if any (no symlinks are followed).
    pub fn lookup(&self, path: &RootfsPath) -> Option<NodeId> {
        self.lookup_names(path.names())
    }

    /// The node at the path made of `names`, if any.
    pub fn lookup_names(&self, names: &[Vec<u8>]) -> Option<NodeId> {
        let mut id = ROOT;
        for name in names {
            id = *self.children(id)?.get(name)?;
        }
        Some(id)
    }

    /// Adds a node and links it at `dir/name`, replacing what was there.
    pub fn insert(&mut self, dir: NodeId, name: &[u8], node: Node) -> NodeId {
        let id = self.alloc(node);
        self.link(dir, name, id);
        id
    }

    /// Links an existing node at `dir/name`, replacing what was there.
    pub fn link(&mut self, dir: NodeId, name: &[u8], id: NodeId) {
        if let Body::Dir(children) = &mut self.nodes[dir].body {
            children.insert(name.to_vec(), id);
        }
    }

    /// Removes `dir/name`; returns whether it existed.
    pub fn unlink(&mut self, dir: NodeId, name: &[u8]) -> bool {
        match &mut self.nodes[dir].body {
            Body::Dir(children) => children.remove(name).is_some(),
            _ => false,
        }
    }

    pub fn children(&self, id: NodeId) -> Option<&BTreeMap<Vec<u8>, NodeId>> {
        match &self.nodes.get(id)?.body {
            Body::Dir(children) => Some(children),
            _ => None,
        }
    }

    fn alloc(&mut self, node: Node) -> NodeId {
        self.nodes.push(node);
        self.nodes.len() - 1
    }
}

/// The first `n` names of `path`.
fn prefix(path: &RootfsPath, n: usize) -> RootfsPath {
    let mut p = RootfsPath::root();
    for name in &path.names()[..n] {
        // Names of a parsed path are valid on their own.
        if let Ok(joined) = p.join(name) {
            p = joined;
        }
    }
    p
}
