#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| encc_fuzz::open_and_walk(data));
