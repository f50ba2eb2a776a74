//! The trusted boot config: its schema is shared with the host side
//! ([`encc_interface::config`]).

pub use encc_interface::config::*;
