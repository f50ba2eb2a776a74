//! The in-enclave `init`. It gains its boot flow (stage 1, then stage 2) with the stage 1
//! pull; until then it only reports its version.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => {
            println!("init (encc) {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "init (encc) {}: the boot flow is not part of this build; see README.md",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
