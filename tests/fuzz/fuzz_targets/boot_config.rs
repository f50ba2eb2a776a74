#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = encc_interface::config::BootConfig::parse(data, "fuzz");
});
