#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| encc_fuzz::layer_stream(data));
