//! FUSE server (in progress).
