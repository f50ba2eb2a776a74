//! `encc-launch`, the minimal host launcher. It gains the PAL ABI with the host-side work;
//! until then it only reports its version.

#![forbid(unsafe_code)]

use std::process::ExitCode;

fn main() -> ExitCode {
    let arg = std::env::args().nth(1);
    match arg.as_deref() {
        Some("--version") | Some("-V") => {
            println!("encc-launch {}", env!("CARGO_PKG_VERSION"));
            ExitCode::SUCCESS
        }
        _ => {
            eprintln!(
                "encc-launch {}: launching is not part of this build; see README.md",
                env!("CARGO_PKG_VERSION")
            );
            ExitCode::from(2)
        }
    }
}
