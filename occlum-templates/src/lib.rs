//! Occlum.json and boot-instance templates for encc, rendered and validated.
//!
//! The templates arrive with the host-side work; this crate holds no functionality yet.

#![forbid(unsafe_code)]
