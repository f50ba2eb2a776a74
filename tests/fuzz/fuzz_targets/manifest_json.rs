#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| encc_stage1::fuzzing::image_documents(data));
