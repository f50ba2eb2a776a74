#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| encc_fuzz::control_channel(data));
