#![no_main]

libfuzzer_sys::fuzz_target!(|data: &[u8]| {
    let _ = encc_stage1::policy::Policy::parse(data, "fuzz");
});
