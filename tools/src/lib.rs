//! Library side of the `encc` admin and debugging CLI: moving trees between host
//! directories and protected rootfs images.

#![forbid(unsafe_code)]

pub mod host_tree;
