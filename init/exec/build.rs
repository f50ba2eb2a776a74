//! Links the `encc-exec` binary to load its C library from `/.encc/lib`, where `init` puts
//! the loader and the libraries it runs with itself when it fills the Occlum lower layer:
//! after MountRootFS the root is the image's, which may have no (or another) C library, and
//! Occlum 0.30 loads only ELF files with an interpreter (`src/libos/src/process/do_spawn/
//! mod.rs`, "cannot find the interpreter segment"), so a static binary is no way out.

fn main() {
    let os = std::env::var("CARGO_CFG_TARGET_OS").unwrap_or_default();
    let arch = std::env::var("CARGO_CFG_TARGET_ARCH").unwrap_or_default();
    let env = std::env::var("CARGO_CFG_TARGET_ENV").unwrap_or_default();
    let loader = match (os.as_str(), arch.as_str(), env.as_str()) {
        ("linux", "x86_64", "gnu") => "ld-linux-x86-64.so.2",
        ("linux", "x86_64", "musl") => "ld-musl-x86_64.so.1",
        _ => return,
    };
    println!("cargo:rustc-link-arg-bin=encc-exec=-Wl,--dynamic-linker=/.encc/lib/{loader}");
    println!("cargo:rustc-link-arg-bin=encc-exec=-Wl,-rpath,/.encc/lib");
    println!("cargo:rerun-if-changed=build.rs");
}
