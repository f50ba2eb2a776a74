//! Paths inside a rootfs image: a list of names, never `..`, never absolute.

use std::ffi::OsStr;
use std::fmt;
use std::os::unix::ffi::OsStrExt;

use crate::format::NAME_MAX;

/// A normalized path inside an image; the empty path is the root directory.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct RootfsPath(Vec<Vec<u8>>);

/// Why a path is not a valid image path.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PathError {
    /// The path has a `..` component.
    #[error("path {0:?} has a '..' component")]
    DotDot(String),
    /// A component is longer than NAME_MAX.
    #[error("path {0:?} has a name longer than 255 bytes")]
    NameTooLong(String),
    /// The path has a NUL byte.
    #[error("path {0:?} has a NUL byte")]
    Nul(String),
}

impl RootfsPath {
    /// The root directory.
    pub fn root() -> Self {
        Self(Vec::new())
    }

    /// Parses a path. Leading `/` and `./`, repeated slashes and `.` components are dropped
    /// (the path is always taken relative to the image root); `..` is an error.
    pub fn parse(path: &[u8]) -> Result<Self, PathError> {
        let shown = || String::from_utf8_lossy(path).into_owned();
        if path.contains(&0) {
            return Err(PathError::Nul(shown()));
        }
        let mut names = Vec::new();
        for name in path.split(|&b| b == b'/') {
            match name {
                b"" | b"." => {}
                b".." => return Err(PathError::DotDot(shown())),
                _ if name.len() > NAME_MAX => return Err(PathError::NameTooLong(shown())),
                _ => names.push(name.to_vec()),
            }
        }
        Ok(Self(names))
    }

    /// Parses an `OsStr` path.
    pub fn parse_os(path: &OsStr) -> Result<Self, PathError> {
        Self::parse(path.as_bytes())
    }

    /// A path from names already known to be valid (no `..`, `.`, empty or long names).
    pub(crate) fn from_valid_names(names: Vec<Vec<u8>>) -> Self {
        Self(names)
    }

    /// The names, root first.
    pub fn names(&self) -> &[Vec<u8>] {
        &self.0
    }

    /// Whether this is the root directory.
    pub fn is_root(&self) -> bool {
        self.0.is_empty()
    }

    /// The parent path and the last name; `None` for the root.
    pub fn split_last(&self) -> Option<(RootfsPath, &[u8])> {
        let (last, parent) = self.0.split_last()?;
        Some((RootfsPath(parent.to_vec()), last))
    }

    /// This path with one more name.
    pub fn join(&self, name: &[u8]) -> Result<Self, PathError> {
        let mut joined = self.clone();
        let extra = Self::parse(name)?;
        joined.0.extend(extra.0);
        Ok(joined)
    }
}

impl fmt::Display for RootfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            return f.write_str("/");
        }
        for name in &self.0 {
            write!(f, "/{}", String::from_utf8_lossy(name))?;
        }
        Ok(())
    }
}

impl fmt::Debug for RootfsPath {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{:?}", self.to_string())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn normalizes() {
        let p = RootfsPath::parse(b"./a//b/./c/").unwrap();
        assert_eq!(p.to_string(), "/a/b/c");
        assert_eq!(
            RootfsPath::parse(b"/a/b").unwrap(),
            RootfsPath::parse(b"a/b").unwrap()
        );
        assert!(RootfsPath::parse(b"./").unwrap().is_root());
    }

    #[test]
    fn rejects_dotdot_nul_and_long_names() {
        assert!(matches!(
            RootfsPath::parse(b"a/../b"),
            Err(PathError::DotDot(_))
        ));
        assert!(matches!(RootfsPath::parse(b"a\0b"), Err(PathError::Nul(_))));
        let long = vec![b'x'; 256];
        assert!(matches!(
            RootfsPath::parse(&long),
            Err(PathError::NameTooLong(_))
        ));
        assert!(RootfsPath::parse(&long[..255]).is_ok());
    }
}
